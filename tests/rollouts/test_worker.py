"""The engine in a real Celery worker on the real Redis broker, working on the test database.

Devices report through the real check-in service with the crash rates of the simulator's
profile: the bad release (BAD_RELEASE: ten times the crash rate) halts by itself with readable
evidence; a healthy release completes all its waves.
"""

import pytest

from apps.rollouts.models import Deployment, Rollout, Wave
from apps.rollouts.stats import DEFAULT_ALPHA
from apps.rollouts.tasks import engine_tick, rollout_evaluate_task
from apps.simulator.profiles import BAD_RELEASE, DEFAULT_PROFILE
from tests.processes import celery_worker

from .conftest import checkin, explicit_cohort, install_all, make_devices, running_rollout, wave

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

NEW, OLD = {"os": "40.0"}, {"os": "39.1"}
BASE_CRASH_PER_HOUR = DEFAULT_PROFILE["baseline"]["crash_per_hour"]  # 0.2
BAD_CRASH_PER_HOUR = BASE_CRASH_PER_HOUR * BAD_RELEASE["crash_factor"]  # 2.0


def _tick() -> int:
    return engine_tick.delay().get(timeout=60)


def test_it_halts_a_bad_release_in_a_real_worker(operator_user, new_os):
    updated_pool, baseline = make_devices(25, prefix="u"), make_devices(25, prefix="b")
    cohort = explicit_cohort(updated_pool + baseline)
    rollout = running_rollout(operator_user, [new_os], [
        wave(cohort, 25, size_kind="count", spike_gate={"metrics": ["crashes"]}), wave(None),
    ])
    with celery_worker(name="engine-bad"):
        assert _tick() == 1
        chosen = set(Deployment.objects.filter(rollout=rollout, released_at__isnull=False)
                     .values_list("device_id", flat=True))
        assert len(chosen) == 25
        for device in updated_pool + baseline:
            if device.pk in chosen:
                checkin(device, NEW)
        # One hour later: updated devices crash at the bad release's rate, the others at the baseline's.
        for index, device in enumerate(updated_pool + baseline):
            if device.pk in chosen:
                checkin(device, NEW, crashes=int(BAD_CRASH_PER_HOUR))
            else:
                checkin(device, OLD, crashes=1 if index % int(1 / BASE_CRASH_PER_HOUR) == 0 else 0)
        assert rollout_evaluate_task.delay(rollout.pk).get(timeout=60) in ("halted", "held")
    rollout.refresh_from_db()
    assert rollout.state == Rollout.State.HALTED
    assert rollout.halt_reason.startswith("Wave 1: crash rate 200.0 per 100 device-hours on 25 updated devices")
    assert "p<0.001" in rollout.halt_reason
    assert rollout.halt_evidence["test"].startswith("conditional binomial test")
    assert rollout.halt_evidence["parameters"]["alpha"] == DEFAULT_ALPHA
    assert rollout.halt_evidence["first_failing_report_at"] and rollout.halt_evidence["halted_at"]
    assert rollout.waves.get(index=1).state == Wave.State.PENDING  # the rest never got it


def test_it_completes_a_healthy_release_in_a_real_worker(operator_user, new_os):
    cohort = explicit_cohort(make_devices(12))
    rollout = running_rollout(operator_user, [new_os], [
        wave(cohort, 4, size_kind="count", success_min_percent=100), wave(None, 100, success_min_percent=100),
    ])
    with celery_worker(name="engine-good"):
        _tick()
        assert install_all(rollout, NEW, wave__index=0) == 4
        _tick()
        assert Deployment.objects.filter(rollout=rollout, wave__index=1, released_at__isnull=False).count() == 8
        assert install_all(rollout, NEW, wave__index=1) == 8
        _tick()
    rollout.refresh_from_db()
    assert rollout.state == Rollout.State.COMPLETED
    assert list(rollout.waves.values_list("state", flat=True)) == ["passed", "passed"]
    assert Deployment.objects.filter(rollout=rollout, state="succeeded").count() == 12
