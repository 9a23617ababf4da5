"""The rollout engine: one tick for one rollout, idempotent and safe to run concurrently.

A tick claims the rollout row with SELECT ... FOR UPDATE SKIP LOCKED: a second worker ticking
the same rollout at the same moment skips it ("busy") instead of waiting and repeating the
work. Each step is also written as a conditional update on the state it read (a wave moves
from running to passed only if it is still running), so even a tick that runs on stale data
cannot advance a wave twice. Deployments are unique per (rollout, device) and claim their
(device, component) pairs in ComponentLock, so no device is ever deployed twice.
"""

import logging
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from apps.live.broadcast import broadcast_event

from . import gates
from .cron import parse_cron, window_open, zone
from .models import ComponentLock, Deployment, MaintenanceWindow, Rollout, Wave
from .selection import rollback_versions, select_wave_devices, to_versions_for, wave_cohorts
from .services.common import cancel_open_deployments, freeze_active, release_locks, rollout_groups, transition
from .services.lifecycle import rollout_halt, start_locked

log = logging.getLogger(__name__)
D = Deployment.State
R = Rollout.State

# Pacing never releases more than this many deployments in one tick (bounds the tick's work).
MAX_RELEASE_PER_TICK = 5000


def rollout_evaluate(rollout_id: int, *, now: datetime | None = None) -> str:
    """Tick one rollout; returns what happened ("busy", "gone", "halted", "advanced", ...)."""
    now = now or timezone.now()
    with transaction.atomic():
        rollout = Rollout.objects.select_for_update(skip_locked=True).filter(pk=rollout_id).first()
        if rollout is None:
            return "gone" if not Rollout.objects.filter(pk=rollout_id).exists() else "busy"
        if rollout.state == R.SCHEDULED:
            return _maybe_start(rollout, now)
        if rollout.state not in Rollout.ACTIVE_STATES:
            return "idle"
        outcome = _tick(rollout, now)
        Rollout.objects.filter(pk=rollout.pk).update(last_tick_at=now)
    return outcome


def _maybe_start(rollout: Rollout, now: datetime) -> str:
    if rollout.scheduled_for is None or rollout.scheduled_for > now:
        return "scheduled"
    if freeze_active() is not None:
        return "frozen"
    return "started" if start_locked(rollout, actor=None, reason="scheduled start", now=now) else "waiting"


def _tick(rollout: Rollout, now: datetime) -> str:
    finish_settled(rollout, now)
    mark_silent(rollout, now)
    schedule_retries(rollout)
    release_locks(rollout)
    outcome = "held" if rollout.state == R.HALTED else "idle"
    waves = list(rollout.waves.select_related("cohort").order_by("index"))
    wave = waves[rollout.current_wave] if rollout.current_wave < len(waves) else None
    counts = gates.wave_counts(rollout)
    if rollout.state in (R.RUNNING, R.PAUSED) and wave is not None and wave.state == Wave.State.RUNNING:
        started = [w for w in waves if w.state != Wave.State.PENDING]
        halt = gates.absolute_halt(rollout, wave, counts.get(wave.pk, {}), now)
        if halt is None:
            halt, _ = gates.spike_halt(rollout, wave, started, now)
        if halt is not None:
            rollout_halt(rollout=rollout, reason=halt.reason, evidence=halt.evidence, actor=None)
            rollout.state = R.HALTED
            outcome = "halted"
    if rollout.state == R.RUNNING and not (rollout.frozen and freeze_active()):
        outcome = _advance(rollout, waves, counts, now)
    broadcast_progress(rollout, waves)
    return outcome


def _advance(rollout: Rollout, waves: list[Wave], counts: dict, now: datetime) -> str:
    fire_retries(rollout, now)
    if rollout.current_wave >= len(waves):
        return _complete(rollout, now)
    wave = waves[rollout.current_wave]
    if wave.state == Wave.State.PENDING:
        planned = wave_start(rollout, wave, now)
        pace(rollout, wave, waves, {"held": planned, "succeeded": 0}, now)
        return "wave_started"
    if wave.state == Wave.State.PASSED and rollout.current_wave + 1 >= len(waves):
        # The last wave passed while devices were still settling: finish once they are done.
        return _complete(rollout, now)
    if wave.state != Wave.State.RUNNING:
        return "idle"
    released = pace(rollout, wave, waves, counts.get(wave.pk, {}), now)
    if not wave_passes(wave, counts.get(wave.pk, {}), now):
        return "released" if released else "running"
    if not Wave.objects.filter(pk=wave.pk, state=Wave.State.RUNNING).update(state=Wave.State.PASSED, finished_at=now):
        return "running"
    wave.state = Wave.State.PASSED
    if rollout.current_wave + 1 >= len(waves):
        return _complete(rollout, now)
    Rollout.objects.filter(pk=rollout.pk, current_wave=rollout.current_wave).update(current_wave=F("current_wave") + 1)
    rollout.current_wave += 1
    following = waves[rollout.current_wave]
    planned = wave_start(rollout, following, now)
    pace(rollout, following, waves, {"held": planned, "succeeded": 0}, now)
    return "advanced"


