"""/metrics: Prometheus text with check-in counters and fleet gauges, behind auth."""

import json

import pytest
from django.test import override_settings

from tests.factories import ComponentFactory, DeviceFactory

pytestmark = pytest.mark.django_db


def _value(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.rsplit(" ", 1)[0] == name:
            return float(line.rsplit(" ", 1)[1])
    raise AssertionError(f"{name} not in metrics")


def test_it_requires_a_login_or_the_token(client, viewer_client):
    assert client.get("/metrics").status_code == 401
    assert viewer_client.get("/metrics").status_code == 200
    with override_settings(FLEET={**__import__("django.conf").conf.settings.FLEET, "METRICS_TOKEN": "s3cret"}):
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer s3cret").status_code == 200
        assert client.get("/metrics", HTTP_AUTHORIZATION="Bearer wrong").status_code == 401


def test_it_counts_checkins_and_errors(client, viewer_client):
    ComponentFactory(name="os")
    DeviceFactory(uid="dev-1")
    before = viewer_client.get("/metrics").content.decode()
    accepted_before = _value(before, 'fleet_checkins_total{result="accepted"}') if "accepted" in before else 0.0
    body = json.dumps({"seq": 1, "installed": {"os": "1"}})
    client.post("/api/v1/devices/dev-1/checkin", body, content_type="application/json",
                HTTP_AUTHORIZATION="Bearer token-dev-1")
    client.post("/api/v1/devices/dev-1/checkin", body, content_type="application/json",
                HTTP_AUTHORIZATION="Bearer wrong")
    text = viewer_client.get("/metrics").content.decode()
    assert _value(text, 'fleet_checkins_total{result="accepted"}') == accepted_before + 1
    assert 'fleet_checkin_errors_total{kind="unauthorized"}' in text
    assert _value(text, "fleet_devices") == 1
    assert 'fleet_rollouts{state="running"}' in text
    assert "fleet_checkin_seconds_bucket" in text
