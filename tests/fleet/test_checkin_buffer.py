"""The check-in write buffer (apps/fleet/checkin_buffer.py) against real Redis and PostgreSQL.

Steady-state check-ins are counted once in Redis and flushed in batches; everything else
(installed versions changed, an open deployment) is still written synchronously.
"""

import json
import threading
import time

import pytest
from django.db import connection
from django.urls import reverse
from django.utils import timezone

from apps.fleet import checkin_buffer
from apps.fleet.models import Device, HealthReport
from apps.fleet.services import checkin_flush, device_token_revoke
from tests.factories import ComponentFactory, DeviceFactory

pytestmark = pytest.mark.django_db

INSTALLED = {"os": "39.1", "agent": "2.4.1"}


@pytest.fixture
def buffer_on(settings):
    settings.FLEET = {**settings.FLEET, "CHECKIN_BUFFER": True}
    checkin_buffer.reset_client()
    _clear()
    yield
    _clear()
    checkin_buffer.reset_client()


def _clear():
    import redis
    from django.conf import settings

    client = redis.Redis.from_url(settings.REDIS_URL)
    keys = list(client.scan_iter(match=f"{checkin_buffer._prefix()}:*", count=1000))
    if keys:
        client.delete(*keys)


@pytest.fixture
def components(db):
    return [ComponentFactory(name="os", kind="os"), ComponentFactory(name="agent")]


def steady_device(uid="dev-1", **extra):
    """A device already on a combination (its first check-in is the slow path)."""
    from apps.fleet.services import device_installed_set

    device = DeviceFactory(uid=uid, **extra)
    device_installed_set(device=device, installed=dict(INSTALLED))
    return Device.objects.get(pk=device.pk)


def post(client, uid, seq, *, installed=None, crashes=0, attributes=None, token=None):
    body = {"seq": seq, "installed": installed or INSTALLED, "health": {"interval_s": 60, "crashes": crashes}}
    if attributes is not None:
        body["attributes"] = attributes
    return client.post(reverse("deviceapi:checkin", kwargs={"device_id": uid}), data=json.dumps(body),
                       content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token or 'token-' + uid}")


def test_it_buffers_a_steady_checkin_and_flushes_it_counted_once(client, components, buffer_on):
    device = steady_device()
    first = post(client, "dev-1", 5, crashes=2)
    retry = post(client, "dev-1", 5, crashes=2)
    older = post(client, "dev-1", 4, crashes=9)
    assert first.json()["accepted"] is True and first.json()["duplicate"] is False
    assert retry.json()["duplicate"] is True and older.json()["duplicate"] is True
    assert first.json()["components"]["os"] == {"installed": "39.1", "target": "39.1"}
    # Nothing in PostgreSQL until the flush.
    assert not HealthReport.objects.filter(device=device).exists()
    assert checkin_buffer.depth() == 3
    result = checkin_flush()
    assert result.health_rows == 1 and result.taken == 3 and checkin_buffer.depth() == 0
    report = HealthReport.objects.get(device=device)
    assert (report.seq, report.crashes, report.interval_s) == (5, 2, 60)
    assert report.combination_id == device.combination_id
    device.refresh_from_db()
    assert (device.last_seq, device.checkin_count) == (5, 1)
    assert device.last_seen is not None and timezone.now() - device.last_seen < timezone.timedelta(seconds=30)


def test_it_does_one_statement_per_steady_checkin(client, components, buffer_on, django_assert_max_num_queries):
    steady_device()
    post(client, "dev-1", 1)  # warms the per-process component cache
    with django_assert_max_num_queries(1):
        assert post(client, "dev-1", 2).json()["accepted"] is True


def test_it_writes_a_changed_installation_synchronously(client, components, buffer_on):
    device = steady_device()
    old_combination = device.combination_id
    post(client, "dev-1", 1)
    response = post(client, "dev-1", 2, installed={"os": "40.0", "agent": "2.4.1"})
    assert response.json()["accepted"] is True
    device.refresh_from_db()
    assert device.installed["os"] == "40.0" and device.combination_id != old_combination
    assert list(HealthReport.objects.filter(device=device).values_list("seq", flat=True)) == [2]
    # The buffered seq 1 still arrives with the next flush, and last_seq never goes backwards.
    checkin_flush()
    device.refresh_from_db()
    assert sorted(HealthReport.objects.filter(device=device).values_list("seq", flat=True)) == [1, 2]
    assert (device.last_seq, device.checkin_count) == (2, 2)


