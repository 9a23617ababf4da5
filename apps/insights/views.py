"""Insights pages: health by combination, the spread over time, stragglers and the follow-up action."""

import csv
from collections.abc import Iterable
from typing import Any

from django import forms
from django.contrib import messages
from django.core.paginator import Paginator
from django.http import JsonResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from apps.accounts.roles import OPERATOR, VIEWER, has_role, role_required
from apps.rollouts.models import Rollout
from apps.rollouts.services import RolloutError

from . import selectors, services

PAGE_SIZE = 50


class HeatmapForm(forms.Form):
    hours = forms.TypedChoiceField(choices=[(h, f"last {h} h") for h in selectors.WINDOWS_H], coerce=int,
                                   required=False, empty_value=1)
    app = forms.ChoiceField(required=False)
    metric = forms.ChoiceField(choices=list(selectors.METRICS.items()), required=False)

    def __init__(self, *args, app_names: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["app"].choices = [(n, n) for n in app_names]
        self.app_names = app_names

    def clean_app(self) -> str:
        return self.cleaned_data.get("app") or (self.app_names[0] if self.app_names else "")

    def clean_metric(self) -> str:
        return self.cleaned_data.get("metric") or "crashes"


class StragglerForm(forms.Form):
    component = forms.ChoiceField(required=False)
    days = forms.IntegerField(required=False, min_value=0, max_value=3650)
    reason = forms.ChoiceField(required=False, choices=[("", "all"), *((r, r) for r in selectors.REASONS)])
    page = forms.IntegerField(required=False, min_value=1)

    def __init__(self, *args, components: list[str], **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["component"].choices = [("", "every target"), *((n, n) for n in components)]


def _errors_json(form: forms.Form) -> JsonResponse:
    return JsonResponse({"errors": {name: [str(e) for e in errs] for name, errs in form.errors.items()}}, status=400)


def _heatmap_form(request) -> HeatmapForm:
    _, app_components = selectors.heatmap_components()
    return HeatmapForm(request.GET, app_names=[c.name for c in app_components])


@require_GET
@role_required(VIEWER)
def health(request):
    form = _heatmap_form(request)
    if not form.is_valid():
        return render(request, "insights/health.html", {"form": form, "heatmap": None}, status=400)
    heatmap = selectors.health_heatmap(hours=form.cleaned_data["hours"], app=form.cleaned_data["app"],
                                       metric=form.cleaned_data["metric"])
    return render(request, "insights/health.html", {"form": form, "heatmap": heatmap,
                                                    "windows": selectors.WINDOWS_H, "metrics": selectors.METRICS})


@require_GET
@role_required(VIEWER)
def health_json(request):
    form = _heatmap_form(request)
    if not form.is_valid():
        return _errors_json(form)
    heatmap = selectors.health_heatmap(hours=form.cleaned_data["hours"], app=form.cleaned_data["app"],
                                       metric=form.cleaned_data["metric"])
    return JsonResponse(selectors.heatmap_json(heatmap))


def _hours(request, default: int = 24 * 7) -> int | None:
    raw = request.GET.get("hours", "")
    if not raw:
        return default
    return int(raw) if raw.isdigit() and 1 <= int(raw) <= 24 * 90 else None


@require_GET
@role_required(VIEWER)
def spread(request):
    windows = [(24, "last 24 h"), (24 * 7, "last 7 days"), (24 * 30, "last 30 days")]
    return render(request, "insights/spread.html", {"hours": _hours(request) or 24 * 7, "windows": windows})


@require_GET
@role_required(VIEWER)
def spread_json(request):
    hours = _hours(request)
    if hours is None:
        return JsonResponse({"errors": {"hours": ["a whole number of hours from 1 to 2160"]}}, status=400)
    return JsonResponse(selectors.spread_history(hours=hours))


class _Echo:
    def write(self, value: str) -> str:
        return value


def _csv_response(rows: Iterable[list[Any]], filename: str) -> StreamingHttpResponse:
    writer = csv.writer(_Echo())
    response = StreamingHttpResponse((writer.writerow(row) for row in rows), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@require_GET
@role_required(VIEWER)
def spread_csv(request):
    return _csv_response(selectors.spread_csv_rows(), f"spread-{timezone.now():%Y%m%d-%H%M}.csv")


def _straggler_form(request, rollout: Rollout) -> StragglerForm:
    components = [t.component.name for t in selectors.rollout_targets(rollout)]
    return StragglerForm(request.GET, components=components)


def _query(rollout: Rollout, form: StragglerForm) -> selectors.StragglerQuery:
    data = form.cleaned_data
    return selectors.StragglerQuery(rollout=rollout, component=data["component"] or "", days=data["days"] or 0,
                                    reason=data["reason"] or "")


@require_GET
@role_required(VIEWER)
def stragglers(request, pk: int):
    rollout = get_object_or_404(Rollout, pk=pk)
    form = _straggler_form(request, rollout)
    context: dict[str, Any] = {"rollout": rollout, "form": form, "reasons": selectors.REASONS,
                               "can_follow_up": has_role(request.user, OPERATOR)}
    if not form.is_valid():
        return render(request, "insights/stragglers.html", context, status=400)
    query = _query(rollout, form)
    components = [t.component.name for t in selectors.rollout_targets(rollout, query.component)]
    page = Paginator(selectors.stragglers(query).order_by("reason", "uid"), PAGE_SIZE).get_page(
        form.cleaned_data["page"] or 1)
    params = request.GET.copy()
    params.pop("page", None)
    context.update(summary=selectors.straggler_summary(query), query=query, components=components, page=page,
                   rows=list(selectors.straggler_rows(page.object_list, components)), params=params.urlencode())
    return render(request, "insights/stragglers.html", context)


@require_GET
@role_required(VIEWER)
def stragglers_csv(request, pk: int):
    rollout = get_object_or_404(Rollout, pk=pk)
    form = _straggler_form(request, rollout)
    if not form.is_valid():
        return _errors_json(form)
    return _csv_response(selectors.straggler_csv_rows(_query(rollout, form)),
                         f"stragglers-rollout-{rollout.pk}-{timezone.now():%Y%m%d-%H%M}.csv")


@require_POST
@role_required(OPERATOR)
def follow_up(request, pk: int):
    rollout = get_object_or_404(Rollout, pk=pk)
    component = request.POST.get("component", "")[:48]
    try:
        followup = services.followup_rollout_create(rollout=rollout, actor=request.user, component=component)
    except RolloutError as exc:
        messages.error(request, exc.message)
        return redirect("insights:stragglers", pk=rollout.pk)
    messages.success(request, f"Draft follow-up rollout created for {followup.waves.first().cohort.members.count()} "
                              "devices: check its plan, then submit it.")
    return redirect("dashboard:rollout", pk=followup.pk)
