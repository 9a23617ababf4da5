"""Shared by the rollout services: the error type, row locking, and the one transition helper."""

from typing import Any

from django.db import transaction
from django.utils import timezone

from apps.audit.services import actor_label, audit_record
from apps.live.broadcast import ROLLOUTS, WALL, broadcast_event, rollout_group

from ..models import ComponentLock, Deployment, FleetFreeze, Rollout
from ..states import can_transition


class RolloutError(Exception):
    """A rollout request that cannot be done; `field` names the input at fault (for forms/API)."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


def rollout_groups(rollout: Rollout, *, wall: bool = False) -> tuple[str, ...]:
    groups = (ROLLOUTS, rollout_group(rollout.pk))
    return (*groups, WALL) if wall else groups


def rollout_lock(rollout: Rollout | int) -> Rollout:
    """Re-read the rollout under a row lock (waits for an engine tick in progress)."""
    pk = rollout.pk if isinstance(rollout, Rollout) else rollout
    return Rollout.objects.select_for_update().get(pk=pk)


def freeze_active() -> FleetFreeze | None:
    return FleetFreeze.objects.filter(active=True).first()


def _snapshot(rollout: Rollout) -> dict[str, Any]:
    return {"state": rollout.state, "current_wave": rollout.current_wave, "frozen": rollout.frozen}


def transition(
    rollout: Rollout,
    target: str,
    *,
    actor: Any,
    reason: str = "",
    action: str,
    fields: dict[str, Any] | None = None,
    audit_extra: dict[str, Any] | None = None,
) -> Rollout:
    """Move a locked rollout to `target` if the state machine allows it; audit and broadcast.

    The update is conditional on the state read under the lock, so even a caller that forgot
    the lock can never apply a transition from a state the rollout has already left.
    """
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("transition() must run inside the service's transaction")
    previous = rollout.state
    if not can_transition(previous, target, action):
        raise RolloutError(
            f"cannot {action} a rollout that is {Rollout.State(previous).label.lower()}", field="state"
        )
    before = _snapshot(rollout)
    changes = {"state": target, **(fields or {})}
    if not Rollout.objects.filter(pk=rollout.pk, state=previous).update(**changes):
        raise RolloutError("the rollout changed meanwhile; reload and try again", field="state")
    for name, value in changes.items():
        setattr(rollout, name, value)
    audit_record(
        actor=actor,
        action=f"rollout.{action}",
        obj=rollout,
        reason=reason,
        before=before,
        after={**_snapshot(rollout), **(audit_extra or {})},
    )
    broadcast_event(
        "rollout.state",
        {
            "rollout": rollout.pk,
            "name": rollout.name,
            "state": target,
            "previous": previous,
            "actor": actor_label(actor),
            "reason": reason,
        },
        groups=rollout_groups(rollout, wall=target == Rollout.State.HALTED),
    )
    return rollout


def require_reason(reason: str, action: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise RolloutError(f"a reason is required to {action} a rollout", field="reason")
    return reason


def release_locks(rollout: Rollout, *, only_finished: bool = True) -> int:
    """Give up (device, component) claims: of finished deployments, or all of them."""
    locks = ComponentLock.objects.filter(deployment__rollout=rollout)
    if only_finished:
        retryable = rollout.retryable_error_codes or []
        waiting_retry = Deployment.objects.filter(
            rollout=rollout, state=Deployment.State.FAILED, error_code__in=retryable,
            attempts__lte=rollout.max_retries,
        )
        locks = locks.filter(deployment__state__in=Deployment.FINAL_STATES).exclude(
            deployment__in=waiting_retry.values("pk")
        )
    deleted, _ = locks.delete()
    return deleted


def cancel_open_deployments(rollout: Rollout, *, code: str, now=None) -> int:
    """Cancel deployments that never started; ask devices mid-install to cancel (they confirm)."""
    now = now or timezone.now()
    canceled = Deployment.objects.filter(rollout=rollout, state=Deployment.State.PENDING).update(
        state=Deployment.State.CANCELED, finished_at=now, error_code=code
    )
    Deployment.objects.filter(
        rollout=rollout, state__in=(Deployment.State.DOWNLOADING, Deployment.State.INSTALLING)
    ).update(cancel_requested=True)
    # Failed deployments waiting for a retry will not get it.
    Deployment.objects.filter(rollout=rollout, retry_at__isnull=False).update(retry_at=None)
    return canceled
