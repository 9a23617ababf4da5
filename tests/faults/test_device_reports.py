"""Devices retrying and reordering their reports, over the native device API and hawkBit DDI.

Injected: the same check-in sent twice, an older check-in arriving after a newer one,
feedback replayed, feedback arriving out of order, late feedback for a deployment an
operator canceled, feedback after the rollout was aborted. Asserted: each report counts
once, the deployment stays in the right state, and the device gets a 2xx, or a 4xx JSON
body that names the reason.
"""

import json

import pytest
from django.urls import reverse

from apps.fleet.models import Combination, Device, HealthReport
from apps.hawkbit.models import ActionStatus
from apps.rollouts import gates
from apps.rollouts.models import Deployment
from apps.rollouts.services import deployment_cancel, rollout_abort
from tests.hawkbit.conftest import TOKEN, assign, ddi_auth, make_module, make_set, make_target
from tests.rollouts.conftest import explicit_cohort, make_devices, running_rollout, tick, wave

pytestmark = [pytest.mark.django_db, pytest.mark.faults]

NEW, OLD = {"os": "40.0"}, {"os": "39.1"}


def post(client, url: str, body: dict, token: str, scheme: str = "Bearer"):
    return client.post(url, data=json.dumps(body), content_type="application/json",
                       HTTP_AUTHORIZATION=f"{scheme} {token}")


def checkin(client, device: Device, seq: int, installed: dict, crashes: int = 0):
    url = reverse("deviceapi:checkin", kwargs={"device_id": device.uid})
    body = {"seq": seq, "installed": installed, "health": {"interval_s": 60, "crashes": crashes}}
    return post(client, url, body, f"token-{device.uid}")


def feedback(client, deployment: Deployment, state: str, **extra):
    url = reverse("deviceapi:feedback", kwargs={"device_id": deployment.device.uid, "deployment_id": deployment.pk})
    return post(client, url, {"state": state, **extra}, f"token-{deployment.device.uid}")


@pytest.fixture
def rollout(operator_user, new_os):
    devices = make_devices(3)
    rollout = running_rollout(operator_user, [new_os], [wave(explicit_cohort(devices))], settle_s=3600)
    assert tick(rollout) == "wave_started"
    return rollout


def deployments(rollout) -> list[Deployment]:
    return list(Deployment.objects.filter(rollout=rollout).select_related("device").order_by("id"))


def test_it_counts_a_duplicate_checkin_once_and_ignores_an_older_one_arriving_late(client, rollout):
    """Injected: check-in seq 2 (new version) sent twice, then seq 1 (old version) arriving last.
    Asserted: one health report, the device stays on the new version, the combination counts
    stay exact, and the deployment is not failed as a fallback by the stale report."""
    deployment = deployments(rollout)[0]
    device = deployment.device
    assert checkin(client, device, 2, NEW, crashes=1).json()["accepted"] is True
    replay = checkin(client, device, 2, NEW, crashes=1)
    stale = checkin(client, device, 1, OLD, crashes=7)
    assert replay.status_code == 200 and replay.json()["duplicate"] is True
    assert stale.status_code == 200 and stale.json()["duplicate"] is True and stale.json()["accepted"] is False
    device.refresh_from_db()
    assert device.installed == NEW and device.last_seq == 2
    assert HealthReport.objects.filter(device=device).count() == 1
    assert sum(HealthReport.objects.filter(device=device).values_list("crashes", flat=True)) == 1
    counts = dict(Combination.objects.values_list("key", "device_count"))
    assert counts[Combination.key_for(NEW)] == 1 and counts[Combination.key_for(OLD)] == 2
    deployment.refresh_from_db()
    assert deployment.state == Deployment.State.SETTLING


def test_it_counts_replayed_and_reordered_feedback_once(client, rollout):
    """Injected: "installing" replayed (the second with less progress), then "installed" twice,
    then a late "installing" and "downloading". Asserted: every answer is 200 with the current
    state, progress never shrinks, the deployment never leaves settling backwards, and the
    replayed "installed" does not restart the settle time."""
    deployment = deployments(rollout)[0]
    assert feedback(client, deployment, "downloading", progress=10).json()["state"] == "downloading"
    assert feedback(client, deployment, "installing", progress=50).json()["state"] == "installing"
    again = feedback(client, deployment, "installing", progress=40)
    assert (again.status_code, again.json()["state"]) == (200, "installing")
    assert Deployment.objects.get(pk=deployment.pk).progress == 50
    assert feedback(client, deployment, "installed").json()["state"] == "settling"
    deployment.refresh_from_db()
    installed_at, settle_until = deployment.installed_at, deployment.settle_until
    for state in ("installed", "installing", "downloading"):
        response = feedback(client, deployment, state)
        assert (response.status_code, response.json()["state"]) == (200, "settling")
    deployment.refresh_from_db()
    assert deployment.state == Deployment.State.SETTLING
    assert (deployment.installed_at, deployment.settle_until) == (installed_at, settle_until)


