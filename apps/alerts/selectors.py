"""Reads of alerts for the wall screen (its snapshot) and the events the services send."""

from datetime import datetime, timedelta
from typing import Any

from django.db.models import Q
from django.utils import timezone

from .models import Alert

# Acknowledged alerts stay on the wall this long, so the room sees who took them.
RECENT_ACKED_H = 24
WALL_LIMIT = 20


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def detection_delay_s(alert: Alert) -> float | None:
    """Seconds from the first failing report to the halt (halts only; None when unknown)."""
    if alert.kind != Alert.Kind.HALT or alert.first_failing_at is None:
        return None
    halted = alert.created_at
    raw = (alert.evidence or {}).get("halted_at")
    if isinstance(raw, str):
        try:
            halted = datetime.fromisoformat(raw)
        except ValueError:
            pass
    return max(0.0, (halted - alert.first_failing_at).total_seconds())


def alert_row(alert: Alert) -> dict[str, Any]:
    """One alert as the wall and the broadcast events carry it (JSON-ready, times in ISO 8601)."""
    by = alert.acknowledged_by
    return {
        "id": alert.pk,
        "kind": alert.kind,
        "kind_label": alert.get_kind_display(),
        "severity": alert.severity,
        "title": alert.title,
        "detail": alert.detail,
        "rollout": alert.rollout_id,
        "created_at": _iso(alert.created_at),
        "first_failing_at": _iso(alert.first_failing_at),
        "detection_delay_s": detection_delay_s(alert),
        "open": alert.is_open,
        "acknowledged_by": by.get_username() if by else ("(deleted user)" if alert.acknowledged_at else None),
        "acknowledged_at": _iso(alert.acknowledged_at),
        "ack_note": alert.ack_note,
    }


def wall_alerts(*, limit: int = WALL_LIMIT) -> list[dict[str, Any]]:
    """Newest first: every open alert, and those acknowledged in the last RECENT_ACKED_H hours."""
    recent = timezone.now() - timedelta(hours=RECENT_ACKED_H)
    alerts = (
        Alert.objects.filter(Q(acknowledged_at__isnull=True) | Q(created_at__gte=recent))
        .select_related("acknowledged_by")
        .order_by("-created_at", "-id")[:limit]
    )
    return [alert_row(alert) for alert in alerts]
