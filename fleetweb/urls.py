from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path

from apps.hawkbit.urls import ddi_urlpatterns, mgmt_urlpatterns
from apps.ops.views import metrics


def healthz(request):
    return JsonResponse({"ok": True})


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("accounts/", include("apps.accounts.urls")),
    path("api/v1/", include("apps.deviceapi.urls")),
    path("alerts/", include("apps.alerts.urls")),
    path("governance/", include("apps.governance.urls")),
    path("insights/", include("apps.insights.urls")),
    path("rest/v1/", include(mgmt_urlpatterns)),
    # hawkBit DDI; before the dashboard so "/<tenant>/controller/v1/" is never a page.
    path("<str:tenant>/controller/v1/", include(ddi_urlpatterns)),
    path("", include("apps.dashboard.urls")),
]
