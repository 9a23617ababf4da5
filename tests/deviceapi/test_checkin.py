"""The native device API: enrollment, check-in idempotency, auth and isolation, validation."""

import json

import pytest
from django.urls import reverse

from apps.audit.models import AuditEntry
from apps.fleet.models import Combination, Device, HealthReport, hash_token
from apps.fleet.services import enrollment_secret_create
from tests.factories import ComponentFactory, DeviceFactory

pytestmark = pytest.mark.django_db


def post(client, url, body, token=None, raw=None):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    data = raw if raw is not None else json.dumps(body)
    return client.post(url, data=data, content_type="application/json", **headers)


def checkin_url(uid):
    return reverse("deviceapi:checkin", kwargs={"device_id": uid})


@pytest.fixture
def components(db):
    return [ComponentFactory(name="os", kind="os"), ComponentFactory(name="agent")]


def report(seq, os="39.1", agent="2.4.1", crashes=0):
    return {"seq": seq, "installed": {"os": os, "agent": agent},
            "health": {"interval_s": 60, "crashes": crashes, "failed_health_checks": 0, "reboots": 0}}


def test_it_enrolls_a_device_with_a_secret_and_stores_only_the_token_hash(client, components):
    _, secret = enrollment_secret_create(name="factory", actor="tests", uses=1)
    response = post(client, reverse("deviceapi:enroll"),
                    {"device_id": "dev-a", "enrollment_secret": secret, "hw_model": "rpi4",
                     "attributes": {"region": "eu-west"}, "tags": ["canary"]})
    assert response.status_code == 201, response.content
    token = response.json()["token"]
    device = Device.objects.get(uid="dev-a")
    assert device.token_hash == hash_token(token)
    assert token not in json.dumps(list(Device.objects.values()), default=str)
    assert device.tags == {"canary": True} and device.attributes == {"region": "eu-west"}
    assert AuditEntry.objects.filter(action="device.enroll", object_id=str(device.pk)).exists()
    # The secret had one use: a second device is refused.
    again = post(client, reverse("deviceapi:enroll"), {"device_id": "dev-b", "enrollment_secret": secret})
    assert again.status_code == 403 and again.json()["field"] == "enrollment_secret"


def test_it_refuses_to_re_enroll_an_enrolled_device(client, components):
    _, secret = enrollment_secret_create(name="factory", actor="tests")
    body = {"device_id": "dev-a", "enrollment_secret": secret}
    assert post(client, reverse("deviceapi:enroll"), body).status_code == 201
    second = post(client, reverse("deviceapi:enroll"), body)
    assert second.status_code == 409 and second.json()["field"] == "device_id"


def test_it_rejects_a_wrong_secret(client, components):
    response = post(client, reverse("deviceapi:enroll"), {"device_id": "dev-a", "enrollment_secret": "nope"})
    assert response.status_code == 403
    assert not Device.objects.filter(uid="dev-a").exists()


def test_it_records_a_checkin_and_answers_with_the_desired_state(client, components):
    device = DeviceFactory(uid="dev-1")
    response = post(client, checkin_url("dev-1"), report(1, crashes=2), token="token-dev-1")
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["accepted"] is True and body["duplicate"] is False
    assert body["components"]["os"] == {"installed": "39.1", "target": "39.1"}
    assert body["next_checkin_s"] == device.effective_poll_interval_s
    device.refresh_from_db()
    assert device.installed == {"os": "39.1", "agent": "2.4.1"}
    assert device.last_seen is not None and device.checkin_count == 1
    assert device.combination.key == "agent=2.4.1;os=39.1" and device.combination.device_count == 1
    assert HealthReport.objects.get(device=device).crashes == 2


