"""Reads for governance: certification of live combinations, spreads per scope, rollout predictions.

Everything iterates Combination rows (dozens to thousands, `device_count` maintained), except
the per-cohort spread of a rollout's population: one GROUP BY over that population's devices,
cached briefly for pages and computed fresh when a rollout starts.
"""

from typing import Any

from django.core.cache import cache
from django.db.models import BooleanField, Case, Count, Max, Q, Value, When

from apps.fleet.models import Cohort, Combination, Component, Device
from apps.rollouts.models import Rollout
from apps.rollouts.selection import cohort_device_ids, cohorts_q

from .models import BudgetOverride, CertifiedCombination, CombinationBudget
from .patterns import is_certified
from .prediction import (
    Cell,
    Limits,
    Prediction,
    SpreadMetrics,
    Versions,
    WavePlan,
    predict,
    vkey,
)

PREDICTION_CACHE_S = 30
PLAN_STATES = (Rollout.State.DRAFT, Rollout.State.AWAITING_APPROVAL, Rollout.State.SCHEDULED)


def certified_patterns() -> list[dict[str, str]]:
    return list(CertifiedCombination.objects.values_list("patterns", flat=True))


def live_combinations() -> list[dict[str, Any]]:
    """Every live combination with its devices and whether a certification covers it."""
    certified = certified_patterns()
    position = {name: i for i, name in enumerate(Component.objects.values_list("name", flat=True))}

    def ordered(versions: dict) -> list[tuple[str, str]]:
        return sorted(versions.items(), key=lambda item: (position.get(item[0], len(position)), item[0]))

    rows = Combination.objects.filter(device_count__gt=0).order_by("-device_count", "key").values_list(
        "pk", "key", "versions", "device_count", "first_seen"
    )
    total = 0
    result = []
    for pk, key, versions, count, first_seen in rows:
        total += count
        result.append({"id": pk, "key": key, "versions": ordered(versions or {}), "devices": count,
                       "certified": is_certified(certified, versions or {}), "first_seen": first_seen,
                       "patterns": ", ".join(f"{c}={v}" for c, v in sorted((versions or {}).items()))})
    for row in result:
        row["share"] = 100.0 * row["devices"] / total if total else 0.0
    return result


def uncertified_summary(*, top: int = 5) -> dict[str, Any]:
    """For the overview: devices on uncertified combinations, and the biggest such combinations."""
    rows = live_combinations()
    devices = sum(r["devices"] for r in rows)
    uncertified = [r for r in rows if not r["certified"]]
    bad = sum(r["devices"] for r in uncertified)
    return {
        "devices": devices,
        "uncertified_devices": bad,
        "certified_devices": devices - bad,
        "uncertified_share": 100.0 * bad / devices if devices else 0.0,
        "certified_share": 100.0 * (devices - bad) / devices if devices else 0.0,
        "combinations": len(rows),
        "uncertified_combinations": len(uncertified),
        "top": uncertified[:top],
        "has_certifications": CertifiedCombination.objects.exists(),
    }


def combination_is_certified(combination: Combination) -> bool:
    return is_certified(certified_patterns(), combination.versions or {})


def fleet_spread() -> dict[Versions, int]:
    rows = Combination.objects.filter(device_count__gt=0).values_list("versions", "device_count")
    spread: dict[Versions, int] = {}
    for versions, count in rows:
        key = vkey(versions)
        spread[key] = spread.get(key, 0) + count
    return spread


def cohort_spread(cohort: Cohort) -> dict[Versions, int]:
    """One GROUP BY over the cohort's devices (for the periodic budget check, not for pages)."""
    rows = Device.objects.filter(pk__in=cohort_device_ids(cohort)).values("combination__versions").annotate(
        n=Count("pk")
    )
    spread: dict[Versions, int] = {}
    for row in rows:
        key = vkey(row["combination__versions"] or {})
        spread[key] = spread.get(key, 0) + row["n"]
    return spread


def population_cells(cohorts: list[Cohort]) -> list[Cell]:
    """Devices of any of the cohorts, grouped by combination and by which cohorts they are in."""
    cohorts = list({c.pk: c for c in cohorts}.values())
    if not cohorts:
        return []
    flags = {
        f"in_{c.pk}": Case(When(Q(pk__in=cohort_device_ids(c)), then=Value(True)), default=Value(False),
                           output_field=BooleanField())
        for c in cohorts
    }
    rows = (
        Device.objects.filter(cohorts_q(cohorts)).annotate(**flags)
        .values("combination_id", *flags).annotate(n=Count("pk")).order_by()
    )
    rows = list(rows)
    ids = {r["combination_id"] for r in rows if r["combination_id"] is not None}
    versions = dict(Combination.objects.filter(pk__in=ids).values_list("pk", "versions"))
    return [
        Cell(versions=vkey(versions.get(r["combination_id"]) or {}),
             cohorts=frozenset(c.pk for c in cohorts if r[f"in_{c.pk}"]), count=r["n"])
        for r in rows
    ]


def _versions_label(versions: Versions) -> str:
    return " · ".join(f"{c} {v}" for c, v in versions) or "(nothing)"


