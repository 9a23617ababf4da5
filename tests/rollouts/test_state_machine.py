"""Every allowed and every forbidden transition of the rollout state machine, through the services."""

import pytest

from apps.audit.models import AuditEntry
from apps.rollouts import services
from apps.rollouts.models import Rollout
from apps.rollouts.services import RolloutError
from apps.rollouts.states import TRANSITIONS, can_transition

from .conftest import explicit_cohort, make_devices, wave

S = Rollout.State
ALL = [s.value for s in S]

# action → (states it is allowed from, the state it leads to)
ACTIONS = {
    "submit": ({S.DRAFT}, S.SCHEDULED),
    "approve": ({S.AWAITING_APPROVAL}, S.SCHEDULED),
    "start": ({S.SCHEDULED}, S.RUNNING),
    "pause": ({S.RUNNING}, S.PAUSED),
    "resume": ({S.PAUSED, S.HALTED}, S.RUNNING),
    "abort": ({S.DRAFT, S.AWAITING_APPROVAL, S.SCHEDULED, S.RUNNING, S.PAUSED, S.HALTED}, S.ABORTED),
    "halt": ({S.RUNNING, S.PAUSED}, S.HALTED),
}


def _call(action: str, rollout, operator, approver):
    if action == "submit":
        return services.rollout_submit(rollout=rollout, actor=operator)
    if action == "approve":
        return services.rollout_approve(rollout=rollout, actor=approver, reason="looks good")
    if action == "start":
        return services.rollout_start(rollout=rollout, actor=operator)
    if action == "halt":
        return services.rollout_halt(rollout=rollout, reason="manual halt", evidence={"by": "test"}, actor=operator)
    return getattr(services, f"rollout_{action}")(rollout=rollout, actor=operator, reason="testing")


@pytest.fixture
def draft(operator_user, new_os):
    cohort = explicit_cohort(make_devices(3))
    return services.rollout_create(name="os 40", releases=[new_os], waves=[wave(cohort)], actor=operator_user)


@pytest.mark.parametrize("state", ALL)
@pytest.mark.parametrize("action", list(ACTIONS))
def test_it_allows_exactly_the_transitions_in_the_table(action, state, draft, operator_user, second_operator):
    Rollout.objects.filter(pk=draft.pk).update(state=state)
    draft.refresh_from_db()
    allowed, target = ACTIONS[action]
    audits = AuditEntry.objects.filter(action__startswith="rollout.").count()
    if state in allowed:
        _call(action, draft, operator_user, second_operator)
        draft.refresh_from_db()
        assert draft.state == target
        assert AuditEntry.objects.filter(action__startswith="rollout.").count() > audits
    elif action == "halt" and state == S.HALTED:
        _call(action, draft, operator_user, second_operator)  # idempotent: keeps the first halt
        draft.refresh_from_db()
        assert draft.state == S.HALTED
    else:
        with pytest.raises(RolloutError):
            _call(action, draft, operator_user, second_operator)
        draft.refresh_from_db()
        assert draft.state == state


@pytest.mark.parametrize("current", ALL)
@pytest.mark.parametrize("target", ALL)
def test_it_has_a_closed_transition_table(current, target):
    allowed = target in TRANSITIONS[current]
    assert can_transition(current, target) is allowed
    if current in (S.COMPLETED, S.ABORTED):
        assert not allowed


def test_it_submits_to_approval_when_the_rollout_requires_it(operator_user, new_os):
    cohort = explicit_cohort(make_devices(2))
    rollout = services.rollout_create(name="needs ok", releases=[new_os], waves=[wave(cohort)],
                                      actor=operator_user, requires_approval=True)
    services.rollout_submit(rollout=rollout, actor=operator_user)
    rollout.refresh_from_db()
    assert rollout.state == S.AWAITING_APPROVAL


def test_it_refuses_approval_by_the_creator(operator_user, second_operator, new_os):
    cohort = explicit_cohort(make_devices(2))
    rollout = services.rollout_create(name="needs ok", releases=[new_os], waves=[wave(cohort)],
                                      actor=operator_user, requires_approval=True)
    services.rollout_submit(rollout=rollout, actor=operator_user)
    with pytest.raises(RolloutError) as exc:
        services.rollout_approve(rollout=rollout, actor=operator_user)
    assert exc.value.field == "approver"
    services.rollout_approve(rollout=rollout, actor=second_operator, reason="checked the notes")
    rollout.refresh_from_db()
    assert rollout.state == S.SCHEDULED and rollout.approved_by == second_operator
    entry = AuditEntry.objects.get(action="rollout.approve")
    assert entry.actor == second_operator and entry.before["state"] == S.AWAITING_APPROVAL
    assert entry.after["state"] == S.SCHEDULED and entry.reason == "checked the notes"


def test_it_requires_a_reason_to_pause_resume_and_abort(operator_user, draft):
    Rollout.objects.filter(pk=draft.pk).update(state=S.RUNNING)
    for action in (services.rollout_pause, services.rollout_abort):
        with pytest.raises(RolloutError) as exc:
            action(rollout=draft, actor=operator_user, reason="  ")
        assert exc.value.field == "reason"
