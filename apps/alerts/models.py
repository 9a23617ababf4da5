from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone


class Alert(models.Model):
    """Something on-call must look at (a halt, a freeze, …), open until a person acknowledges it."""

    class Kind(models.TextChoices):
        HALT = "halt", "Halt"
        FREEZE = "freeze", "Freeze"
        UNCERTIFIED_COMBINATION = "uncertified_combination", "Uncertified combination"
        BUDGET_BREACH = "budget_breach", "Combination budget breach"
        COHORT_SILENT = "cohort_silent", "Cohort silent"
        OTHER = "other", "Other"

    class Severity(models.TextChoices):
        CRITICAL = "critical", "Critical"
        WARNING = "warning", "Warning"
        INFO = "info", "Info"

    kind = models.CharField(max_length=32, choices=Kind.choices)
    severity = models.CharField(max_length=16, choices=Severity.choices)
    title = models.CharField(max_length=200)
    detail = models.TextField(blank=True)
    evidence = models.JSONField(default=dict, blank=True)
    # The alert outlives its rollout: history stays readable after a cleanup.
    rollout = models.ForeignKey(
        "rollouts.Rollout", null=True, blank=True, on_delete=models.SET_NULL, related_name="alerts"
    )
    # NULL, not "": a NULL key never collides, so alerts without one are never folded together.
    dedupe_key = models.CharField(max_length=200, null=True, blank=True)  # noqa: DJ001
    created_at = models.DateTimeField(default=timezone.now)
    first_failing_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    ack_note = models.TextField(blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        constraints = [
            # One open alert per cause; once acknowledged, the same cause may raise a new one.
            models.UniqueConstraint(
                fields=["dedupe_key"], condition=Q(acknowledged_at__isnull=True), name="alert_open_dedupe_key_uniq"
            ),
            models.CheckConstraint(
                condition=Q(acknowledged_by__isnull=True) | Q(acknowledged_at__isnull=False),
                name="alert_ack_by_needs_ack_at",
            ),
        ]
        indexes = [
            # alerts.selectors.wall_alerts: newest first, open ones or recent ones.
            models.Index(fields=["-created_at"], name="alert_recent_idx"),
        ]

    def __str__(self) -> str:
        return f"[{self.severity}] {self.title}"

    @property
    def is_open(self) -> bool:
        return self.acknowledged_at is None


class WebhookEndpoint(models.Model):
    """An outside URL that receives every alert event (raised, acknowledged) as signed JSON."""

    name = models.CharField(max_length=80, unique=True)
    # Admin-only configuration: fleetweb POSTs to whatever an admin enters (see docs/alerts.md, SSRF).
    url = models.URLField("URL", max_length=500)
    # Kept as given: it is needed to sign every delivery (an HMAC key cannot be stored as a hash).
    secret = models.CharField(max_length=200)
    enabled = models.BooleanField(default=True)
    # Alert kinds this endpoint wants; empty means every kind.
    kinds = models.JSONField(default=list, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    def wants(self, kind: str) -> bool:
        return self.enabled and (not self.kinds or kind in self.kinds)

    @property
    def secret_hint(self) -> str:
        return f"…{self.secret[-4:]}" if len(self.secret) >= 12 else "…"


class WebhookDelivery(models.Model):
    """One alert event for one endpoint: the exact body sent, and where its attempts stand."""

    class Event(models.TextChoices):
        RAISED = "raised", "Raised"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        RETRYING = "retrying", "Retrying"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"

    OPEN_STATES = (State.PENDING, State.RETRYING)

    delivery_id = models.UUIDField(unique=True, editable=False)
    endpoint = models.ForeignKey(WebhookEndpoint, on_delete=models.CASCADE, related_name="deliveries")
    alert = models.ForeignKey(Alert, null=True, blank=True, on_delete=models.SET_NULL, related_name="deliveries")
    event = models.CharField(max_length=16, choices=Event.choices)
    # The body is fixed when the event happens: every attempt sends (and signs) the same bytes.
    body = models.TextField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(default=timezone.now)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    next_retry_at = models.DateTimeField(null=True, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        indexes = [
            # alerts.selectors.webhook_deliveries: an endpoint's log, newest first.
            models.Index(fields=["endpoint", "-created_at"], name="webhook_delivery_log_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.event} alert {self.alert_id} → {self.endpoint_id} ({self.state})"


class WebhookAttempt(models.Model):
    """One POST of a delivery: what came back (or what went wrong) and when the next try is due."""

    delivery = models.ForeignKey(WebhookDelivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveIntegerField()
    started_at = models.DateTimeField()
    duration_ms = models.PositiveIntegerField(default=0)
    status_code = models.PositiveIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True)
    response_excerpt = models.CharField(max_length=500, blank=True)
    next_retry_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [
            models.UniqueConstraint(fields=["delivery", "number"], name="webhook_attempt_number_uniq"),
        ]

    def __str__(self) -> str:
        return f"attempt {self.number}: {self.status_code or self.error}"

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


class CohortWatch(models.Model):
    """Whether a cohort was silent at its last check, so a silence raises one alert, not one per tick."""

    cohort = models.OneToOneField("fleet.Cohort", on_delete=models.CASCADE, related_name="silence_watch")
    silent = models.BooleanField(default=False)
    silent_since = models.DateTimeField(null=True, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    last_result = models.JSONField(default=dict, blank=True)

    class Meta:
        indexes = [
            # alerts.services.cohort_silence_check: least recently checked cohorts first.
            models.Index(fields=["checked_at"], name="cohort_watch_checked_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.cohort_id}: {'silent' if self.silent else 'ok'}"
