"""Redis restarted with its data lost while devices check in, a rollout runs and a live page watches.

Injected: SIGKILL of our own redis-server (no persistence, so every key, queued task, lock,
buffered check-in and channel-layer subscription is gone) and a fresh start on the same
port, while devices check in against gunicorn, a Celery worker and beat run the engine,
and a websocket client watches the rollout's live page on uvicorn.
Asserted: every check-in answer is 200, or 503 with Retry-After and a JSON error (never a
500); no health report is half-written (each (device, seq) once, never beyond the device's
last_seq); the engine resumes by itself (the second wave, held back until after the restart,
completes; the rollout ticks after the restart); the live page client gets a fresh snapshot
showing the completed rollout after the restart (by reconnecting, as static/js/live.js does).
"""

import json
import threading
import time
from collections import Counter
from datetime import UTC, datetime

import httpx
import pytest
from django.db import connection
from django.test import Client
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

from apps.rollouts.models import Rollout
from tests.processes import web_server
from tests.rollouts.conftest import explicit_cohort, make_devices, running_rollout, wave

from .helpers import beat, celery_app, fault_env, redis_server, wait_until, worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.faults, pytest.mark.integration]

QUEUE = "h3-redis"


class Devices(threading.Thread):
    """Devices checking in back to back; a device told to install reports the target version on its
    next check-in, unless it is held back. A 503 is retried with the same seq."""

    def __init__(self, base_url: str, uids: list[str], held: set[str]):
        super().__init__(daemon=True)
        self.base_url, self.uids, self.held = base_url, uids, held
        self.stop = threading.Event()
        self.answers: list[tuple[float, int, str, str]] = []
        self.installed = {uid: "39.1" for uid in uids}
        self.seq = dict.fromkeys(uids, 1)

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=10) as client:
            while not self.stop.is_set():
                for uid in self.uids:
                    body = {"seq": self.seq[uid], "installed": {"os": self.installed[uid]},
                            "health": {"interval_s": 60, "crashes": 0}}
                    try:
                        response = client.post(f"/api/v1/devices/{uid}/checkin", json=body,
                                               headers={"Authorization": f"Bearer token-{uid}"})
                    except httpx.TransportError as exc:
                        self.answers.append((time.time(), 0, "", repr(exc)))
                        continue
                    self.answers.append((time.time(), response.status_code, response.headers.get("retry-after", ""),
                                         response.text[:300]))
                    if response.status_code != 200:
                        continue
                    self.seq[uid] += 1
                    target = response.json().get("components", {}).get("os", {})
                    if target.get("deployment_id") and target.get("action") == "install" and uid not in self.held:
                        self.installed[uid] = target["target"]

    def statuses_since(self, since: float) -> list[int]:
        return [status for at, status, _, _ in list(self.answers) if at >= since]


def _snapshot_state(ws) -> str:
    message = json.loads(ws.recv(timeout=15))
    assert message["type"] == "snapshot", message
    return message["data"]["rollout"]["state"]


def test_it_survives_a_redis_restart_that_loses_every_key(operator_user, viewer_user, new_os):
    first, second = make_devices(3, prefix="r1"), make_devices(3, prefix="r2")
    rollout = running_rollout(operator_user, [new_os], [
        wave(explicit_cohort(first), success_min_percent=100), wave(explicit_cohort(second), success_min_percent=100),
    ])
    browser = Client()
    browser.force_login(viewer_user)
    session = browser.cookies["sessionid"].value

    with redis_server() as rds:
        app = celery_app(rds.url, QUEUE)
        env = fault_env(rds.url, QUEUE, FLEET_ENGINE_TICK_S="0.3")
        extra = {k: env[k] for k in ("REDIS_URL", "CELERY_BROKER_URL", "CELERY_RESULT_BACKEND",
                                     "CELERY_TASK_DEFAULT_QUEUE", "CACHE_KEY_PREFIX", "CHANNELS_PREFIX")}
        with worker(app, env, name="redis-worker"), beat(env, name="redis-beat"), \
                web_server(kind="gunicorn", name="redis-api", **extra) as api, \
                web_server(kind="uvicorn", name="redis-live", **extra) as live:
            devices = Devices(api, [d.uid for d in first + second], held={d.uid for d in second})
            devices.start()
            ws_url = live.replace("http://", "ws://") + f"/ws/rollouts/{rollout.pk}/"
            headers = {"Origin": live, "Cookie": f"sessionid={session}"}
            try:
                with connect(ws_url, additional_headers=headers, open_timeout=15) as ws:
                    assert _snapshot_state(ws) == "running"
                    wait_until(lambda: Rollout.objects.get(pk=rollout.pk).current_wave == 1,
                               "wave 1 to pass before the fault", timeout=60)

                    killed_at = time.time()
                    rds.kill()
                    wait_until(lambda: len(devices.statuses_since(killed_at)) >= 6, "check-ins while Redis is down")
                    rds.start()
                    restarted_at = datetime.now(UTC)
                    devices.held.clear()  # the second wave's devices install only after the restart

                    wait_until(lambda: Rollout.objects.get(pk=rollout.pk).state == Rollout.State.COMPLETED,
                               "the engine to resume and complete the rollout", timeout=90)
                    # The open socket either closes (the client reconnects) or keeps delivering;
                    # silent would leave a wall screen stale until its periodic resync.
                    try:
                        deadline = time.monotonic() + 10
                        seen = None
                        while seen != "completed" and time.monotonic() < deadline:
                            message = json.loads(ws.recv(timeout=max(0.1, deadline - time.monotonic())))
                            seen = (message.get("data", {}).get("rollout") or {}).get("state", seen)
                        old_socket = "delivered" if seen == "completed" else "silent"
                    except ConnectionClosed:
                        old_socket = "closed"
                    except TimeoutError:
                        old_socket = "silent"
                    assert old_socket in ("delivered", "closed")
                with connect(ws_url, additional_headers=headers, open_timeout=15) as ws:
                    assert _snapshot_state(ws) == "completed"
            finally:
                devices.stop.set()
                devices.join(timeout=20)

    print(f"old websocket after the Redis restart: {old_socket}; answers while down:",
          Counter(devices.statuses_since(killed_at)))
    rollout.refresh_from_db()
    assert rollout.last_tick_at > restarted_at
    assert list(rollout.waves.order_by("index").values_list("state", flat=True)) == ["passed", "passed"]
    bad = [a for a in devices.answers if a[1] not in (200, 503)]
    assert not bad, bad[:3]
    unavailable = [a for a in devices.answers if a[1] == 503]
    for _, _, retry_after, text in unavailable:
        assert retry_after and int(retry_after) > 0 and json.loads(text)["error"], text
    with connection.cursor() as cursor:
        cursor.execute("SELECT device_id, seq FROM fleet_healthreport GROUP BY device_id, seq HAVING count(*) > 1")
        assert cursor.fetchall() == []
        cursor.execute("SELECT h.id FROM fleet_healthreport h JOIN fleet_device d ON d.id = h.device_id "
                       "WHERE h.seq > d.last_seq")
        assert cursor.fetchall() == []
