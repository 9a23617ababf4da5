from django.urls import path

from . import views

app_name = "insights"

urlpatterns = [
    path("health/", views.health, name="health"),
    path("health.json", views.health_json, name="health_json"),
    path("spread/", views.spread, name="spread"),
    path("spread.json", views.spread_json, name="spread_json"),
    path("spread.csv", views.spread_csv, name="spread_csv"),
    path("rollouts/<int:pk>/stragglers/", views.stragglers, name="stragglers"),
    path("rollouts/<int:pk>/stragglers.csv", views.stragglers_csv, name="stragglers_csv"),
    path("rollouts/<int:pk>/follow-up/", views.follow_up, name="follow_up"),
]
