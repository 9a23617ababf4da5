from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.db.models import Q

from apps.fleet.models import Cohort, Component, Device, Release


class Rollout(models.Model):
    """Moving a set of devices to target releases (one component, or a bundle), in waves."""

    class State(models.TextChoices):
        DRAFT = "draft", "Draft"
        AWAITING_APPROVAL = "awaiting_approval", "Awaiting approval"
        SCHEDULED = "scheduled", "Scheduled"
        RUNNING = "running", "Running"
        PAUSED = "paused", "Paused"
        HALTED = "halted", "Halted"
        COMPLETED = "completed", "Completed"
        ABORTED = "aborted", "Aborted"

    ACTIVE_STATES = (State.RUNNING, State.PAUSED, State.HALTED)
    FINAL_STATES = (State.COMPLETED, State.ABORTED)

    class ConflictPolicy(models.TextChoices):
        REFUSE = "refuse", "Refuse to start"
        WAIT = "wait", "Wait for the other rollout"

    name = models.CharField(max_length=120)
    description = models.TextField(blank=True)
    releases = models.ManyToManyField(Release, related_name="rollouts", through="RolloutRelease")
    state = models.CharField(max_length=20, choices=State.choices, default=State.DRAFT, db_index=True)
    requires_approval = models.BooleanField(default=False)
    conflict_policy = models.CharField(max_length=10, choices=ConflictPolicy.choices, default=ConflictPolicy.REFUSE)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    scheduled_for = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Index into waves of the wave now running (or last run).
    current_wave = models.PositiveSmallIntegerField(default=0)
    halted_at = models.DateTimeField(null=True, blank=True)
    halt_reason = models.TextField(blank=True)
    halt_evidence = models.JSONField(null=True, blank=True)
    # Stopped by a global freeze (unfrozen one by one).
    frozen = models.BooleanField(default=False)
    rollback_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="rollbacks")
    # Success requires the device to stay healthy this long after reporting the new version.
    settle_s = models.PositiveIntegerField(default=60)
    # A device past this many poll intervals without news after download/install is "silent".
    silent_after_intervals = models.FloatField(default=3.0, validators=[MinValueValidator(1.0)])
    silent_counts_as_failure = models.BooleanField(default=True)
    max_retries = models.PositiveSmallIntegerField(default=2)
    retry_backoff_s = models.PositiveIntegerField(default=60)
    # Error codes a device may report that make a failed deployment eligible for retry.
    retryable_error_codes = models.JSONField(default=list, blank=True)
    # Serves the engine's "which rollouts need a tick" query.
    last_tick_at = models.DateTimeField(null=True, blank=True)
    # Halt checks only look at data after this instant: set when a person resumes a halted
    # rollout, so the evidence they overrode does not halt it again on the next tick.
    gates_since = models.DateTimeField(null=True, blank=True)
    # Why a scheduled rollout has not started yet (conflicts with another rollout, a freeze).
    waiting_reason = models.CharField(max_length=500, blank=True)
    # The per-wave counts last broadcast: the engine only sends "rollout.progress" on change.
    progress_counts = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["-created_at", "-id"]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.state in self.ACTIVE_STATES


class RolloutRelease(models.Model):
    """One target release of a rollout; a bundle has several, at most one per component."""

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="targets")
    release = models.ForeignKey(Release, on_delete=models.PROTECT, related_name="+")
    component = models.ForeignKey(Component, on_delete=models.PROTECT, related_name="+")

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["rollout", "component"], name="rollout_one_release_per_component")
        ]

    def __str__(self) -> str:
        return f"{self.rollout_id}: {self.release}"


class Wave(models.Model):
    """One stage of a rollout: which cohort, how many devices, how long to soak, which gates."""

    class SizeKind(models.TextChoices):
        COUNT = "count", "Devices"
        PERCENT = "percent", "Percent of cohort"

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        PASSED = "passed", "Passed"
        HALTED = "halted", "Halted"
        ABORTED = "aborted", "Aborted"

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="waves")
    index = models.PositiveSmallIntegerField()
    name = models.CharField(max_length=80, blank=True)
    # Null: "the rest" — every device of the earlier waves' cohorts not yet chosen.
    cohort = models.ForeignKey(Cohort, null=True, blank=True, on_delete=models.PROTECT, related_name="waves")
    size_kind = models.CharField(max_length=8, choices=SizeKind.choices, default=SizeKind.PERCENT)
    size_value = models.FloatField(validators=[MinValueValidator(0)], default=100)
    min_soak_s = models.PositiveIntegerField(default=0)
    # Gates: the wave passes when enough devices succeeded and the soak time is over.
    success_min_count = models.PositiveIntegerField(default=1)
    success_min_percent = models.FloatField(default=90, validators=[MinValueValidator(0), MaxValueValidator(100)])
    # Absolute halt limits, of the devices that have *reported* a result.
    max_failed_count = models.PositiveIntegerField(null=True, blank=True)
    max_failed_percent = models.FloatField(
        null=True, blank=True, validators=[MinValueValidator(0), MaxValueValidator(100)]
    )
    # Error-spike gate: {"metrics": ["crashes", ...], "alpha": 0.001, "min_devices": 20, "min_ratio": 2.0}
    spike_gate = models.JSONField(default=dict, blank=True)
    # Pacing: at most this many new deployments per minute (0: unpaced), growing by
    # `pace_growth` after every `pace_growth_after` successes.
    max_starts_per_min = models.PositiveIntegerField(default=0)
    pace_growth = models.FloatField(default=1.0, validators=[MinValueValidator(1.0)])
    pace_growth_after = models.PositiveIntegerField(default=0)
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    # Number of devices chosen for the wave when it started.
    planned_devices = models.PositiveIntegerField(default=0)
    # {"segments_total": n, "segments_covered": m, "segments": {...}}
    segment_coverage = models.JSONField(default=dict, blank=True)

    class Meta:
        ordering = ["rollout", "index"]
        constraints = [models.UniqueConstraint(fields=["rollout", "index"], name="wave_unique_index")]

    def __str__(self) -> str:
        return f"{self.rollout} wave {self.index + 1}"


