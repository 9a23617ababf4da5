"""State changes of the fleet: enrollment, check-ins, tokens, components, releases, cohorts."""

import logging
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from apps.audit.services import audit_record
from apps.governance.hooks import combination_created
from apps.live.broadcast import FLEET, broadcast_event, fleet_changed

from . import checkin_buffer
from .cohort_query import compile_filter
from .models import Cohort, Combination, Component, Device, EnrollmentSecret, HealthReport, Release, hash_token, new_token


log = logging.getLogger(__name__)


class EnrollmentError(Exception):
    """Enrollment refused; `status` is the HTTP status the API answers with."""

    def __init__(self, message: str, *, status: int = 403, field: str = "enrollment_secret"):
        super().__init__(message)
        self.status = status
        self.field = field


@dataclass
class CheckinReport:
    seq: int
    installed: dict[str, str]
    health: dict[str, int]
    interval_s: int
    extra: dict[str, int] = field(default_factory=dict)
    attributes: dict[str, Any] | None = None


@dataclass
class CheckinResult:
    accepted: bool
    duplicate: bool
    combination_changed: bool
    # The device's open deployments as the check-in advanced them (None: not read).
    deployments: list | None = None
    # Buffered in Redis (fast path), written to PostgreSQL by the next flush.
    buffered: bool = False


def _combination_for(versions: dict[str, str], now: datetime) -> Combination:
    key = Combination.key_for(versions)
    combination = Combination.objects.filter(key=key).first()
    if combination is None:
        try:
            with transaction.atomic():
                combination = Combination.objects.create(key=key, versions=versions, first_seen=now, last_seen=now)
                combination_created(combination.pk)  # governance: after commit, alert if uncertified
        except IntegrityError:
            # Another check-in created the same combination a moment ago.
            combination = Combination.objects.get(key=key)
    return combination


def device_installed_set(*, device: Device, installed: dict[str, str], now: datetime | None = None) -> bool:
    """Record what a device runs and move it between combinations, keeping the counts exact.

    Returns True when the combination changed. Must run inside a transaction.
    """
    now = now or timezone.now()
    if installed == device.installed and device.combination_id is not None:
        return False
    combination = _combination_for(installed, now)
    if combination.pk == device.combination_id:
        Device.objects.filter(pk=device.pk).update(installed=installed)
        device.installed = installed
        return False
    # Conditional on the old combination so two racing check-ins of one device cannot
    # both decrement it: only the one that actually moved the device adjusts counts.
    moved = Device.objects.filter(pk=device.pk, combination_id=device.combination_id).update(
        installed=installed, combination=combination
    )
    if moved:
        if device.combination_id:
            Combination.objects.filter(pk=device.combination_id).update(device_count=F("device_count") - 1)
        Combination.objects.filter(pk=combination.pk).update(device_count=F("device_count") + 1, last_seen=now)
    device.installed = installed
    device.combination = combination
    return bool(moved)


def _has_open_deployments(device: Device) -> bool:
    from apps.rollouts.models import Deployment

    return Deployment.objects.filter(device_id=device.pk, state__in=Deployment.OPEN_STATES).exists()


def device_checkin(*, device: Device, report: CheckinReport, open_deployments: bool | None = None) -> CheckinResult:
    """Record a check-in: buffered in Redis on the steady state, one short transaction otherwise.

    `open_deployments`: whether the device has an open deployment, when the caller already
    read it (the device API reads it with the device); None: read here.

    Fast path (FLEET["CHECKIN_BUFFER"] on PostgreSQL, the device runs what it ran and has no
    open deployment): no database write, one Redis script call that counts the report once
    (seq) and buffers it for `checkin_flush` (see apps/fleet/checkin_buffer.py). Anything else,
    or Redis unavailable, takes the synchronous transaction below, whose semantics the rollout
    engine relies on (settling, fallback detection).
    """
    now = timezone.now()
    claimed: tuple[int, int] | None = None
    if checkin_buffer.enabled():
        steady = device.combination_id is not None and report.installed == device.installed
        if steady and open_deployments is None:
            open_deployments = _has_open_deployments(device)
        received = now.timestamp()
        try:
            if steady and not open_deployments:
                merged = None
                if report.attributes is not None:
                    merged = {**device.attributes, **report.attributes}
                entry = checkin_buffer.entry_accepted(
                    device_id=device.pk, seq=report.seq, received_at=received, interval_s=report.interval_s,
                    combination_id=device.combination_id, health=report.health, extra=report.extra,
                    attributes=report.attributes,
                )
                new, _ = checkin_buffer.seq_claim(
                    device_id=device.pk, seq=report.seq, db_last_seq=device.last_seq, entry=entry,
                    duplicate_entry=checkin_buffer.entry_duplicate(device_id=device.pk, received_at=received),
                )
                device.last_seen = now
                if not new:
                    return CheckinResult(accepted=False, duplicate=True, combination_changed=False, deployments=[])
                device.last_seq = report.seq
                if merged is not None:
                    device.attributes = merged
                return CheckinResult(accepted=True, duplicate=False, combination_changed=False, deployments=[],
                                     buffered=True)
            new, previous = checkin_buffer.seq_claim(device_id=device.pk, seq=report.seq, db_last_seq=device.last_seq)
            if not new:
                Device.objects.filter(pk=device.pk).update(last_seen=now)
                device.last_seen = now
                return CheckinResult(accepted=False, duplicate=True, combination_changed=False)
            claimed = (report.seq, previous)
        except checkin_buffer.BufferUnavailable:
            checkin_buffer.warn_unavailable()
    try:
        return _device_checkin_sync(device=device, report=report, now=now)
    except BaseException:
        if claimed is not None:
            checkin_buffer.seq_release(device_id=device.pk, seq=claimed[0], previous=claimed[1])
        raise


