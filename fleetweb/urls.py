from django.contrib import admin
from django.http import JsonResponse
from django.urls import include, path

from apps.ops.views import metrics


def healthz(request):
    return JsonResponse({"ok": True})


urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("metrics", metrics, name="metrics"),
    path("admin/", admin.site.urls),
    path("accounts/", include("apps.accounts.urls")),
    path("api/v1/", include("apps.deviceapi.urls")),
    path("", include("apps.dashboard.urls")),
]
