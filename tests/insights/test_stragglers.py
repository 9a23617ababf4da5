"""Convergence: devices not on target with a reason each, and the follow-up rollout for retryable ones."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.audit.models import AuditEntry
from apps.fleet.models import Device
from apps.insights.selectors import StragglerQuery, straggler_summary, stragglers
from apps.insights.services import followup_rollout_create
from apps.rollouts.models import Deployment, Rollout
from apps.rollouts.services import RolloutError, deployment_feedback, rollout_abort
from tests.factories import ReleaseFactory
from tests.rollouts.conftest import (
    checkin,
    explicit_cohort,
    make_devices,
    running_rollout,
    tick,
    wave,
)

pytestmark = pytest.mark.django_db

OLD = {"os": "39.1", "vision": "1.3"}
NEW = {"os": "39.1", "vision": "1.4"}


def seen(device: Device, *, minutes_ago: float) -> None:
    Device.objects.filter(pk=device.pk).update(last_seen=timezone.now() - timedelta(minutes=minutes_ago))


@pytest.fixture
def scene(operator_user, catalogue):
    """Six devices in the rollout's cohort in every situation, one outside it, one on hardware it cannot run."""
    names = ("done", "failing_online", "failing_offline", "offline", "pending", "unseen")
    devices = dict(zip(names, make_devices(6, prefix="s", installed=OLD), strict=True))
    outside = make_devices(1, prefix="out", installed=OLD)[0]
    odd_hw = make_devices(1, prefix="imx", hw="imx8", installed=OLD)[0]
    vision_14 = catalogue["vision=1.4"]
    vision_14.supported_hardware = ["rpi4"]
    vision_14.save()
    rollout = running_rollout(operator_user, [vision_14], [wave(explicit_cohort(list(devices.values())))],
                              retryable_error_codes=[], max_retries=0)
    tick(rollout)
    tick(rollout)
    checkin(devices["done"], NEW)
    checkin(devices["done"], NEW)
    for name in ("failing_online", "failing_offline"):
        deployment = Deployment.objects.get(rollout=rollout, device=devices[name])
        deployment_feedback(deployment=deployment, state="failed", error_code="not_enough_space")
    for device in devices.values():
        seen(device, minutes_ago=1)
    seen(devices["failing_offline"], minutes_ago=24 * 60)
    seen(devices["offline"], minutes_ago=24 * 60)
    Device.objects.filter(pk=devices["unseen"].pk).update(last_seen=None)
    seen(outside, minutes_ago=1)
    seen(odd_hw, minutes_ago=1)
    rollout.refresh_from_db()
    return rollout, devices, outside, odd_hw


def by_uid(rollout: Rollout, **query) -> dict[str, Device]:
    return {d.uid: d for d in stragglers(StragglerQuery(rollout=rollout, **query))}


def test_it_gives_every_device_not_on_target_a_reason(scene):
    rollout, devices, outside, odd_hw = scene
    found = by_uid(rollout)
    assert devices["done"].uid not in found
    reasons = {uid: (d.reason, d.why) for uid, d in found.items()}
    assert reasons[devices["failing_online"].uid] == ("failing", "not_enough_space")
    assert reasons[devices["failing_offline"].uid] == ("failing", "not_enough_space")
    assert reasons[devices["offline"].uid] == ("offline", "")
    assert reasons[devices["unseen"].uid] == ("offline", "")
    assert reasons[devices["pending"].uid] == ("pending", "")
    assert reasons[outside.uid] == ("excluded", "not in the rollout's cohorts")
    assert reasons[odd_hw.uid] == ("excluded", "unsupported hardware")
    summary = straggler_summary(StragglerQuery(rollout=rollout))
    assert summary["counts"] == {"failing": 2, "offline": 2, "pending": 1, "excluded": 2}
    assert summary["total"] == 7


def test_it_retries_failing_devices_that_are_online_while_the_rollout_runs(scene):
    rollout, devices, *_ = scene
    retryable = {uid for uid, d in by_uid(rollout).items() if d.retryable}
    assert retryable == {devices["failing_online"].uid}


def test_it_also_retries_devices_left_behind_offline_once_they_are_back_after_the_rollout(scene, operator_user):
    rollout, devices, *_ = scene
    rollout_abort(rollout=rollout, actor=operator_user, reason="enough")
    rollout.refresh_from_db()
    seen(devices["offline"], minutes_ago=1)  # back now
    retryable = {uid for uid, d in by_uid(rollout).items() if d.retryable}
    assert retryable == {devices["failing_online"].uid, devices["offline"].uid, devices["pending"].uid}


def test_it_filters_by_reason_and_by_days_since_the_start(scene):
    rollout, devices, *_ = scene
    assert set(by_uid(rollout, reason="failing")) == {devices["failing_online"].uid, devices["failing_offline"].uid}
    # Everyone was reached minutes ago: after N=1 day, only devices never reached (outside, odd hardware) count.
    assert {d.reason for d in by_uid(rollout, days=1).values()} == {"excluded"}
    Deployment.objects.filter(rollout=rollout, device=devices["offline"]).update(
        created_at=timezone.now() - timedelta(days=2))
    assert {d.reason for d in by_uid(rollout, days=1).values()} == {"excluded", "offline"}


def test_it_scopes_stragglers_to_one_component_of_a_bundle(operator_user, catalogue):
    devices = make_devices(2, prefix="b", installed=OLD)
    rollout = running_rollout(operator_user, [catalogue["os=39.2"], catalogue["vision=1.4"]],
                              [wave(explicit_cohort(devices))])
    Device.objects.filter(pk=devices[0].pk).update(installed={"os": "39.2", "vision": "1.3"})
    assert set(by_uid(rollout)) == {devices[0].uid, devices[1].uid}
    assert set(by_uid(rollout, component="os")) == {devices[1].uid}


def test_it_creates_a_draft_follow_up_for_exactly_the_retryable_devices(scene, operator_user):
    rollout, devices, *_ = scene
    followup = followup_rollout_create(rollout=rollout, actor=operator_user)
    assert followup.state == Rollout.State.DRAFT
    assert [t.release.version for t in followup.targets.all()] == ["1.4"]
    only_wave = followup.waves.get()
    assert set(only_wave.cohort.members.values_list("uid", flat=True)) == {devices["failing_online"].uid}
    assert (only_wave.size_kind, only_wave.size_value) == ("percent", 100)
    actions = set(AuditEntry.objects.filter(actor=operator_user).values_list("action", flat=True))
    assert {"cohort.create", "cohort.members_set", "rollout.create", "rollout.followup"} <= actions


def test_it_refuses_a_follow_up_when_nothing_is_retryable(operator_user, catalogue):
    devices = make_devices(2, prefix="n", installed=OLD)
    rollout = running_rollout(operator_user, [catalogue["vision=1.4"]], [wave(explicit_cohort(devices))])
    with pytest.raises(RolloutError) as exc:
        followup_rollout_create(rollout=rollout, actor=operator_user)
    assert exc.value.field == "devices"
    assert Rollout.objects.count() == 1


def test_it_ignores_devices_without_the_component_on_target_only_when_they_match(operator_user, catalogue):
    ReleaseFactory(component=catalogue["vision=1.4"].component, version="1.5")
    devices = make_devices(1, prefix="x", installed={"os": "39.1", "vision": "1.4"})
    rollout = running_rollout(operator_user, [catalogue["vision=1.4"]], [wave(explicit_cohort(devices))])
    assert by_uid(rollout) == {}
