from django.apps import AppConfig


class HawkbitConfig(AppConfig):
    name = "apps.hawkbit"
    label = "hawkbit"
    verbose_name = "hawkBit compatibility"