def _scope_row(name: str, metrics: SpreadMetrics, peak: int | None, limit: Limits | None) -> dict[str, Any]:
    combos = peak if peak is not None else metrics.combinations
    return {
        "name": name,
        "combinations": combos,
        "combinations_after": metrics.combinations,
        "share": metrics.outside_share,
        "devices": metrics.devices,
        "max_combinations": limit.max_combinations if limit else None,
        "max_outside_share": limit.max_outside_share if limit else None,
        "top_k": limit.top_k if limit else 3,
        "over_combinations": bool(limit and limit.max_combinations is not None and combos > limit.max_combinations),
        "over_share": bool(limit and limit.max_outside_share is not None
                           and metrics.outside_share > limit.max_outside_share + 1e-9),
    }


def plan_prediction(*, targets: dict[str, str], waves: list[WavePlan], cohorts: list[Cohort]) -> dict[str, Any]:
    """Predict a plan against every budget; a template-ready dict (see prediction.py for the model)."""
    budgets = list(CombinationBudget.objects.select_related("cohort"))
    limits = {b.cohort_id: b.limits() for b in budgets}
    names: dict[int | None, str] = {None: "Whole fleet"}
    names.update({b.cohort_id: f"Cohort {b.cohort.name}" for b in budgets if b.cohort_id})
    budget_cohorts = [b.cohort for b in budgets if b.cohort_id]
    prediction: Prediction = predict(fleet=fleet_spread(), cells=population_cells([*cohorts, *budget_cohorts]),
                                     targets=targets, waves=waves, limits=limits)
    order = [None, *sorted((s for s in prediction.current if s is not None), key=lambda s: names.get(s, ""))]
    breached = {(b.wave, b.scope) for b in prediction.breaches}
    rows = [{"label": "Now", "devices": None, "new": [], "breach": False,
             "scopes": [_scope_row(names.get(s, f"cohort #{s}"), prediction.current[s], None, limits.get(s))
                        for s in order]}]
    for step in prediction.steps:
        rows.append({
            "label": step.label,
            "devices": step.devices,
            "new": [_versions_label(v) for v in step.new_combinations],
            "breach": any((step.index, s) in breached for s in order),
            "scopes": [
                {**_scope_row(names.get(s, f"cohort #{s}"), step.scopes[s].after, step.scopes[s].peak_combinations,
                              limits.get(s)),
                 "breach": (step.index, s) in breached}
                for s in order
            ],
        })
    after = prediction.after
    return {
        "rows": rows,
        "scope_heads": [{"name": names.get(s, f"cohort #{s}"), "top_k": limits[s].top_k if s in limits else 3}
                        for s in order],
        "has_budgets": bool(budgets),
        "breaks_budget": prediction.breaks_budget,
        "breach_messages": [b.describe(names.get(b.scope, "")) for b in prediction.breaches],
        "budget_names": [names.get(b.cohort_id, "") for b in budgets],
        "after_combinations": after[None].combinations,
        "now_combinations": prediction.current[None].combinations,
    }


def rollout_plan(rollout: Rollout) -> tuple[dict[str, str], list[WavePlan], list[Cohort]]:
    targets = {t.component.name: t.release.version for t in rollout.targets.select_related("component", "release")}
    waves = list(rollout.waves.select_related("cohort").order_by("index"))
    plans = [WavePlan(cohort=w.cohort_id, size_kind=w.size_kind, size_value=w.size_value,
                      label=w.name or f"Wave {w.index + 1}") for w in waves]
    return targets, plans, [w.cohort for w in waves if w.cohort_id]


def rollout_prediction(rollout: Rollout, *, cached: bool = True) -> dict[str, Any]:
    """The prediction for a rollout's plan; pages may reuse one computed in the last 30 s."""
    # Keyed by the budgets' last change too, so an edited budget shows at once.
    stamp = CombinationBudget.objects.aggregate(n=Count("pk"), at=Max("updated_at"))
    key = f"governance:prediction:{rollout.pk}:{stamp['n']}:{stamp['at'].timestamp() if stamp['at'] else 0}"
    if cached:
        hit = cache.get(key)
        if hit is not None:
            return hit
    targets, waves, cohorts = rollout_plan(rollout)
    result = plan_prediction(targets=targets, waves=waves, cohorts=cohorts)
    override = BudgetOverride.objects.filter(rollout=rollout).select_related("created_by").first()
    result["override"] = (
        {"by": override.created_by.get_username() if override.created_by else "", "reason": override.reason,
         "at": override.created_at}
        if override else None
    )
    cache.set(key, result, PREDICTION_CACHE_S)
    return result


def budgets() -> list[dict[str, Any]]:
    """Every budget with its scope's spread now (one GROUP BY per cohort budget)."""
    from .prediction import current_breaches, spread_metrics

    result = []
    fleet = None
    for budget in CombinationBudget.objects.select_related("cohort", "updated_by"):
        if budget.cohort_id is None:
            fleet = fleet if fleet is not None else fleet_spread()
            spread = fleet
        else:
            spread = cohort_spread(budget.cohort)
        result.append({"budget": budget, "now": spread_metrics(spread, budget.top_k),
                       "breaches": [b.describe(budget.scope_name) for b in current_breaches(spread, budget.limits())]})
    return result
