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


def test_it_reports_the_checkin_buffer_and_the_path_taken(client, viewer_client, settings):
    from apps.fleet import checkin_buffer
    from apps.fleet.services import checkin_flush, device_installed_set

    settings.FLEET = {**settings.FLEET, "CHECKIN_BUFFER": True}
    checkin_buffer.reset_client()
    redis = checkin_buffer.client()
    redis.delete(checkin_buffer.buffer_key(), checkin_buffer.inflight_key())
    ComponentFactory(name="os")
    device = DeviceFactory(uid="dev-1")
    device_installed_set(device=device, installed={"os": "1"})
    redis.delete(checkin_buffer.seq_key(device.pk))
    before = viewer_client.get("/metrics").content.decode()
    buffered_before = _value(before, 'fleet_checkin_path_total{path="buffered"}') if 'path="buffered"' in before else 0
    flushed_before = _value(before, "fleet_checkin_flushed_total") if "fleet_checkin_flushed_total " in before else 0
    body = json.dumps({"seq": 1, "installed": {"os": "1"}})
    assert client.post("/api/v1/devices/dev-1/checkin", body, content_type="application/json",
                       HTTP_AUTHORIZATION="Bearer token-dev-1").json()["accepted"] is True
    text = viewer_client.get("/metrics").content.decode()
    assert _value(text, "fleet_checkin_buffer_depth") == 1
    assert _value(text, "fleet_checkin_buffer_oldest_seconds") >= 0
    assert _value(text, 'fleet_checkin_path_total{path="buffered"}') == buffered_before + 1
    checkin_flush()
    text = viewer_client.get("/metrics").content.decode()
    assert _value(text, "fleet_checkin_buffer_depth") == 0
    assert _value(text, "fleet_checkin_flushed_total") == flushed_before + 1
    redis.delete(checkin_buffer.seq_key(device.pk))
    checkin_buffer.reset_client()


def test_it_counts_rollouts_that_were_halted(viewer_client):
    from django.utils import timezone

    from apps.rollouts.models import Rollout

    Rollout.objects.create(name="halted once", state="running", halted_at=timezone.now())
    Rollout.objects.create(name="never halted", state="running")
    text = viewer_client.get("/metrics").content.decode()
    assert _value(text, "fleet_rollout_halts") == 1
    assert _value(text, 'fleet_rollouts{state="running"}') == 2
