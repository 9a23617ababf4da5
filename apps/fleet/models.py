import hashlib
import hmac
import secrets
from datetime import timedelta

from django.conf import settings
from django.core.validators import MinValueValidator, RegexValidator
from django.db import models
from django.db.models import Q
from django.utils import timezone

NAME_RE = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
name_validator = RegexValidator(NAME_RE, "letters, digits and . _ : - only, starting with a letter or digit")
component_validator = RegexValidator(
    r"^[a-z][a-z0-9-]{0,47}$", "lower-case letters, digits and '-', starting with a letter"
)


def hash_token(token: str) -> str:
    # Tokens are 256-bit random values, so one SHA-256 round is enough: there is no
    # password to brute-force, only a stored value that must not be usable if leaked.
    return hashlib.sha256(token.encode()).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


def token_matches(token: str, token_hash: str) -> bool:
    return bool(token_hash) and hmac.compare_digest(hash_token(token), token_hash)


class Component(models.Model):
    """A thing with its own release lifecycle: the OS or one application."""

    class Kind(models.TextChoices):
        OS = "os", "Operating system"
        APP = "app", "Application"

    name = models.CharField(max_length=48, unique=True, validators=[component_validator])
    kind = models.CharField(max_length=8, choices=Kind.choices, default=Kind.APP)
    description = models.CharField(max_length=200, blank=True)
    requires_reboot = models.BooleanField(default=False, help_text="Installing a release reboots the device.")
    # Order of the component in a combination's key and in the spread's columns.
    position = models.PositiveSmallIntegerField(default=100)

    class Meta:
        ordering = ["position", "name"]

    def __str__(self) -> str:
        return self.name


class Release(models.Model):
    """One version of one component, with its artifacts and the hardware it supports."""

    component = models.ForeignKey(Component, on_delete=models.PROTECT, related_name="releases")
    version = models.CharField(max_length=64, validators=[name_validator])
    # Empty list: every hardware model.
    supported_hardware = models.JSONField(default=list, blank=True)
    notes = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["component__position", "component__name", "-created_at"]
        constraints = [models.UniqueConstraint(fields=["component", "version"], name="release_unique_version")]

    def __str__(self) -> str:
        return f"{self.component.name} {self.version}"

    def supports(self, hw_model: str) -> bool:
        return not self.supported_hardware or hw_model in self.supported_hardware


class Artifact(models.Model):
    """A file (or image reference) a device downloads to install a release."""

    release = models.ForeignKey(Release, on_delete=models.CASCADE, related_name="artifacts")
    filename = models.CharField(max_length=200)
    file = models.FileField(upload_to="artifacts/%Y/%m/", blank=True)
    # An external image reference (e.g. a container image digest) instead of a file.
    url = models.CharField(max_length=500, blank=True)
    size = models.BigIntegerField(validators=[MinValueValidator(0)])
    sha256 = models.CharField(max_length=64)
    sha1 = models.CharField(max_length=40, blank=True)
    md5 = models.CharField(max_length=32, blank=True)

    class Meta:
        ordering = ["release", "filename"]
        constraints = [models.UniqueConstraint(fields=["release", "filename"], name="artifact_unique_filename")]

    def __str__(self) -> str:
        return f"{self.release} / {self.filename}"


class Combination(models.Model):
    """A tuple of installed versions (one per component); device_count is maintained on change."""

    # Canonical key "component=version;..." sorted by component name.
    key = models.CharField(max_length=1000, unique=True)
    versions = models.JSONField(default=dict)
    device_count = models.IntegerField(default=0)
    first_seen = models.DateTimeField(default=timezone.now)
    last_seen = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-device_count", "key"]
        # The overview reads the top combinations by device count.
        indexes = [models.Index(fields=["-device_count"], name="combination_count_idx")]

    def __str__(self) -> str:
        return self.key or "(nothing installed)"

    @staticmethod
    def key_for(versions: dict[str, str]) -> str:
        return ";".join(f"{name}={versions[name]}" for name in sorted(versions))


