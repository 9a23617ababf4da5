"""Governance pages: certified combinations, live combinations, budgets. Viewers read, admins change."""

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.accounts.roles import ADMIN, OPERATOR, VIEWER, has_role, role_required
from apps.fleet.models import Cohort, Release

from . import selectors, services
from .forms import BudgetForm, CertifyForm
from .models import CertifiedCombination, CombinationBudget
from .prediction import WavePlan


def _certified_page(request, form: CertifyForm, status: int = 200):
    return render(request, "governance/certified.html", {
        "form": form,
        "certified": CertifiedCombination.objects.select_related("created_by"),
        "summary": selectors.uncertified_summary(top=0),
        "can_edit": has_role(request.user, ADMIN),
    }, status=status)


@role_required(VIEWER)
def certified_list(request):
    """The certified patterns; admins add one here (POST)."""
    if request.method != "POST":
        return _certified_page(request, CertifyForm(initial={"patterns": request.GET.get("patterns", "")[:1000]}))
    if not has_role(request.user, ADMIN):
        _forbidden(request)
    form = CertifyForm(request.POST)
    if form.is_valid():
        try:
            certified = services.certified_combination_create(
                patterns=form.cleaned_data["patterns"], note=form.cleaned_data["note"], actor=request.user
            )
        except services.GovernanceError as exc:
            form.add_error("patterns", exc.message)
        else:
            messages.success(request, f"Certified: {certified}")
            return redirect("governance:certified")
    return _certified_page(request, form, status=400)


def _forbidden(request):
    raise PermissionDenied("this needs the admin role")


@require_POST
@role_required(ADMIN)
def certified_delete(request, pk: int):
    certified = get_object_or_404(CertifiedCombination, pk=pk)
    label = str(certified)
    services.certified_combination_delete(certified=certified, actor=request.user,
                                          reason=request.POST.get("reason", "")[:500])
    messages.success(request, f"Certification withdrawn: {label}")
    return redirect("governance:certified")


@role_required(VIEWER)
def combination_list(request):
    """Every live combination, certified or not, with its devices."""
    return render(request, "governance/combinations.html", {
        "rows": selectors.live_combinations(),
        "summary": selectors.uncertified_summary(top=0),
        "can_edit": has_role(request.user, ADMIN),
    })


def _budgets_page(request, form: BudgetForm, status: int = 200):
    return render(request, "governance/budgets.html", {
        "form": form, "budgets": selectors.budgets(), "can_edit": has_role(request.user, ADMIN),
    }, status=status)


@role_required(VIEWER)
def budget_list(request):
    """Budgets per scope with the spread now; admins set one here (POST: create or replace)."""
    if request.method != "POST":
        return _budgets_page(request, BudgetForm())
    if not has_role(request.user, ADMIN):
        _forbidden(request)
    form = BudgetForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            budget = services.budget_set(
                cohort=data["cohort"], max_combinations=data["max_combinations"],
                max_outside_share=data["max_outside_share"], top_k=data["top_k"], note=data["note"],
                actor=request.user,
            )
        except services.GovernanceError as exc:
            form.add_error(exc.field if exc.field in form.fields else None, exc.message)
        else:
            messages.success(request, f"Budget saved for the {budget.scope_name}.")
            return redirect("governance:budgets")
    return _budgets_page(request, form, status=400)


@require_POST
@role_required(ADMIN)
def budget_delete(request, pk: int):
    budget = get_object_or_404(CombinationBudget, pk=pk)
    name = budget.scope_name
    services.budget_delete(budget=budget, actor=request.user, reason=request.POST.get("reason", "")[:500])
    messages.success(request, f"Budget removed for the {name}.")
    return redirect("governance:budgets")


def _bad(field: str, message: str) -> JsonResponse:
    return JsonResponse({"error": message, "field": field}, status=400)


@role_required(OPERATOR)
def plan_preview(request):
    """The new-rollout form's prediction panel (an HTML fragment) for a plan not saved yet.

    `release=<id>` (repeated) and `wave=<cohort id or empty for the rest>:<percent|count>:<size>` (repeated).
    """
    ids = request.GET.getlist("release")
    if not ids or not all(i.isdigit() for i in ids):
        return _bad("release", "choose at least one release")
    releases = list(Release.objects.filter(pk__in=[int(i) for i in ids]).select_related("component"))
    if len(releases) != len(set(ids)):
        return _bad("release", "unknown release")
    targets = {r.component.name: r.version for r in releases}
    if len(targets) != len(releases):
        return _bad("release", "a rollout targets one release per component")
    raw_waves = request.GET.getlist("wave")[:10]
    if not raw_waves:
        return _bad("wave", "a rollout needs at least one wave")
    plans: list[WavePlan] = []
    cohort_ids: set[int] = set()
    for index, raw in enumerate(raw_waves):
        cohort, _, rest = raw.partition(":")
        kind, _, value = rest.partition(":")
        try:
            size = float(value)
        except ValueError:
            return _bad("wave", f"wave {index + 1}: the size must be a number")
        if kind not in ("percent", "count") or size < 0 or (cohort and not cohort.isdigit()):
            return _bad("wave", f"wave {index + 1}: expected <cohort>:<percent|count>:<size>")
        if not cohort and index == 0:
            return _bad("wave", "wave 1 needs a cohort")
        if cohort:
            cohort_ids.add(int(cohort))
        plans.append(WavePlan(cohort=int(cohort) if cohort else None, size_kind=kind, size_value=size,
                              label=f"Wave {index + 1}"))
    cohorts = list(Cohort.objects.filter(pk__in=cohort_ids))
    if len(cohorts) != len(cohort_ids):
        return _bad("wave", "unknown cohort")
    prediction = selectors.plan_prediction(targets=targets, waves=plans, cohorts=cohorts)
    return render(request, "governance/_prediction.html", {"prediction": prediction, "preview": True})
