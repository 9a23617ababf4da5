from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_roles(sender, **kwargs):
    from .services import roles_ensure

    roles_ensure()


class AccountsConfig(AppConfig):
    name = "apps.accounts"
    label = "accounts"

    def ready(self):
        post_migrate.connect(_ensure_roles, sender=self, dispatch_uid="fleet-ensure-roles")
