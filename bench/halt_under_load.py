"""Halt under load: from a bad release's decisive health reports to the halt committed and on the wall screen.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/fleetbench_1m REDIS_URL=redis://127.0.0.1:6379/10 \
        .venv/bin/python bench/halt_under_load.py --warmup 15 --connections 32

Needs seeded bench devices (bench/seed.py). Creates a fresh rollout of a "bad" release of the
`vision` component to the cohort `customer == "cust-3"` (wave 1: 400 devices, paced; wave 2:
the rest), starts wave 1 through the engine and marks half of it installed. Then, with
production settings (DEBUG off), it runs: gunicorn (2 sync workers) under wrk with
bench/checkin.lua (the check-in load of bench/checkin_load.py), a Celery worker and exactly
one beat (the engine ticks every FLEET_ENGINE_TICK_S, default here 1 s), and uvicorn serving
the wall screen's websocket, with one logged-in client on /ws/wall/. After --warmup seconds
of load it commits the decisive evidence (crash reports from 60 installed wave-1 devices, in
one transaction; `--evidence api` sends them as check-ins through gunicorn instead) and measures the time from the decisive report to the
halt committed (Rollout.halted_at) and to the halt arriving on the websocket (the decisive
report is the latest evidence report received before the halt), then checks
that no deployment was created or released after the halt. Prints progress, then one JSON line.
"""

import argparse
import asyncio
import json
import os
import platform
import sys
import threading
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

# Run as `python bench/<name>.py` from anywhere: the repository root makes `bench` a package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench._django import setup
from bench._live import (
    RssSampler,
    celery,
    commit,
    gunicorn,
    log,
    production_env,
    session_cookie,
    uvicorn,
    wrk_load,
    wrk_summary,
)

COHORT = ("bench halt cust-3", 'customer == "cust-3"')
PREFIX = "bench: halt under load"
EVIDENCE_DEVICES = 60


def prepare(user) -> tuple[int, list[str], str]:
    """A fresh running rollout; returns its id, the installed wave-1 devices and the bad version."""
    from django.db import connection

    from apps.fleet.models import Cohort, Component, Release
    from apps.fleet.services import cohort_create, release_create
    from apps.rollouts.engine import rollout_evaluate
    from apps.rollouts.models import Rollout, Wave
    from apps.rollouts.services import (
        RolloutError,
        rollout_abort,
        rollout_create,
        rollout_start,
        rollout_submit,
    )

    for old in Rollout.objects.filter(name__startswith=PREFIX, state__in=Rollout.ACTIVE_STATES):
        try:
            rollout_abort(rollout=old, actor=user, reason="bench: next run")
        except RolloutError:
            pass
    cohort = Cohort.objects.filter(name=COHORT[0]).first() or cohort_create(
        name=COHORT[0], filter_text=COHORT[1], actor=user)
    component = Component.objects.get(name="vision")
    version = f"9.{int(time.time())}"
    release = Release.objects.filter(component=component, version=version).first() or release_create(
        component=component, version=version, actor=user)
    rollout = rollout_create(name=f"{PREFIX} {version}", releases=[release], actor=user, waves=[
        {"cohort": cohort, "size_kind": "count", "size_value": 400, "max_starts_per_min": 300,
         "spike_gate": {"metrics": ["crashes"], "min_devices": 20}},
        {"cohort": None, "size_kind": "percent", "size_value": 100},
    ])
    rollout_submit(rollout=rollout, actor=user)
    rollout_start(rollout=rollout, actor=user)
    rollout_evaluate(rollout.pk)
    wave = Wave.objects.get(rollout=rollout, index=0)
    with connection.cursor() as cursor:
        # Half of wave 1 downloaded and installed the release a few minutes ago and is settling;
        # the other half is still held by the pacer, which releases more on every tick until a halt.
        cursor.execute(
            """
            UPDATE rollouts_deployment SET state = 'settling', released_at = now() - interval '6 minutes',
                   first_seen_at = now() - interval '5 minutes', installed_at = now() - interval '4 minutes',
                   settle_until = now() + interval '1 hour'
            WHERE id IN (SELECT id FROM rollouts_deployment WHERE wave_id = %s ORDER BY id LIMIT 200)
            RETURNING device_id
            """,
            [wave.pk],
        )
        installed_ids = [row[0] for row in cursor.fetchall()]
        cursor.execute("UPDATE fleet_device SET installed = installed || jsonb_build_object('vision', %s::text) "
                       "WHERE id = ANY(%s)", [version, installed_ids])
        # A baseline: the cohort's devices still on the old release reported normally (1 % crash).
        cursor.execute(
            """
            INSERT INTO fleet_healthreport (device_id, seq, received_at, interval_s, combination_id, crashes,
                                            failed_health_checks, reboots, app_restarts, extra)
            SELECT d.id, (extract(epoch from now()) * 1000)::bigint, now() - interval '2 minutes', 900, d.combination_id,
                   CASE WHEN random() < 0.01 THEN 1 ELSE 0 END, 0, 0, 0, '{}'::jsonb
            FROM fleet_device d WHERE d.attributes -> 'customer' = '"cust-3"'::jsonb
              AND NOT (d.id = ANY(%s)) LIMIT 5000
            """,
            [installed_ids],
        )
        cursor.execute(
            """
            INSERT INTO fleet_healthreport (device_id, seq, received_at, interval_s, combination_id, crashes,
                                            failed_health_checks, reboots, app_restarts, extra)
            SELECT d.id, (extract(epoch from now()) * 1000)::bigint, now() - interval '2 minutes', 900, d.combination_id, 0, 0, 0, 0, '{}'::jsonb
            FROM fleet_device d WHERE d.id = ANY(%s)
            """,
            [installed_ids],
        )
        cursor.execute("SELECT uid FROM fleet_device WHERE id = ANY(%s) ORDER BY uid", [installed_ids])
        uids = [row[0] for row in cursor.fetchall()]
    return rollout.pk, uids, version


