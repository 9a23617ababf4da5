"""A Celery worker SIGKILLed in the middle of a rollout tick (real worker, own Redis, test database).

To kill at a known point, the test holds a row lock on a wave the tick is about to write,
waits until PostgreSQL shows the worker's transaction waiting on that lock (so everything
the tick did before it is written but not committed), and then SIGKILLs the worker.
"""

import os
import signal

import psycopg
import pytest

from apps.alerts.models import Alert
from apps.audit.models import AuditEntry
from apps.rollouts.models import Deployment, Rollout, Wave
from apps.rollouts.services import deployment_feedback
from tests.processes import test_database_url as database_url
from tests.rollouts.conftest import explicit_cohort, install_all, make_devices, running_rollout, tick, wave

from .helpers import celery_app, children, fault_env, kill_group, redis_server, wait_until, worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.faults, pytest.mark.integration]

NEW = {"os": "40.0"}
ENGINE_TICK = "apps.rollouts.tasks.engine_tick"
# A backend whose client died notices within 100 ms even while it waits on a lock, so the
# killed tick's transaction rolls back at once instead of after our lock is released.
CHECK_CLIENT = "?options=-c%20client_connection_check_interval%3D100"


def _pg_url() -> str:
    return database_url().replace("postgres://", "postgresql://", 1)


def _blocked_on_wave(conn: psycopg.Connection) -> list[int]:
    """Backends of other sessions waiting for a row lock while updating a wave (the tick)."""
    rows = conn.execute(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
        "AND wait_event_type = 'Lock' AND query LIKE 'UPDATE \"rollouts_wave\"%%'"
    ).fetchall()
    return [pid for (pid,) in rows]


def _alive(conn: psycopg.Connection, pid: int) -> bool:
    return bool(conn.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [pid]).fetchone())


@pytest.fixture
def lock_conn():
    with psycopg.connect(_pg_url(), autocommit=True) as watcher, psycopg.connect(_pg_url()) as locker:
        yield watcher, locker


def test_it_advances_a_wave_exactly_once_when_the_worker_is_killed_mid_tick(operator_user, new_os, lock_conn):
    """Injected: SIGKILL of the worker process executing engine_tick, after the tick marked wave 1
    passed and moved the rollout to wave 2 (uncommitted) and while it was starting wave 2.
    Asserted: nothing of the killed tick is visible (its transaction rolled back); the task
    message was not lost (acks_late + reject_on_worker_lost: the worker's next process runs it
    again) and that run finishes the work; wave 2 started once, each device has one deployment,
    and a further tick changes nothing."""
    watcher, locker = lock_conn
    first, rest = make_devices(2, prefix="a"), make_devices(60, prefix="b")
    rollout = running_rollout(operator_user, [new_os], [
        wave(explicit_cohort(first), success_min_percent=100), wave(explicit_cohort(rest)),
    ])
    assert tick(rollout) == "wave_started"
    install_all(rollout, NEW, wave__index=0)
    second = rollout.waves.get(index=1)
    locker.execute("SELECT id FROM rollouts_wave WHERE id = %s FOR UPDATE", [second.pk])

    with redis_server() as rds:
        app = celery_app(rds.url, "h3-kill")
        env = fault_env(rds.url, "h3-kill", DATABASE_URL=database_url() + CHECK_CLIENT)
        with worker(app, env, name="kill-mid-tick") as proc:
            app.send_task(ENGINE_TICK, queue="h3-kill")
            (blocked,) = wait_until(lambda: _blocked_on_wave(watcher), "the tick to block on wave 2's row lock")
            (pool_process,) = children(proc.pid)
            os.kill(pool_process, signal.SIGKILL)
            wait_until(lambda: not _alive(watcher, blocked), "the killed tick's transaction to roll back")
            # Nothing the killed tick did is visible.
            assert Wave.objects.get(pk=rollout.waves.get(index=0).pk).state == Wave.State.RUNNING
            assert Rollout.objects.get(pk=rollout.pk).current_wave == 0
            assert not Deployment.objects.filter(wave=second).exists()
            # The message comes back (rejected, requeued) and its second run blocks on the same lock.
            (again,) = wait_until(lambda: _blocked_on_wave(watcher), "the redelivered tick to run")
            assert again != blocked
            locker.rollback()
            wait_until(lambda: Deployment.objects.filter(wave=second).count() == 60, "the redelivered tick")
            wait_until(lambda: not _alive(watcher, again) or not _blocked_on_wave(watcher), "the tick to commit")
            result = app.send_task(ENGINE_TICK, queue="h3-kill").get(timeout=30)
            assert result == 1
    rollout.refresh_from_db()
    assert rollout.current_wave == 1 and rollout.state == Rollout.State.RUNNING
    assert list(rollout.waves.order_by("index").values_list("state", flat=True)) == ["passed", "running"]
    rows = Deployment.objects.filter(rollout=rollout)
    assert rows.count() == 62 == rows.values("device").distinct().count()
    assert Wave.objects.get(pk=second.pk).planned_devices == 60


def test_it_does_not_lose_a_halt_when_the_worker_is_killed_mid_tick(operator_user, new_os, lock_conn):
    """Injected: SIGKILL of the whole worker (main and pool process) while its tick was halting
    the rollout (halt written and audited, uncommitted, marking the wave halted). Asserted: the
    half-done halt left nothing (no state change, audit entry or alert); a new worker's tick
    halts the rollout; exactly one halt audit entry and one open alert exist; the next wave
    never started."""
    watcher, locker = lock_conn
    devices = make_devices(3)
    rollout = running_rollout(operator_user, [new_os], [
        wave(explicit_cohort(devices), max_failed_count=0), wave(explicit_cohort(make_devices(5, prefix="r"))),
    ])
    assert tick(rollout) == "wave_started"
    failed = Deployment.objects.filter(rollout=rollout).first()
    deployment_feedback(deployment=failed, state="failed", error_code="boot_loop")
    first = rollout.waves.get(index=0)
    locker.execute("SELECT id FROM rollouts_wave WHERE id = %s FOR UPDATE", [first.pk])

    with redis_server() as rds:
        app = celery_app(rds.url, "h3-halt")
        env = fault_env(rds.url, "h3-halt", DATABASE_URL=database_url() + CHECK_CLIENT)
        with worker(app, env, name="kill-halt") as proc:
            app.send_task(ENGINE_TICK, queue="h3-halt")
            (blocked,) = wait_until(lambda: _blocked_on_wave(watcher), "the halt to block on wave 1's row lock")
            kill_group(proc, signal.SIGKILL)
            wait_until(lambda: not _alive(watcher, blocked), "the killed tick's transaction to roll back")
        locker.rollback()
        rollout.refresh_from_db()
        assert rollout.state == Rollout.State.RUNNING
        assert not AuditEntry.objects.filter(action="rollout.halt").exists()
        assert not Alert.objects.filter(rollout=rollout).exists()
        with worker(app, env, name="after-kill"):
            assert app.send_task(ENGINE_TICK, queue="h3-halt").get(timeout=30) == 1
            assert app.send_task(ENGINE_TICK, queue="h3-halt").get(timeout=30) == 1
    rollout.refresh_from_db()
    assert rollout.state == Rollout.State.HALTED and "failed" in rollout.halt_reason
    assert AuditEntry.objects.filter(action="rollout.halt").count() == 1
    assert Alert.objects.filter(rollout=rollout).count() == 1
    assert list(rollout.waves.order_by("index").values_list("state", flat=True)) == ["halted", "pending"]
    assert not Deployment.objects.filter(rollout=rollout, wave__index=1).exists()
