"""The engine tick: waves, gates, settling, silence, retries, halts, completion."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.deviceapi.selectors import device_open_deployments
from apps.rollouts.engine import rollout_evaluate
from apps.rollouts.models import ComponentLock, Deployment, Rollout, Wave
from apps.rollouts.services import deployment_feedback, rollout_resume

from .conftest import checkin, explicit_cohort, install_all, later, make_devices, running_rollout, tick, wave

NEW = {"os": "40.0"}
OLD = {"os": "39.1"}


def test_it_starts_the_first_wave_and_releases_its_devices(operator_user, new_os):
    cohort = explicit_cohort(make_devices(10))
    rollout = running_rollout(operator_user, [new_os], [wave(cohort, 30), wave(cohort, 100)])
    assert tick(rollout) == "wave_started"
    first = rollout.waves.get(index=0)
    assert first.state == Wave.State.RUNNING and first.planned_devices == 3
    assert rollout.waves.get(index=1).state == Wave.State.PENDING
    tick(rollout)
    deployments = Deployment.objects.filter(rollout=rollout)
    assert deployments.count() == 3
    assert all(d.released_at is not None and d.to_versions == NEW and d.from_versions == OLD for d in deployments)
    assert ComponentLock.objects.filter(deployment__rollout=rollout).count() == 3


def test_it_advances_waves_and_completes_when_gates_pass(operator_user, new_os):
    cohort = explicit_cohort(make_devices(10))
    rollout = running_rollout(operator_user, [new_os], [wave(cohort, 20, success_min_percent=100),
                                                         wave(None, 100, success_min_percent=100)])
    tick(rollout)
    tick(rollout)  # releases wave 1
    assert tick(rollout) == "running"
    assert install_all(rollout, NEW) == 2
    assert tick(rollout) == "advanced"
    assert rollout.current_wave == 1 and rollout.waves.get(index=0).state == Wave.State.PASSED
    assert rollout.waves.get(index=1).planned_devices == 8
    tick(rollout)
    assert install_all(rollout, NEW, wave__index=1) == 8
    assert tick(rollout) == "completed"
    assert rollout.state == Rollout.State.COMPLETED and rollout.finished_at is not None
    assert not ComponentLock.objects.filter(deployment__rollout=rollout).exists()
    assert Deployment.objects.filter(rollout=rollout, state="succeeded").count() == 10


def test_it_waits_for_the_soak_time_before_advancing(operator_user, new_os):
    cohort = explicit_cohort(make_devices(4))
    rollout = running_rollout(operator_user, [new_os], [wave(cohort, 50, min_soak_s=600), wave(None, 100)])
    tick(rollout)
    tick(rollout)
    install_all(rollout, NEW)
    assert tick(rollout) == "running"
    assert tick(rollout, now=later(601)) == "advanced"


def test_it_counts_success_only_after_the_settle_time(operator_user, new_os):
    device = make_devices(1)[0]
    rollout = running_rollout(operator_user, [new_os], [wave(explicit_cohort([device]))], settle_s=300)
    tick(rollout)
    tick(rollout)
    deployment = Deployment.objects.get(rollout=rollout)
    deployment_feedback(deployment=deployment, state="installed")
    tick(rollout, now=later(301))
    deployment.refresh_from_db()
    assert deployment.state == "settling"  # never seen since it installed (may be rebooting)
    checkin(device, NEW)
    tick(rollout, now=later(100))
    deployment.refresh_from_db()
    assert deployment.state == "settling"
    tick(rollout, now=later(301))
    deployment.refresh_from_db()
    assert deployment.state == "succeeded"


def installed_first_device(operator_user, new_os):
    """A running rollout of three devices whose first device just reported "installed"."""
    devices = make_devices(3)
    rollout = running_rollout(operator_user, [new_os], [wave(explicit_cohort(devices), max_failed_count=0)],
                              settle_s=300)
    tick(rollout)
    tick(rollout)
    deployment = Deployment.objects.get(rollout=rollout, device=devices[0])
    deployment_feedback(deployment=deployment, state="installed")
    return rollout, devices[0], deployment


def test_it_fails_a_device_that_comes_back_on_the_old_version(operator_user, new_os):
    rollout, device, deployment = installed_first_device(operator_user, new_os)
    checkin(device, OLD)
    deployment.refresh_from_db()
    assert deployment.state == "failed" and deployment.error_code == "fallback"
    assert tick(rollout) == "halted"
    assert "1 of 1 reporting devices failed" in rollout.halt_reason
    assert rollout.halt_evidence["gate"] == "absolute" and rollout.halt_evidence["first_failing_report_at"]


def test_it_halts_on_the_percent_of_devices_that_reported_not_of_the_wave(operator_user, new_os):
    devices = make_devices(40)
    rollout = running_rollout(operator_user, [new_os], [wave(explicit_cohort(devices), max_failed_percent=20,
                                                                   success_min_percent=100)])
    tick(rollout)
    tick(rollout)
    deployments = list(Deployment.objects.filter(rollout=rollout).select_related("device"))
    for deployment in deployments[:8]:
        checkin(deployment.device, NEW)
        checkin(deployment.device, NEW)
    for deployment in deployments[8:10]:
        deployment_feedback(deployment=deployment, state="failed", error_code="signature_invalid")
    assert tick(rollout) == "running"  # 2 of 10 reported = 20%: not above the limit
    deployment_feedback(deployment=deployments[10], state="failed", error_code="signature_invalid")
    assert tick(rollout) == "halted"  # 3 of 11 reported = 27% (hawkBit would count 3 of 40)
    evidence = rollout.halt_evidence
    assert evidence["failed"] == 3 and evidence["reported"] == 11 and evidence["max_failed_percent"] == 20
    assert "3 of 11 reporting devices failed" in rollout.halt_reason


def _spike_setup(operator_user, new_os, *, crashes_updated: int):
    updated_pool = make_devices(25, prefix="u")
    baseline = make_devices(30, prefix="b")
    cohort = explicit_cohort(updated_pool + baseline)
    rollout = running_rollout(
        operator_user, [new_os],
        [wave(cohort, 25, size_kind="count", spike_gate={"metrics": ["crashes"], "min_devices": 20}), wave(None)],
    )
    # Stratification is irrelevant here: one segment; take whatever the wave chose.
    tick(rollout)
    tick(rollout)
    chosen = {d.device_id for d in Deployment.objects.filter(rollout=rollout)}
    everyone = updated_pool + baseline
    for device in everyone:
        if device.pk in chosen:
            checkin(device, NEW)  # back on the new version: settling from here
    for device in everyone:
        if device.pk in chosen:
            checkin(device, NEW, crashes=crashes_updated)
        else:
            checkin(device, OLD, crashes=1 if device.pk % 10 == 0 else 0)
    return rollout


def test_it_halts_when_crash_rate_spikes(operator_user, new_os):
    rollout = _spike_setup(operator_user, new_os, crashes_updated=2)
    assert tick(rollout) == "halted"
    evidence = rollout.halt_evidence
    assert evidence["gate"] == "spike" and evidence["metric"] == "crashes"
    assert evidence["inputs"]["updated"]["devices"] == 25 and evidence["inputs"]["updated"]["events"] == 50
    assert evidence["inputs"]["baseline"]["devices"] == 30
    assert evidence["p_value"] < 0.001 and evidence["first_failing_report_at"]
    assert "crash rate" in rollout.halt_reason and "25 updated devices" in rollout.halt_reason
    assert rollout.waves.get(index=0).state == Wave.State.HALTED


def test_it_does_not_halt_a_healthy_release(operator_user, new_os):
    rollout = _spike_setup(operator_user, new_os, crashes_updated=0)
    assert tick(rollout) != "halted"
    assert rollout.state == Rollout.State.RUNNING


def test_it_holds_every_undelivered_deployment_after_a_halt(operator_user, new_os):
    devices = make_devices(6)
    rollout = running_rollout(operator_user, [new_os], [wave(explicit_cohort(devices), 100, max_failed_count=0),
                                                         wave(None)])
    tick(rollout)
    tick(rollout)
    first, *others = Deployment.objects.filter(rollout=rollout).select_related("device")
    deployment_feedback(deployment=first, state="failed", error_code="signature_invalid")
    assert tick(rollout) == "halted"
    assert all(device_open_deployments(d.device) == [] for d in others)
    assert tick(rollout, now=later(3600)) == "held"
    assert Deployment.objects.filter(rollout=rollout).count() == 6
    assert rollout.waves.get(index=1).state == Wave.State.PENDING
    # A person resumes: the overridden failure no longer halts; devices are told again.
    rollout_resume(rollout=rollout, actor=operator_user, reason="known signing glitch, fixed")
    assert tick(rollout) != "halted"
    assert device_open_deployments(others[0].device) != []


def test_it_marks_devices_silent_after_install_and_counts_them_as_failed(operator_user, new_os):
    devices = make_devices(2)
    rollout = running_rollout(operator_user, [new_os], [wave(explicit_cohort(devices), max_failed_count=0)])
    tick(rollout)
    tick(rollout)
    deployment = Deployment.objects.get(rollout=rollout, device=devices[0])
    deployment_feedback(deployment=deployment, state="installing")
    # Test poll interval is 60 s; silent after 3 intervals.
    assert tick(rollout, now=later(170)) == "running"
    deployment.refresh_from_db()
    assert not deployment.silent
    assert tick(rollout, now=later(181)) == "halted"
    deployment.refresh_from_db()
    assert deployment.silent and rollout.halt_evidence["silent_counted_as_failed"] == 1
    checkin(devices[0], OLD)
    deployment.refresh_from_db()
    assert not deployment.silent


def test_it_does_not_count_silence_when_configured_not_to(operator_user, new_os):
    devices = make_devices(2)
    rollout = running_rollout(operator_user, [new_os], [wave(explicit_cohort(devices), max_failed_count=0)])
    Rollout.objects.filter(pk=rollout.pk).update(silent_counts_as_failure=False)
    tick(rollout)
    tick(rollout)
    deployment_feedback(deployment=Deployment.objects.get(rollout=rollout, device=devices[0]), state="downloading")
    assert tick(rollout, now=later(400)) == "running"


def test_it_retries_retryable_failures_with_backoff_up_to_the_limit(operator_user, new_os):
    device = make_devices(1)[0]
    rollout = running_rollout(operator_user, [new_os], [wave(explicit_cohort([device]), max_failed_count=0)],
                              max_retries=1, retryable_error_codes=["disk_busy"])
    tick(rollout)
    tick(rollout)
    deployment = Deployment.objects.get(rollout=rollout)
    deployment_feedback(deployment=deployment, state="failed", error_code="disk_busy")
    assert tick(rollout) == "running"  # retrying is not a failure for the gates
    deployment.refresh_from_db()
    assert deployment.retry_at is not None
    assert deployment.retry_at - deployment.finished_at == timedelta(seconds=rollout.retry_backoff_s)
    tick(rollout, now=deployment.retry_at - timedelta(seconds=1))
    deployment.refresh_from_db()
    assert deployment.state == "failed"
    tick(rollout, now=deployment.retry_at + timedelta(seconds=1))
    deployment.refresh_from_db()
    assert deployment.state == "pending" and deployment.attempts == 2 and deployment.released_at is not None
    assert ComponentLock.objects.filter(deployment=deployment).exists()
    deployment_feedback(deployment=deployment, state="failed", error_code="disk_busy")
    assert tick(rollout) == "halted"  # out of retries: now it is a failure
    deployment.refresh_from_db()
    assert deployment.retry_at is None and not ComponentLock.objects.filter(deployment=deployment).exists()


def test_it_does_not_retry_permanent_errors(operator_user, new_os):
    device = make_devices(1)[0]
    rollout = running_rollout(operator_user, [new_os], [wave(explicit_cohort([device]))],
                              retryable_error_codes=["disk_busy"])
    tick(rollout)
    tick(rollout)
    deployment = Deployment.objects.get(rollout=rollout)
    deployment_feedback(deployment=deployment, state="failed", error_code="signature_invalid")
    tick(rollout, now=later(86400))
    deployment.refresh_from_db()
    assert deployment.state == "failed" and deployment.attempts == 1 and deployment.retry_at is None


def test_it_paces_starts_and_grows_the_rate_after_successes(operator_user, new_os):
    devices = make_devices(40)
    rollout = running_rollout(operator_user, [new_os], [wave(explicit_cohort(devices), max_starts_per_min=5,
                                                              pace_growth=2, pace_growth_after=5)])
    t0 = timezone.now()
    tick(rollout, now=t0)
    tick(rollout, now=t0)
    released = Deployment.objects.filter(rollout=rollout, released_at__isnull=False)
    assert released.count() == 5
    tick(rollout, now=t0 + timedelta(seconds=30))
    assert released.count() == 5
    install_all(rollout, NEW)  # 5 successes: the rate doubles to 10 a minute
    tick(rollout, now=t0 + timedelta(seconds=61))
    assert released.count() == 15
    # Released in selection order (deployments are created in rank order).
    held_ids = Deployment.objects.filter(rollout=rollout, released_at__isnull=True).values_list("id", flat=True)
    assert min(held_ids) > max(released.values_list("id", flat=True))


def test_it_starts_a_scheduled_rollout_when_its_time_comes(operator_user, new_os):
    from apps.rollouts.services import rollout_create, rollout_submit

    cohort = explicit_cohort(make_devices(2))
    at = later(3600)
    rollout = rollout_create(name="night", releases=[new_os], waves=[wave(cohort)], actor=operator_user,
                             scheduled_for=at)
    rollout_submit(rollout=rollout, actor=operator_user)
    assert rollout_evaluate(rollout.pk, now=at - timedelta(seconds=1)) == "scheduled"
    assert rollout_evaluate(rollout.pk, now=at) == "started"
    rollout.refresh_from_db()
    assert rollout.state == Rollout.State.RUNNING


@pytest.mark.parametrize("state", ["draft", "completed", "aborted"])
def test_it_leaves_inactive_rollouts_alone(operator_user, new_os, state):
    cohort = explicit_cohort(make_devices(2))
    rollout = running_rollout(operator_user, [new_os], [wave(cohort)])
    Rollout.objects.filter(pk=rollout.pk).update(state=state)
    assert rollout_evaluate(rollout.pk) == "idle"
    assert not Deployment.objects.filter(rollout=rollout).exists()


def test_it_reports_a_missing_rollout_as_gone(db):
    assert rollout_evaluate(987654) == "gone"


def test_it_ticks_every_due_rollout_from_the_beat_task(operator_user, new_os):
    from apps.rollouts.services import rollout_create
    from apps.rollouts.tasks import engine_tick

    one = running_rollout(operator_user, [new_os], [wave(explicit_cohort(make_devices(2)))], name="one")
    rollout_create(name="draft", releases=[new_os], waves=[wave(explicit_cohort(make_devices(2)))],
                   actor=operator_user)
    assert engine_tick(budget_s=60) == 1
    one.refresh_from_db()
    assert one.last_tick_at is not None and Deployment.objects.filter(rollout=one).count() == 2


def test_it_ignores_a_stale_checkin_that_crossed_the_installed_report(operator_user, new_os, settings):
    settings.FLEET = {**settings.FLEET, "FALLBACK_GRACE_S": 10.0}
    _, device, deployment = installed_first_device(operator_user, new_os)
    # Sent before the device installed, processed just after its "installed" report.
    checkin(device, OLD)
    deployment.refresh_from_db()
    assert deployment.state == "settling"
    Deployment.objects.filter(pk=deployment.pk).update(installed_at=timezone.now() - timedelta(seconds=11))
    checkin(device, OLD)
    deployment.refresh_from_db()
    assert deployment.state == "failed" and deployment.error_code == "fallback"


def test_it_fails_a_settling_device_on_a_crash_burst_but_not_on_one_crash(operator_user, new_os, settings):
    devices = make_devices(3)
    rollout = running_rollout(operator_user, [new_os], [wave(explicit_cohort(devices))], settle_s=300)
    tick(rollout)
    tick(rollout)
    noisy, looping = (Deployment.objects.get(rollout=rollout, device=d) for d in devices[:2])
    for deployment in (noisy, looping):
        deployment_feedback(deployment=deployment, state="installed")
    checkin(devices[0], NEW, crashes=1)
    checkin(devices[1], NEW, crashes=settings.FLEET["SETTLE_UNHEALTHY_EVENTS"])
    noisy.refresh_from_db()
    looping.refresh_from_db()
    assert noisy.state == "settling"
    assert looping.state == "failed" and looping.error_code == "unhealthy_after_install"
