from django.urls import path

from . import views

app_name = "dashboard"

urlpatterns = [
    path("", views.overview, name="overview"),
    path("overview.json", views.overview_data, name="overview_data"),
    path("devices/", views.device_list, name="devices"),
    path("devices/<str:uid>/", views.device_detail, name="device"),
]
