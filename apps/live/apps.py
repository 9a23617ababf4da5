from django.apps import AppConfig


class LiveConfig(AppConfig):
    name = "apps.live"
    label = "live"

    def ready(self) -> None:
        from . import signals  # noqa: F401 - connects the check-in receiver
