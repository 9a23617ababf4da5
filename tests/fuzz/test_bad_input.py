"""Named hostile inputs to the native device API and the hawkBit DDI, plus hypothesis fuzzing of
DDI feedback and config data: no 5xx, a JSON 4xx naming the problem, nothing written."""

import json

import pytest
from django.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from apps.fleet.models import Component
from apps.hawkbit import services as hawkbit_services
from tests.factories import DeviceFactory

from .helpers import FUZZ_SETTINGS, assert_clean_rejection, device_rows, row_counts

pytestmark = pytest.mark.django_db

AUTH = {"HTTP_AUTHORIZATION": "Bearer bad-input-token"}
DEEP = b'{"seq": 1, "installed": {}, "attributes": ' + b'{"a": ' * 2000 + b"1" + b"}" * 2000 + b"}"

CHECKIN_CASES = [
    pytest.param(b'{"seq": 1, "installed": {}, "pad": "' + b"x" * 300_000 + b'"}', "body", id="oversized-body"),
    pytest.param(DEEP, "body", id="deeply-nested-json"),
    pytest.param(b'{"seq": 1, "installed": {"os": "\xff\xfe"}}', "body", id="invalid-utf8"),
    pytest.param(b'{"seq": 1, "installed": {"os": "\\ud800"}}', "installed.os", id="lone-surrogate"),
    pytest.param(b'{"seq": ' + b"9" * 5000 + b', "installed": {}}', "body", id="huge-integer-literal"),
    pytest.param(json.dumps({"seq": 2**64, "installed": {}}).encode(), "seq", id="integer-above-2-53"),
    pytest.param(json.dumps({"seq": 1, "installed": {}, "health": {"interval_s": 60, "crashes": -1}}).encode(),
                 "health.crashes", id="negative-counter"),
    pytest.param(json.dumps({"seq": -5, "installed": {}}).encode(), "seq", id="negative-seq"),
    pytest.param(json.dumps({"seq": 1, "installed": {}, "sent_at": "9999-12-31T23:59:59+00:00" * 3}).encode(),
                 "sent_at", id="far-future-timestamp-too-long"),
    pytest.param(json.dumps({"seq": 1, "installed": {}, "nonsense": True}).encode(), "nonsense", id="unknown-field"),
    pytest.param(json.dumps({"seq": "1", "installed": {}}).encode(), "seq", id="wrong-type-string-for-int"),
    pytest.param(json.dumps({"seq": 1, "installed": ["os"]}).encode(), "installed", id="wrong-type-list"),
    pytest.param(json.dumps({"seq": 1.5, "installed": {}}).encode(), "seq", id="float-for-int"),
    pytest.param(json.dumps({"seq": True, "installed": {}}).encode(), "seq", id="bool-for-int"),
    pytest.param(b"[1, 2, 3]", "body", id="array-not-object"),
    pytest.param(b'{"seq": NaN, "installed": {}}', "body", id="nan"),
    pytest.param(b'{"seq": 1, "installed": {"os": "' + b"9" * 65 + b'"}}', "installed.os", id="version-too-long"),
    pytest.param(json.dumps({"seq": 1, "installed": {}, "attributes": {"k": "<script>" * 100}}).encode(),
                 "attributes.k", id="attribute-too-long"),
]


@pytest.fixture
def device():
    Component.objects.get_or_create(name="os", defaults={"kind": "os"})
    return DeviceFactory(uid="bad-input", token="bad-input-token", installed={"os": "1.0"})


@pytest.mark.parametrize(("raw", "field"), CHECKIN_CASES)
def test_it_rejects_hostile_check_ins_naming_the_field_and_writes_nothing(client, device, raw, field):
    before, before_device = row_counts(), device_rows(device)
    response = client.post(f"/api/v1/devices/{device.uid}/checkin", raw, content_type="application/json", **AUTH)
    body = assert_clean_rejection(response.status_code, response.content)
    named = [body.get("field")] + [e.get("field") for e in body.get("errors", [])]
    assert field in named, body
    assert row_counts() == before
    assert device_rows(device) == before_device


