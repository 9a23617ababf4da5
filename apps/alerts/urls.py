from django.urls import path

from . import views

app_name = "alerts"

urlpatterns = [
    path("<int:pk>/ack/", views.alert_ack, name="ack"),
    path("webhooks/", views.webhook_list, name="webhooks"),
    path("webhooks/new/", views.webhook_create, name="webhook_create"),
    path("webhooks/deliveries/", views.webhook_delivery_log, name="webhook_deliveries"),
    path("webhooks/<int:pk>/", views.webhook_detail, name="webhook"),
]
