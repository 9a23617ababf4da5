"""Raising and acknowledging alerts. Both broadcast to the wall after commit."""

from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.audit.services import audit_record
from apps.live.broadcast import WALL, broadcast_event

from .models import Alert
from .selectors import alert_row

NOTE_MAX = 500


class AlertError(Exception):
    """An alert request that cannot be done."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _when(value: datetime | str | None) -> datetime | None:
    # Halt evidence carries times as ISO strings (it is JSON); accept those as they come.
    if value is None or isinstance(value, datetime):
        return value
    return parse_datetime(value)


@transaction.atomic
def alert_raise(
    *,
    kind: str,
    severity: str,
    title: str,
    detail: str = "",
    evidence: dict[str, Any] | None = None,
    rollout=None,
    dedupe_key: str | None = None,
    first_failing_at: datetime | str | None = None,
) -> Alert:
    """Open an alert, or return the open one with the same `dedupe_key` (one cause, one alert).

    Not audited itself: every caller (halt, freeze) audits the change that caused it, and the
    alert row is the record of the raise.
    """
    if kind not in Alert.Kind.values or severity not in Alert.Severity.values:
        raise AlertError(f"unknown alert kind {kind!r} or severity {severity!r}")
    if dedupe_key:
        existing = Alert.objects.filter(dedupe_key=dedupe_key, acknowledged_at__isnull=True).first()
        if existing is not None:
            return existing
    try:
        # A savepoint: losing the race to the partial unique index must not spoil the caller's
        # transaction (a halt raises its alert inside its own).
        with transaction.atomic():
            alert = Alert.objects.create(
                kind=kind,
                severity=severity,
                title=title[:200],
                detail=detail,
                evidence=evidence or {},
                rollout=rollout,
                dedupe_key=dedupe_key or None,
                first_failing_at=_when(first_failing_at),
            )
    except IntegrityError:
        if not dedupe_key:
            raise
        # The other raiser committed first (the insert waited for it): theirs is the alert.
        return Alert.objects.get(dedupe_key=dedupe_key, acknowledged_at__isnull=True)
    # Nested: the row's own "kind" would overwrite the event's.
    broadcast_event("alert.raised", {"alert": alert_row(alert)}, groups=(WALL,))
    return alert


@transaction.atomic
def alert_acknowledge(*, alert: Alert, actor, note: str = "") -> Alert:
    """Record who took the alert. When two people ack at once, only the first is recorded;
    the second gets the alert back as the first left it (check `acknowledged_by`)."""
    if not getattr(actor, "is_authenticated", False):
        raise AlertError("only a signed-in person can acknowledge an alert")
    note = (note or "").strip()[:NOTE_MAX]
    now = timezone.now()
    # Conditional update: PostgreSQL re-checks the condition after waiting for a concurrent
    # ack's row lock, so the later one updates nothing.
    won = Alert.objects.filter(pk=alert.pk, acknowledged_at__isnull=True).update(
        acknowledged_by=actor, acknowledged_at=now, ack_note=note
    )
    alert.refresh_from_db()
    if not won:
        return alert
    audit_record(
        actor=actor,
        action="alert.acknowledge",
        obj=alert,
        reason=note,
        before={"acknowledged": False},
        after={"acknowledged": True, "acknowledged_at": now.isoformat()},
    )
    broadcast_event("alert.acknowledged", {"alert": alert_row(alert)}, groups=(WALL,))
    return alert
