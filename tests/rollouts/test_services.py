"""Rollout services: validation, conflicts, freeze, rollback, cancel, audit and the events they send."""

import pytest

from apps.audit.models import AuditEntry
from apps.live.broadcast import ROLLOUTS, WALL, capture_events
from apps.rollouts import services
from apps.rollouts.models import ComponentLock, Deployment, FleetFreeze, Rollout
from apps.rollouts.services import RolloutError
from tests.factories import ComponentFactory, ReleaseFactory

from .conftest import checkin, explicit_cohort, install_all, make_devices, running_rollout, tick, wave


def _create(actor, releases, waves, **kw):
    return services.rollout_create(name="r", releases=releases, waves=waves, actor=actor, **kw)


def test_it_refuses_two_releases_of_one_component(operator_user, new_os, old_os):
    cohort = explicit_cohort(make_devices(1))
    with pytest.raises(RolloutError) as exc:
        _create(operator_user, [new_os, old_os], [wave(cohort)])
    assert exc.value.field == "releases" and "two releases of os" in exc.value.message


def test_it_refuses_a_rollout_without_waves_or_with_a_bad_wave(operator_user, new_os):
    cohort = explicit_cohort(make_devices(1))
    for waves, words in (([], "at least one wave"), ([wave(None)], "needs a cohort"),
                         ([wave(cohort, 150)], "at most 100"), ([{**wave(cohort), "colour": 1}], "unknown")):
        with pytest.raises(RolloutError) as exc:
            _create(operator_user, [new_os], waves)
        assert exc.value.field == "waves" and words in exc.value.message
    assert not Rollout.objects.exists()


def test_it_refuses_hardware_the_release_does_not_support(operator_user, os_component):
    release = ReleaseFactory(component=os_component, version="40.0", supported_hardware=["rpi4"])
    cohort = explicit_cohort(make_devices(2, hw="rpi4") + make_devices(3, hw="imx8"))
    with pytest.raises(RolloutError) as exc:
        _create(operator_user, [release], [wave(cohort)])
    assert "imx8 (3 devices)" in exc.value.message


def test_it_creates_a_bundle_with_one_release_per_component(operator_user, new_os):
    agent = ReleaseFactory(component=ComponentFactory(name="agent"), version="2.5.0")
    devices = make_devices(2, installed={"os": "39.1", "agent": "2.4.1"})
    rollout = running_rollout(operator_user, [new_os, agent], [wave(explicit_cohort(devices))])
    tick(rollout)
    deployment = Deployment.objects.filter(rollout=rollout).first()
    assert deployment.to_versions == {"os": "40.0", "agent": "2.5.0"}
    assert ComponentLock.objects.filter(deployment=deployment).count() == 2


def test_it_refuses_to_start_on_a_conflict_and_lists_it(operator_user, new_os, os_component):
    devices = make_devices(4)
    first = running_rollout(operator_user, [new_os], [wave(explicit_cohort(devices))], name="os 40")
    tick(first)
    other = ReleaseFactory(component=os_component, version="40.1")
    second = _create(operator_user, [other], [wave(explicit_cohort(devices[:2]))])
    services.rollout_submit(rollout=second, actor=operator_user)
    with pytest.raises(RolloutError) as exc:
        services.rollout_start(rollout=second, actor=operator_user)
    assert exc.value.field == "conflict_policy"
    assert f'rollout #{first.pk} "os 40"' in exc.value.message and "on 2 of the same devices" in exc.value.message
    assert devices[0].uid in exc.value.message
    second.refresh_from_db()
    assert second.state == Rollout.State.SCHEDULED


def test_it_waits_for_the_other_rollout_by_policy(operator_user, new_os, os_component):
    devices = make_devices(3)
    first = running_rollout(operator_user, [new_os], [wave(explicit_cohort(devices))], name="os 40")
    tick(first)
    second = running_rollout(operator_user, [ReleaseFactory(component=os_component, version="40.1")],
                             [wave(explicit_cohort(devices))], conflict_policy="wait")
    assert second.state == Rollout.State.SCHEDULED and "os 40" in second.waiting_reason
    assert tick(second) == "waiting"
    assert not Deployment.objects.filter(rollout=second).exists()
    services.rollout_abort(rollout=first, actor=operator_user, reason="superseded")
    assert not ComponentLock.objects.exists()
    assert tick(second) == "started"
    tick(second)
    assert Deployment.objects.filter(rollout=second).count() == 3


def test_it_lets_an_app_rollout_run_next_to_an_os_rollout(operator_user, new_os):
    agent = ReleaseFactory(component=ComponentFactory(name="agent"), version="2.5.0")
    devices = make_devices(3, installed={"os": "39.1", "agent": "2.4.1"})
    os_rollout = running_rollout(operator_user, [new_os], [wave(explicit_cohort(devices))], name="os")
    tick(os_rollout)
    app_rollout = running_rollout(operator_user, [agent], [wave(explicit_cohort(devices))], name="agent")
    assert app_rollout.state == Rollout.State.RUNNING
    tick(app_rollout)
    assert ComponentLock.objects.count() == 6