class Deployment(models.Model):
    """One device's lifecycle within one rollout."""

    class State(models.TextChoices):
        PENDING = "pending", "Pending"
        DOWNLOADING = "downloading", "Downloading"
        INSTALLING = "installing", "Installing"
        # Installed; waiting for the device to come back on the new version and stay healthy.
        SETTLING = "settling", "Settling"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELED = "canceled", "Canceled"
        ROLLED_BACK = "rolled_back", "Rolled back"

    OPEN_STATES = (State.PENDING, State.DOWNLOADING, State.INSTALLING, State.SETTLING)
    FINAL_STATES = (State.SUCCEEDED, State.FAILED, State.CANCELED, State.ROLLED_BACK)

    rollout = models.ForeignKey(Rollout, on_delete=models.CASCADE, related_name="deployments")
    wave = models.ForeignKey(Wave, on_delete=models.CASCADE, related_name="deployments")
    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="deployments")
    state = models.CharField(max_length=12, choices=State.choices, default=State.PENDING)
    # component name → version before and after.
    from_versions = models.JSONField(default=dict)
    to_versions = models.JSONField(default=dict)
    # The device may start (pacing): null while the pacer holds it back.
    released_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    first_seen_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)
    installed_at = models.DateTimeField(null=True, blank=True)
    settle_until = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    progress = models.PositiveSmallIntegerField(default=0)
    attempts = models.PositiveSmallIntegerField(default=1)
    retry_at = models.DateTimeField(null=True, blank=True)
    error_code = models.CharField(max_length=64, blank=True)
    error_detail = models.CharField(max_length=1000, blank=True)
    # A cancel was requested and the device has not acknowledged it yet (hawkBit cancelAction).
    cancel_requested = models.BooleanField(default=False)
    # Silent: overdue after download/install start (maybe bricked); set by the engine.
    silent = models.BooleanField(default=False)

    class Meta:
        ordering = ["rollout", "wave__index", "device__uid"]
        constraints = [
            # A device is never deployed twice by the same rollout.
            models.UniqueConstraint(fields=["rollout", "device"], name="deployment_once_per_rollout"),
        ]
        indexes = [
            # The check-in reads a device's open deployments.
            models.Index(fields=["device", "state"], name="deployment_device_state_idx"),
            # The engine counts per wave and state.
            models.Index(fields=["wave", "state"], name="deployment_wave_state_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.rollout_id}/{self.device_id}: {self.state}"

    @property
    def is_open(self) -> bool:
        return self.state in self.OPEN_STATES


class ComponentLock(models.Model):
    """Claims (device, component) for one active rollout: two can never target the same pair."""

    device = models.ForeignKey(Device, on_delete=models.CASCADE, related_name="+")
    component = models.ForeignKey(Component, on_delete=models.CASCADE, related_name="+")
    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="locks")

    class Meta:
        constraints = [models.UniqueConstraint(fields=["device", "component"], name="one_rollout_per_device_component")]

    def __str__(self) -> str:
        return f"{self.device_id}/{self.component_id} → {self.deployment_id}"


class FleetFreeze(models.Model):
    """A global freeze for an incident: while one is active no rollout starts new deployments."""

    active = models.BooleanField(default=True)
    reason = models.TextField()
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)
    lifted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    lifted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [models.UniqueConstraint(fields=["active"], condition=Q(active=True), name="one_active_freeze")]

    def __str__(self) -> str:
        return f"freeze {self.created_at:%Y-%m-%d %H:%M} ({'active' if self.active else 'lifted'})"


class MaintenanceWindow(models.Model):
    """When a cohort's devices may be told to start installing: a cron-like start, a duration, a time zone."""

    cohort = models.ForeignKey(Cohort, on_delete=models.CASCADE, related_name="maintenance_windows")
    # "MIN HOUR DOM MON DOW" with * , - / (apps.rollouts.cron); each match opens the window.
    schedule = models.CharField(max_length=200)
    duration_min = models.PositiveIntegerField(validators=[MinValueValidator(1), MaxValueValidator(7 * 24 * 60)])
    timezone = models.CharField(max_length=64, default="UTC")
    description = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["cohort", "id"]

    def __str__(self) -> str:
        return f"{self.cohort}: {self.schedule} for {self.duration_min} min ({self.timezone})"