def test_it_counts_a_replayed_failure_once(client, rollout):
    """Injected: "failed" sent twice, then a late "installing". Asserted: one failed device in
    the wave's counts, the first error kept, 200 for the replay and 410 naming the state after."""
    deployment = deployments(rollout)[0]
    first = feedback(client, deployment, "failed", error_code="disk_full", detail="no space")
    replay = feedback(client, deployment, "failed", error_code="disk_full", detail="no space")
    late = feedback(client, deployment, "installing")
    assert (first.status_code, replay.status_code) == (200, 200)
    assert late.status_code == 410
    assert late.json() == {"error": "gone", "detail": "deployment already failed (disk_full)", "field": "state"}
    deployment.refresh_from_db()
    assert (deployment.state, deployment.error_code, deployment.attempts) == ("failed", "disk_full", 1)
    assert gates.wave_counts(rollout)[deployment.wave_id]["failed"] == 1


def test_it_answers_late_feedback_for_a_canceled_deployment_with_410(client, rollout, operator_user):
    """Injected: an operator force-cancels a deployment, then the device reports "installing" and
    "installed". Asserted: 410 JSON naming the state and why; the deployment stays canceled."""
    deployment = deployments(rollout)[0]
    deployment_cancel(deployment=deployment, actor=operator_user, force=True)
    for state in ("installing", "installed"):
        response = feedback(client, deployment, state)
        assert response.status_code == 410
        assert response.json()["error"] == "gone" and response.json()["field"] == "state"
        assert response.json()["detail"] == "deployment already canceled (canceled_by_operator)"
    deployment.refresh_from_db()
    assert deployment.state == Deployment.State.CANCELED


def test_it_keeps_the_state_right_for_feedback_after_the_rollout_was_aborted(client, rollout, operator_user):
    """Injected: abort while one device installs and two have not started; then all three send
    feedback (one of them twice). Asserted: the never-started ones get 410 "canceled
    (rollout_aborted)" and stay canceled; the installing one may still report the truth
    ("installed" → settling, counted once) and its cancel request stays visible."""
    busy, idle, other = deployments(rollout)
    assert feedback(client, busy, "installing").status_code == 200
    rollout_abort(rollout=rollout, actor=operator_user, reason="bad build")
    for deployment in (idle, other, idle):
        response = feedback(client, deployment, "downloading")
        assert response.status_code == 410
        assert response.json()["detail"] == "deployment already canceled (rollout_aborted)"
    assert feedback(client, busy, "installed").json()["state"] == "settling"
    assert feedback(client, busy, "installed").json()["state"] == "settling"
    states = dict(Deployment.objects.filter(rollout=rollout).values_list("pk", "state"))
    assert states == {busy.pk: "settling", idle.pk: "canceled", other.pk: "canceled"}
    assert Deployment.objects.get(pk=busy.pk).cancel_requested is True


def ddi_feedback(client, deployment_id: int, execution: str, finished: str = "none", cancel: bool = False):
    name = "cancel-feedback" if cancel else "deployment-feedback"
    url = reverse(f"hawkbit-ddi-{name}", kwargs={"tenant": "DEFAULT", "controller_id": "hb-dev-1",
                                                  "action_id": deployment_id})
    body = {"id": str(deployment_id), "status": {"execution": execution, "result": {"finished": finished}}}
    return client.post(url, data=json.dumps(body), content_type="application/json", **ddi_auth(TOKEN))


@pytest.mark.urls("tests.hawkbit.urls")
def test_it_counts_replayed_ddi_feedback_once_and_refuses_feedback_after_cancel(client, media_root, operator_user):
    """Injected (DDI): "closed/success" sent twice; on a second action, a cancel confirmed and
    then a late "proceeding" and "closed/success". Asserted: the first action succeeds once
    (one device moved to the new combination), the canceled one stays canceled and the late
    feedback gets 410 with hawkBit's error body naming the closed action."""
    device = make_target()
    first = assign(make_set(make_module(files={"image.swu": b"x"})), device)[0]
    assert ddi_feedback(client, first.pk, "closed", "success").status_code == 200
    assert ddi_feedback(client, first.pk, "closed", "success").status_code == 200
    first.refresh_from_db()
    device.refresh_from_db()
    assert first.state == Deployment.State.SUCCEEDED
    assert Combination.objects.get(pk=device.combination_id).device_count == 1
    second = assign(make_set(make_module(version="1.0.2", files={"image.swu": b"y"}), version="1.0.2"), device)[0]
    deployment_cancel(deployment=second, actor=operator_user)
    assert ddi_feedback(client, second.pk, "closed", "success", cancel=True).status_code == 200
    for execution, finished in (("proceeding", "none"), ("closed", "success")):
        response = ddi_feedback(client, second.pk, execution, finished)
        assert response.status_code == 410
        assert response.json()["errorCode"] == "hawkbit.server.error.action.closed"
        assert f"action {second.pk}: deployment already canceled" in response.json()["message"]
    second.refresh_from_db()
    assert second.state == Deployment.State.CANCELED
    assert ActionStatus.objects.filter(deployment=second).exists()
