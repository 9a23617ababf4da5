from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q, Value
from django.db.models.functions import Coalesce

from apps.fleet.models import Cohort


class CertifiedCombination(models.Model):
    """Combinations an admin declared tested: a version pattern per named component."""

    # {"os": "39.*", "agent": "1.4.2"}; components not named may run anything.
    patterns = models.JSONField()
    note = models.CharField(max_length=500, blank=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        from .patterns import describe

        return describe(self.patterns)


class CombinationBudget(models.Model):
    """Limits on live combinations for the whole fleet (no cohort) or for one cohort."""

    cohort = models.OneToOneField(Cohort, null=True, blank=True, on_delete=models.CASCADE, related_name="budget")
    max_combinations = models.PositiveIntegerField(null=True, blank=True, validators=[MinValueValidator(1)],
                                                   help_text="empty: no limit")
    max_outside_share = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0), MaxValueValidator(100)],
        help_text="percent of devices allowed outside the top K combinations; empty: no limit",
    )
    top_k = models.PositiveSmallIntegerField(default=3, validators=[MinValueValidator(1), MaxValueValidator(100)])
    note = models.CharField(max_length=500, blank=True)
    updated_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL,
                                   related_name="+")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["cohort__name"]
        constraints = [
            # At most one fleet-wide budget (cohort-scoped ones are unique through the one-to-one).
            models.UniqueConstraint(Coalesce("cohort", Value(0)), name="one_budget_per_scope"),
            models.CheckConstraint(
                condition=Q(max_outside_share__isnull=True) | Q(max_outside_share__gte=0, max_outside_share__lte=100),
                name="budget_share_is_percent",
            ),
        ]

    def __str__(self) -> str:
        return f"budget: {self.scope_name}"

    @property
    def scope_name(self) -> str:
        return f"cohort {self.cohort.name}" if self.cohort_id else "whole fleet"

    def limits(self):
        from .prediction import Limits

        return Limits(max_combinations=self.max_combinations, max_outside_share=self.max_outside_share,
                      top_k=self.top_k)


class BudgetOverride(models.Model):
    """An admin let a rollout start although its plan breaks a combination budget."""

    rollout = models.ForeignKey("rollouts.Rollout", on_delete=models.CASCADE, related_name="budget_overrides")
    reason = models.TextField()
    breaches = models.JSONField(default=list)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"override for rollout {self.rollout_id}"
