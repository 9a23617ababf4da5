from django.core.paginator import Paginator
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, render

from apps.accounts.roles import VIEWER, role_required
from apps.fleet.models import Device

from .. import selectors
from ..forms import caret


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
def device_list(request):
    devices, query = selectors.device_search(request.GET.get("q", "")[:2000])
    page = Paginator(devices, 50).get_page(request.GET.get("page"))
    if request.GET.get("format") == "json":
        return JsonResponse({"devices": [_device_row(d) for d in page], "total": page.paginator.count})
    error = caret(query.text, query.error) if query.error else None
    return render(
        request,
        "dashboard/devices.html",
        {"page": page, "q": query.text, "query": query, "error": error},
    )


@role_required(VIEWER)
def device_detail(request, uid: str):
    device = get_object_or_404(Device.objects.select_related("combination"), uid=uid)
    return render(
        request,
        "dashboard/device.html",
        {"device": device, **selectors.device_history(device)},
    )
