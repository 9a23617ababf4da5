import secrets

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.http import JsonResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from apps.accounts.roles import ADMIN, VIEWER, role_required

from .forms import WebhookEndpointForm
from .models import Alert, WebhookEndpoint
from .selectors import alert_row, webhook_deliveries, webhook_endpoints
from .services import (
    alert_acknowledge,
    webhook_endpoint_create,
    webhook_endpoint_update,
)

# The secret is shown once, on the page after creating the endpoint.
SHOW_SECRET_KEY = "alerts.webhook_secret_once"


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


@require_http_methods(["GET"])
@role_required(ADMIN)
def webhook_list(request):
    """Admins: the endpoints, each with its latest delivery state."""
    return render(request, "alerts/webhooks.html", {"endpoints": webhook_endpoints()})


def _add_service_errors(form: WebhookEndpointForm, error: ValidationError) -> None:
    for field, messages_ in error.message_dict.items():
        form.add_error(field if field in form.fields else None, messages_)


@require_http_methods(["GET", "POST"])
@role_required(ADMIN)
def webhook_create(request):
    form = WebhookEndpointForm(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        secret = data["secret"] or secrets.token_urlsafe(32)
        try:
            endpoint = webhook_endpoint_create(
                actor=request.user, name=data["name"], url=data["url"], secret=secret,
                kinds=data["kinds"], enabled=data["enabled"],
            )
        except ValidationError as error:
            _add_service_errors(form, error)
        else:
            request.session[SHOW_SECRET_KEY] = {"endpoint": endpoint.pk, "secret": secret}
            messages.success(request, f"Webhook endpoint {endpoint.name} created.")
            return redirect("alerts:webhook", pk=endpoint.pk)
    status = 400 if form.errors else 200
    return render(request, "alerts/webhook_form.html", {"form": form, "endpoint": None}, status=status)


@require_http_methods(["GET", "POST"])
@role_required(ADMIN)
def webhook_detail(request, pk: int):
    """Admins: edit one endpoint and read its delivery log (every attempt of the newest deliveries)."""
    endpoint = get_object_or_404(WebhookEndpoint, pk=pk)
    initial = {"name": endpoint.name, "url": endpoint.url, "kinds": endpoint.kinds, "enabled": endpoint.enabled}
    form = WebhookEndpointForm(request.POST if request.method == "POST" else None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            webhook_endpoint_update(
                endpoint=endpoint, actor=request.user, name=data["name"], url=data["url"], kinds=data["kinds"],
                enabled=data["enabled"], secret=data["secret"],
            )
        except ValidationError as error:
            _add_service_errors(form, error)
        else:
            messages.success(request, f"Webhook endpoint {data['name']} saved.")
            return redirect("alerts:webhook", pk=endpoint.pk)
    shown = request.session.pop(SHOW_SECRET_KEY, None)
    secret_once = shown["secret"] if shown and shown.get("endpoint") == endpoint.pk else None
    context = {
        "form": form,
        "endpoint": endpoint,
        "secret_once": secret_once,
        "deliveries": webhook_deliveries(endpoint=endpoint, limit=50),
    }
    return render(request, "alerts/webhook_form.html", context, status=400 if form.errors else 200)


@require_http_methods(["GET"])
@role_required(ADMIN)
def webhook_delivery_log(request):
    """Admins: the newest deliveries to every endpoint, with each attempt."""
    return render(request, "alerts/deliveries.html", {"deliveries": webhook_deliveries(limit=100)})