def test_it_sees_a_buffered_seq_as_duplicate_on_the_sync_path(client, components, buffer_on):
    device = steady_device()
    post(client, "dev-1", 7)
    # Same seq, now with other versions: still the same report, counted once.
    response = post(client, "dev-1", 7, installed={"os": "40.0", "agent": "2.4.1"})
    assert response.json()["duplicate"] is True
    checkin_flush()
    assert HealthReport.objects.filter(device=device).count() == 1


def test_it_writes_a_checkin_with_an_open_deployment_synchronously(client, components, buffer_on):
    from apps.rollouts.models import Deployment, Rollout, Wave
    from tests.factories import ReleaseFactory

    device = steady_device()
    ReleaseFactory(component=components[0], version="40.0")
    rollout = Rollout.objects.create(name="os 40", state="running")
    wave = Wave.objects.create(rollout=rollout, index=0, state="running")
    deployment = Deployment.objects.create(rollout=rollout, wave=wave, device=device, released_at=timezone.now(),
                                           from_versions={"os": "39.1"}, to_versions={"os": "40.0"})
    body = post(client, "dev-1", 1).json()
    assert body["components"]["os"]["deployment_id"] == deployment.pk
    assert HealthReport.objects.filter(device=device, seq=1).exists()  # no flush needed
    assert checkin_buffer.depth() == 0
    # Reporting the target version settles it at once, as without the buffer.
    post(client, "dev-1", 2, installed={"os": "40.0", "agent": "2.4.1"})
    deployment.refresh_from_db()
    assert deployment.state == Deployment.State.SETTLING


def test_it_refuses_a_revoked_token_at_once(client, components, buffer_on, admin_user):
    device = steady_device()
    assert post(client, "dev-1", 1).status_code == 200
    device_token_revoke(device=device, actor=admin_user)
    assert post(client, "dev-1", 2).status_code == 401
    assert post(client, "dev-1", 3, token="wrong").status_code == 401
    checkin_flush()
    assert list(HealthReport.objects.filter(device=device).values_list("seq", flat=True)) == [1]


def test_it_merges_attributes_in_seq_order(client, components, buffer_on):
    device = steady_device(attributes={"region": "eu-west", "site": "a"})
    post(client, "dev-1", 1, attributes={"site": "b", "rack": "1"})
    post(client, "dev-1", 2, attributes={"site": "c"})
    checkin_flush()
    device.refresh_from_db()
    assert device.attributes == {"region": "eu-west", "site": "c", "rack": "1"}


def test_it_falls_back_to_the_database_seq_after_redis_lost_its_data(client, components, buffer_on):
    device = steady_device()
    post(client, "dev-1", 5)
    checkin_flush()
    _clear()  # Redis restarted without persistence
    assert post(client, "dev-1", 5).json()["duplicate"] is True
    assert post(client, "dev-1", 6).json()["accepted"] is True
    checkin_flush()
    device.refresh_from_db()
    assert (device.last_seq, device.checkin_count) == (6, 2)


def test_it_records_synchronously_when_redis_is_down(client, components, buffer_on, settings):
    from tests.processes import free_port

    device = steady_device()
    settings.FLEET = {**settings.FLEET, "CHECKIN_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
                      "CHECKIN_REDIS_TIMEOUT_S": 0.2}
    checkin_buffer.reset_client()
    response = post(client, "dev-1", 1)
    assert response.status_code == 200 and response.json()["accepted"] is True
    assert HealthReport.objects.filter(device=device, seq=1).exists()


def test_it_rewrites_a_crashed_flush_without_double_counting(client, components, buffer_on):
    device = steady_device()
    for seq in (1, 2, 3):
        post(client, "dev-1", seq)
    redis = checkin_buffer.client()
    # A flusher took the batch and died before writing it: it waits in the in-flight list.
    taken = checkin_buffer._script("take", checkin_buffer.TAKE_LUA)(
        keys=[checkin_buffer.buffer_key(), checkin_buffer.inflight_key()], args=[100])
    assert len(taken) == 3 and redis.llen(checkin_buffer.buffer_key()) == 0
    assert checkin_flush().health_rows == 3
    # A flusher that died after its commit but before clearing the in-flight list: written again, counted once.
    redis.rpush(checkin_buffer.inflight_key(), *taken)
    assert checkin_flush().health_rows == 0
    device.refresh_from_db()
    assert (device.last_seq, device.checkin_count) == (3, 3)
    assert HealthReport.objects.filter(device=device).count() == 3


