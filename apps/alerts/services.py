"""Raising and acknowledging alerts, their webhooks, and cohort-silence checks.

Raising and acknowledging broadcast to the wall and dashboard clients and enqueue one webhook
delivery task per enabled endpoint, all after commit.
"""

import logging
import uuid
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import URLValidator
from django.db import DatabaseError, IntegrityError, connection, transaction
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.audit.services import audit_record
from apps.live.broadcast import FLEET, WALL, broadcast_event, rollout_group

from . import webhooks
from .models import Alert, CohortWatch, WebhookAttempt, WebhookDelivery, WebhookEndpoint
from .selectors import alert_payload, alert_row, cohort_activity

log = logging.getLogger(__name__)

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
    broadcast_event("alert.raised", {"alert": alert_row(alert)}, groups=_groups(alert))
    _deliveries_enqueue(alert=alert, event=WebhookDelivery.Event.RAISED)
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
    broadcast_event("alert.acknowledged", {"alert": alert_row(alert)}, groups=_groups(alert))
    _deliveries_enqueue(alert=alert, event=WebhookDelivery.Event.ACKNOWLEDGED)
    return alert


def _groups(alert: Alert) -> tuple[str, ...]:
    # The wall shows alerts; dashboard pages (overview, the rollout's page) get the event too.
    groups = (WALL, FLEET)
    return (*groups, rollout_group(alert.rollout_id)) if alert.rollout_id else groups


# --- webhooks ----------------------------------------------------------------------------------


def _deliveries_enqueue(*, alert: Alert, event: str) -> list[WebhookDelivery]:
    """One delivery row per endpoint that wants this alert, in the caller's transaction (a rolled
    back alert leaves none), and one task each once it commits."""
    endpoints = [e for e in WebhookEndpoint.objects.filter(enabled=True) if e.wants(alert.kind)]
    if not endpoints:
        return []
    deliveries = []
    for endpoint in endpoints:
        delivery_id = uuid.uuid4()
        body = webhooks.body_for({"event": event, "delivery_id": str(delivery_id), "alert": alert_payload(alert)})
        deliveries.append(
            WebhookDelivery(delivery_id=delivery_id, endpoint=endpoint, alert=alert, event=event, body=body)
        )
    WebhookDelivery.objects.bulk_create(deliveries)
    ids = [d.pk for d in deliveries]

    def enqueue() -> None:
        from .tasks import webhook_deliver

        for pk in ids:
            webhook_deliver.delay(pk)

    # robust: a broker outage must not turn a committed halt into an error; the rows stay
    # pending and webhook_redeliver_stale picks them up.
    transaction.on_commit(enqueue, robust=True)
    return deliveries


def _backoff_s(attempt: int, retry_after_s: float | None) -> float:
    cfg = settings.FLEET
    delay = cfg["WEBHOOK_BACKOFF_S"] * 2 ** (attempt - 1)
    if retry_after_s is not None:
        delay = max(delay, retry_after_s)
    return min(delay, cfg["WEBHOOK_BACKOFF_MAX_S"])


