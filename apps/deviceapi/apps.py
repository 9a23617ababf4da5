from django.apps import AppConfig


class DeviceapiConfig(AppConfig):
    name = "apps.deviceapi"
    label = "deviceapi"
