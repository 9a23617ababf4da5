from django.urls import path

from . import views

app_name = "alerts"

urlpatterns = [
    path("<int:pk>/ack/", views.alert_ack, name="ack"),
]