def test_it_freezes_every_running_rollout_and_unfreezes_one_by_one(operator_user, new_os, os_component):
    one = running_rollout(operator_user, [new_os], [wave(explicit_cohort(make_devices(2)))], name="one")
    agent = ReleaseFactory(component=ComponentFactory(name="agent"), version="2.5.0")
    two = running_rollout(operator_user, [agent], [wave(explicit_cohort(make_devices(2)))], name="two")
    freeze = services.fleet_freeze(actor=operator_user, reason="incident 42")
    one.refresh_from_db()
    two.refresh_from_db()
    assert one.state == two.state == Rollout.State.PAUSED and one.frozen and two.frozen
    with pytest.raises(RolloutError):
        services.rollout_resume(rollout=one, actor=operator_user, reason="go")
    with pytest.raises(RolloutError):
        services.fleet_freeze(actor=operator_user, reason="again")
    services.rollout_unfreeze(rollout=one, actor=operator_user, reason="the hotfix must go out")
    one.refresh_from_db()
    assert one.state == Rollout.State.RUNNING and not one.frozen
    services.fleet_unfreeze(actor=operator_user, reason="incident over")
    freeze.refresh_from_db()
    two.refresh_from_db()
    assert not freeze.active and freeze.lifted_at and two.state == Rollout.State.PAUSED
    assert AuditEntry.objects.filter(action="fleet.freeze", reason="incident 42").exists()
    assert AuditEntry.objects.filter(action="rollout.freeze", object_id=str(two.pk)).exists()


def test_it_refuses_to_start_a_rollout_while_the_fleet_is_frozen(operator_user, new_os):
    rollout = _create(operator_user, [new_os], [wave(explicit_cohort(make_devices(1)))])
    services.rollout_submit(rollout=rollout, actor=operator_user)
    services.fleet_freeze(actor=operator_user, reason="incident")
    with pytest.raises(RolloutError) as exc:
        services.rollout_start(rollout=rollout, actor=operator_user)
    assert "frozen" in exc.value.message
    assert FleetFreeze.objects.filter(active=True).count() == 1


def test_it_rolls_back_exactly_the_devices_it_changed(operator_user, old_os, new_os, os_component):
    ReleaseFactory(component=os_component, version="38.4")
    changed = make_devices(2) + make_devices(1, installed={"os": "38.4"})
    fell_back, untouched = make_devices(1), make_devices(2)
    rollout = running_rollout(operator_user, [new_os], [wave(explicit_cohort(changed + fell_back + untouched))])
    tick(rollout)
    Deployment.objects.filter(rollout=rollout, device__in=untouched).update(released_at=None)
    install_all(rollout, {"os": "40.0"}, device__in=changed)
    bad = Deployment.objects.get(rollout=rollout, device=fell_back[0])
    services.deployment_feedback(deployment=bad, state="installed")
    checkin(fell_back[0], {"os": "39.1"})
    rollback = services.rollout_rollback(rollout=rollout, actor=operator_user, reason="crashes in the field")
    rollout.refresh_from_db()
    assert rollout.state == Rollout.State.ABORTED
    assert rollback.rollback_of == rollout and rollback.state == Rollout.State.RUNNING
    assert [str(r) for r in rollback.releases.all()] == ["os 39.1"]
    tick(rollback)
    rows = Deployment.objects.filter(rollout=rollback).select_related("device")
    targets = {d.device.uid: d.to_versions for d in rows}
    assert targets == {changed[0].uid: {"os": "39.1"}, changed[1].uid: {"os": "39.1"}, changed[2].uid: {"os": "38.4"}}


def test_it_refuses_to_roll_back_a_rollout_that_changed_nothing(operator_user, new_os):
    rollout = running_rollout(operator_user, [new_os], [wave(explicit_cohort(make_devices(2)))])
    with pytest.raises(RolloutError):
        services.rollout_rollback(rollout=rollout, actor=operator_user, reason="oops")


def test_it_cancels_a_deployment_softly_or_by_force(operator_user, new_os):
    devices = make_devices(2)
    rollout = running_rollout(operator_user, [new_os], [wave(explicit_cohort(devices))])
    tick(rollout)
    soft, hard = Deployment.objects.filter(rollout=rollout)
    services.deployment_cancel(deployment=soft, actor=operator_user)
    soft.refresh_from_db()
    assert soft.state == "pending" and soft.cancel_requested
    services.deployment_feedback(deployment=soft, state="canceled")
    soft.refresh_from_db()
    assert soft.state == "canceled" and not soft.cancel_requested
    services.deployment_cancel(deployment=hard, actor=operator_user, force=True)
    hard.refresh_from_db()
    assert hard.state == "canceled" and not ComponentLock.objects.filter(deployment=hard).exists()
    with pytest.raises(RolloutError):
        services.deployment_cancel(deployment=hard, actor=operator_user)
    assert AuditEntry.objects.filter(action="deployment.cancel").count() == 2


