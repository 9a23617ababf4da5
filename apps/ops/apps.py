from django.apps import AppConfig


class OpsConfig(AppConfig):
    name = "apps.ops"
    label = "ops"

    def ready(self):
        from . import metrics

        metrics.connect_celery_signals()
