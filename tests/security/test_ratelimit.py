"""Device API rate limits: per device and per IP, 429 JSON with Retry-After, fail open without Redis."""

import pytest
import redis
from django.conf import settings as django_settings

from apps.deviceapi import ratelimit
from apps.fleet.models import Device
from tests.factories import DeviceFactory


@pytest.fixture(autouse=True)
def _clean_counters():
    """Counters live in this helper's Redis db under the cache prefix; start each test at zero."""
    ratelimit.reset_client()
    client = redis.Redis.from_url(django_settings.REDIS_URL)
    prefix = django_settings.CACHES["default"].get("KEY_PREFIX", "fleetweb")
    for key in client.scan_iter(f"{prefix}:rl:*"):
        client.delete(key)
    yield
    ratelimit.reset_client()


@pytest.fixture
def limits(settings):
    settings.FLEET = {**settings.FLEET, "RATE_LIMIT_DEVICE_PER_MIN": 3, "RATE_LIMIT_IP_PER_MIN": 5}
    return settings.FLEET


def auth(device):
    return {"HTTP_AUTHORIZATION": f"Bearer token-{device.uid}"}


def state(client, device, ip="10.0.0.1"):
    return client.get(f"/api/v1/devices/{device.uid}/state", REMOTE_ADDR=ip, **auth(device))


@pytest.mark.django_db
def test_it_answers_429_with_retry_after_once_a_device_passes_its_limit(client, limits):
    device = DeviceFactory()
    answers = [state(client, device).status_code for _ in range(4)]
    assert answers == [200, 200, 200, 429]
    refused = state(client, device)
    assert refused.status_code == 429
    assert 1 <= int(refused["Retry-After"]) <= 60
    body = refused.json()
    assert body["error"] == "rate_limited" and body["field"] == "device"
    assert body["retry_after"] == int(refused["Retry-After"])


@pytest.mark.django_db
def test_it_counts_devices_apart(client, limits):
    first, second = DeviceFactory(), DeviceFactory()
    for _ in range(3):
        assert state(client, first, ip="10.0.0.1").status_code == 200
    assert state(client, first, ip="10.0.0.1").status_code == 429
    assert state(client, second, ip="10.0.0.2").status_code == 200


@pytest.mark.django_db
def test_it_limits_one_address_across_many_devices(client, limits):
    devices = [DeviceFactory() for _ in range(6)]
    answers = [state(client, d, ip="10.9.9.9") for d in devices]
    assert [a.status_code for a in answers] == [200] * 5 + [429]
    assert answers[-1].json()["field"] == "ip"
    assert state(client, devices[0], ip="10.9.9.10").status_code == 200


@pytest.mark.django_db
def test_it_refuses_before_touching_the_database(client, limits, django_assert_num_queries):
    device = DeviceFactory()
    for _ in range(3):
        state(client, device)
    with django_assert_num_queries(0):
        assert state(client, device).status_code == 429


@pytest.mark.django_db
def test_it_limits_check_ins_without_writing_them(client, limits):
    device = DeviceFactory()
    body = {"seq": 1, "installed": {}}
    for seq in range(1, 4):
        body["seq"] = seq
        ok = client.post(f"/api/v1/devices/{device.uid}/checkin", body, content_type="application/json",
                         REMOTE_ADDR="10.0.0.1", **auth(device))
        assert ok.status_code == 200, ok.content
    body["seq"] = 4
    refused = client.post(f"/api/v1/devices/{device.uid}/checkin", body, content_type="application/json",
                          REMOTE_ADDR="10.0.0.1", **auth(device))
    assert refused.status_code == 429
    assert Device.objects.get(pk=device.pk).last_seq == 3


@pytest.mark.django_db
def test_it_limits_the_hawkbit_ddi_per_controller_with_a_hawkbit_error_body(client, limits):
    device = DeviceFactory()
    url = f"/DEFAULT/controller/v1/{device.uid}"
    headers = {"HTTP_AUTHORIZATION": f"TargetToken token-{device.uid}", "REMOTE_ADDR": "10.0.0.3"}
    answers = [client.get(url, **headers) for _ in range(4)]
    assert [a.status_code for a in answers[:3]] == [200, 200, 200]
    assert answers[3].status_code == 429
    assert answers[3]["Retry-After"]
    assert answers[3].json()["errorCode"] == "hawkbit.server.error.tooManyRequests"


@pytest.mark.django_db
def test_it_leaves_the_dashboard_alone(viewer_client, limits):
    for _ in range(8):
        assert viewer_client.get("/devices/", REMOTE_ADDR="10.0.0.1").status_code == 200


@pytest.mark.django_db
def test_it_lets_requests_through_when_redis_is_down(client, settings, limits):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    ratelimit.reset_client()
    before = ratelimit.UNAVAILABLE._value.get()
    device = DeviceFactory()
    assert [state(client, device).status_code for _ in range(6)] == [200] * 6
    assert ratelimit.UNAVAILABLE._value.get() >= before + 6


@pytest.mark.django_db
def test_it_is_off_when_limits_are_zero(client, settings):
    settings.FLEET = {**settings.FLEET, "RATE_LIMIT_DEVICE_PER_MIN": 0, "RATE_LIMIT_IP_PER_MIN": 0}
    device = DeviceFactory()
    assert {state(client, device).status_code for _ in range(10)} == {200}