def test_it_audits_transitions_with_actor_reason_and_before_after(operator_user, new_os):
    rollout = running_rollout(operator_user, [new_os], [wave(explicit_cohort(make_devices(1)))])
    services.rollout_pause(rollout=rollout, actor=operator_user, reason="lunch")
    entry = AuditEntry.objects.get(action="rollout.pause")
    assert entry.actor == operator_user and entry.reason == "lunch"
    assert entry.before["state"] == "running" and entry.after["state"] == "paused"


# --- events -----------------------------------------------------------------------------------------


def test_it_broadcasts_state_changes_after_commit(operator_user, new_os, django_capture_on_commit_callbacks):
    rollout = running_rollout(operator_user, [new_os], [wave(explicit_cohort(make_devices(1)))])
    with capture_events() as events, django_capture_on_commit_callbacks(execute=True):
        services.rollout_pause(rollout=rollout, actor=operator_user, reason="checking")
    assert events == [{"kind": "rollout.state", "rollout": rollout.pk, "name": rollout.name, "state": "paused",
                       "previous": "running", "actor": operator_user.username, "reason": "checking"}]


def test_it_sends_nothing_when_the_transaction_rolls_back(operator_user, new_os,
                                                          django_capture_on_commit_callbacks):
    rollout = running_rollout(operator_user, [new_os], [wave(explicit_cohort(make_devices(1)))])
    with capture_events() as events, django_capture_on_commit_callbacks(execute=True):
        with pytest.raises(RolloutError):
            services.rollout_approve(rollout=rollout, actor=operator_user)
    assert events == []


def test_it_broadcasts_a_halt_to_the_wall(operator_user, new_os, django_capture_on_commit_callbacks, monkeypatch):
    sent = []
    monkeypatch.setattr("apps.live.broadcast._group_send", lambda layer, group, msg: sent.append(group))
    rollout = running_rollout(operator_user, [new_os], [wave(explicit_cohort(make_devices(1)))])
    with capture_events() as events, django_capture_on_commit_callbacks(execute=True):
        services.rollout_halt(rollout=rollout, reason="crash rate 4x", evidence={"p_value": 0.0001})
    kinds = [e["kind"] for e in events]
    assert kinds == ["rollout.state", "alert.raised", "rollout.halted"]
    halted = events[2]
    assert halted["reason"] == "crash rate 4x" and halted["evidence"]["p_value"] == 0.0001
    assert halted["evidence"]["halted_at"]
    assert sent.count(WALL) == 3 and sent.count(ROLLOUTS) == 2


def test_it_broadcasts_the_freeze(operator_user, django_capture_on_commit_callbacks):
    with capture_events() as events, django_capture_on_commit_callbacks(execute=True):
        services.fleet_freeze(actor=operator_user, reason="incident")
        services.fleet_unfreeze(actor=operator_user, reason="resolved")
    assert [e["kind"] for e in events].count("alert.raised") == 1
    assert [e for e in events if e["kind"] == "fleet.freeze"] == [
        {"kind": "fleet.freeze", "active": True, "reason": "incident", "actor": operator_user.username},
        {"kind": "fleet.freeze", "active": False, "reason": "resolved", "actor": operator_user.username},
    ]


def test_it_broadcasts_progress_at_most_once_per_tick_and_only_on_change(
    operator_user, new_os, django_capture_on_commit_callbacks
):
    rollout = running_rollout(operator_user, [new_os], [wave(explicit_cohort(make_devices(3)))])
    with capture_events() as events, django_capture_on_commit_callbacks(execute=True):
        tick(rollout)
    progress = [e for e in events if e["kind"] == "rollout.progress"]
    assert len(progress) == 1 and progress[0]["waves"][0]["not_seen"] == 3
    with capture_events() as events, django_capture_on_commit_callbacks(execute=True):
        tick(rollout)
    assert [e for e in events if e["kind"] == "rollout.progress"] == []
    checkin(Deployment.objects.filter(rollout=rollout).first().device, {"os": "39.1"})
    with capture_events() as events, django_capture_on_commit_callbacks(execute=True):
        tick(rollout)
        tick(rollout)
    progress = [e for e in events if e["kind"] == "rollout.progress"]
    assert len(progress) == 1 and progress[0]["waves"][0]["not_seen"] == 2
    assert progress[0]["waves"][0]["pending"] == 1
