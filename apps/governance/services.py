"""Every change to certified combinations, budgets and budget overrides: keyword-only, atomic, audited."""

from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction

from apps.accounts.roles import ADMIN, has_role
from apps.audit.services import audit_record
from apps.fleet.models import Cohort

from .models import BudgetOverride, CertifiedCombination, CombinationBudget
from .patterns import describe, parse_patterns, pattern_error

NOTE_MAX = 500


class GovernanceError(Exception):
    """A governance request that cannot be done; `field` names the input at fault."""

    def __init__(self, message: str, *, field: str | None = None):
        super().__init__(message)
        self.message = message
        self.field = field


def _require_admin(actor, what: str) -> None:
    if not has_role(actor, ADMIN):
        raise GovernanceError(f"only an admin can {what}", field="actor")


@transaction.atomic
def certified_combination_create(*, patterns: dict[str, str] | str, actor, note: str = "") -> CertifiedCombination:
    """Mark combinations as tested: `{"os": "39.*", "agent": "1.4.2"}` or the text `os=39.*, agent=1.4.2`."""
    _require_admin(actor, "certify combinations")
    if isinstance(patterns, str):
        patterns, errors = parse_patterns(patterns)
    else:
        errors = [e for c, p in (patterns or {}).items() if (e := pattern_error(c, p))]
        if not patterns:
            errors.append("name at least one component, e.g. os=39.*")
    if errors:
        raise GovernanceError("; ".join(errors), field="patterns")
    certified = CertifiedCombination.objects.create(patterns=dict(patterns), note=(note or "").strip()[:NOTE_MAX],
                                                    created_by=actor)
    audit_record(actor=actor, action="governance.certify", obj=certified, reason=certified.note,
                 after={"patterns": certified.patterns})
    return certified


@transaction.atomic
def certified_combination_delete(*, certified: CertifiedCombination, actor, reason: str = "") -> None:
    _require_admin(actor, "withdraw a certification")
    before = {"patterns": certified.patterns, "note": certified.note}
    audit_record(actor=actor, action="governance.uncertify", obj=certified, reason=(reason or "").strip(),
                 before=before)
    certified.delete()


def _budget_state(budget: CombinationBudget | None) -> dict[str, Any] | None:
    if budget is None:
        return None
    return {"scope": budget.scope_name, "max_combinations": budget.max_combinations,
            "max_outside_share": budget.max_outside_share, "top_k": budget.top_k, "note": budget.note}


@transaction.atomic
def budget_set(
    *,
    cohort: Cohort | None,
    actor,
    max_combinations: int | None = None,
    max_outside_share: float | None = None,
    top_k: int = 3,
    note: str = "",
) -> CombinationBudget:
    """Create or change the budget of the fleet (cohort None) or of one cohort."""
    _require_admin(actor, "change a combination budget")
    if max_combinations is not None and max_combinations < 1:
        raise GovernanceError("max live combinations must be at least 1", field="max_combinations")
    if max_outside_share is not None and not 0 <= max_outside_share <= 100:
        raise GovernanceError("the share outside the top K is a percent (0–100)", field="max_outside_share")
    if not 1 <= top_k <= 100:
        raise GovernanceError("K must be between 1 and 100", field="top_k")
    if max_combinations is None and max_outside_share is None:
        raise GovernanceError("set at least one limit", field="max_combinations")
    budget = CombinationBudget.objects.select_for_update().filter(cohort=cohort).order_by("pk").first()
    before = _budget_state(budget)
    if budget is None:
        budget = CombinationBudget(cohort=cohort)
    budget.max_combinations = max_combinations
    budget.max_outside_share = max_outside_share
    budget.top_k = top_k
    budget.note = (note or "").strip()[:NOTE_MAX]
    budget.updated_by = actor if getattr(actor, "is_authenticated", False) else None
    try:
        # Two admins creating the same scope at once: the loser hits the unique constraint
        # (select_for_update cannot lock a row that does not exist yet).
        with transaction.atomic():
            budget.save()
    except IntegrityError:
        raise GovernanceError(
            "another admin just set a budget for this scope; reload and try again", field="max_combinations"
        ) from None
    audit_record(actor=actor, action="governance.budget_set", obj=budget, before=before, after=_budget_state(budget))
    return budget


@transaction.atomic
def budget_delete(*, budget: CombinationBudget, actor, reason: str = "") -> None:
    _require_admin(actor, "remove a combination budget")
    audit_record(actor=actor, action="governance.budget_delete", obj=budget, reason=(reason or "").strip(),
                 before=_budget_state(budget))
    budget.delete()


@dataclass(frozen=True)
class Refusal:
    message: str
    field: str


def rollout_budget_gate(*, rollout, actor, override: bool = False, reason: str = "") -> Refusal | None:
    """Called by rollout start (inside its transaction, rollout locked): None lets it start.

    A plan that breaks a budget is refused unless an admin overrides it with a reason; the
    override is recorded and audited (`rollout.budget_override`) and holds for later starts of
    the same rollout (e.g. the engine's scheduled start). Rollbacks are never refused: they
    are how a fleet gets out of trouble.
    """
    from .selectors import rollout_prediction

    if rollout.rollback_of_id is not None or not CombinationBudget.objects.exists():
        return None
    plan = rollout_prediction(rollout, cached=False)
    if not plan["breaks_budget"]:
        return None
    if BudgetOverride.objects.filter(rollout=rollout).exists():
        return None
    summary = "; ".join(plan["breach_messages"])
    if not override:
        return Refusal(f"the plan breaks the combination budget ({summary}); an admin may override it with a reason",
                       "budget_override")
    if not has_role(actor, ADMIN):
        return Refusal("only an admin can override the combination budget", "budget_override")
    reason = (reason or "").strip()
    if not reason:
        return Refusal("a budget override needs a reason", "reason")
    BudgetOverride.objects.create(rollout=rollout, reason=reason, breaches=plan["breach_messages"], created_by=actor)
    audit_record(actor=actor, action="rollout.budget_override", obj=rollout, reason=reason,
                 after={"breaches": plan["breach_messages"], "budgets": plan["budget_names"]})
    return None


__all__ = [
    "GovernanceError",
    "Refusal",
    "budget_delete",
    "budget_set",
    "certified_combination_create",
    "certified_combination_delete",
    "describe",
    "rollout_budget_gate",
]
