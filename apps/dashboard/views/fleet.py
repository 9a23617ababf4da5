from django.http import Http404, JsonResponse
from django.shortcuts import render

from apps.accounts.roles import VIEWER, role_required
from apps.fleet.models import Cohort
from apps.governance.selectors import uncertified_summary

from .. import selectors


def _cohort(request) -> Cohort | None:
    raw = request.GET.get("cohort", "")
    if not raw:
        return None
    if not raw.isdigit():
        raise Http404("no such cohort")
    cohort = Cohort.objects.filter(pk=int(raw)).first()
    if cohort is None:
        raise Http404("no such cohort")
    return cohort


@role_required(VIEWER)
def overview(request):
    cohort = _cohort(request)
    summary = selectors.fleet_summary(cohort=cohort, app=request.GET.get("app", "")[:48] or None)
    return render(
        request,
        "dashboard/overview.html",
        {
            "summary": summary,
            "cohort": cohort,
            "cohorts": Cohort.objects.only("id", "name").order_by("name"),
            "app_choices": summary["components"][1:],
            "governance": uncertified_summary(top=5),
        },
    )


@role_required(VIEWER)
def overview_data(request):
    cohort = _cohort(request)
    return JsonResponse(selectors.fleet_summary(cohort=cohort, app=request.GET.get("app", "")[:48] or None))


@role_required(VIEWER)
def spread_data(request):
    try:
        hours = min(max(int(request.GET.get("hours", "24")), 1), 24 * 14)
    except ValueError:
        hours = 24
    return JsonResponse(selectors.spread_series(component=request.GET.get("component", "")[:48], hours=hours))


@role_required(VIEWER)
def wall(request):
    return render(request, "dashboard/wall.html", {"wall": selectors.wall_snapshot()})
