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
