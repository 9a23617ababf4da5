"""Check-in load: wrk against the device API under gunicorn (production serving), with the
ceiling (a trivial Django JSON view on the same server config) measured in the same run.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/fleetbench REDIS_URL=redis://127.0.0.1:6379/10 \
        .venv/bin/python bench/checkin_load.py --duration 60 --connections 32 --sample 200000

Seed first (bench/seed.py). Prints progress, then one JSON line with both measurements
and their ratio.
"""

import argparse
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

try:
    from _django import ROOT, setup
except ImportError:
    from bench._django import ROOT, setup


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wrk(url: str, script: Path, *, duration: int, connections: int, threads: int, env: dict) -> dict:
    result = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--timeout", "5s",
         "-s", str(script), url],
        env=env, capture_output=True, text=True,
    )
    match = re.search(r"WRKJSON (\{.*\})", result.stderr + result.stdout)
    if not match:
        raise SystemExit(f"wrk gave no summary:\n{result.stdout}\n{result.stderr}")
    return json.loads(match.group(1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=30)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--sample", type=int, default=200_000, help="distinct devices to check in as")
    args = parser.parse_args()
    setup()
    from django.db import connection

    from apps.fleet.models import Device
    from bench.seed import bench_token

    total = Device.objects.filter(uid__startswith="bench-").count()
    if total == 0:
        raise SystemExit("no bench devices: run bench/seed.py first")
    uids = list(Device.objects.filter(uid__startswith="bench-").order_by("?").values_list("uid", flat=True)[: args.sample])
    connection.close()
    tokens = Path(tempfile.mkstemp(prefix="fleet-tokens-")[1])
    tokens.write_text("".join(f"{uid} {bench_token(uid)}\n" for uid in uids))
    port = free_port()
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="fleetweb.settings.prod",
        DJANGO_SECRET_KEY=env.get("DJANGO_SECRET_KEY", "bench-" + "x" * 60),
        DJANGO_SECURE_SSL_REDIRECT="false",
        DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        LOG_LEVEL="WARNING",
        FLEET_TOKENS=str(tokens),
        FLEET_THREADS=str(args.threads),
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "fleetweb.wsgi:application", "-w", str(args.workers), "-k", "sync",
         "-b", f"127.0.0.1:{port}", "--backlog", "2048", "--log-level", "warning"],
        cwd=ROOT, env=env, start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("gunicorn did not start") from None
                time.sleep(0.1)
        base = f"http://127.0.0.1:{port}"
        print(f"warming up against {base} ({len(uids):,} of {total:,} devices)…", file=sys.stderr, flush=True)
        wrk(base + "/healthz", ROOT / "bench" / "trivial.lua", duration=3, connections=8, threads=1, env=env)
        print(f"ceiling: trivial JSON view, {args.duration}s…", file=sys.stderr, flush=True)
        ceiling = wrk(base + "/healthz", ROOT / "bench" / "trivial.lua", duration=args.duration,
                      connections=args.connections, threads=args.threads, env=env)
        print(f"  {ceiling['rps']:,.0f} req/s p99 {ceiling['p99_ms']:.1f} ms", file=sys.stderr, flush=True)
        print(f"check-in: {args.duration}s…", file=sys.stderr, flush=True)
        checkin = wrk(base, ROOT / "bench" / "checkin.lua", duration=args.duration,
                      connections=args.connections, threads=args.threads, env=env)
        print(f"  {checkin['rps']:,.0f} req/s p99 {checkin['p99_ms']:.1f} ms errors {checkin['errors']}",
              file=sys.stderr, flush=True)
    finally:
        server.terminate()
        server.wait(timeout=20)
        tokens.unlink(missing_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    print(json.dumps({
        "bench": "checkin_load", "devices": total, "distinct_devices_sent": len(uids),
        "server": f"gunicorn {args.workers} sync workers", "connections": args.connections,
        "duration_s": args.duration, "checkin": checkin, "ceiling_trivial_view": ceiling,
        "ratio_to_ceiling": round(checkin["rps"] / ceiling["rps"], 3) if ceiling["rps"] else None,
        "machine": f"{platform.node()} {os.cpu_count()} cores", "commit": commit.strip(),
        "date": time.strftime("%Y-%m-%d"),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
