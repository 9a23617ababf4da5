"""Live fan-out: 200 logged-in dashboard websocket clients, update delay after a change, drops, server CPU.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/fleetbench_1m REDIS_URL=redis://127.0.0.1:6379/10 \
        .venv/bin/python bench/fanout.py --clients 200 --changes 20

Needs the bench rollout of bench/dashboard.py (run it once first). With production settings
(DEBUG off) it starts uvicorn (--web-workers, the ASGI server for pages and websockets), a
Celery worker and one beat (engine ticks broadcast rollout progress), and, unless --no-load,
gunicorn with a wrk check-in load (bench/checkin.lua) as the fleet's background changes. It
connects --clients websockets with a session cookie and an Origin header, spread over the
rollouts list (/ws/rollouts/), the wall (/ws/wall/), the rollout's page (/ws/rollouts/<id>/)
and the fleet overview (/ws/fleet/, which hears only check-ins). Then every --every seconds
it pauses or resumes the rollout through the services and records, for every client on a
rollout surface, the time from the commit to the first message showing the new state.
Reports p50/p95/max delay, misses, dropped connections and the server's CPU. One JSON line.
"""

import argparse
import asyncio
import json
import os
import platform
import statistics
import sys
import time
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

SURFACES = ("rollouts", "wall", "rollout", "fleet")


class Client:
    def __init__(self, index: int, surface: str, url: str):
        self.index, self.surface, self.url = index, surface, url
        self.snapshot = asyncio.Event()
        self.closed_early = False
        self.messages = 0
        self.ws = None

    def states(self, message: dict, rollout_id: int) -> set[str]:
        """The states this message shows the rollout in (events, list rows, or the rollout page)."""
        found = set()
        for event in message.get("events", []) or []:
            if event.get("rollout") == rollout_id and event.get("state"):
                found.add(event["state"])
        data = message.get("data", {}) or {}
        rows = [row for key in ("rollouts", "halts") for row in data.get(key, []) or []]
        if isinstance(data.get("rollout"), dict):
            rows.append(data["rollout"])
        found.update(row.get("state") for row in rows if isinstance(row, dict) and row.get("id") == rollout_id)
        return found


async def run_client(client: Client, cookie: str, origin: str, rollout_id: int, stop: asyncio.Event,
                     changes: list) -> None:
    import websockets

    try:
        async with websockets.connect(client.url, additional_headers={"Cookie": cookie, "Origin": origin},
                                      max_size=None, open_timeout=60, ping_interval=20, ping_timeout=60) as ws:
            client.ws = ws
            async for raw in ws:
                message = json.loads(raw)
                client.messages += 1
                if message.get("type") == "snapshot":
                    client.snapshot.set()
                    continue
                now, states = time.time(), client.states(message, rollout_id)
                for change in changes:
                    if change["state"] in states and client.index not in change["got"] and now >= change["at"]:
                        change["got"][client.index] = now - change["at"]
        if not stop.is_set():
            client.closed_early = True
    except Exception:  # noqa: BLE001 - any failure of a client is a dropped connection in the report
        if not stop.is_set():
            client.closed_early = True
    finally:
        client.snapshot.set()


def cpu_of(pids: list[int]) -> float:
    """CPU seconds used so far by these processes and their children."""
    import psutil

    total = 0.0
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            for p in [proc, *proc.children(recursive=True)]:
                times = p.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


