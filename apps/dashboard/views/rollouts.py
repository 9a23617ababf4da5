from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_POST

from apps.accounts.roles import OPERATOR, VIEWER, has_role, role_required
from apps.fleet.models import Cohort
from apps.governance.selectors import PLAN_STATES, rollout_prediction
from apps.rollouts import services
from apps.rollouts.models import Rollout
from apps.rollouts.selectors import rollout_health_series, wave_preview

from .. import selectors
from ..forms import ReasonForm, RolloutForm, WaveFormSet

# Verbs whose service requires a reason; the others take an optional one.
NEEDS_REASON = {"pause", "resume", "abort", "rollback", "unfreeze"}
# A start refused by the combination budget names one of these fields (apps.governance).
BUDGET_FIELDS = {"budget_override", "reason"}


@role_required(VIEWER)
def rollout_list(request):
    return render(request, "dashboard/rollouts.html", {"snapshot": selectors.rollouts_snapshot()})


@role_required(VIEWER)
def rollout_detail(request, pk: int, *, start_error: str = "", status: int = 200):
    rollout = get_object_or_404(Rollout, pk=pk)
    return render(
        request,
        "dashboard/rollout.html",
        {
            "rollout": rollout,
            "snapshot": selectors.rollout_snapshot(pk),
            "controls": selectors.rollout_controls(rollout, request.user),
            "targets": rollout.targets.select_related("release__component"),
            "needs_reason": NEEDS_REASON,
            # Combination budget prediction of a plan not started yet (apps.governance).
            "prediction": rollout_prediction(rollout) if rollout.state in PLAN_STATES else None,
            "start_error": start_error,
        },
        status=status,
    )


@role_required(VIEWER)
def rollout_health(request, pk: int):
    rollout = get_object_or_404(Rollout, pk=pk)
    metric = request.GET.get("metric", "crashes")
    try:
        series = rollout_health_series(rollout, metric=metric)
    except ValueError:
        return JsonResponse({"error": f"unknown metric {metric!r}"}, status=400)
    threshold = None
    for wave in rollout.waves.all():
        ratio = (wave.spike_gate or {}).get("min_ratio")
        threshold = ratio if ratio is not None else threshold
    return JsonResponse({"metric": metric, "min_ratio": threshold, "points": series})


def _call(action: str, rollout: Rollout, user, reason: str, budget_override: bool = False):
    if action == "submit":
        return services.rollout_submit(rollout=rollout, actor=user)
    if action == "unfreeze":
        return services.rollout_unfreeze(rollout=rollout, actor=user, reason=reason)
    if action == "start":
        return services.rollout_start(rollout=rollout, actor=user, reason=reason, budget_override=budget_override)
    service = getattr(services, f"rollout_{action}")
    return service(rollout=rollout, actor=user, reason=reason)


@require_POST
@role_required(OPERATOR)
def rollout_action(request, pk: int):
    rollout = get_object_or_404(Rollout, pk=pk)
    form = ReasonForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Unknown action.")
        return redirect("dashboard:rollout", pk=pk)
    action, reason = form.cleaned_data["action"], form.cleaned_data["reason"].strip()
    try:
        result = _call(action, rollout, request.user, reason, request.POST.get("budget_override") == "1")
    except services.RolloutError as exc:
        if exc.field in BUDGET_FIELDS and action == "start":
            # Refused by the combination budget: 409 with the field named (JSON) or the page with the error.
            if "application/json" in request.headers.get("Accept", ""):
                return JsonResponse({"error": exc.message, "field": exc.field}, status=409)
            return rollout_detail(request, pk, start_error=exc.message, status=409)
        messages.error(request, f"Could not {action}: {exc.message}")
        return redirect("dashboard:rollout", pk=pk)
    messages.success(request, f"Rollout {action}: done.")
    if action == "rollback" and result is not None and result.pk != rollout.pk:
        return redirect("dashboard:rollout", pk=result.pk)
    return redirect("dashboard:rollout", pk=pk)


@role_required(OPERATOR)
def rollout_new(request):
    form = RolloutForm(request.POST or None, prefix="r")
    waves = WaveFormSet(request.POST or None, prefix="wave")
    if request.method == "POST" and form.is_valid() and waves.is_valid():
        specs = [w.spec() for w in waves.forms if w.has_changed() or w is waves.forms[0]]
        data = form.cleaned_data
        try:
            rollout = services.rollout_create(
                name=data["name"],
                description=data["description"],
                releases=list(data["releases"]),
                waves=specs,
                requires_approval=data["requires_approval"],
                settle_s=data["settle_s"],
                actor=request.user,
            )
        except services.RolloutError as exc:
            target = exc.field if exc.field in form.fields else None
            if exc.field == "waves":
                waves._non_form_errors = waves.error_class([exc.message])
            else:
                form.add_error(target, exc.message)
        else:
            messages.success(request, f"Rollout “{rollout.name}” created as a draft: submit it to schedule.")
            return redirect("dashboard:rollout", pk=rollout.pk)
    status = 400 if request.method == "POST" else 200
    return render(request, "dashboard/rollout_form.html", {"form": form, "waves": waves}, status=status)


@role_required(OPERATOR)
def rollout_wave_preview(request):
    """How many devices a wave would reach, for the create form's per-wave preview."""
    raw = request.GET.get("cohort", "")
    cohort = Cohort.objects.filter(pk=int(raw)).first() if raw.isdigit() else None
    try:
        size_value = float(request.GET.get("size_value", "100"))
    except ValueError:
        return JsonResponse({"error": "size must be a number"}, status=400)
    size_kind = request.GET.get("size_kind", "percent")
    if size_kind not in ("percent", "count"):
        return JsonResponse({"error": "size kind must be percent or count"}, status=400)
    return JsonResponse(wave_preview(cohort=cohort, size_kind=size_kind, size_value=size_value))


@require_POST
@role_required(VIEWER)
def fleet_freeze(request):
    """On-call (any role) may freeze every rollout in an incident; lifting it needs an operator."""
    reason = request.POST.get("reason", "").strip()[:500]
    freezing = request.POST.get("active", "1") == "1"
    if not freezing and not has_role(request.user, OPERATOR):
        messages.error(request, "Only an operator can lift the freeze.")
        return redirect(request.POST.get("next") or "dashboard:wall")
    try:
        if freezing:
            services.fleet_freeze(actor=request.user, reason=reason)
        else:
            services.fleet_unfreeze(actor=request.user, reason=reason)
    except services.RolloutError as exc:
        messages.error(request, exc.message)
    else:
        messages.success(request, "All rollouts frozen." if freezing else "Freeze lifted.")
    target = request.POST.get("next", "")
    return redirect(target if target in ("/wall/", "/rollouts/") else "dashboard:wall")
