from django.core.paginator import Paginator
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, render

from apps.accounts.roles import VIEWER, role_required
from apps.fleet.models import Device

from . import selectors


def _device_row(device: Device) -> dict:
    return {
        "uid": device.uid,
        "hw_model": device.hw_model,
        "installed": device.installed,
        "last_seen": device.last_seen.isoformat() if device.last_seen else None,
        "online": device.is_online,
        "checkins": device.checkin_count,
    }


@role_required(VIEWER)
def overview(request):
    return render(request, "dashboard/overview.html", {"summary": selectors.fleet_summary()})


@role_required(VIEWER)
def overview_data(request):
    return JsonResponse(selectors.fleet_summary())


@role_required(VIEWER)
def device_list(request):
    query = request.GET.get("q", "")[:200]
    page = Paginator(selectors.device_search(query), 50).get_page(request.GET.get("page"))
    if request.GET.get("format") == "json":
        return JsonResponse({"devices": [_device_row(d) for d in page], "total": page.paginator.count})
    return render(request, "dashboard/devices.html", {"page": page, "q": query})


@role_required(VIEWER)
def device_detail(request, uid: str):
    device = get_object_or_404(Device.objects.select_related("combination"), uid=uid)
    reports = device.health_reports.all()[:50]
    deployments = device.deployments.select_related("rollout").order_by("-created_at")[:50]
    return render(request, "dashboard/device.html",
                  {"device": device, "reports": reports, "deployments": deployments})