def _complete(rollout: Rollout, now: datetime) -> str:
    """Done when the last wave passed and no device is mid-install (silent ones are not waited for)."""
    busy = Deployment.objects.filter(
        rollout=rollout, state__in=(D.DOWNLOADING, D.INSTALLING, D.SETTLING), silent=False
    ).exists()
    if busy:
        return "finishing"
    transition(rollout, R.COMPLETED, actor=None, reason="every wave passed its gates", action="complete",
               fields={"finished_at": now})
    cancel_open_deployments(rollout, code="rollout_completed", now=now)
    release_locks(rollout, only_finished=False)
    return "completed"


def wave_start(rollout: Rollout, wave: Wave, now: datetime) -> int:
    """Choose the wave's devices and create their deployments (held until the pacer releases them)."""
    if not Wave.objects.filter(pk=wave.pk, state=Wave.State.PENDING).update(state=Wave.State.RUNNING, started_at=now):
        return 0
    wave.state, wave.started_at = Wave.State.RUNNING, now
    selection = select_wave_devices(rollout, wave)
    targets = list(rollout.targets.select_related("component", "release"))
    target_tuples = [(t.component_id, t.component.name, t.release.version, t.release.supported_hardware)
                     for t in targets]
    component_ids = {t.component.name: t.component_id for t in targets}
    rollback_from = rollback_versions(rollout) if rollout.rollback_of_id else {}
    rows = []
    for cand in selection.chosen:
        wanted = to_versions_for(rollout, target_tuples, cand, rollback_from)
        rows.append(Deployment(
            rollout=rollout, wave=wave, device_id=cand.id, to_versions=wanted,
            from_versions={name: cand.installed.get(name) for name in wanted},
        ))
    created = Deployment.objects.bulk_create(rows, batch_size=1000)
    locks = [ComponentLock(device_id=d.device_id, component_id=component_ids[name], deployment=d)
             for d in created for name in d.to_versions if name in component_ids]
    ComponentLock.objects.bulk_create(locks, batch_size=1000, ignore_conflicts=True)
    # A concurrent rollout may have claimed a pair between selection and here: the unique
    # constraint kept its lock, so drop our deployments that did not get every claim.
    claimed = {}
    for deployment_id in ComponentLock.objects.filter(deployment__in=created).values_list("deployment_id", flat=True):
        claimed[deployment_id] = claimed.get(deployment_id, 0) + 1
    lost = [d.pk for d in created if claimed.get(d.pk, 0) < len([n for n in d.to_versions if n in component_ids])]
    if lost:
        ComponentLock.objects.filter(deployment_id__in=lost).delete()
        Deployment.objects.filter(pk__in=lost).delete()
    planned = len(created) - len(lost)
    Wave.objects.filter(pk=wave.pk).update(planned_devices=planned, segment_coverage={
        **selection.coverage, "cohort_devices": selection.cohort_size, "eligible": selection.eligible,
        "skipped": {**selection.skipped, "lost_to_other_rollout": len(lost)},
    })
    wave.planned_devices = planned
    return planned


def windows_open(cohorts, now: datetime) -> bool:
    """Every cohort that has maintenance windows must have one open now."""
    by_cohort: dict[int, list[MaintenanceWindow]] = {}
    for window in MaintenanceWindow.objects.filter(cohort__in=[c.pk for c in cohorts]):
        by_cohort.setdefault(window.cohort_id, []).append(window)
    for windows in by_cohort.values():
        if not any(window_open(parse_cron(w.schedule), duration_min=w.duration_min, tz=zone(w.timezone), at=now)
                   for w in windows):
            return False
    return True