def send_evidence(base: str, uids: list[str], version: str) -> tuple[float, list[int]]:
    """Check-ins with crashes from the installed devices, in parallel; returns when the last was answered."""
    from apps.fleet.models import Device
    from bench.seed import bench_token

    installed = dict(Device.objects.filter(uid__in=uids).values_list("uid", "installed"))

    def one(uid: str) -> int:
        body = json.dumps({
            "seq": int(time.time() * 1000),
            "installed": {**installed[uid], "vision": version},
            "health": {"interval_s": 300, "crashes": 2, "failed_health_checks": 0, "reboots": 0, "app_restarts": 0},
        }).encode()
        request = urllib.request.Request(f"{base}/api/v1/devices/{uid}/checkin", data=body, method="POST", headers={
            "Content-Type": "application/json", "Authorization": f"Bearer {bench_token(uid)}"})
        try:
            with urllib.request.urlopen(request, timeout=10) as response:
                return response.status
        except urllib.error.HTTPError as exc:
            return exc.code

    with ThreadPoolExecutor(max_workers=16) as pool:
        statuses = list(pool.map(one, uids))
    return time.time(), statuses


def insert_evidence(uids: list[str]) -> float:
    """The evidence as one transaction: crash reports from the installed devices, all visible at one instant."""
    from django.db import connection, transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            """
            INSERT INTO fleet_healthreport (device_id, seq, received_at, interval_s, combination_id, crashes,
                                            failed_health_checks, reboots, app_restarts, extra)
            SELECT d.id, (extract(epoch from clock_timestamp()) * 1000)::bigint, clock_timestamp(), 300,
                   d.combination_id, 2, 0, 0, 0, '{}'::jsonb
            FROM fleet_device d WHERE d.uid = ANY(%s)
            """,
            [uids],
        )
    return time.time()


def decisive_report_at(rollout, uids: list[str]) -> float | None:
    """When the last crash report the halting tick could have seen was received.

    The evidence check-ins go out in parallel and are slow under load, so the halt may come
    before the last of them is answered: the decisive report is the latest one received
    before the halt, not the last one sent.
    """
    from django.db.models import Max

    from apps.fleet.models import HealthReport

    if rollout.halted_at is None:
        return None
    latest = HealthReport.objects.filter(device__uid__in=uids, crashes__gt=0, received_at__lte=rollout.halted_at,
                                         received_at__gte=rollout.started_at).aggregate(at=Max("received_at"))["at"]
    return latest.timestamp() if latest else None


