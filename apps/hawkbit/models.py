"""hawkBit compatibility: per-tenant settings, distribution sets and per-action extras.

A hawkBit target is a fleet Device, a software module a Release, an artifact a fleet
Artifact and an action a rollouts Deployment; only what hawkBit has and fleetweb does
not lives here.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from apps.fleet.models import Release
from apps.rollouts.models import Deployment


def default_polling_time() -> str:
    seconds = settings.FLEET["POLL_INTERVAL_S"]
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


class TenantConfig(models.Model):
    """Device-authentication modes and polling time of one hawkBit tenant (the URL's {tenant})."""

    # Stored upper-case: hawkBit tenant names are case-insensitive.
    tenant = models.CharField(max_length=64, unique=True)
    targettoken_enabled = models.BooleanField(default=True)
    gatewaytoken_enabled = models.BooleanField(default=False)
    # SHA-256 of the gateway token (fleet.models.hash_token); the plain key is never stored.
    gatewaytoken_hash = models.CharField(max_length=64, blank=True)
    polling_time = models.CharField(max_length=8, default=default_polling_time, help_text="HH:MM:SS")
    updated_at = models.DateTimeField(auto_now=True)
    updated_by = models.CharField(max_length=160, blank=True)

    class Meta:
        ordering = ["tenant"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(gatewaytoken_enabled=True) | ~Q(gatewaytoken_hash=""),
                name="hawkbit_gateway_enabled_needs_key",
            )
        ]

    def __str__(self) -> str:
        return self.tenant

    @property
    def polling_seconds(self) -> int:
        hours, minutes, seconds = (int(part) for part in self.polling_time.split(":"))
        return hours * 3600 + minutes * 60 + seconds


class DistributionSet(models.Model):
    """A hawkBit distribution set: a bundle of releases (at most one per component) installed together."""

    name = models.CharField(max_length=128)
    version = models.CharField(max_length=64)
    description = models.CharField(max_length=512, blank=True)
    # hawkBit's set type key ("os", "app", "os_app"); informative only.
    type = models.CharField(max_length=64, default="os_app")
    releases = models.ManyToManyField(Release, related_name="distribution_sets", blank=True)
    required_migration_step = models.BooleanField(default=False)
    # hawkBit keeps deleted sets that actions still refer to; so do we (and DELETE stays idempotent).
    deleted = models.BooleanField(default=False)
    created_by = models.CharField(max_length=160, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "version"]
        constraints = [
            models.UniqueConstraint(
                fields=["name", "version"], condition=Q(deleted=False), name="hawkbit_set_unique_version"
            )
        ]

    def __str__(self) -> str:
        return f"{self.name}:{self.version}"


class HawkbitAction(models.Model):
    """hawkBit extras of a Deployment created by a direct assignment: type and maintenance window."""

    class Type(models.TextChoices):
        FORCED = "forced", "Forced"
        SOFT = "soft", "Soft"
        DOWNLOAD_ONLY = "downloadonly", "Download only"
        TIMEFORCED = "timeforced", "Time forced"

    deployment = models.OneToOneField(Deployment, on_delete=models.CASCADE, related_name="hawkbit")
    distribution_set = models.ForeignKey(
        DistributionSet, null=True, on_delete=models.SET_NULL, related_name="actions"
    )
    action_type = models.CharField(max_length=12, choices=Type.choices, default=Type.FORCED)
    # Quartz cron expression ("0 0 2 ? * *"), duration "HH:MM:SS", UTC offset "+01:00".
    maintenance_schedule = models.CharField(max_length=128, blank=True)
    maintenance_duration = models.CharField(max_length=8, blank=True)
    maintenance_timezone = models.CharField(max_length=6, blank=True)

    def __str__(self) -> str:
        return f"action {self.deployment_id} ({self.action_type})"

    @property
    def has_maintenance_window(self) -> bool:
        return bool(self.maintenance_schedule)


class ActionStatus(models.Model):
    """One status entry of an action: what the device (or the server) reported, with its messages."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="hawkbit_statuses")
    # hawkBit status type, lower-case: running, download, downloaded, finished, error, warning,
    # retrieved, canceling, canceled, canceled_rejected, scheduled.
    type = models.CharField(max_length=20)
    messages = models.JSONField(default=list, blank=True)
    code = models.IntegerField(null=True, blank=True)
    reported_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-id"]
        # actions/{id}/status reads one action's entries, newest first.
        indexes = [models.Index(fields=["deployment", "-id"], name="hawkbit_status_action_idx")]

    def __str__(self) -> str:
        return f"{self.deployment_id}: {self.type}"


class TargetInfo(models.Model):
    """A target's hawkBit name and description (a Device has neither)."""

    device = models.OneToOneField("fleet.Device", on_delete=models.CASCADE, related_name="hawkbit")
    name = models.CharField(max_length=128, blank=True)
    description = models.CharField(max_length=512, blank=True)

    def __str__(self) -> str:
        return self.name or str(self.device_id)


class DeletedModule(models.Model):
    """A software module (Release) deleted through the Management API, so a repeated DELETE still answers 2xx."""

    module_id = models.BigIntegerField(unique=True)
    deleted_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"deleted module {self.module_id}"
