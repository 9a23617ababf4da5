"""Check-in load: wrk against the device API under gunicorn (production serving), with the
ceiling (a trivial Django JSON view on the same server config) measured in the same run.

    .venv/bin/python bench/checkin_load.py --database-url postgres://postgres@127.0.0.1:5432/fleetbench \\
        --redis-url redis://127.0.0.1:6379/10 --duration 60 --connections 32 --sample 200000

Seed first (bench/seed.py). A Celery worker with an embedded beat runs beside gunicorn (it
flushes the check-in buffer and ticks the rollout engine). A running rollout exists during
the load: `--rollouts unreached,reached` measures once with a rollout whose wave contains none
of the loaded devices and once with one whose wave contains `--reached-share` of them (their
check-ins take the synchronous path: an open deployment). Prints progress, then one JSON line
with the ceiling, each check-in run, their ratios, the workers' memory and whether every
accepted check-in reached PostgreSQL.
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

BENCH_ROLLOUT = "bench rollout"
UNREACHED_COHORT = 100


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wrk(url: str, script: Path, *, duration: int, connections: int, threads: int, env: dict) -> dict:
    result = subprocess.run(
        ["wrk", "-t", str(threads), "-c", str(connections), "-d", f"{duration}s", "--timeout", "5s",
         "-s", str(script), url],
        env=env, capture_output=True, text=True, check=False,
    )
    match = re.search(r"WRKJSON (\{.*\})", result.stderr + result.stdout)
    if not match:
        raise SystemExit(f"wrk gave no summary:\n{result.stdout}\n{result.stderr}")
    return json.loads(match.group(1))


def rss_mb(root_pid: int) -> dict:
    """RSS (MB) of a process tree's children (gunicorn workers, Celery pool), by pid."""
    import psutil

    try:
        root = psutil.Process(root_pid)
        return {str(p.pid): round(p.memory_info().rss / 2**20, 1) for p in [root, *root.children(recursive=True)]}
    except psutil.NoSuchProcess:
        return {}


def bench_rollout(mode: str, *, reached_uids: list[str], unreached_uids: list[str]) -> dict:
    """Replace the bench rollout by a running one whose first wave holds the given devices."""
    from django.contrib.auth import get_user_model
    from django.db import transaction

    from apps.fleet.models import Cohort, Component, Device, Release
    from apps.rollouts.engine import rollout_evaluate
    from apps.rollouts.models import Deployment, Rollout
    from apps.rollouts.services import rollout_create, rollout_start, rollout_submit

    Rollout.objects.filter(name__startswith=BENCH_ROLLOUT).delete()
    Cohort.objects.filter(name__startswith=BENCH_ROLLOUT).delete()
    uids = reached_uids if mode == "reached" else unreached_uids
    user, _ = get_user_model().objects.get_or_create(username="bench-admin", defaults={"is_superuser": True,
                                                                                        "is_staff": True})
    agent = Component.objects.get(name="agent")
    release, _ = Release.objects.get_or_create(component=agent, version="2.6.0")
    with transaction.atomic():
        cohort = Cohort.objects.create(name=f"{BENCH_ROLLOUT} {mode}", kind=Cohort.Kind.EXPLICIT)
        cohort.members.set(Device.objects.filter(uid__in=uids).values_list("pk", flat=True))
    rollout = rollout_create(
        name=f"{BENCH_ROLLOUT} {mode}", releases=[release], actor=user, settle_s=3600,
        waves=[{"cohort": cohort, "size_kind": "percent", "size_value": 100, "success_min_percent": 0,
                "spike_gate": {"enabled": False}}],
    )
    rollout_submit(rollout=rollout, actor=user)
    rollout_start(rollout=rollout, actor=user, budget_override=True, reason="benchmark")
    outcome = rollout_evaluate(rollout.pk)
    rollout.refresh_from_db()
    open_count = Deployment.objects.filter(rollout=rollout, state__in=Deployment.OPEN_STATES).count()
    return {"mode": mode, "state": rollout.state, "first_tick": outcome, "wave_devices": len(uids),
            "open_deployments": open_count}


def health_rows() -> int:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM fleet_healthreport")
        return cursor.fetchone()[0]