def pace_rate(wave: Wave, succeeded: int) -> float:
    """Starts allowed per minute: the base rate, times `pace_growth` per `pace_growth_after` successes."""
    rate = float(wave.max_starts_per_min)
    if wave.pace_growth_after and wave.pace_growth > 1:
        rate *= wave.pace_growth ** min(succeeded // wave.pace_growth_after, 64)
    return rate


def pace(rollout: Rollout, wave: Wave, waves: list[Wave], counts: dict, now: datetime) -> int:
    """Release held deployments within the wave's start rate, while its maintenance windows are open."""
    if not counts.get("held"):
        return 0
    if not windows_open(wave_cohorts(rollout, wave), now):
        return 0
    held = Deployment.objects.filter(wave=wave, state=D.PENDING, released_at__isnull=True)
    limit = MAX_RELEASE_PER_TICK
    if wave.max_starts_per_min:
        recent = Deployment.objects.filter(wave=wave, released_at__gt=now - timedelta(seconds=60)).count()
        limit = min(limit, int(pace_rate(wave, counts.get("succeeded", 0))) - recent)
    if limit <= 0:
        return 0
    ids = list(held.order_by("id").values_list("id", flat=True)[:limit])
    return Deployment.objects.filter(pk__in=ids, released_at__isnull=True).update(released_at=now)


def wave_passes(wave: Wave, counts: dict, now: datetime) -> bool:
    if wave.started_at and now < wave.started_at + timedelta(seconds=wave.min_soak_s):
        return False
    planned = wave.planned_devices
    succeeded = counts.get("succeeded", 0)
    if succeeded < min(wave.success_min_count, planned):
        return False
    return succeeded * 100 >= wave.success_min_percent * planned - 1e-9


def finish_settled(rollout: Rollout, now: datetime) -> int:
    """Settled long enough and seen since the install: a success (hawkBit devices report no versions)."""
    return Deployment.objects.filter(
        rollout=rollout, state=D.SETTLING, settle_until__lte=now, device__last_seen__gte=F("installed_at")
    ).update(state=D.SUCCEEDED, finished_at=now, silent=False)


def mark_silent(rollout: Rollout, now: datetime) -> int:
    """Overdue by `silent_after_intervals` poll intervals after starting: possibly bricked."""
    default_poll = settings.FLEET["POLL_INTERVAL_S"]
    rows = Deployment.objects.filter(
        rollout=rollout, state__in=(D.DOWNLOADING, D.INSTALLING, D.SETTLING), silent=False
    ).values_list("id", "updated_at", "installed_at", "device__last_seen", "device__poll_interval_s")
    silent = []
    for pk, updated_at, installed_at, last_seen, poll in rows:
        last_news = max(t for t in (updated_at, installed_at, last_seen) if t is not None)
        if now - last_news > timedelta(seconds=(poll or default_poll) * rollout.silent_after_intervals):
            silent.append(pk)
    if silent:
        Deployment.objects.filter(pk__in=silent, state__in=(D.DOWNLOADING, D.INSTALLING, D.SETTLING)).update(
            silent=True)
    return len(silent)


def schedule_retries(rollout: Rollout) -> int:
    """Failed with a retryable error code and attempts left: retry after an exponential backoff."""
    codes = rollout.retryable_error_codes or []
    if not codes:
        return 0
    rows = Deployment.objects.filter(
        rollout=rollout, state=D.FAILED, retry_at__isnull=True, error_code__in=codes,
        attempts__lte=rollout.max_retries,
    ).values_list("id", "finished_at", "attempts")
    for pk, finished_at, attempts in rows:
        delay = timedelta(seconds=rollout.retry_backoff_s * 2 ** (attempts - 1))
        Deployment.objects.filter(pk=pk, state=D.FAILED, retry_at__isnull=True).update(
            retry_at=(finished_at or timezone.now()) + delay)
    return len(rows)


def fire_retries(rollout: Rollout, now: datetime) -> int:
    return Deployment.objects.filter(rollout=rollout, state=D.FAILED, retry_at__lte=now).update(
        state=D.PENDING, attempts=F("attempts") + 1, retry_at=None, released_at=now, finished_at=None,
        installed_at=None, settle_until=None, progress=0, error_code="", error_detail="", silent=False,
    )


def broadcast_progress(rollout: Rollout, waves: list[Wave]) -> bool:
    """At most one "rollout.progress" per tick, and only when a count changed."""
    counts = gates.wave_counts(rollout)
    keys = ("total", "held", "pending", "not_seen", "downloading", "installing", "settling", "silent",
            "succeeded", "failed", "retrying", "canceled", "rolled_back")
    states = dict(Wave.objects.filter(rollout=rollout).values_list("pk", "state"))
    payload = [
        {"wave": w.index, "state": states.get(w.pk, w.state), **{k: counts.get(w.pk, {}).get(k, 0) for k in keys}}
        for w in waves
    ]
    if payload == rollout.progress_counts.get("waves"):
        return False
    Rollout.objects.filter(pk=rollout.pk).update(progress_counts={"waves": payload})
    broadcast_event("rollout.progress", {"rollout": rollout.pk, "waves": payload}, groups=rollout_groups(rollout))
    return True
