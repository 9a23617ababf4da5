"""The global freeze (an incident stops every running rollout at once) and maintenance windows."""

from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.alerts.models import Alert
from apps.alerts.services import alert_raise
from apps.audit.services import actor_label, audit_record
from apps.fleet.models import Cohort
from apps.live.broadcast import ROLLOUTS, WALL, broadcast_event

from ..cron import CronError, parse_cron, zone
from ..models import FleetFreeze, MaintenanceWindow, Rollout
from .common import RolloutError, freeze_active, require_reason, rollout_lock, transition
from .lifecycle import enqueue_evaluate


@transaction.atomic
def fleet_freeze(*, actor, reason: str) -> FleetFreeze:
    """Pause every running rollout (marked frozen) and keep new ones from starting until lifted."""
    reason = require_reason(reason, "freeze")
    if freeze_active() is not None:
        raise RolloutError("the fleet is already frozen", field="state")
    try:
        with transaction.atomic():
            freeze = FleetFreeze.objects.create(
                reason=reason, created_by=actor if getattr(actor, "is_authenticated", False) else None
            )
    except IntegrityError as exc:  # another person froze it a moment ago
        raise RolloutError("the fleet is already frozen", field="state") from exc
    frozen = []
    # Lock in id order so two freezes/engine ticks cannot deadlock on the same rows.
    for rollout in Rollout.objects.select_for_update().filter(state=Rollout.State.RUNNING).order_by("pk"):
        transition(rollout, Rollout.State.PAUSED, actor=actor, reason=f"fleet freeze: {reason}", action="freeze",
                   fields={"frozen": True})
        frozen.append(rollout.pk)
    audit_record(actor=actor, action="fleet.freeze", obj=freeze, reason=reason, after={"rollouts": frozen})
    alert_raise(kind=Alert.Kind.FREEZE, severity=Alert.Severity.WARNING, title="All rollouts frozen",
                detail=reason, evidence={"rollouts": frozen, "by": actor_label(actor)},
                dedupe_key=f"freeze:{freeze.pk}")
    broadcast_event("fleet.freeze", {"active": True, "reason": reason, "actor": actor_label(actor)},
                    groups=(ROLLOUTS, WALL))
    return freeze


@transaction.atomic
def fleet_unfreeze(*, actor, reason: str) -> FleetFreeze:
    """Lift the freeze. Frozen rollouts stay paused until each is unfrozen (or resumed) on purpose."""
    reason = require_reason(reason, "unfreeze")
    freeze = FleetFreeze.objects.select_for_update().filter(active=True).first()
    if freeze is None:
        raise RolloutError("the fleet is not frozen", field="state")
    FleetFreeze.objects.filter(pk=freeze.pk).update(
        active=False, lifted_at=timezone.now(),
        lifted_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    freeze.refresh_from_db()
    audit_record(actor=actor, action="fleet.unfreeze", obj=freeze, reason=reason,
                 before={"active": True}, after={"active": False})
    broadcast_event("fleet.freeze", {"active": False, "reason": reason, "actor": actor_label(actor)},
                    groups=(ROLLOUTS, WALL))
    return freeze


@transaction.atomic
def rollout_unfreeze(*, rollout: Rollout, actor, reason: str) -> Rollout:
    """Let one frozen rollout run again, even while the fleet freeze is still on (e.g. the hotfix)."""
    reason = require_reason(reason, "unfreeze")
    rollout = rollout_lock(rollout)
    if not rollout.frozen:
        raise RolloutError("this rollout is not frozen", field="state")
    if rollout.state == Rollout.State.PAUSED:
        transition(rollout, Rollout.State.RUNNING, actor=actor, reason=reason, action="unfreeze",
                   fields={"frozen": False})
        enqueue_evaluate(rollout.pk)
    else:  # halted or aborted meanwhile: drop the mark, keep the state
        Rollout.objects.filter(pk=rollout.pk).update(frozen=False)
        rollout.frozen = False
        audit_record(actor=actor, action="rollout.unfreeze", obj=rollout, reason=reason,
                     before={"frozen": True}, after={"frozen": False, "state": rollout.state})
    return rollout


@transaction.atomic
def maintenance_window_create(
    *, cohort: Cohort, schedule: str, duration_min: int, actor, timezone_name: str = "UTC", description: str = ""
) -> MaintenanceWindow:
    """Devices of the cohort are only told to start installing while one of its windows is open."""
    try:
        parse_cron(schedule)
        zone(timezone_name)
    except CronError as exc:
        raise RolloutError(str(exc), field="schedule") from exc
    if not 1 <= duration_min <= 7 * 24 * 60:
        raise RolloutError("a window lasts between 1 minute and 7 days", field="duration_min")
    window = MaintenanceWindow.objects.create(
        cohort=cohort, schedule=" ".join(schedule.split()), duration_min=duration_min,
        timezone=timezone_name, description=description,
    )
    audit_record(actor=actor, action="maintenance_window.create", obj=window,
                 after={"cohort": cohort.name, "schedule": window.schedule, "duration_min": duration_min,
                        "timezone": timezone_name})
    return window


@transaction.atomic
def maintenance_window_delete(*, window: MaintenanceWindow, actor, reason: str = "") -> None:
    audit_record(actor=actor, action="maintenance_window.delete", obj=window, reason=reason,
                 before={"cohort": window.cohort.name, "schedule": window.schedule,
                         "duration_min": window.duration_min, "timezone": window.timezone})
    window.delete()