def wait_drained(redis_url: str, prefix: str, timeout: float = 120) -> float:
    """Seconds until the check-in buffer is empty (the flusher caught up), -1 on timeout."""
    import redis

    client = redis.Redis.from_url(redis_url)
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if client.llen(f"{prefix}:ci:buf") + client.llen(f"{prefix}:ci:inflight") == 0:
            return round(time.monotonic() - started, 2)
        time.sleep(0.2)  # another process drains it
    return -1.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=30)
    parser.add_argument("--ceiling-duration", type=int, default=None,
                        help="seconds of each ceiling run (default: --duration); a 10-minute sustained check-in run "
                             "does not need 20 minutes of ceiling")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2, help="gunicorn sync workers")
    parser.add_argument("--sample", type=int, default=200_000, help="distinct devices to check in as")
    parser.add_argument("--database-url", help="PostgreSQL URL of the seeded database (default: $DATABASE_URL)")
    parser.add_argument("--redis-url", help="Redis URL (default: $REDIS_URL)")
    parser.add_argument("--rollouts", default="unreached,reached",
                        help="comma list of running-rollout modes to measure: unreached, reached, none")
    parser.add_argument("--reached-share", type=float, default=0.02,
                        help="share of the loaded devices in the reached rollout's wave")
    parser.add_argument("--no-worker", action="store_true", help="do not start the Celery worker + beat")
    parser.add_argument("--rate-limit", choices=("on", "off"), default="on",
                        help="device-API rate limit: on (per-device limit as configured, per-IP limit raised: "
                             "all the load comes from one address) or off")
    args = parser.parse_args()
    ceiling_s = args.ceiling_duration or args.duration
    if args.database_url:
        os.environ["DATABASE_URL"] = args.database_url
    if args.redis_url:
        os.environ["REDIS_URL"] = args.redis_url
    os.environ.setdefault("CACHE_KEY_PREFIX", "fleetbench")
    os.environ["FLEET_RATE_LIMIT_IP_PER_MIN"] = "0" if args.rate_limit == "off" else "100000000"
    if args.rate_limit == "off":
        os.environ["FLEET_RATE_LIMIT_DEVICE_PER_MIN"] = "0"
    os.environ.setdefault("CELERY_TASK_DEFAULT_QUEUE", "fleetbench")
    setup()
    from django.conf import settings
    from django.db import connection

    from apps.fleet.models import Device
    from bench.seed import bench_token

    total = Device.objects.filter(uid__startswith="bench-").count()
    if total == 0:
        raise SystemExit("no bench devices: run bench/seed.py first")
    unreached = list(Device.objects.filter(uid__startswith="bench-").order_by("-uid")
                     .values_list("uid", flat=True)[:UNREACHED_COHORT])
    rows = list(Device.objects.filter(uid__startswith="bench-").exclude(uid__in=unreached).order_by("?")
                .values_list("uid", "installed")[: args.sample])
    uids = [uid for uid, _ in rows]
    reached = uids[: max(1, int(len(uids) * args.reached_share))]
    connection.close()
    tokens = Path(tempfile.mkstemp(prefix="fleet-tokens-")[1])
    # Each device reports what it runs: the steady state (reached devices still run the old release).
    tokens.write_text("".join(f"{uid} {bench_token(uid)} {json.dumps(installed, separators=(',', ':'))}\n"
                              for uid, installed in rows))
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
        # wrk sends from one address far above the production per-IP limit.
        FLEET_RATE_LIMIT_IP_PER_MIN="0",
        FLEET_RATE_LIMIT_DEVICE_PER_MIN="0",
    )
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "fleetweb.wsgi:application", "-w", str(args.workers), "-k", "sync",
         "-b", f"127.0.0.1:{port}", "--backlog", "2048", "--log-level", "warning"],
        cwd=ROOT, env=env, start_new_session=True,
    )
    worker = None
    if not args.no_worker:
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "fleetweb", "worker", "-B", "-l", "WARNING", "--concurrency", "1",
             "-Q", settings.CELERY_TASK_DEFAULT_QUEUE, "-s", str(Path(tempfile.gettempdir()) / "fleetbench-beat"),
             "--without-gossip", "--without-mingle"],
            cwd=ROOT, env=env, start_new_session=True,
        )
    runs: dict[str, dict] = {}
    ceiling_after: dict = {}
    rollouts: dict[str, dict] = {}
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("gunicorn did not start") from None
                time.sleep(0.1)  # waiting for another process to listen
        base = f"http://127.0.0.1:{port}"
        print(f"warming up against {base} ({len(uids):,} of {total:,} devices)…", file=sys.stderr, flush=True)
        wrk(base + "/healthz", ROOT / "bench" / "trivial.lua", duration=3, connections=8, threads=1, env=env)
        print(f"ceiling: trivial JSON view, {ceiling_s}s…", file=sys.stderr, flush=True)
        ceiling = wrk(base + "/healthz", ROOT / "bench" / "trivial.lua", duration=ceiling_s,
                      connections=args.connections, threads=args.threads, env=env)
        print(f"  {ceiling['rps']:,.0f} req/s p99 {ceiling['p99_ms']:.1f} ms", file=sys.stderr, flush=True)
        for mode in [m.strip() for m in args.rollouts.split(",") if m.strip()]:
            if mode != "none":
                rollouts[mode] = bench_rollout(mode, reached_uids=reached, unreached_uids=unreached)
                connection.close()
                print(f"rollout ({mode}): {rollouts[mode]}", file=sys.stderr, flush=True)
            before = health_rows()
            print(f"check-in ({mode} rollout): {args.duration}s…", file=sys.stderr, flush=True)
            run = wrk(base, ROOT / "bench" / "checkin.lua", duration=args.duration,
                      connections=args.connections, threads=args.threads, env=env)
            run["ratio_to_ceiling"] = round(run["rps"] / ceiling["rps"], 3) if ceiling["rps"] else None
            if worker is not None:
                run["buffer_drained_after_s"] = wait_drained(settings.REDIS_URL, settings.CACHES["default"]
                                                             .get("KEY_PREFIX", "fleetweb"))
                # Each accepted check-in is one health report: every one must be in PostgreSQL.
                run["health_rows_written"] = health_rows() - before
            connection.close()
            runs[mode] = run
            print(f"  {run['rps']:,.0f} req/s p99 {run['p99_ms']:.1f} ms errors {run['errors']} "
                  f"ratio {run['ratio_to_ceiling']}", file=sys.stderr, flush=True)
        # The ceiling again after the check-in runs: on a shared machine the neighbours' load
        # drifts, so each ratio is taken against the mean of the ceiling before and after.
        print(f"ceiling again: {ceiling_s}s…", file=sys.stderr, flush=True)
        ceiling_after = wrk(base + "/healthz", ROOT / "bench" / "trivial.lua", duration=ceiling_s,
                            connections=args.connections, threads=args.threads, env=env)
        mean_ceiling = (ceiling["rps"] + ceiling_after["rps"]) / 2
        for run in runs.values():
            run["ratio_to_ceiling"] = round(run["rps"] / mean_ceiling, 3) if mean_ceiling else None
        memory = {"gunicorn_rss_mb": rss_mb(server.pid),
                  "celery_rss_mb": rss_mb(worker.pid) if worker is not None else {}}
    finally:
        server.terminate()
        server.wait(timeout=20)
        if worker is not None:
            worker.terminate()
            try:
                worker.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(worker.pid, 9)
        tokens.unlink(missing_ok=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], check=False, cwd=ROOT, capture_output=True, text=True).stdout
    first = next(iter(runs.values()))
    print(json.dumps({
        "bench": "checkin_load", "devices": total, "distinct_devices_sent": len(uids),
        "server": f"gunicorn {args.workers} sync workers", "connections": args.connections,
        "duration_s": args.duration, "ceiling_duration_s": ceiling_s, "checkin": first, "checkin_by_rollout": runs, "rollouts": rollouts,
        "ceiling_trivial_view": ceiling, "ceiling_trivial_view_after": ceiling_after, "ratio_to_ceiling": first["ratio_to_ceiling"], "memory": memory,
        "checkin_buffer": settings.FLEET.get("CHECKIN_BUFFER"), "rate_limit": args.rate_limit,
        "machine": f"{platform.node()} {os.cpu_count()} cores", "commit": commit.strip(),
        "date": time.strftime("%Y-%m-%d"),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
