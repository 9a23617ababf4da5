"""Seed N devices fast (PostgreSQL COPY) for the benchmarks.

    .venv/bin/python bench/seed.py --database-url postgres://postgres@127.0.0.1:5432/fleetbench --devices 1000000

(or DATABASE_URL=… in the environment). Progress (count, rate, ETA) goes to stderr.

Devices are named bench-0000001…, their token is `bench_token(uid)` (derived, so the load
generator needs no token file), installed versions are spread over ~50 combinations, and
attributes look like a real fleet (hardware, region, site, customer, canary tags).
Ends by printing one JSON line.
"""

import argparse
import hashlib
import io
import json
import os
import random
import sys
import time
from datetime import UTC, datetime

try:
    from _django import setup
except ImportError:  # imported as bench.seed
    from bench._django import setup

CATALOGUE = {
    "os": (["38.4", "39.1", "39.2", "40.0"], [0.1, 0.45, 0.35, 0.1]),
    "agent": (["2.3.0", "2.4.1", "2.5.0"], [0.2, 0.6, 0.2]),
    "vision": (["1.2", "1.3", "1.4"], [0.3, 0.5, 0.2]),
    "modem": (["7.1", "7.2"], [0.7, 0.3]),
}
HW = (["rpi4", "rpi5", "imx8"], [0.5, 0.3, 0.2])
REGIONS = ["eu-west", "eu-north", "us-east", "us-west", "ap-south"]


def bench_token(uid: str) -> str:
    return "bt-" + hashlib.sha256(f"fleet-bench:{uid}".encode()).hexdigest()[:40]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--reset", action="store_true", help="delete existing bench devices first")
    parser.add_argument("--keep-indexes", action="store_true", help="do not drop/rebuild secondary indexes")
    parser.add_argument("--database-url", help="PostgreSQL URL (default: $DATABASE_URL)")
    args = parser.parse_args()
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    setup()
    from django.db import connection, transaction

    from apps.fleet.models import Combination, Component, Device, hash_token

    if connection.vendor != "postgresql":
        print("bench/seed.py needs PostgreSQL (set DATABASE_URL)", file=sys.stderr)
        return 2
    rng = random.Random(args.seed)
    started = time.monotonic()
    for position, name in enumerate(CATALOGUE):
        Component.objects.get_or_create(name=name, defaults={"kind": "os" if name == "os" else "app",
                                                             "position": position})
    assert hash_token("x") == hashlib.sha256(b"x").hexdigest(), "hash_token changed: update the seed"
    if args.reset:
        with connection.cursor() as cursor:
            cursor.execute("DELETE FROM fleet_healthreport WHERE device_id IN "
                           "(SELECT id FROM fleet_device WHERE uid LIKE 'bench-%%')")
            cursor.execute("DELETE FROM fleet_device WHERE uid LIKE 'bench-%%'")
    now = datetime.now(UTC).isoformat()
    combos: dict[str, int] = {}
    combo_ids: dict[str, int] = {}

    def combination_id(installed: dict[str, str]) -> int:
        key = Combination.key_for(installed)
        if key not in combo_ids:
            combo, _ = Combination.objects.get_or_create(key=key, defaults={"versions": installed})
            combo_ids[key] = combo.pk
        combos[key] = combos.get(key, 0) + 1
        return combo_ids[key]

    # A fixed pool of ~50 combinations, weighted: real fleets have a head and a long tail.
    pool = []
    while len(pool) < 50:
        installed = {c: rng.choices(v, w)[0] for c, (v, w) in CATALOGUE.items()}
        if installed not in pool:
            pool.append(installed)
    weights = [1 / (i + 1) ** 1.1 for i in range(len(pool))]
    start_index = Device.objects.filter(uid__startswith="bench-").count()
    done = 0
    columns = ("uid", "hw_model", "attributes", "tags", "installed", "combination_id", "token_hash",
               "token_revoked", "enrolled_at", "created_at", "last_seq", "poll_interval_s", "checkin_count")
    pool_rows = []
    for installed in pool:
        combo_id = combination_id(installed)
        combos[Combination.key_for(installed)] = 0
        pool_rows.append((json.dumps(installed), str(combo_id)))
    sha256 = hashlib.sha256
    hw_names, hw_weights = HW
    # A big load into an empty table: build the secondary indexes once at the end (much cheaper
    # than maintaining them row by row). Unique constraints (uid) stay in place.
    dropped: list[tuple[str, str]] = []
    if start_index == 0 and args.devices >= 100_000 and not args.keep_indexes:
        with connection.cursor() as cursor:
            cursor.execute(
                "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = 'fleet_device' "
                "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)"
            )
            dropped = cursor.fetchall()
            for name, _ in dropped:
                cursor.execute(f'DROP INDEX "{name}"')
        if dropped:
            print(f"dropped {len(dropped)} secondary indexes for the load", file=sys.stderr, flush=True)
    while done < args.devices:
        n = min(args.batch, args.devices - done)
        buffer = io.StringIO()
        write = buffer.write
        picks = rng.choices(range(len(pool)), weights, k=n)
        hws = rng.choices(hw_names, hw_weights, k=n)
        for j, i in enumerate(range(start_index + done, start_index + done + n)):
            uid = f"bench-{i:07d}"
            installed_json, combo_id = pool_rows[picks[j]]
            token_hash = sha256(bench_token(uid).encode()).hexdigest()  # = hash_token(bench_token(uid))
            tags = '{"canary": true}' if rng.random() < 0.02 else "{}"
            write(f'{uid}\t{hws[j]}\t{{"region": "{rng.choice(REGIONS)}", "site": "site-{rng.randrange(500)}", '
                  f'"customer": "cust-{rng.randrange(60)}"}}\t{tags}\t{installed_json}\t{combo_id}\t{token_hash}'
                  f'\tf\t{now}\t{now}\t-1\t0\t0\n')
        buffer.seek(0)
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute("SET LOCAL synchronous_commit = off")
            with cursor.connection.cursor().copy(
                f"COPY fleet_device ({', '.join(columns)}) FROM STDIN"
            ) as copy:
                copy.write(buffer.getvalue())
        done += n
        rate = done / (time.monotonic() - started)
        eta = (args.devices - done) / rate if rate else 0
        print(f"seeded {done:,}/{args.devices:,} devices  {rate:,.0f}/s  eta {eta:,.0f}s", file=sys.stderr, flush=True)
    with connection.cursor() as cursor:
        for name, definition in dropped:
            index_started = time.monotonic()
            cursor.execute(definition)
            print(f"rebuilt index {name} in {time.monotonic() - index_started:.1f}s", file=sys.stderr, flush=True)
        cursor.execute("UPDATE fleet_combination c SET device_count = s.n FROM "
                       "(SELECT combination_id, count(*) n FROM fleet_device GROUP BY combination_id) s "
                       "WHERE c.id = s.combination_id")
        cursor.execute("ANALYZE fleet_device")
    elapsed = time.monotonic() - started
    print(json.dumps({"bench": "seed", "devices": args.devices, "seconds": round(elapsed, 1),
                      "devices_per_s": round(args.devices / elapsed), "combinations": len(combos),
                      "total_bench_devices": start_index + args.devices}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
