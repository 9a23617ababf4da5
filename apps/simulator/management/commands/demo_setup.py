"""Prepare a first run: roles, the admin login, and (with --seed) a demo fleet's catalogue."""

from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from apps.accounts import roles
from apps.accounts.services import roles_ensure, user_create
from apps.fleet.models import Cohort, Component, EnrollmentSecret, Release, hash_token
from apps.fleet.services import (
    cohort_create,
    component_create,
    enrollment_secret_create,
    release_create,
)

ACTOR = "demo-setup"

CATALOGUE = {
    # component: (kind, requires_reboot, versions oldest → newest)
    "os": ("os", True, ["38.4", "39.1", "39.2", "40.0"]),
    "agent": ("app", False, ["2.3.0", "2.4.1", "2.5.0"]),
    "vision": ("app", False, ["1.2", "1.3", "1.4"]),
}

COHORTS = {
    "canary": ("tag:canary", "Devices tagged canary: first to get every release."),
    "eu": ('region in ("eu-west", "eu-north")', "Devices in European regions."),
    "rpi4": ('hw == "rpi4"', "Raspberry Pi 4 hardware."),
    "everyone": ('has:region or not has:region', "The whole fleet."),
}


class Command(BaseCommand):
    help = "Create roles and the admin login; with --seed also the demo catalogue and enrollment secret."

    def add_arguments(self, parser):
        parser.add_argument("--admin-password", required=True)
        parser.add_argument("--seed", action="store_true")

    def handle(self, *args, admin_password: str, seed: bool, **options):
        roles_ensure()
        users = get_user_model().objects
        admin = users.filter(username="admin").first()
        if admin is None:
            admin = user_create(username="admin", password=admin_password, role=roles.ADMIN, actor=ACTOR)
            admin.is_superuser = True
            admin.save(update_fields=["is_superuser"])
        elif not admin.check_password(admin_password):
            admin.set_password(admin_password)
            admin.save(update_fields=["password"])
        if seed:
            self.seed(admin)

    @transaction.atomic
    def seed(self, admin) -> None:
        for position, (name, (kind, reboot, versions)) in enumerate(CATALOGUE.items()):
            component = Component.objects.filter(name=name).first() or component_create(
                name=name, kind=kind, requires_reboot=reboot, position=position, actor=admin
            )
            for version in versions:
                if not Release.objects.filter(component=component, version=version).exists():
                    release_create(component=component, version=version, actor=admin)
        for name, (text, description) in COHORTS.items():
            if not Cohort.objects.filter(name=name).exists():
                cohort_create(name=name, filter_text=text, description=description, actor=admin)
        secret_file = Path(settings.DATA_DIR) / "enrollment-secret"
        secret = secret_file.read_text().strip() if secret_file.exists() else ""
        if not secret or not EnrollmentSecret.objects.filter(secret_hash=hash_token(secret)).exists():
            _, secret = enrollment_secret_create(name=f"demo-{EnrollmentSecret.objects.count() + 1}", actor=admin)
            secret_file.parent.mkdir(parents=True, exist_ok=True)
            secret_file.write_text(secret + "\n")
            secret_file.chmod(0o600)
        self.stdout.write("demo catalogue ready")
