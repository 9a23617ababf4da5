from django.apps import AppConfig
from django.db.models.signals import post_migrate


def _ensure_roles(sender, using="default", **kwargs):
    # Runs after every app's post_migrate (this app has no models, so it gets no signal of
    # its own); it is idempotent, and the last call sees every app's permissions.
    from django.contrib.auth.models import Group, Permission

    from .services import roles_ensure

    if Permission.objects.using(using).exists() or Group.objects.using(using).exists():
        roles_ensure()


class AccountsConfig(AppConfig):
    name = "apps.accounts"
    label = "accounts"

    def ready(self):
        post_migrate.connect(_ensure_roles, dispatch_uid="fleet-ensure-roles")
        from django.contrib import admin

        from . import throttle  # noqa: F401 - connects the failed-login counter
        from .forms import AdminLoginForm

        admin.site.login_form = AdminLoginForm
