from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render

from apps.accounts.roles import ADMIN, VIEWER, role_required
from apps.fleet.cohort_query import FilterError
from apps.fleet.models import Cohort
from apps.fleet.services import cohort_create, cohort_update

from .. import selectors
from ..forms import CohortForm, caret


@role_required(VIEWER)
def cohort_list(request):
    return render(request, "dashboard/cohorts.html", {"cohorts": selectors.cohort_list()})


@role_required(VIEWER)
def cohort_detail(request, pk: int):
    cohort = get_object_or_404(Cohort, pk=pk)
    try:
        devices = cohort.devices().order_by("uid")
        count, sample = devices.count(), list(devices[:20])
        error = None
    except FilterError as exc:
        count, sample, error = None, [], caret(cohort.filter_text, exc)
    return render(
        request,
        "dashboard/cohort.html",
        {"cohort": cohort, "count": count, "sample": sample, "error": error},
    )


def _save(request, form: CohortForm, cohort: Cohort | None):
    data = form.cleaned_data
    try:
        if cohort is None:
            return cohort_create(
                name=data["name"],
                filter_text=data["filter_text"],
                description=data["description"],
                actor=request.user,
            )
        return cohort_update(
            cohort=cohort,
            name=data["name"],
            description=data["description"],
            actor=request.user,
            filter_text=data["filter_text"] if cohort.kind == Cohort.Kind.FILTER else None,
        )
    except FilterError as exc:
        form.add_filter_error(exc)
    except ValidationError as exc:
        form.add_service_errors(exc)
    return None


def _edit(request, cohort: Cohort | None):
    initial = {}
    if cohort is not None:
        initial = {
            "name": cohort.name,
            "description": cohort.description,
            "filter_text": cohort.filter_text,
        }
    form = CohortForm(
        request.POST or None,
        initial=initial,
        explicit=cohort is not None and cohort.kind == "explicit",
    )
    if request.method == "POST" and form.is_valid():
        saved = _save(request, form, cohort)
        if saved is not None:
            messages.success(request, f"Cohort “{saved.name}” saved.")
            return redirect("dashboard:cohort", pk=saved.pk)
    status = 400 if form.is_bound and form.errors else 200
    return render(
        request,
        "dashboard/cohort_form.html",
        {"form": form, "cohort": cohort},
        status=status,
    )


@role_required(ADMIN)
def cohort_new(request):
    return _edit(request, None)


@role_required(ADMIN)
def cohort_edit(request, pk: int):
    return _edit(request, get_object_or_404(Cohort, pk=pk))


@role_required(ADMIN)
def cohort_preview(request):
    """The editor's live preview: matching count and a sample, or the error and its position."""
    return JsonResponse(selectors.cohort_preview(request.GET.get("filter", "")[:4000]).as_dict())