def test_it_counts_a_retried_report_once(client, components):
    DeviceFactory(uid="dev-1")
    first = post(client, checkin_url("dev-1"), report(5, crashes=3), token="token-dev-1")
    retry = post(client, checkin_url("dev-1"), report(5, crashes=3), token="token-dev-1")
    older = post(client, checkin_url("dev-1"), report(4, crashes=9), token="token-dev-1")
    assert first.json()["accepted"] is True
    assert retry.status_code == 200 and retry.json()["duplicate"] is True
    assert older.status_code == 200 and older.json()["duplicate"] is True
    assert HealthReport.objects.filter(device__uid="dev-1").count() == 1
    assert sum(HealthReport.objects.values_list("crashes", flat=True)) == 3
    assert Device.objects.get(uid="dev-1").checkin_count == 1


def test_it_moves_a_device_between_combinations_and_keeps_counts_exact(client, components):
    for uid in ("dev-1", "dev-2"):
        DeviceFactory(uid=uid)
        post(client, checkin_url(uid), report(1), token=f"token-{uid}")
    post(client, checkin_url("dev-1"), report(2, os="40.0"), token="token-dev-1")
    counts = dict(Combination.objects.values_list("key", "device_count"))
    assert counts == {"agent=2.4.1;os=39.1": 1, "agent=2.4.1;os=40.0": 1}


def test_it_ignores_unknown_components_with_a_warning(client, components):
    DeviceFactory(uid="dev-1")
    body = report(1)
    body["installed"]["mystery"] = "1.0"
    response = post(client, checkin_url("dev-1"), body, token="token-dev-1")
    assert response.status_code == 200
    assert response.json()["warnings"] == ["installed.mystery: unknown component, ignored"]
    assert "mystery" not in Device.objects.get(uid="dev-1").installed


@pytest.mark.parametrize(
    "token, uid",
    [(None, "dev-1"), ("wrong", "dev-1"), ("token-dev-2", "dev-1"), ("token-dev-1", "nobody")],
    ids=["missing", "wrong", "other-devices-token", "unknown-device"],
)
def test_it_answers_401_for_bad_auth_and_writes_nothing(client, components, token, uid):
    DeviceFactory(uid="dev-1")
    DeviceFactory(uid="dev-2")
    response = post(client, checkin_url(uid), report(1), token=token)
    assert response.status_code == 401
    assert response.json()["error"] == "unauthorized"
    assert response["WWW-Authenticate"].startswith("Bearer")
    assert HealthReport.objects.count() == 0
    assert not Device.objects.filter(last_seen__isnull=False).exists()


def test_it_answers_401_at_once_for_a_revoked_token(client, components, admin_user):
    from apps.fleet.services import device_token_revoke, device_token_rotate

    device = DeviceFactory(uid="dev-1")
    assert post(client, checkin_url("dev-1"), report(1), token="token-dev-1").status_code == 200
    device_token_revoke(device=device, actor=admin_user, reason="stolen")
    assert post(client, checkin_url("dev-1"), report(2), token="token-dev-1").status_code == 401
    new_token = device_token_rotate(device=device, actor=admin_user)
    assert post(client, checkin_url("dev-1"), report(3), token="token-dev-1").status_code == 401
    assert post(client, checkin_url("dev-1"), report(3), token=new_token).status_code == 200


@pytest.mark.parametrize(
    "body, field",
    [
        ({"installed": {"os": "1"}}, "seq"),
        ({"seq": "7", "installed": {"os": "1"}}, "seq"),
        ({"seq": -1, "installed": {"os": "1"}}, "seq"),
        ({"seq": 2**70, "installed": {"os": "1"}}, "seq"),
        ({"seq": 1}, "installed"),
        ({"seq": 1, "installed": {"OS!": "1"}}, "installed.OS!"),
        ({"seq": 1, "installed": {"os": 5}}, "installed.os"),
        ({"seq": 1, "installed": {"os": "<script>"}}, "installed.os"),
        ({"seq": 1, "installed": {}, "health": {"interval_s": 60, "crashes": -3}}, "health.crashes"),
        ({"seq": 1, "installed": {}, "health": {"interval_s": 60, "crashes": True}}, "health.crashes"),
        ({"seq": 1, "installed": {}, "health": {"interval_s": 0}}, "health.interval_s"),
        ({"seq": 1, "installed": {}, "health": {"interval_s": 60, "bogus": 1}}, "health.bogus"),
        ({"seq": 1, "installed": {}, "surprise": 1}, "surprise"),
        ({"seq": 1, "installed": {}, "attributes": {"region": "x" * 300}}, "attributes.region"),
        ({"seq": 1, "installed": {}, "attributes": {"a__b": "x"}}, "attributes.a__b"),
    ],
)
def test_it_rejects_invalid_checkins_naming_the_field(client, components, body, field):
    DeviceFactory(uid="dev-1")
    response = post(client, checkin_url("dev-1"), body, token="token-dev-1")
    assert response.status_code == 400, response.content
    payload = response.json()
    assert payload["error"] == "invalid"
    assert field in [e["field"] for e in payload["errors"]]
    assert HealthReport.objects.count() == 0
    assert Device.objects.get(uid="dev-1").last_seq == -1


