from django.urls import path

from . import views

app_name = "governance"

urlpatterns = [
    path("", views.combination_list, name="combinations"),
    path("certified/", views.certified_list, name="certified"),
    path("certified/<int:pk>/delete/", views.certified_delete, name="certified_delete"),
    path("budgets/", views.budget_list, name="budgets"),
    path("budgets/<int:pk>/delete/", views.budget_delete, name="budget_delete"),
    path("plan-preview/", views.plan_preview, name="plan_preview"),
]