async def drive(args, web: str, cookie: str, rollout_id: int, web_pid: int, user) -> dict:
    from asgiref.sync import sync_to_async

    from apps.rollouts.models import Rollout
    from apps.rollouts.services import rollout_pause, rollout_resume

    base = web.replace("http://", "ws://")
    paths = {"rollouts": "/ws/rollouts/", "wall": "/ws/wall/", "rollout": f"/ws/rollouts/{rollout_id}/",
             "fleet": "/ws/fleet/"}
    clients = [Client(i, SURFACES[i % len(SURFACES)], base + paths[SURFACES[i % len(SURFACES)]])
               for i in range(args.clients)]
    stop = asyncio.Event()
    changes: list[dict] = []
    tasks = []
    started = time.monotonic()
    for batch in range(0, len(clients), 20):
        for client in clients[batch:batch + 20]:
            tasks.append(asyncio.create_task(run_client(client, cookie, web, rollout_id, stop, changes)))
        await asyncio.gather(*(c.snapshot.wait() for c in clients[batch:batch + 20]))
        log(f"  {min(batch + 20, len(clients))}/{len(clients)} connected")
    connected = sum(1 for c in clients if not c.closed_early)
    log(f"{connected} clients connected in {time.monotonic() - started:.1f}s; {args.changes} changes…")

    def toggle(index: int) -> str:
        rollout = Rollout.objects.get(pk=rollout_id)
        if rollout.state == Rollout.State.RUNNING:
            rollout_pause(rollout=rollout, actor=user, reason=f"fan-out bench change {index}")
            return "paused"
        rollout_resume(rollout=rollout, actor=user, reason=f"fan-out bench change {index}")
        return "running"

    cpu_start, wall_start = cpu_of([web_pid]), time.monotonic()
    for index in range(args.changes):
        # The change's time is taken after the service returned, i.e. after its commit.
        state = await sync_to_async(toggle, thread_sensitive=True)(index)
        changes.append({"state": state, "at": time.time(), "got": {}})
        await asyncio.sleep(args.every)  # spacing between changes, not a synchronisation
    await asyncio.sleep(args.grace)
    cpu_used, elapsed = cpu_of([web_pid]) - cpu_start, time.monotonic() - wall_start
    dropped = sum(1 for c in clients if c.closed_early)
    stop.set()
    for client in clients:
        if client.ws is not None:
            await client.ws.close()
    await asyncio.gather(*tasks, return_exceptions=True)
    receivers = [c for c in clients if c.surface != "fleet"]
    delays = sorted(d for change in changes for d in change["got"].values())
    expected = len(changes) * len(receivers)
    return {
        "clients": len(clients), "connected": connected,
        "by_surface": {s: sum(1 for c in clients if c.surface == s) for s in SURFACES},
        "changes": len(changes), "expected_updates": expected, "updates": len(delays),
        "missed_updates": expected - len(delays),
        "delay_p50_s": round(statistics.median(delays), 3) if delays else None,
        "delay_p95_s": round(delays[max(0, int(len(delays) * 0.95) - 1)], 3) if delays else None,
        "delay_max_s": round(delays[-1], 3) if delays else None,
        "dropped_connections": dropped,
        "per_change_p50_max_s": [
            [round(statistics.median(c["got"].values()), 2), round(max(c["got"].values()), 2)] if c["got"] else None
            for c in changes],
        "fleet_clients_messages": sum(c.messages for c in clients if c.surface == "fleet"),
        "uvicorn_cpu_percent_of_one_core": round(cpu_used * 100 / elapsed, 1) if elapsed else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--changes", type=int, default=20)
    parser.add_argument("--every", type=float, default=3.0, help="seconds between changes")
    parser.add_argument("--grace", type=float, default=5.0, help="seconds to wait for the last change's updates")
    parser.add_argument("--web-workers", type=int, default=1, help="uvicorn workers")
    parser.add_argument("--no-load", action="store_true", help="no check-in load in the background")
    parser.add_argument("--connections", type=int, default=16, help="wrk connections of the background load")
    args = parser.parse_args()
    env = production_env()
    os.environ.update({k: env[k] for k in ("DJANGO_SETTINGS_MODULE", "DJANGO_SECRET_KEY", "DJANGO_SECURE_SSL_REDIRECT")})
    setup("fleetweb.settings.prod")
    from django.contrib.auth import get_user_model
    from django.db import connection

    from apps.fleet.models import Device
    from apps.rollouts.models import Rollout

    rollout = Rollout.objects.filter(name="bench: os 40.1").first()
    if rollout is None:
        raise SystemExit("no bench rollout: run bench/dashboard.py once first")
    if rollout.state not in (Rollout.State.RUNNING, Rollout.State.PAUSED):
        raise SystemExit(f"the bench rollout is {rollout.state}; it must be running or paused")
    total = Device.objects.count()
    cookie = session_cookie()
    user = get_user_model().objects.get(username="bench-admin")
    sample = list(Device.objects.filter(uid__startswith="bench-").order_by("?").values_list("uid", "installed")[:100_000])
    connection.close()
    with uvicorn(env, workers=args.web_workers) as (web, web_proc), celery(env) as (worker, _), \
            RssSampler({"uvicorn": web_proc.pid, "celery_worker": worker.pid}) as rss:
        if args.no_load:
            result = asyncio.run(drive(args, web, cookie, rollout.pk, web_proc.pid, user))
        else:
            with gunicorn(env) as (api, _), wrk_load(api, env, sample, duration=600, connections=args.connections):
                result = asyncio.run(drive(args, web, cookie, rollout.pk, web_proc.pid, user))
    result["rss_max_mb_per_process"] = rss.result()
    print(json.dumps({
        "bench": "fanout", "devices": total, "web_workers": args.web_workers,
        "background_checkin_load": None if args.no_load else wrk_summary(),
        **result, "target_delay_s": 2,
        "meets_target": bool(result["delay_p95_s"] is not None and result["delay_max_s"] <= 2
                             and result["missed_updates"] == 0 and result["dropped_connections"] == 0),
        "machine": f"{platform.machine()} {os.cpu_count()} cores", "commit": commit(),
        "date": datetime.now(UTC).strftime("%Y-%m-%d"),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
