"""Alerts: a new uncertified combination in the field (once per combination) and a budget breach (per budget)."""

from datetime import timedelta

from django.utils import timezone

from apps.alerts.models import Alert
from apps.fleet.models import Combination
from apps.governance import tasks
from apps.governance.services import budget_set, certified_combination_create

from .conftest import make_devices


def test_it_alerts_once_on_an_uncertified_combination(catalogue, admin_user):
    make_devices(2, {"os": "39.1", "app": "1.0"})
    combination = Combination.objects.get()
    assert tasks.combination_check(combination.pk) == "raised"
    alert = Alert.objects.get(kind=Alert.Kind.UNCERTIFIED_COMBINATION)
    assert alert.dedupe_key == f"uncertified:combination:{combination.pk}"
    assert alert.evidence["versions"] == {"os": "39.1", "app": "1.0"}
    assert "app 1.0, os 39.1" in alert.title
    # A re-run (redelivery, the sweep) raises nothing new, even after the alert was acknowledged.
    assert tasks.combination_check(combination.pk) == "known"
    Alert.objects.filter(pk=alert.pk).update(acknowledged_at=timezone.now(), acknowledged_by=admin_user)
    assert tasks.combination_check(combination.pk) == "known"
    assert Alert.objects.filter(kind=Alert.Kind.UNCERTIFIED_COMBINATION).count() == 1


def test_it_does_not_alert_on_a_certified_combination(catalogue, admin_user):
    certified_combination_create(patterns="os=39.*", note="lab-tested", actor=admin_user)
    make_devices(1, {"os": "39.1", "app": "1.0"})
    assert tasks.combination_check(Combination.objects.get().pk) == "certified"
    assert not Alert.objects.exists()


def test_it_returns_quietly_when_the_combination_is_gone(db):
    assert tasks.combination_check(999_999) == "gone"


def test_the_sweep_catches_combinations_whose_hook_was_lost(catalogue):
    make_devices(1, {"os": "39.1", "app": "1.0"})
    make_devices(1, {"os": "39.1", "app": "1.1"})
    Combination.objects.filter(versions__app="1.1").update(first_seen=timezone.now() - timedelta(days=3))
    assert tasks.uncertified_sweep() == 1  # only the recent one
    assert tasks.uncertified_sweep() == 0


def test_it_alerts_on_a_budget_breach_once_while_open(catalogue, admin_user):
    make_devices(3, {"os": "39.1", "app": "1.0"})
    make_devices(1, {"os": "39.1", "app": "1.1"})
    budget = budget_set(cohort=None, max_combinations=1, actor=admin_user)
    first = tasks.budget_check()
    assert first == {"budgets": 1, "breached": 1, "raised": 1}
    alert = Alert.objects.get(kind=Alert.Kind.BUDGET_BREACH)
    assert alert.dedupe_key == f"budget:{budget.pk}"
    assert "2 live combinations now (budget 1" in alert.detail
    assert tasks.budget_check()["raised"] == 0
    assert Alert.objects.filter(kind=Alert.Kind.BUDGET_BREACH).count() == 1
    # Acknowledged just now: no new alert before the re-alert time.
    Alert.objects.filter(pk=alert.pk).update(acknowledged_at=timezone.now(), acknowledged_by=admin_user)
    assert tasks.budget_check()["raised"] == 0
    Alert.objects.filter(pk=alert.pk).update(acknowledged_at=timezone.now() - timedelta(days=2))
    assert tasks.budget_check()["raised"] == 1


def test_it_does_not_alert_within_budget(catalogue, admin_user):
    make_devices(3, {"os": "39.1", "app": "1.0"})
    budget_set(cohort=None, max_combinations=1, max_outside_share=0, top_k=1, actor=admin_user)
    assert tasks.budget_check() == {"budgets": 1, "breached": 0, "raised": 0}
