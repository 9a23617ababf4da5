"""Starting a rollout whose plan breaks a combination budget: refused, unless an admin overrides with a reason."""

import pytest

from apps.audit.models import AuditEntry
from apps.governance.models import BudgetOverride
from apps.governance.services import budget_set
from apps.rollouts.engine import rollout_evaluate
from apps.rollouts.models import Rollout
from apps.rollouts.services import RolloutError, rollout_start

from .conftest import explicit_cohort, make_devices, scheduled_rollout


@pytest.fixture
def split_fleet(catalogue):
    """Two app versions under os 39.1: moving the OS makes 2 new combinations (4 during the wave)."""
    devices = make_devices(10, {"os": "39.1", "app": "1.0"}) + make_devices(10, {"os": "39.1", "app": "1.1"})
    return explicit_cohort(devices, "all")


def test_it_refuses_an_operator_start_that_breaks_the_budget(split_fleet, catalogue, admin_user, operator_user):
    budget_set(cohort=None, max_combinations=3, actor=admin_user)
    rollout = scheduled_rollout(operator_user, [catalogue["os 40.0"]], split_fleet)
    with pytest.raises(RolloutError) as exc:
        rollout_start(rollout=rollout, actor=operator_user, reason="go")
    assert exc.value.field == "budget_override"
    assert "4 live combinations during wave 1 (budget 3, now 2)" in exc.value.message
    assert Rollout.objects.get(pk=rollout.pk).state == Rollout.State.SCHEDULED


def test_it_refuses_an_operator_override(split_fleet, catalogue, admin_user, operator_user):
    budget_set(cohort=None, max_combinations=3, actor=admin_user)
    rollout = scheduled_rollout(operator_user, [catalogue["os 40.0"]], split_fleet)
    with pytest.raises(RolloutError, match="only an admin can override"):
        rollout_start(rollout=rollout, actor=operator_user, reason="trust me", budget_override=True)
    assert not BudgetOverride.objects.exists()


def test_it_requires_a_reason_for_an_admin_override(split_fleet, catalogue, admin_user, operator_user):
    budget_set(cohort=None, max_combinations=3, actor=admin_user)
    rollout = scheduled_rollout(operator_user, [catalogue["os 40.0"]], split_fleet)
    with pytest.raises(RolloutError) as exc:
        rollout_start(rollout=rollout, actor=admin_user, reason="  ", budget_override=True)
    assert exc.value.field == "reason"


def test_it_starts_with_an_admin_override_and_audits_it(split_fleet, catalogue, admin_user, operator_user):
    budget_set(cohort=None, max_combinations=3, actor=admin_user)
    rollout = scheduled_rollout(operator_user, [catalogue["os 40.0"]], split_fleet)
    rollout_start(rollout=rollout, actor=admin_user, reason="security fix, converge next week", budget_override=True)
    assert Rollout.objects.get(pk=rollout.pk).state == Rollout.State.RUNNING
    entry = AuditEntry.objects.get(action="rollout.budget_override")
    assert entry.reason == "security fix, converge next week"
    assert entry.actor == admin_user
    assert entry.object_id == str(rollout.pk)
    assert "4 live combinations" in entry.after["breaches"][0]
    assert BudgetOverride.objects.get(rollout=rollout).created_by == admin_user


def test_it_starts_a_plan_within_budget_without_override(split_fleet, catalogue, admin_user, operator_user):
    budget_set(cohort=None, max_combinations=4, actor=admin_user)
    rollout = scheduled_rollout(operator_user, [catalogue["os 40.0"]], split_fleet)
    rollout_start(rollout=rollout, actor=operator_user)
    assert Rollout.objects.get(pk=rollout.pk).state == Rollout.State.RUNNING
    assert not AuditEntry.objects.filter(action="rollout.budget_override").exists()


def test_it_checks_a_cohort_budget(split_fleet, catalogue, admin_user, operator_user):
    budget_set(cohort=split_fleet, max_outside_share=10, top_k=2, actor=admin_user)
    rollout = scheduled_rollout(operator_user, [catalogue["os 40.0"]], split_fleet, sizes=(50,))
    # 50% of the cohort moves: 10 of 20 devices end up outside its top 2 combinations.
    with pytest.raises(RolloutError, match=r"Cohort all: 50.0% of devices outside the top 2 combinations during wave 1"):
        rollout_start(rollout=rollout, actor=operator_user)


def test_it_keeps_a_scheduled_start_waiting_until_an_admin_overrides(split_fleet, catalogue, admin_user,
                                                                       operator_user):
    from django.utils import timezone

    budget_set(cohort=None, max_combinations=3, actor=admin_user)
    rollout = scheduled_rollout(operator_user, [catalogue["os 40.0"]], split_fleet)
    Rollout.objects.filter(pk=rollout.pk).update(scheduled_for=timezone.now())
    assert rollout_evaluate(rollout.pk) == "waiting"
    rollout.refresh_from_db()
    assert rollout.state == Rollout.State.SCHEDULED
    assert "breaks the combination budget" in rollout.waiting_reason
    rollout_start(rollout=rollout, actor=admin_user, reason="accepted risk", budget_override=True)
    assert Rollout.objects.get(pk=rollout.pk).state == Rollout.State.RUNNING