class WallWatcher(threading.Thread):
    """One logged-in wall-screen client; records when the rollout's halt first shows up."""

    def __init__(self, url: str, cookie: str, origin: str, rollout_id: int):
        super().__init__(daemon=True)
        self.url, self.cookie, self.origin, self.rollout_id = url, cookie, origin, rollout_id
        self.connected = threading.Event()
        self.halt_seen_at: float | None = None
        self.messages = 0
        self.error = ""

    def _mentions_halt(self, message: dict) -> bool:
        for event in message.get("events", []):
            if event.get("rollout") == self.rollout_id and (
                    event.get("state") == "halted" or "halt" in str(event.get("kind", ""))):
                return True
        data = message.get("data", {})
        return any(row.get("id") == self.rollout_id and row.get("state") == "halted"
                   for key in ("rollouts", "halts") for row in data.get(key, []) or [])

    async def _run(self) -> None:
        import websockets

        async with websockets.connect(self.url, additional_headers={"Cookie": self.cookie, "Origin": self.origin},
                                      max_size=None) as ws:
            async for raw in ws:
                message = json.loads(raw)
                self.messages += 1
                if message.get("type") == "snapshot":
                    self.connected.set()
                if self.halt_seen_at is None and self._mentions_halt(message):
                    self.halt_seen_at = time.time()

    def run(self) -> None:
        try:
            asyncio.run(self._run())
        except Exception as exc:  # noqa: BLE001 - reported in the JSON line
            self.error = repr(exc)
            self.connected.set()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--warmup", type=int, default=15, help="seconds of check-in load before the evidence")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--sample", type=int, default=100_000, help="distinct devices the load checks in as")
    parser.add_argument("--evidence", choices=("db", "api"), default="db",
                        help="db: the crash reports committed in one transaction (a precise start); "
                             "api: sent as check-ins through gunicorn (the start is then estimated)")
    parser.add_argument("--tick", type=float, default=1.0, help="FLEET_ENGINE_TICK_S for the worker and beat")
    args = parser.parse_args()
    env = production_env(FLEET_ENGINE_TICK_S=str(args.tick))
    os.environ.update({k: env[k] for k in ("DJANGO_SETTINGS_MODULE", "DJANGO_SECRET_KEY", "DJANGO_SECURE_SSL_REDIRECT",
                                           "FLEET_ENGINE_TICK_S")})
    setup("fleetweb.settings.prod")
    from django.db import connection

    from apps.fleet.models import Device
    from apps.rollouts.models import Deployment, Rollout

    total = Device.objects.count()
    if total == 0:
        raise SystemExit("no devices: run bench/seed.py first")
    cookie = session_cookie()
    from django.contrib.auth import get_user_model

    user = get_user_model().objects.get(username="bench-admin")
    log("preparing a fresh rollout of a bad release…")
    rollout_id, uids, version = prepare(user)
    evidence_uids = uids[:EVIDENCE_DEVICES]
    sample = list(Device.objects.filter(uid__startswith="bench-").order_by("?").values_list("uid", "installed")
                  [: args.sample])
    connection.close()
    duration = args.warmup + 60
    with gunicorn(env) as (api, api_proc), uvicorn(env) as (web, web_proc), celery(env) as (worker, _), \
            RssSampler({"gunicorn": api_proc.pid, "uvicorn": web_proc.pid, "celery_worker": worker.pid}) as rss:
        ws_url = web.replace("http://", "ws://") + "/ws/wall/"
        watcher = WallWatcher(ws_url, cookie, web, rollout_id)
        watcher.start()
        if not watcher.connected.wait(30) or watcher.error:
            raise SystemExit(f"wall websocket did not connect: {watcher.error}")
        log(f"wall connected; check-in load on {api} ({len(sample):,} devices), {args.warmup}s warm-up…")
        with wrk_load(api, env, sample, duration=duration, connections=args.connections):
            time.sleep(args.warmup)  # the load's warm-up is a duration, not a synchronisation
            if Rollout.objects.get(pk=rollout_id).state != "running":
                raise SystemExit("the rollout stopped before the evidence was sent")
            log(f"sending the decisive evidence: {len(evidence_uids)} check-ins with crashes…")
            evidence_started = time.time()
            if args.evidence == "db":
                decisive_at, statuses = insert_evidence(evidence_uids), []
            else:
                decisive_at, statuses = send_evidence(api, evidence_uids, version)
            evidence_done = decisive_at
            halted_at = None
            deadline = time.time() + 60
            while time.time() < deadline:
                rollout = Rollout.objects.get(pk=rollout_id)
                if rollout.halted_at is not None:
                    halted_at = rollout.halted_at.timestamp()
                    break
                time.sleep(0.05)  # polling another process's commit, with a deadline
            while halted_at and watcher.halt_seen_at is None and time.time() < deadline:
                time.sleep(0.05)
            log("halted; watching 5 s more for assignments after the halt…")
            time.sleep(5)
            rollout = Rollout.objects.get(pk=rollout_id)
            if args.evidence == "api":
                decisive_at = decisive_report_at(rollout, evidence_uids) or decisive_at
            after = 0
            if rollout.halted_at:
                after = Deployment.objects.filter(rollout_id=rollout_id).filter(
                    created_at__gt=rollout.halted_at).count() + Deployment.objects.filter(
                    rollout_id=rollout_id, released_at__gt=rollout.halted_at).count()
    load = wrk_summary()
    result = {
        "bench": "halt_under_load", "devices": total, "rollout": rollout_id, "state": rollout.state,
        "evidence": args.evidence, "evidence_reports": len(evidence_uids), "evidence_http_status": sorted(set(statuses)),
        "evidence_sent_s": round(evidence_done - evidence_started, 2),
        "engine_tick_s": args.tick,
        "halt_committed_s": round(halted_at - decisive_at, 2) if halted_at else None,
        "halt_on_wall_s": round(watcher.halt_seen_at - decisive_at, 2) if watcher.halt_seen_at else None,
        "assignments_after_halt": after,
        "halt_reason": rollout.halt_reason[:200],
        "checkin_load": load, "rss_max_mb_per_process": rss.result(), "target_s": 5,
        "meets_target": bool(halted_at and watcher.halt_seen_at and halted_at - decisive_at <= 5
                             and watcher.halt_seen_at - decisive_at <= 5 and after == 0),
        "machine": f"{platform.machine()} {os.cpu_count()} cores", "commit": commit(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
