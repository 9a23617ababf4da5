"""Two `celery beat` schedulers started at once by mistake (real processes, own Redis, test database).

Injected: two beats with short intervals (engine tick 0.3 s, spread snapshot 1 s) feeding one
worker with two pool processes, so duplicate ticks run concurrently.
Asserted: both beats really sent (their logs), yet the rollout's waves each started once and
it completed once, every device got one deployment, and spread samples are never closer than
half an interval (not doubled).
"""

import itertools

import pytest

from apps.audit.models import AuditEntry
from apps.fleet.models import SpreadSample
from apps.rollouts.models import Deployment, Rollout
from tests.rollouts.conftest import explicit_cohort, make_devices, running_rollout, wave

from .helpers import LOGS, beat, celery_app, fault_env, redis_server, wait_until, worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.faults, pytest.mark.integration]

QUEUE = "h3-beats"
TICK, SNAPSHOT = "rollouts-tick", "fleet-spread-snapshot"


def _sent(name: str, entry: str) -> int:
    path = LOGS / f"faults-{name}.log"
    return path.read_text().count(f"Sending due task {entry} ") if path.exists() else 0


def test_it_does_no_double_work_with_two_beats(operator_user, new_os):
    cohorts = [explicit_cohort(make_devices(10, prefix=f"w{i}")) for i in range(3)]
    # Gates that pass at once: every tick may advance a wave, so a doubled tick would show.
    rollout = running_rollout(operator_user, [new_os], [
        wave(cohort, success_min_count=0, success_min_percent=0) for cohort in cohorts
    ])
    with redis_server() as rds:
        app = celery_app(rds.url, QUEUE)
        env = fault_env(rds.url, QUEUE, FLEET_ENGINE_TICK_S="0.3", FLEET_SPREAD_SNAPSHOT_S="1")
        with worker(app, env, name="beats-worker", concurrency=2), beat(env, name="beat-a") as beat_a, \
                beat(env, name="beat-b") as beat_b:

            def completed():
                assert beat_a.poll() is None and beat_b.poll() is None, "a beat exited; see .fleet/faults-beat-*.log"
                return Rollout.objects.get(pk=rollout.pk).state == Rollout.State.COMPLETED

            wait_until(completed, "the rollout to complete", timeout=60)
            wait_until(lambda: min(_sent(b, SNAPSHOT) for b in ("beat-a", "beat-b")) >= 3,
                       "both beats to send three spread snapshots each", timeout=60)
            wait_until(lambda: min(_sent(b, TICK) for b in ("beat-a", "beat-b")) >= 10,
                       "both beats to send ten engine ticks each", timeout=60)
    rollout.refresh_from_db()
    assert list(rollout.waves.order_by("index").values_list("state", flat=True)) == ["passed"] * 3
    assert AuditEntry.objects.filter(action="rollout.complete").count() == 1
    deployments = Deployment.objects.filter(rollout=rollout)
    assert deployments.count() == 30 == deployments.values("device").distinct().count()
    for wave_row in rollout.waves.all():
        assert wave_row.planned_devices == 10 == deployments.filter(wave=wave_row).count()
        assert set(deployments.filter(wave=wave_row).values_list("device_id", flat=True)) == set(
            cohorts[wave_row.index].members.values_list("id", flat=True))
    samples = list(SpreadSample.objects.order_by("at").values_list("at", flat=True))
    assert len(samples) >= 2
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(samples)]
    assert min(gaps) >= 0.5 - 0.05, gaps