def _device_checkin_sync(*, device: Device, report: CheckinReport, now: datetime) -> CheckinResult:
    """The synchronous check-in: one short transaction, a constant number of queries, no fleet-wide reads."""
    from apps.rollouts.services import deployments_on_checkin

    with transaction.atomic():
        fields: dict[str, Any] = {"last_seq": report.seq, "last_seen": now, "checkin_count": F("checkin_count") + 1}
        if report.attributes is not None:
            fields["attributes"] = {**device.attributes, **report.attributes}
        # Idempotency: only a report with a higher sequence number than any before counts.
        accepted = Device.objects.filter(pk=device.pk, last_seq__lt=report.seq).update(**fields)
        if not accepted:
            Device.objects.filter(pk=device.pk).update(last_seen=now)
            device.last_seen = now
            return CheckinResult(accepted=False, duplicate=True, combination_changed=False)
        device.last_seq = report.seq
        device.last_seen = now
        if report.attributes is not None:
            device.attributes = fields["attributes"]
        changed = device_installed_set(device=device, installed=report.installed, now=now)
        HealthReport.objects.create(
            device=device,
            seq=report.seq,
            received_at=now,
            interval_s=report.interval_s,
            combination_id=device.combination_id,
            extra=report.extra,
            **report.health,
        )
        deployments = deployments_on_checkin(
            device=device, installed=report.installed, health=report.health, now=now
        )
        # Throttled fleet-wide to one push per second per page, sent after commit.
        fleet_changed()
    return CheckinResult(accepted=True, duplicate=False, combination_changed=changed, deployments=deployments)


def checkin_flush(*, batch: int | None = None, max_batches: int = 1) -> "checkin_buffer.FlushResult":
    """Write buffered check-ins to PostgreSQL now (the beat task and tests call this)."""
    return checkin_buffer.checkin_flush(batch=batch, max_batches=max_batches)


@transaction.atomic
def enrollment_secret_create(
    *, name: str, actor, uses: int | None = None, expires_at: datetime | None = None, default_tags=()
) -> tuple[EnrollmentSecret, str]:
    """Create an enrollment secret; the plain secret is returned once and stored only hashed."""
    secret = new_token()
    record = EnrollmentSecret.objects.create(
        name=name,
        secret_hash=hash_token(secret),
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
        uses_left=uses,
        expires_at=expires_at,
        default_tags=list(default_tags),
    )
    audit_record(actor=actor, action="enrollment_secret.create", obj=record, after={"uses": uses})
    return record, secret


@transaction.atomic
def device_enroll(
    *,
    uid: str,
    secret: str,
    hw_model: str = "",
    attributes: dict | None = None,
    tags: list[str] | None = None,
    poll_interval_s: int = 0,
) -> tuple[Device, str]:
    """Enroll a device with a fleet enrollment secret; returns the device and its new token."""
    record = EnrollmentSecret.objects.select_for_update().filter(secret_hash=hash_token(secret)).first()
    if record is None or not record.usable:
        raise EnrollmentError("enrollment secret is unknown, expired, used up or revoked", status=403)
    device = Device.objects.select_for_update().filter(uid=uid).first()
    if device is not None and device.token_hash and not device.token_revoked:
        raise EnrollmentError(
            "device is already enrolled; an admin must rotate or revoke its token", status=409, field="device_id"
        )
    token = new_token()
    tag_map = {tag: True for tag in [*record.default_tags, *(tags or [])]}
    now = timezone.now()
    if device is None:
        device = Device.objects.create(
            uid=uid,
            hw_model=hw_model,
            attributes=attributes or {},
            tags=tag_map,
            token_hash=hash_token(token),
            enrolled_at=now,
            poll_interval_s=poll_interval_s,
        )
    else:
        # A pre-registered device (admin created it) keeps what the admin set.
        device.hw_model = device.hw_model or hw_model
        device.attributes = {**(attributes or {}), **device.attributes}
        device.tags = {**tag_map, **device.tags}
        device.token_hash = hash_token(token)
        device.token_revoked = False
        device.enrolled_at = now
        device.save()
    if record.uses_left is not None:
        EnrollmentSecret.objects.filter(pk=record.pk).update(uses_left=F("uses_left") - 1)
    audit_record(
        actor=f"device:{uid}", action="device.enroll", obj=device, after={"secret": record.name, "hw_model": hw_model}
    )
    fleet_changed()
    return device, token


