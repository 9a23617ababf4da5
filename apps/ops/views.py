import hmac

from django.conf import settings
from django.http import HttpResponse

from apps.accounts.roles import VIEWER, has_role

from .metrics import render


def metrics(request):
    """Prometheus scrape endpoint: a bearer token (FLEET_METRICS_TOKEN) or a logged-in viewer."""
    token = settings.FLEET.get("METRICS_TOKEN", "")
    header = request.META.get("HTTP_AUTHORIZATION", "")
    by_token = bool(token) and hmac.compare_digest(header, f"Bearer {token}")
    if not by_token and not has_role(request.user, VIEWER):
        return HttpResponse("metrics need a viewer login or the metrics token\n", status=401,
                            content_type="text/plain", headers={"WWW-Authenticate": "Bearer"})
    body, content_type = render()
    return HttpResponse(body, content_type=content_type)