def test_it_accepts_a_far_future_sent_at_without_trusting_it(client, device):
    """sent_at is informational: a device clock in 9999 must not move last_seen into the future."""
    from django.utils import timezone

    body = {"seq": 1, "installed": {"os": "1.0"}, "sent_at": "9999-12-31T23:59:59+00:00"}
    response = client.post(f"/api/v1/devices/{device.uid}/checkin", body, content_type="application/json", **AUTH)
    assert response.status_code < 500
    device.refresh_from_db()
    if response.status_code == 200:
        assert device.last_seen is None or device.last_seen <= timezone.now()
    else:
        assert_clean_rejection(response.status_code, response.content)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"\xff" * 100, id="invalid-utf8"),
        pytest.param(b'{"state": "failed", "detail": "' + b"x" * 2000 + b'"}', id="detail-too-long"),
        pytest.param(b'{"state": "exploded"}', id="unknown-state"),
        pytest.param(b'{"state": "failed", "progress": -1}', id="negative-progress"),
        pytest.param(b'{"state": "failed", "progress": 1e400}', id="huge-float"),
        pytest.param(b'{"state": "failed", "surprise": 1}', id="unknown-field"),
        pytest.param(DEEP, id="deep"),
    ],
)
def test_it_rejects_hostile_deployment_feedback(client, device, raw):
    before = row_counts()
    response = client.post(f"/api/v1/devices/{device.uid}/deployments/1/feedback", raw,
                           content_type="application/json", **AUTH)
    assert_clean_rejection(response.status_code, response.content, needs_field=response.status_code == 400)
    assert row_counts() == before


# --- hawkBit DDI ----------------------------------------------------------------------------

DDI_TOKEN = "ddi-fuzz-token"


@pytest.fixture
def action(device):
    hawkbit_services.tenant_config_cache_clear()
    target, _ = hawkbit_services.target_create(controller_id="ddi-fuzz", actor="tests", security_token=DDI_TOKEN)
    release = hawkbit_services.module_create(name="os", version="2.0", module_type="os", actor="tests")
    dist = hawkbit_services.distribution_set_create(name="img", version="2.0", module_ids=[release.pk], actor="tests")
    hawkbit_services.hawkbit_assign(distribution_set=dist, devices=[target], actor="tests", action_type="forced",
                                    maintenance_window=None)
    return target, target.deployments.get()


json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40)
json_values = st.recursive(json_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=10), inner, max_size=4), max_leaves=12)
feedback_shaped = st.fixed_dictionaries(
    {"status": st.fixed_dictionaries(
        {"execution": st.sampled_from(["proceeding", "closed", "canceled", "scheduled", "rejected", "resumed",
                                       "download", "downloaded", "bogus", ""]) | json_scalars,
         "result": st.fixed_dictionaries({"finished": st.sampled_from(["success", "failure", "none", "x"])
                                          | json_scalars}, optional={"progress": json_values}) | json_values},
        optional={"details": json_values, "code": json_values})},
    optional={"id": json_values, "time": json_values},
)
ddi_bodies = (feedback_shaped.map(lambda v: json.dumps(v).encode()) | json_values.map(lambda v: json.dumps(v).encode())
              | st.binary(max_size=200))


def test_it_rejects_an_oversized_ddi_feedback_with_a_hawkbit_error(action):
    target, deployment = action
    raw = b'{"status": {"details": ["' + b"x" * 400_000 + b'"]}}'
    response = Client().post(f"/DEFAULT/controller/v1/{target.uid}/deploymentBase/{deployment.pk}/feedback", raw,
                             content_type="application/json", HTTP_AUTHORIZATION=f"TargetToken {DDI_TOKEN}")
    assert_clean_rejection(response.status_code, response.content, key="message")


@settings(max_examples=60, suppress_health_check=list(HealthCheck), **FUZZ_SETTINGS)
@given(raw=ddi_bodies, path=st.sampled_from(["deploymentBase/{id}/feedback", "cancelAction/{id}/feedback"]))
def test_it_answers_any_ddi_feedback_without_a_server_error(action, raw, path):
    target, deployment = action
    url = f"/DEFAULT/controller/v1/{target.uid}/" + path.format(id=deployment.pk)
    response = Client().post(url, raw, content_type="application/json", HTTP_AUTHORIZATION=f"TargetToken {DDI_TOKEN}")
    assert response.status_code < 500, (raw, response.content)
    if response.status_code >= 400:
        body = assert_clean_rejection(response.status_code, response.content, key="message")
        assert body.get("errorCode"), body


@settings(max_examples=40, suppress_health_check=list(HealthCheck), **FUZZ_SETTINGS)
@given(raw=st.fixed_dictionaries({"data": json_values}, optional={"mode": json_values}).map(
    lambda v: json.dumps(v).encode()) | json_values.map(lambda v: json.dumps(v).encode()) | st.binary(max_size=100))
def test_it_answers_any_ddi_config_data_without_a_server_error_or_a_partial_write(action, raw):
    target, _ = action
    target.refresh_from_db()
    before = dict(target.attributes)
    response = Client().put(f"/DEFAULT/controller/v1/{target.uid}/configData", raw, content_type="application/json",
                            HTTP_AUTHORIZATION=f"TargetToken {DDI_TOKEN}")
    assert response.status_code < 500, (raw, response.content)
    if response.status_code >= 400:
        assert_clean_rejection(response.status_code, response.content, key="message")
        target.refresh_from_db()
        assert target.attributes == before