@transaction.atomic
def device_register(
    *, uid: str, actor, hw_model: str = "", attributes: dict | None = None, tags: list[str] | None = None
) -> tuple[Device, str]:
    """An admin pre-registers a device and receives its token (shown once)."""
    token = new_token()
    device = Device.objects.create(
        uid=uid,
        hw_model=hw_model,
        attributes=attributes or {},
        tags={tag: True for tag in tags or []},
        token_hash=hash_token(token),
        enrolled_at=timezone.now(),
    )
    audit_record(actor=actor, action="device.register", obj=device, after={"hw_model": hw_model})
    return device, token


@transaction.atomic
def device_token_rotate(*, device: Device, actor) -> str:
    token = new_token()
    Device.objects.filter(pk=device.pk).update(token_hash=hash_token(token), token_revoked=False)
    device.token_hash = hash_token(token)
    device.token_revoked = False
    audit_record(actor=actor, action="device.token_rotate", obj=device)
    return token


@transaction.atomic
def device_token_revoke(*, device: Device, actor, reason: str = "") -> None:
    Device.objects.filter(pk=device.pk).update(token_revoked=True)
    device.token_revoked = True
    audit_record(actor=actor, action="device.token_revoke", obj=device, reason=reason)


@transaction.atomic
def component_create(*, name: str, kind: str, actor, requires_reboot: bool = False, position: int = 100) -> Component:
    component = Component(name=name, kind=kind, requires_reboot=requires_reboot, position=position)
    component.full_clean()
    component.save()
    audit_record(actor=actor, action="component.create", obj=component, after={"name": name, "kind": kind})
    return component


@transaction.atomic
def release_create(
    *, component: Component, version: str, actor, supported_hardware: list[str] | None = None, notes: str = ""
) -> Release:
    release = Release(component=component, version=version, supported_hardware=supported_hardware or [], notes=notes)
    release.full_clean()
    release.save()
    audit_record(
        actor=actor,
        action="release.create",
        obj=release,
        after={"component": component.name, "version": version, "supported_hardware": release.supported_hardware},
    )
    return release


def _cohort_state(cohort: Cohort) -> dict:
    return {
        "name": cohort.name,
        "kind": cohort.kind,
        "filter": cohort.filter_text,
        "description": cohort.description,
    }


@transaction.atomic
def cohort_create(
    *, name: str, actor, filter_text: str = "", kind: str = Cohort.Kind.FILTER, description: str = ""
) -> Cohort:
    """Create a cohort; a filter cohort's filter must compile (FilterError otherwise)."""
    if kind == Cohort.Kind.FILTER:
        compile_filter(filter_text)
    cohort = Cohort(
        name=name,
        kind=kind,
        filter_text=filter_text,
        description=description,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    cohort.full_clean()
    cohort.save()
    audit_record(actor=actor, action="cohort.create", obj=cohort, after=_cohort_state(cohort))
    return cohort


@transaction.atomic
def cohort_update(
    *, cohort: Cohort, actor, name: str | None = None, filter_text: str | None = None, description: str | None = None
) -> Cohort:
    before = _cohort_state(cohort)
    if filter_text is not None:
        if cohort.kind == Cohort.Kind.FILTER:
            compile_filter(filter_text)
        cohort.filter_text = filter_text
    if name is not None:
        cohort.name = name
    if description is not None:
        cohort.description = description
    cohort.full_clean()
    cohort.save()
    audit_record(actor=actor, action="cohort.update", obj=cohort, before=before, after=_cohort_state(cohort))
    return cohort


@transaction.atomic
def cohort_members_set(*, cohort: Cohort, actor, device_uids: list[str]) -> int:
    devices = list(Device.objects.filter(uid__in=device_uids))
    missing = sorted(set(device_uids) - {d.uid for d in devices})
    if missing:
        raise ValueError(f"unknown devices: {', '.join(missing[:10])}")
    before = sorted(cohort.members.values_list("uid", flat=True))
    cohort.members.set(devices)
    audit_record(
        actor=actor, action="cohort.members_set", obj=cohort, before={"members": before}, after={"members": device_uids}
    )
    return len(devices)