def webhook_delivery_attempt(*, delivery_id: int) -> float | None:
    """Make the next attempt of a delivery; return seconds until the retry, or None when done.

    Safe to call twice (a re-delivered task): the attempt is claimed by a conditional update on
    the attempt counter, so two callers never both send attempt n. No transaction is held open
    while the request is in flight.
    """
    delivery = WebhookDelivery.objects.select_related("endpoint").filter(pk=delivery_id).first()
    if delivery is None or delivery.state not in WebhookDelivery.OPEN_STATES:
        return None
    number = delivery.attempts + 1
    started = timezone.now()
    claimed = WebhookDelivery.objects.filter(
        pk=delivery.pk, attempts=delivery.attempts, state__in=WebhookDelivery.OPEN_STATES
    ).update(attempts=number, last_attempt_at=started)
    if not claimed:
        return None
    endpoint = delivery.endpoint
    if endpoint.enabled:
        response = webhooks.post(
            url=endpoint.url,
            secret=endpoint.secret,
            body=delivery.body,
            event=delivery.event,
            delivery_id=str(delivery.delivery_id),
            timeout_s=settings.FLEET["WEBHOOK_TIMEOUT_S"],
        )
    else:
        response = webhooks.Response(None, error="endpoint disabled")
    retry = response.transient and endpoint.enabled and number < settings.FLEET["WEBHOOK_MAX_ATTEMPTS"]
    delay = _backoff_s(number, response.retry_after_s) if retry and not response.ok else None
    next_retry_at = timezone.now() + timedelta(seconds=delay) if delay is not None else None
    if response.ok:
        state = WebhookDelivery.State.SUCCEEDED
    else:
        state = WebhookDelivery.State.RETRYING if delay is not None else WebhookDelivery.State.FAILED
    with transaction.atomic():
        WebhookAttempt.objects.create(
            delivery=delivery,
            number=number,
            started_at=started,
            duration_ms=response.duration_ms,
            status_code=response.status_code,
            error=response.error[:300],
            response_excerpt=response.excerpt[:500],
            next_retry_at=next_retry_at,
        )
        WebhookDelivery.objects.filter(pk=delivery.pk).update(
            state=state,
            next_retry_at=next_retry_at,
            delivered_at=timezone.now() if response.ok else None,
        )
    return delay


def webhook_deliveries_stale(*, older_than_s: float = 300.0) -> list[int]:
    """Open deliveries whose task was evidently lost (broker outage at enqueue, a purged queue)."""
    cutoff = timezone.now() - timedelta(seconds=older_than_s)
    never_tried = WebhookDelivery.objects.filter(state=WebhookDelivery.State.PENDING, created_at__lt=cutoff)
    overdue = WebhookDelivery.objects.filter(state=WebhookDelivery.State.RETRYING, next_retry_at__lt=cutoff)
    return list((never_tried | overdue).values_list("pk", flat=True)[:500])


_url_validator = URLValidator(schemes=["http", "https"])


def _clean_endpoint(*, name: str, url: str, secret: str, kinds: list[str]) -> dict[str, str]:
    errors: dict[str, str] = {}
    if not name.strip():
        errors["name"] = "A name is required."
    try:
        _url_validator(url)
    except ValidationError:
        errors["url"] = "Enter an http:// or https:// URL."
    if len(secret) < 16:
        errors["secret"] = "The secret must be at least 16 characters."
    unknown = sorted(set(kinds) - set(Alert.Kind.values))
    if unknown:
        errors["kinds"] = f"Unknown alert kinds: {', '.join(unknown)}."
    return errors


def _endpoint_state(endpoint: WebhookEndpoint) -> dict[str, Any]:
    # The secret never goes into the audit log.
    return {"name": endpoint.name, "url": endpoint.url, "enabled": endpoint.enabled, "kinds": endpoint.kinds}


