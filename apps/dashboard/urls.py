from django.urls import path

from .views import audit, cohorts, devices, fleet, rollouts

app_name = "dashboard"

urlpatterns = [
    path("", fleet.overview, name="overview"),
    path("overview.json", fleet.overview_data, name="overview_data"),
    path("spread.json", fleet.spread_data, name="spread_data"),
    path("wall/", fleet.wall, name="wall"),
    path("devices/", devices.device_list, name="devices"),
    path("devices/<str:uid>/", devices.device_detail, name="device"),
    path("cohorts/", cohorts.cohort_list, name="cohorts"),
    path("cohorts/new/", cohorts.cohort_new, name="cohort_new"),
    path("cohorts/preview.json", cohorts.cohort_preview, name="cohort_preview"),
    path("cohorts/<int:pk>/", cohorts.cohort_detail, name="cohort"),
    path("cohorts/<int:pk>/edit/", cohorts.cohort_edit, name="cohort_edit"),
    path("audit/", audit.audit_log, name="audit"),
    path("rollouts/", rollouts.rollout_list, name="rollouts"),
    path("rollouts/new/", rollouts.rollout_new, name="rollout_new"),
    path("rollouts/wave-preview.json", rollouts.rollout_wave_preview, name="rollout_wave_preview"),
    path("rollouts/freeze/", rollouts.fleet_freeze, name="fleet_freeze"),
    path("rollouts/<int:pk>/", rollouts.rollout_detail, name="rollout"),
    path("rollouts/<int:pk>/health.json", rollouts.rollout_health, name="rollout_health"),
    path("rollouts/<int:pk>/action/", rollouts.rollout_action, name="rollout_action"),
]