def test_it_flushes_in_bounded_batches(client, components, buffer_on):
    devices = [steady_device(f"dev-{i}") for i in range(5)]
    for device in devices:
        post(client, device.uid, 1)
    result = checkin_flush(batch=2, max_batches=1)
    assert (result.taken, result.remaining) == (2, 3)
    result = checkin_flush(batch=2, max_batches=5)
    assert (result.taken, result.batches, result.remaining) == (3, 2, 0)
    assert HealthReport.objects.count() == 5


def test_it_counts_large_sequence_numbers_exactly(client, components, buffer_on):
    steady_device()
    big = 2**53 - 1  # the largest seq the API accepts; compared as text in Lua, never rounded
    assert post(client, "dev-1", big).json()["accepted"] is True
    assert post(client, "dev-1", big - 1).json()["duplicate"] is True
    assert post(client, "dev-1", big).json()["duplicate"] is True


@pytest.mark.django_db(transaction=True)
def test_it_never_double_inserts_with_concurrent_flushers(client, components, buffer_on):
    devices = [steady_device(f"dev-{i}") for i in range(40)]
    for seq in (1, 2, 3):
        for device in devices:
            post(client, device.uid, seq)
    errors = []

    def flusher():
        try:
            deadline = time.monotonic() + 30
            while checkin_buffer.depth() and time.monotonic() < deadline:
                checkin_flush(batch=7, max_batches=3)
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=flusher) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors
    assert HealthReport.objects.count() == 120
    assert set(Device.objects.filter(uid__startswith="dev-").values_list("last_seq", "checkin_count")) == {(3, 3)}


@pytest.mark.django_db(transaction=True)
@pytest.mark.integration
def test_it_drains_the_buffer_in_a_real_worker_requeueing_itself(client, components, buffer_on, monkeypatch):
    from apps.fleet.tasks import checkin_flush as flush_task
    from tests.processes import celery_worker

    devices = [steady_device(f"dev-{i}") for i in range(9)]
    for device in devices:
        post(client, device.uid, 1)
    # Batches of 2, one batch per run: the task re-queues itself while a full batch waits (9 → 1),
    # and leaves the last, partial batch to the next beat.
    monkeypatch.setenv("FLEET_CHECKIN_BUFFER", "1")
    monkeypatch.setenv("FLEET_CHECKIN_FLUSH_BATCH", "2")
    monkeypatch.setenv("FLEET_CHECKIN_FLUSH_MAX_BATCHES", "1")

    def wait_for(count):
        deadline = time.monotonic() + 60
        while HealthReport.objects.count() < count and time.monotonic() < deadline:
            time.sleep(0.2)  # polling another process's writes, with a deadline
        return HealthReport.objects.count()

    with celery_worker(name="checkin-flush"):
        flush_task.delay()
        assert wait_for(8) == 8
        flush_task.delay()  # the next beat
        assert wait_for(9) == 9
    assert checkin_buffer.depth() == 0
    assert set(Device.objects.filter(uid__startswith="dev-").values_list("checkin_count", flat=True)) == {1}


def test_it_stops_trying_redis_for_a_while_after_it_failed(client, components, buffer_on, settings):
    from tests.processes import free_port

    device = steady_device()
    settings.FLEET = {**settings.FLEET, "CHECKIN_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
                      "CHECKIN_REDIS_TIMEOUT_S": 0.2, "CHECKIN_REDIS_RETRY_S": 60}
    checkin_buffer.reset_client()
    assert post(client, "dev-1", 1).json()["accepted"] is True
    # Redis is back, but this process does not ask it again before the retry delay.
    settings.FLEET = {**settings.FLEET, "CHECKIN_REDIS_URL": ""}
    checkin_buffer._client = None
    assert post(client, "dev-1", 2).json()["accepted"] is True
    assert checkin_buffer.depth() == 0
    assert sorted(HealthReport.objects.filter(device=device).values_list("seq", flat=True)) == [1, 2]
