"""A halt and a fleet freeze each raise an alert, in their own transaction."""

from datetime import timedelta

import pytest
from django.db import transaction
from django.utils import timezone

from apps.alerts.models import Alert
from apps.alerts.selectors import alert_row
from apps.rollouts.services import fleet_freeze, rollout_halt, rollout_resume

from .conftest import running

pytestmark = pytest.mark.django_db


def test_it_raises_a_critical_alert_when_a_rollout_halts():
    rollout = running()
    first = timezone.now() - timedelta(seconds=42)
    rollout_halt(rollout=rollout, reason="crash rate 4.1% vs 0.3%",
                 evidence={"first_failing_report_at": first.isoformat(), "p_value": 0.0001})
    alert = Alert.objects.get()
    assert (alert.kind, alert.severity, alert.rollout, alert.detail) == (
        "halt", "critical", rollout, "crash rate 4.1% vs 0.3%")
    assert alert.title == "Rollout halted: os 40 → canaries"
    assert alert.evidence["p_value"] == 0.0001 and alert.evidence["halted_at"]
    assert alert.first_failing_at == first
    assert 42 <= alert_row(alert)["detection_delay_s"] < 45


def test_it_keeps_one_open_alert_for_a_rollout_that_halts_again(operator_user):
    rollout = running()
    rollout_halt(rollout=rollout, reason="crash rate 4x", evidence={})
    rollout_resume(rollout=rollout, actor=operator_user, reason="false alarm")
    rollout_halt(rollout=rollout, reason="crash rate 5x", evidence={})
    assert Alert.objects.filter(rollout=rollout).count() == 1


def test_it_leaves_no_alert_when_the_halt_rolls_back():
    rollout = running()
    with pytest.raises(RuntimeError), transaction.atomic():
        rollout_halt(rollout=rollout, reason="crash rate 4x", evidence={})
        raise RuntimeError("the engine tick failed after the halt")
    assert not Alert.objects.exists()


def test_it_raises_an_alert_when_the_fleet_freezes(operator_user):
    rollout = running()
    freeze = fleet_freeze(actor=operator_user, reason="incident 42")
    alert = Alert.objects.get()
    assert (alert.kind, alert.severity, alert.detail, alert.dedupe_key) == (
        "freeze", "warning", "incident 42", f"freeze:{freeze.pk}")
    assert alert.evidence == {"rollouts": [rollout.pk], "by": operator_user.username}
