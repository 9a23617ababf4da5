from django.urls import path

from . import views

app_name = "deviceapi"

urlpatterns = [
    path("openapi.json", views.openapi, name="openapi"),
    path("enroll", views.enroll, name="enroll"),
    path("devices/<str:device_id>/checkin", views.checkin, name="checkin"),
    path("devices/<str:device_id>/state", views.desired_state, name="state"),
    path(
        "devices/<str:device_id>/deployments/<int:deployment_id>/feedback",
        views.deployment_feedback,
        name="feedback",
    ),
    path("devices/<str:device_id>/artifacts/<int:artifact_id>", views.artifact_download, name="artifact"),
]
