"""Raising the governance alerts (uncertified combination, budget breach) through apps.alerts."""

from datetime import timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.alerts.models import Alert
from apps.alerts.services import alert_raise
from apps.fleet.models import Combination

from .models import CombinationBudget
from .patterns import is_certified
from .prediction import current_breaches
from .selectors import certified_patterns, cohort_spread, fleet_spread


def uncertified_key(combination_id: int) -> str:
    return f"uncertified:combination:{combination_id}"


def budget_key(budget_id: int) -> str:
    return f"budget:{budget_id}"


def uncertified_combination_alert(*, combination_id: int) -> str:
    combination = Combination.objects.filter(pk=combination_id).first()
    if combination is None:
        return "gone"
    if not combination.versions:
        return "empty"
    if is_certified(certified_patterns(), combination.versions):
        return "certified"
    key = uncertified_key(combination.pk)
    # Once per combination, ever: an acknowledged alert is not raised again by a re-run.
    if Alert.objects.filter(dedupe_key=key).exists():
        return "known"
    label = ", ".join(f"{c} {v}" for c, v in sorted(combination.versions.items()))
    with transaction.atomic():
        alert_raise(
            kind=Alert.Kind.UNCERTIFIED_COMBINATION,
            severity=Alert.Severity.WARNING,
            title=f"Uncertified combination in the field: {label}"[:200],
            detail=f"Devices report {label}, which no certified combination covers.",
            evidence={"combination": combination.pk, "key": combination.key, "versions": combination.versions,
                      "devices": combination.device_count, "first_seen": combination.first_seen.isoformat()},
            dedupe_key=key,
        )
    return "raised"


def uncertified_sweep() -> int:
    """Live combinations first seen recently that have no alert yet (lost hooks, broker outages)."""
    since = timezone.now() - timedelta(hours=settings.GOVERNANCE["SWEEP_LOOKBACK_H"])
    raised = 0
    for pk in Combination.objects.filter(device_count__gt=0, first_seen__gte=since).values_list("pk", flat=True):
        raised += uncertified_combination_alert(combination_id=pk) == "raised"
    return raised


def budget_breach_alerts() -> dict:
    realert_after = timedelta(hours=settings.GOVERNANCE["BUDGET_REALERT_H"])
    now = timezone.now()
    fleet = None
    result = {"budgets": 0, "breached": 0, "raised": 0}
    for budget in CombinationBudget.objects.select_related("cohort"):
        result["budgets"] += 1
        if budget.cohort_id is None:
            fleet = fleet if fleet is not None else fleet_spread()
            spread = fleet
        else:
            spread = cohort_spread(budget.cohort)
        breaches = current_breaches(spread, budget.limits(), budget.cohort_id)
        if not breaches:
            continue
        result["breached"] += 1
        key = budget_key(budget.pk)
        # Someone acknowledged this breach recently: do not nag again before the re-alert time.
        if Alert.objects.filter(dedupe_key=key, acknowledged_at__gte=now - realert_after).exists():
            continue
        messages = [b.describe(budget.scope_name) for b in breaches]
        with transaction.atomic():
            alert = alert_raise(
                kind=Alert.Kind.BUDGET_BREACH,
                severity=Alert.Severity.WARNING,
                title=f"Combination budget breached: {budget.scope_name}"[:200],
                detail="; ".join(messages),
                evidence={"budget": budget.pk, "scope": budget.scope_name, "breaches": messages,
                          "max_combinations": budget.max_combinations,
                          "max_outside_share": budget.max_outside_share, "top_k": budget.top_k},
                dedupe_key=key,
            )
        result["raised"] += alert.created_at >= now
    return result
