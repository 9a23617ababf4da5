"""A halt's evidence names the combinations most affected (the halting decision itself is unchanged)."""

import pytest

from apps.alerts.models import Alert
from apps.rollouts.models import Deployment
from apps.rollouts.services import deployment_feedback
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


def test_it_names_the_pairing_that_crashes_in_a_spike_halt(operator_user, catalogue):
    pool = make_devices(25, prefix="u", installed=OLD)
    baseline = make_devices(30, prefix="b", installed=OLD)
    rollout = running_rollout(
        operator_user, [catalogue["vision=1.4"]],
        [wave(explicit_cohort(pool + baseline), 25, size_kind="count",
              spike_gate={"metrics": ["crashes"], "min_devices": 20}), wave(None)],
    )
    tick(rollout)
    tick(rollout)
    chosen = [d.device for d in Deployment.objects.filter(rollout=rollout).select_related("device").order_by("id")]
    on_39_2 = chosen[:10]
    for device in chosen:
        os_version = "39.2" if device in on_39_2 else "39.1"
        checkin(device, {"os": os_version, "vision": "1.4"})
        checkin(device, {"os": os_version, "vision": "1.4"}, crashes=4 if device in on_39_2 else 0)
    for device in pool + baseline:
        if device not in chosen:
            checkin(device, OLD, crashes=1 if device.pk % 10 == 0 else 0)

    assert tick(rollout) == "halted"
    top = rollout.halt_evidence["combinations"][0]
    assert top["versions"] == {"os": "39.2", "vision": "1.4"} and top["label"] == "os 39.2 · vision 1.4"
    assert (top["failing_devices"], top["devices"], top["events"]) == (10, 10, 40)
    assert all(c["versions"]["os"] == "39.1" for c in rollout.halt_evidence["combinations"][1:])
    assert "most affected: os 39.2 · vision 1.4 (10 of 10 devices)" in rollout.halt_reason
    # The wall's alert carries the same words and evidence.
    alert = Alert.objects.get(rollout=rollout)
    assert "os 39.2 · vision 1.4" in alert.detail and alert.evidence["combinations"][0]["label"] == top["label"]


def test_it_names_the_pairing_whose_installs_fail_in_an_absolute_halt(operator_user, catalogue):
    failing = make_devices(4, prefix="f", installed={"os": "39.2", "vision": "1.3"})
    fine = make_devices(8, prefix="ok", installed=OLD)
    rollout = running_rollout(operator_user, [catalogue["vision=1.4"]],
                              [wave(explicit_cohort(failing + fine), max_failed_percent=20, success_min_percent=100)])
    tick(rollout)
    tick(rollout)
    for device in fine:
        checkin(device, {"os": "39.1", "vision": "1.4"})
        checkin(device, {"os": "39.1", "vision": "1.4"})
    for deployment in Deployment.objects.filter(rollout=rollout, device__in=failing):
        deployment_feedback(deployment=deployment, state="failed", error_code="not_enough_space")

    assert tick(rollout) == "halted"
    combos = rollout.halt_evidence["combinations"]
    assert len(combos) == 1
    assert combos[0]["versions"] == {"os": "39.2", "vision": "1.3"}
    assert (combos[0]["failing_devices"], combos[0]["devices"], combos[0]["failure_percent"]) == (4, 4, 100.0)
    assert "most affected: os 39.2 · vision 1.3 (4 of 4 devices)" in rollout.halt_reason


def test_it_shows_the_combinations_on_the_rollout_page(operator_user, catalogue, viewer_client):
    failing = make_devices(3, prefix="f", installed={"os": "39.2", "vision": "1.3"})
    rollout = running_rollout(operator_user, [catalogue["vision=1.4"]],
                              [wave(explicit_cohort(failing), max_failed_count=1)])
    tick(rollout)
    tick(rollout)
    for deployment in Deployment.objects.filter(rollout=rollout):
        deployment_feedback(deployment=deployment, state="failed", error_code="not_enough_space")
    assert tick(rollout) == "halted"
    html = viewer_client.get(f"/rollouts/{rollout.pk}/").content.decode()
    assert 'id="halt-combinations"' in html and "os 39.2 · vision 1.3" in html and "3 of 3" in html
