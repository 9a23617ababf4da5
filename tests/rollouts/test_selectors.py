"""Reads for the rollout pages: progress per wave and the health series."""

from apps.rollouts.models import Deployment
from apps.rollouts.selectors import rollout_health_series, rollout_progress
from apps.rollouts.services import deployment_feedback

from .conftest import checkin, explicit_cohort, make_devices, running_rollout, tick, wave


def test_it_reports_progress_per_wave_with_silent_and_not_seen(operator_user, new_os, django_assert_max_num_queries):
    devices = make_devices(6)
    rollout = running_rollout(operator_user, [new_os], [wave(explicit_cohort(devices), 50), wave(None)])
    tick(rollout)
    first, second, third = Deployment.objects.filter(rollout=rollout).select_related("device")
    checkin(first.device, {"os": "40.0"})
    checkin(first.device, {"os": "40.0"})
    deployment_feedback(deployment=second, state="downloading")
    Deployment.objects.filter(pk=second.pk).update(silent=True)
    with django_assert_max_num_queries(3):
        progress = rollout_progress(rollout)
    counts = progress["waves"][0]["counts"]
    assert counts["succeeded"] == 1 and counts["silent"] == 1 and counts["not_seen"] == 1
    assert counts["downloading"] == 0 and counts["total"] == 3
    assert progress["waves"][0]["segment_coverage"]["segments_covered"] == 1
    assert progress["waves"][1]["state"] == "pending" and progress["done"] == 1
    assert progress["projected_completion"] is not None


def test_it_gives_the_health_series_of_updated_and_baseline_devices(operator_user, new_os):
    devices = make_devices(4)
    rollout = running_rollout(operator_user, [new_os], [wave(explicit_cohort(devices), 50)])
    tick(rollout)
    chosen = {d.device_id for d in Deployment.objects.filter(rollout=rollout)}
    for device in devices:
        if device.pk in chosen:
            checkin(device, {"os": "40.0"})
    for device in devices:
        if device.pk in chosen:
            checkin(device, {"os": "40.0"}, crashes=3)
        else:
            checkin(device, {"os": "39.1"}, crashes=0)
    series = rollout_health_series(rollout)
    assert series and series[-1]["updated_rate"] == 300.0 and series[-1]["baseline_rate"] == 0.0
