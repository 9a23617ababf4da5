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


def alert_payload(alert: Alert) -> dict[str, Any]:
    """The alert as a webhook body carries it: the wall's row plus evidence and the rollout's name."""
    row = alert_row(alert)
    rollout = alert.rollout
    row["evidence"] = alert.evidence or {}
    row["rollout"] = {"id": rollout.pk, "name": rollout.name} if rollout is not None else None
    return row


def cohort_activity(*, cohort, now: datetime | None = None) -> dict[str, Any]:
    """How many of a cohort's devices checked in lately: one aggregate query over its devices.

    `silent` follows the FLEET knobs: under COHORT_SILENT_MIN_SHARE of the devices seen within
    COHORT_SILENT_INTERVALS poll intervals, or no member seen for COHORT_SILENT_MINUTES.
    """
    from django.conf import settings
    from django.db.models import Count, Max

    cfg = settings.FLEET
    now = now or timezone.now()
    window_s = cfg["POLL_INTERVAL_S"] * cfg["COHORT_SILENT_INTERVALS"]
    # Device.last_seen is indexed: the recent count and the max are range/ordered reads of it.
    counts = cohort.devices().aggregate(
        total=Count("pk"),
        recent=Count("pk", filter=Q(last_seen__gte=now - timedelta(seconds=window_s))),
        newest=Max("last_seen"),
    )
    total, recent, newest = counts["total"], counts["recent"], counts["newest"]
    share = recent / total if total else 0.0
    minutes_since = (now - newest).total_seconds() / 60 if newest else None
    nobody = newest is None or minutes_since >= cfg["COHORT_SILENT_MINUTES"]
    big_enough = total >= cfg["COHORT_SILENT_MIN_DEVICES"] and total > 0
    return {
        "total": total,
        "recent": recent,
        "share": round(share, 4),
        "window_s": window_s,
        "newest": _iso(newest),
        "minutes_since_newest": round(minutes_since, 1) if minutes_since is not None else None,
        "nobody_for_minutes": nobody,
        "silent": big_enough and (share < cfg["COHORT_SILENT_MIN_SHARE"] or nobody),
        "checked_at": now.isoformat(),
    }


def webhook_endpoints() -> list:
    """Every endpoint with its latest delivery's state (admin page)."""
    from django.db.models import Count, OuterRef, Subquery

    from .models import WebhookDelivery, WebhookEndpoint

    latest = WebhookDelivery.objects.filter(endpoint=OuterRef("pk")).order_by("-created_at", "-id")
    return list(
        WebhookEndpoint.objects.annotate(
            delivery_count=Count("deliveries"),
            last_state=Subquery(latest.values("state")[:1]),
            last_at=Subquery(latest.values("created_at")[:1]),
        ).order_by("name")
    )


def webhook_deliveries(*, endpoint=None, limit: int = 100) -> list:
    """Newest deliveries (of one endpoint, or all) with their attempts, for the delivery log."""
    from django.db.models import Prefetch

    from .models import WebhookAttempt, WebhookDelivery

    deliveries = WebhookDelivery.objects.select_related("endpoint", "alert").prefetch_related(
        Prefetch("attempt_log", queryset=WebhookAttempt.objects.order_by("number"))
    )
    if endpoint is not None:
        deliveries = deliveries.filter(endpoint=endpoint)
    return list(deliveries.order_by("-created_at", "-id")[:limit])