@pytest.mark.parametrize(
    "raw, detail",
    [
        (b"{not json", "not valid JSON"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"seq": NaN, "installed": {}}', "not valid JSON"),
        (b'{"a":' * 50 + b"1" + b"}" * 50, "nested"),
        (b'{"seq": 1, "installed": {}, "pad": "' + b"x" * 70_000 + b'"}', "larger than"),
    ],
    ids=["broken", "not-utf8", "array", "nan", "deep", "oversized"],
)
def test_it_rejects_malformed_bodies_with_json_errors(client, components, raw, detail):
    DeviceFactory(uid="dev-1")
    response = post(client, checkin_url("dev-1"), None, token="token-dev-1", raw=raw)
    assert response.status_code == 400
    assert detail in response.json()["detail"]
    assert response.json()["field"] == "body"


def test_it_merges_reported_attributes(client, components):
    DeviceFactory(uid="dev-1", attributes={"region": "eu-west", "site": "a"})
    body = report(1)
    body["attributes"] = {"site": "b", "fw_channel": "beta"}
    assert post(client, checkin_url("dev-1"), body, token="token-dev-1").status_code == 200
    assert Device.objects.get(uid="dev-1").attributes == {"region": "eu-west", "site": "b", "fw_channel": "beta"}


def test_it_serves_the_openapi_document(client):
    response = client.get(reverse("deviceapi:openapi"))
    assert response.status_code == 200
    doc = response.json()
    assert doc["openapi"].startswith("3.")
    assert "/api/v1/devices/{device_id}/checkin" in doc["paths"]


def test_it_does_a_constant_number_of_queries_per_checkin(client, components, django_assert_max_num_queries):
    DeviceFactory(uid="dev-1")
    post(client, checkin_url("dev-1"), report(1), token="token-dev-1")
    with django_assert_max_num_queries(6):
        assert post(client, checkin_url("dev-1"), report(2), token="token-dev-1").status_code == 200


@pytest.mark.parametrize("rollout_state, offered", [("running", True), ("halted", False), ("paused", False)])
def test_it_offers_a_pending_deployment_only_while_its_rollout_runs(client, components, rollout_state, offered):
    from django.utils import timezone

    from apps.rollouts.models import Deployment, Rollout, Wave
    from tests.factories import ReleaseFactory

    device = DeviceFactory(uid="dev-1")
    release = ReleaseFactory(component=components[0], version="40.0")
    rollout = Rollout.objects.create(name="os 40", state=rollout_state)
    wave = Wave.objects.create(rollout=rollout, index=0, state="running")
    deployment = Deployment.objects.create(rollout=rollout, wave=wave, device=device, released_at=timezone.now(),
                                           from_versions={"os": "39.1"}, to_versions={"os": release.version})
    body = post(client, checkin_url("dev-1"), report(1), token="token-dev-1").json()
    os_state = body["components"]["os"]
    assert (os_state.get("deployment_id") == deployment.pk) is offered
    assert os_state["target"] == ("40.0" if offered else "39.1")
    # The read-only state endpoint (a second code path) agrees with the check-in answer.
    state = client.get(reverse("deviceapi:state", kwargs={"device_id": "dev-1"}),
                       HTTP_AUTHORIZATION="Bearer token-dev-1").json()
    assert state["components"]["os"] == os_state
