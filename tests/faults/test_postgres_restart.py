"""PostgreSQL stopped and started under load (a throwaway cluster holding a copy of the test database).

Injected: `pg_ctl stop -m fast` (every connection terminated, new ones refused) while devices
keep checking in against gunicorn, then `pg_ctl start`.
Asserted: every check-in answer is 200 or 503 (JSON naming the error, Retry-After), never a
500; a page request during the gap gets a plain 503 page with Retry-After; everything succeeds
again after the restart without restarting fleetweb; the data is consistent (each device on
the version it last reported, combination counts equal to the devices in them).
"""

import threading
from collections import Counter

import httpx
import psycopg
import pytest

from apps.fleet.services import device_installed_set
from tests.factories import ComponentFactory, DeviceFactory
from tests.processes import test_database_url as database_url
from tests.processes import web_server

from .helpers import PostgresCluster, copy_database, wait_until

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.faults, pytest.mark.integration]

VERSIONS = ("39.1", "40.0")


class Devices(threading.Thread):
    """Devices checking in back to back; each accepted report switches the device's OS version
    (a combination move: the check-in's PostgreSQL path). A 503 is retried with the same seq."""

    def __init__(self, base_url: str, uids: list[str]):
        super().__init__(daemon=True)
        self.base_url, self.uids = base_url, uids
        self.stop = threading.Event()
        self.answers: list[tuple[int, str, dict]] = []
        self.reported = {uid: VERSIONS[0] for uid in uids}
        self.seq = dict.fromkeys(uids, 1)

    def count(self, status: int) -> int:
        return sum(1 for answer in self.answers if answer[0] == status)

    def run(self) -> None:
        with httpx.Client(base_url=self.base_url, timeout=10) as client:
            while not self.stop.is_set():
                for index, uid in enumerate(self.uids):
                    version = VERSIONS[(self.seq[uid] + index) % 2]
                    body = {"seq": self.seq[uid], "installed": {"os": version}, "health": {"interval_s": 60}}
                    response = client.post(f"/api/v1/devices/{uid}/checkin", json=body,
                                           headers={"Authorization": f"Bearer token-{uid}"})
                    try:
                        payload = response.json()
                    except ValueError:
                        payload = {"raw": response.text[:200]}
                    self.answers.append((response.status_code, response.headers.get("retry-after", ""), payload))
                    if response.status_code == 200:
                        self.reported[uid] = version
                        self.seq[uid] += 1


@pytest.fixture
def cluster():
    cluster = PostgresCluster()
    cluster.start()
    yield cluster
    cluster.destroy()


def test_it_answers_503_while_postgresql_restarts_and_recovers_by_itself(db, cluster):
    ComponentFactory(name="os", kind="os")
    uids = [f"pg-{i}" for i in range(3)]
    for uid in uids:
        device_installed_set(device=DeviceFactory(uid=uid), installed={"os": VERSIONS[0]})
    url = copy_database(database_url(), cluster, "fleet_copy")

    with web_server(kind="gunicorn", name="pg-restart", DATABASE_URL=url) as base_url:
        devices = Devices(base_url, uids)
        devices.start()
        try:
            wait_until(lambda: devices.count(200) >= 10, "check-ins to succeed before the fault")
            cluster.stop("fast")
            wait_until(lambda: devices.count(503) >= 5, "check-ins during the gap to answer 503")
            page = httpx.get(f"{base_url}/", cookies={"sessionid": "x" * 32}, timeout=10)
            assert page.status_code == 503 and page.headers["retry-after"] == "5"
            assert page.headers["content-type"].startswith("text/html") and "briefly unavailable" in page.text
            before = devices.count(200)
            cluster.start()
            wait_until(lambda: devices.count(200) >= before + 10, "check-ins to succeed after the restart")
            page = httpx.get(f"{base_url}/", cookies={"sessionid": "x" * 32}, timeout=10)
            assert page.status_code == 302  # back to normal: an unknown session goes to the login page
        finally:
            devices.stop.set()
            devices.join(timeout=20)

    statuses = Counter(status for status, _, _ in devices.answers)
    assert set(statuses) <= {200, 503}, [a for a in devices.answers if a[0] not in (200, 503)][:3]
    for status, retry_after, payload in devices.answers:
        if status == 503:
            assert retry_after and int(retry_after) > 0
            assert payload.get("error") == "unavailable" and payload.get("detail"), payload
    with psycopg.connect(url.replace("postgres://", "postgresql://", 1)) as conn:
        installed = dict(conn.execute("SELECT uid, installed->>'os' FROM fleet_device").fetchall())
        drift = conn.execute(
            "SELECT c.id, c.device_count, count(d.id) FROM fleet_combination c "
            "LEFT JOIN fleet_device d ON d.combination_id = c.id GROUP BY c.id HAVING c.device_count <> count(d.id)"
        ).fetchall()
    assert installed == devices.reported
    assert drift == []