@transaction.atomic
def webhook_endpoint_create(
    *, actor, name: str, url: str, secret: str, kinds: list[str] | None = None, enabled: bool = True
) -> WebhookEndpoint:
    """Add an endpoint (admins only, checked by the view). Raises ValidationError naming the field."""
    kinds = sorted(set(kinds or []))
    errors = _clean_endpoint(name=name, url=url, secret=secret, kinds=kinds)
    if not errors and WebhookEndpoint.objects.filter(name=name.strip()).exists():
        errors["name"] = "An endpoint with this name exists."
    if errors:
        raise ValidationError(errors)
    endpoint = WebhookEndpoint.objects.create(
        name=name.strip(), url=url, secret=secret, kinds=kinds, enabled=enabled,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    audit_record(actor=actor, action="webhook.create", obj=endpoint, after=_endpoint_state(endpoint))
    return endpoint


@transaction.atomic
def webhook_endpoint_update(
    *, endpoint: WebhookEndpoint, actor, name: str, url: str, kinds: list[str], enabled: bool,
    secret: str = "",
) -> WebhookEndpoint:
    """Change an endpoint; an empty `secret` keeps the current one. Audited (without the secret)."""
    kinds = sorted(set(kinds or []))
    errors = _clean_endpoint(name=name, url=url, secret=secret or endpoint.secret, kinds=kinds)
    if not errors and WebhookEndpoint.objects.filter(name=name.strip()).exclude(pk=endpoint.pk).exists():
        errors["name"] = "An endpoint with this name exists."
    if errors:
        raise ValidationError(errors)
    endpoint = WebhookEndpoint.objects.select_for_update().get(pk=endpoint.pk)
    before = _endpoint_state(endpoint)
    endpoint.name, endpoint.url, endpoint.kinds, endpoint.enabled = name.strip(), url, kinds, enabled
    if secret:
        endpoint.secret = secret
    endpoint.save()
    after = {**_endpoint_state(endpoint), "secret_changed": bool(secret)}
    audit_record(actor=actor, action="webhook.update", obj=endpoint, before=before, after=after)
    return endpoint


# --- cohorts going silent ----------------------------------------------------------------------

# One cohort's aggregate may not hold the database longer than this (a huge filter cohort is
# skipped for this run, not allowed to stall the beat queue).
COHORT_QUERY_TIMEOUT_MS = 10_000


def _activity(cohort, now: datetime) -> dict[str, Any] | None:
    try:
        with transaction.atomic():
            if connection.vendor == "postgresql":
                with connection.cursor() as cursor:
                    cursor.execute(f"SET LOCAL statement_timeout = {COHORT_QUERY_TIMEOUT_MS}")
            return cohort_activity(cohort=cohort, now=now)
    except (DatabaseError, ValueError):
        # ValueError: FilterError, a cohort whose filter no longer parses.
        log.warning("cohort %s: activity check failed", cohort.pk, exc_info=True)
        return None


def _raise_silent(cohort, stats: dict[str, Any]) -> Alert:
    cfg = settings.FLEET
    nobody = stats["nobody_for_minutes"]
    ago = "never" if stats["newest"] is None else f"{stats['minutes_since_newest']:.0f} min ago"
    detail = (
        f"{stats['recent']} of {stats['total']} devices ({stats['share']:.0%}) checked in within the last "
        f"{stats['window_s'] / 60:.0f} min (threshold {cfg['COHORT_SILENT_MIN_SHARE']:.0%}); "
        f"last check-in from any member: {ago}."
    )
    return alert_raise(
        kind=Alert.Kind.COHORT_SILENT,
        severity=Alert.Severity.CRITICAL if nobody else Alert.Severity.WARNING,
        title=f"Cohort {cohort.name} went silent",
        detail=detail,
        evidence={"cohort_id": cohort.pk, "cohort": cohort.name, **stats},
        dedupe_key=f"cohort_silent:{cohort.pk}",
    )


def cohort_silence_check(*, now: datetime | None = None, limit: int | None = None) -> list[Alert]:
    """Check the least recently checked cohorts (at most `limit`); raise one alert per cohort
    that went silent since its last check. A cohort that recovers is re-armed for next time."""
    from django.db.models import F

    from apps.fleet.models import Cohort

    now = now or timezone.now()
    limit = limit or settings.FLEET["COHORT_SILENT_MAX_COHORTS"]
    oldest_first = F("silence_watch__checked_at").asc(nulls_first=True)
    raised = []
    for cohort in Cohort.objects.order_by(oldest_first, "pk")[:limit]:
        stats = _activity(cohort, now)
        watch, _ = CohortWatch.objects.get_or_create(cohort=cohort)
        if stats is None:
            CohortWatch.objects.filter(pk=watch.pk).update(checked_at=now)
            continue
        with transaction.atomic():
            if stats["silent"]:
                # Conditional update: two scans at once raise one alert.
                went_silent = CohortWatch.objects.filter(pk=watch.pk, silent=False).update(
                    silent=True, silent_since=now, checked_at=now, last_result=stats
                )
                if went_silent:
                    raised.append(_raise_silent(cohort, stats))
                else:
                    CohortWatch.objects.filter(pk=watch.pk).update(checked_at=now, last_result=stats)
            else:
                CohortWatch.objects.filter(pk=watch.pk).update(
                    silent=False, silent_since=None, checked_at=now, last_result=stats
                )
    return raised
