from django.contrib import messages
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_POST

from apps.accounts.roles import VIEWER, role_required

from .models import Alert
from .selectors import alert_row
from .services import alert_acknowledge


@require_POST
@role_required(VIEWER)
def alert_ack(request, pk: int):
    """On-call (any role) acknowledges an alert. The wall posts with fetch and follows the
    websocket; without JavaScript the form posts and comes back to the wall."""
    alert = alert_acknowledge(
        alert=get_object_or_404(Alert, pk=pk), actor=request.user, note=request.POST.get("note", "")
    )
    mine = alert.acknowledged_by_id == request.user.pk
    if "application/json" in request.headers.get("Accept", ""):
        return JsonResponse({"alert": alert_row(alert), "acknowledged_by_you": mine})
    if mine:
        messages.success(request, f"Acknowledged: {alert.title}")
    else:
        messages.info(request, f"Already acknowledged by {alert_row(alert)['acknowledged_by']}: {alert.title}")
    return redirect("dashboard:wall")
