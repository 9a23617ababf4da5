"""hawkBit services beyond the HTTP surface: locks, leftovers, audit."""

import pytest

from apps.audit.models import AuditEntry
from apps.hawkbit import services
from apps.rollouts.models import ComponentLock, Deployment, FleetFreeze
from tests.hawkbit.conftest import assign, make_module, make_set, make_target

pytestmark = pytest.mark.django_db


def test_it_frees_the_device_for_a_new_assignment_once_the_action_ended(media_root):
    device = make_target()
    release = make_module()
    (first,) = assign(make_set(release), device)
    with pytest.raises(services.HawkbitError) as refused:
        assign(make_set(release, name="second"), device)
    assert refused.value.status == 409
    services.action_cancel(deployment=first, actor="tests", force=True)
    assert not ComponentLock.objects.filter(deployment=first).exists()
    (second,) = assign(make_set(release, name="third"), device)
    assert ComponentLock.objects.filter(deployment=second).count() == 1


def test_it_ignores_locks_left_by_finished_deployments(media_root):
    device = make_target()
    release = make_module()
    (first,) = assign(make_set(release), device)
    # Another path (the native API, an engine tick) finished it without touching the lock.
    Deployment.objects.filter(pk=first.pk).update(state=Deployment.State.FAILED)
    (second,) = assign(make_set(release, name="again"), device)
    assert list(ComponentLock.objects.values_list("deployment_id", flat=True)) == [second.pk]


def test_it_refuses_assignments_while_the_fleet_is_frozen(media_root):
    device = make_target()
    dist = make_set(make_module())
    FleetFreeze.objects.create(reason="incident 42")
    with pytest.raises(services.HawkbitError) as refused:
        assign(dist, device)
    assert refused.value.status == 409 and "incident 42" in str(refused.value)
    assert not Deployment.objects.exists()


def test_it_audits_assignments_and_cancels(media_root):
    device = make_target()
    (deployment,) = assign(make_set(make_module()), device)
    services.action_cancel(deployment=deployment, actor="tests")
    actions = set(AuditEntry.objects.values_list("action", flat=True))
    assert {"hawkbit.target_create", "hawkbit.set_create", "hawkbit.assign", "hawkbit.action_cancel"} <= actions