class Device(models.Model):
    """One machine in the fleet."""

    uid = models.CharField("device id", max_length=128, unique=True, validators=[name_validator])
    hw_model = models.CharField("hardware model", max_length=64, blank=True, db_index=True)
    attributes = models.JSONField(default=dict, blank=True)
    # Tags as {"canary": true}: a JSON object so that `has_key` works on SQLite and PostgreSQL.
    tags = models.JSONField(default=dict, blank=True)
    installed = models.JSONField(default=dict, blank=True, help_text="component name → installed version")
    combination = models.ForeignKey(
        Combination, null=True, blank=True, on_delete=models.SET_NULL, related_name="devices"
    )
    token_hash = models.CharField(max_length=64, blank=True, db_index=True)
    token_revoked = models.BooleanField(default=False)
    enrolled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_seen = models.DateTimeField(null=True, blank=True, db_index=True)
    # Highest report sequence number accepted: a lower or equal one is a duplicate.
    last_seq = models.BigIntegerField(default=-1)
    poll_interval_s = models.PositiveIntegerField(default=0, help_text="0: the fleet default")
    checkin_count = models.BigIntegerField(default=0)

    class Meta:
        ordering = ["uid"]

    def __str__(self) -> str:
        return self.uid

    @property
    def effective_poll_interval_s(self) -> int:
        return self.poll_interval_s or settings.FLEET["POLL_INTERVAL_S"]

    @property
    def is_online(self) -> bool:
        if self.last_seen is None:
            return False
        limit = timedelta(seconds=self.effective_poll_interval_s * settings.FLEET["ONLINE_INTERVALS"])
        return timezone.now() - self.last_seen <= limit

    @property
    def tag_list(self) -> list[str]:
        return sorted(self.tags)

    @property
    def has_token(self) -> bool:
        return bool(self.token_hash) and not self.token_revoked

    def token_matches(self, token: str) -> bool:
        return not self.token_revoked and token_matches(token, self.token_hash)


class EnrollmentSecret(models.Model):
    """An admin-issued secret that lets new devices enroll and receive their own token."""

    name = models.CharField(max_length=80, unique=True)
    secret_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    uses_left = models.IntegerField(null=True, blank=True, help_text="empty: unlimited")
    revoked = models.BooleanField(default=False)
    # Tags given to every device enrolled with this secret.
    default_tags = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def usable(self) -> bool:
        if self.revoked or (self.uses_left is not None and self.uses_left <= 0):
            return False
        return self.expires_at is None or self.expires_at > timezone.now()


class HealthReport(models.Model):
    """Counters a device sent with one check-in, over the interval since its previous one."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="health_reports")
    seq = models.BigIntegerField()
    received_at = models.DateTimeField(default=timezone.now)
    interval_s = models.PositiveIntegerField()
    combination = models.ForeignKey(Combination, null=True, on_delete=models.SET_NULL, related_name="+")
    crashes = models.PositiveIntegerField(default=0)
    failed_health_checks = models.PositiveIntegerField(default=0)
    reboots = models.PositiveIntegerField(default=0)
    app_restarts = models.PositiveIntegerField(default=0)
    # Counters beyond the four above, by name.
    extra = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-received_at"]
        constraints = [models.UniqueConstraint(fields=["device", "seq"], name="health_unique_seq")]
        indexes = [
            # The gate evaluator reads recent reports over a window.
            models.Index(fields=["received_at"], name="health_received_idx"),
            # The device page reads one device's latest reports.
            models.Index(fields=["device", "-received_at"], name="health_device_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.device_id} #{self.seq}"

    COUNTERS = ("crashes", "failed_health_checks", "reboots", "app_restarts")


class Cohort(models.Model):
    """A named set of devices: a filter over attributes/tags, or explicit membership."""

    class Kind(models.TextChoices):
        FILTER = "filter", "Filter"
        EXPLICIT = "explicit", "Explicit members"

    name = models.CharField(max_length=80, unique=True)
    description = models.CharField(max_length=300, blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.FILTER)
    filter_text = models.TextField(blank=True)
    members = models.ManyToManyField(Device, blank=True, related_name="explicit_cohorts")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=~Q(kind="filter") | ~Q(filter_text=""), name="cohort_filter_not_empty"
            )
        ]

    def __str__(self) -> str:
        return self.name

    def devices(self) -> models.QuerySet:
        if self.kind == self.Kind.EXPLICIT:
            return Device.objects.filter(explicit_cohorts=self)
        from .cohort_query import compile_filter

        return Device.objects.filter(compile_filter(self.filter_text))


class SpreadSample(models.Model):
    """A periodic sample of the fleet's spread, for the combinations-over-time chart."""

    at = models.DateTimeField(default=timezone.now, db_index=True)
    devices = models.IntegerField()
    online = models.IntegerField()
    combinations = models.IntegerField()
    # {"os": {"39.1": 120, ...}, ...}: devices per version per component.
    version_share = models.JSONField(default=dict)

    class Meta:
        ordering = ["-at"]

    def __str__(self) -> str:
        return f"{self.at:%Y-%m-%d %H:%M} {self.combinations} combinations"
