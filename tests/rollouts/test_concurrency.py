"""Two engine ticks at once on PostgreSQL: no double wave advance, no duplicate deployments."""

import threading

import pytest
from django.db import connection, connections, transaction

from apps.rollouts.engine import rollout_evaluate
from apps.rollouts.models import ComponentLock, Deployment, Rollout, Wave

from .conftest import explicit_cohort, install_all, make_devices, running_rollout, wave

pytestmark = pytest.mark.django_db(transaction=True)


def _in_threads(n, target):
    barrier = threading.Barrier(n)
    results, errors = [], []

    def run():
        try:
            barrier.wait(timeout=10)
            results.append(target())
        except Exception as exc:  # noqa: BLE001 - reported by the assertion below
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run) for _ in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors, errors
    return results


def test_it_skips_a_rollout_another_worker_is_ticking(operator_user, new_os):
    rollout = running_rollout(operator_user, [new_os], [wave(explicit_cohort(make_devices(5)))])
    outcome = []
    with transaction.atomic():
        Rollout.objects.select_for_update().get(pk=rollout.pk)  # another worker holds the row
        thread = threading.Thread(target=lambda: (outcome.append(rollout_evaluate(rollout.pk)),
                                                  connections.close_all()))
        thread.start()
        thread.join(timeout=30)
    assert outcome == ["busy"]
    assert not Deployment.objects.filter(rollout=rollout).exists()


def test_it_never_double_starts_or_double_advances_under_concurrent_ticks(operator_user, new_os):
    devices = make_devices(30)
    cohort = explicit_cohort(devices)
    rollout = running_rollout(operator_user, [new_os],
                              [wave(cohort, 10, success_min_percent=100), wave(cohort, 20), wave(None)])
    outcomes = _in_threads(6, lambda: rollout_evaluate(rollout.pk))
    assert outcomes.count("wave_started") == 1
    assert Deployment.objects.filter(rollout=rollout).count() == 3
    install_all(rollout, {"os": "40.0"})
    outcomes = _in_threads(6, lambda: rollout_evaluate(rollout.pk))
    assert outcomes.count("advanced") == 1
    rollout.refresh_from_db()
    assert rollout.current_wave == 1
    assert list(Wave.objects.filter(rollout=rollout).values_list("state", flat=True)) == ["passed", "running",
                                                                                        "pending"]
    assert Deployment.objects.filter(rollout=rollout).count() == 3 + 6
    assert Deployment.objects.filter(rollout=rollout).values("device").distinct().count() == 9
    assert ComponentLock.objects.count() == 6  # the 3 succeeded released theirs
    assert connection.vendor == "postgresql"
