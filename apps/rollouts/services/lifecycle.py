"""Creating a rollout and moving it through its states (see apps.rollouts.states)."""

import logging
from datetime import datetime
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from apps.alerts.models import Alert
from apps.alerts.services import alert_raise
from apps.audit.services import actor_label, audit_record
from apps.fleet.models import Cohort, Release
from apps.live.broadcast import broadcast_event

from ..models import Deployment, Rollout, RolloutRelease, Wave
from ..selection import describe_conflicts, rollout_conflicts
from .common import (
    RolloutError,
    cancel_open_deployments,
    freeze_active,
    release_locks,
    require_reason,
    rollout_groups,
    rollout_lock,
    transition,
)

log = logging.getLogger(__name__)

WAVE_KEYS = {
    "cohort", "size_kind", "size_value", "min_soak_s", "success_min_count", "success_min_percent",
    "max_failed_count", "max_failed_percent", "spike_gate", "max_starts_per_min", "pace_growth",
    "pace_growth_after", "name",
}
SPIKE_GATE_KEYS = {"enabled", "metrics", "alpha", "min_devices", "min_exposure_h", "min_ratio", "min_events"}
METRICS = {"crashes", "failed_health_checks", "reboots", "app_restarts"}


def enqueue_evaluate(rollout_id: int) -> None:
    """After commit, ask a worker to tick this rollout now instead of at the next beat."""

    def send() -> None:
        from ..tasks import rollout_evaluate_task

        try:
            rollout_evaluate_task.delay(rollout_id)
        except Exception:  # noqa: BLE001 - the broker being down only delays the tick to the next beat
            log.warning("could not enqueue rollout %s evaluation", rollout_id, exc_info=True)

    transaction.on_commit(send)


def _wave(index: int, spec: dict[str, Any], rollout: Rollout) -> Wave:
    unknown = set(spec) - WAVE_KEYS
    if unknown:
        raise RolloutError(f"wave {index + 1}: unknown settings {', '.join(sorted(unknown))}", field="waves")
    cohort = spec.get("cohort")
    if cohort is None and index == 0:
        raise RolloutError("wave 1 needs a cohort (only later waves can take \"the rest\")", field="waves")
    if cohort is not None and not isinstance(cohort, Cohort):
        raise RolloutError(f"wave {index + 1}: cohort must be a Cohort", field="waves")
    gate = spec.get("spike_gate") or {}
    if set(gate) - SPIKE_GATE_KEYS:
        raise RolloutError(
            f"wave {index + 1}: unknown spike gate settings {', '.join(sorted(set(gate) - SPIKE_GATE_KEYS))}",
            field="waves",
        )
    if set(gate.get("metrics", [])) - METRICS:
        raise RolloutError(f"wave {index + 1}: spike gate metrics must be among {', '.join(sorted(METRICS))}",
                           field="waves")
    fields = {key: spec[key] for key in WAVE_KEYS - {"cohort", "spike_gate"} if spec.get(key) is not None}
    wave = Wave(rollout=rollout, index=index, cohort=cohort, spike_gate=gate, **fields)
    if wave.size_kind == Wave.SizeKind.PERCENT and not 0 < wave.size_value <= 100:
        raise RolloutError(f"wave {index + 1}: a percent size must be above 0 and at most 100", field="waves")
    if wave.size_kind == Wave.SizeKind.COUNT and (wave.size_value < 1 or wave.size_value != int(wave.size_value)):
        raise RolloutError(f"wave {index + 1}: a device count must be a whole number of at least 1", field="waves")
    try:
        wave.full_clean(exclude=["rollout"], validate_unique=False)
    except ValidationError as exc:
        detail = "; ".join(f"{name}: {' '.join(msgs)}" for name, msgs in exc.message_dict.items())
        raise RolloutError(f"wave {index + 1}: {detail}", field="waves") from exc
    return wave


def _check_hardware(releases: list[Release], waves: list[Wave]) -> None:
    """Every device a wave can reach must be able to run every target release."""
    for wave in waves:
        if wave.cohort is None:
            continue
        counts: dict[str, int] = {}
        for hw in wave.cohort.devices().values_list("hw_model", flat=True):
            counts[hw] = counts.get(hw, 0) + 1
        for release in releases:
            unsupported = {hw: n for hw, n in counts.items() if not release.supports(hw)}
            if unsupported:
                listed = ", ".join(f"{hw or '(unknown)'} ({n} devices)" for hw, n in sorted(unsupported.items()))
                raise RolloutError(
                    f"{release} does not support hardware in cohort \"{wave.cohort.name}\": {listed}",
                    field="waves",
                )


@transaction.atomic
def rollout_create(
    *,
    name: str,
    releases: list[Release],
    waves: list[dict],
    actor,
    description: str = "",
    requires_approval: bool = False,
    conflict_policy: str = "refuse",
    settle_s: int = 60,
    max_retries: int = 2,
    retryable_error_codes: list[str] | None = None,
    scheduled_for: datetime | None = None,
) -> Rollout:
    """Create a draft rollout of one release per component (a bundle when several) in waves."""
    if not (name or "").strip():
        raise RolloutError("a rollout needs a name", field="name")
    if not releases:
        raise RolloutError("choose at least one release", field="releases")
    seen: dict[int, Release] = {}
    for release in releases:
        if release.component_id in seen:
            raise RolloutError(
                f"two releases of {release.component.name}: {seen[release.component_id].version} and "
                f"{release.version}; a rollout targets one release per component",
                field="releases",
            )
        seen[release.component_id] = release
    if not waves:
        raise RolloutError("a rollout needs at least one wave", field="waves")
    if conflict_policy not in Rollout.ConflictPolicy.values:
        raise RolloutError(f"conflict policy must be one of {', '.join(Rollout.ConflictPolicy.values)}",
                           field="conflict_policy")
    if settle_s < 0 or max_retries < 0:
        raise RolloutError("settle time and retries cannot be negative", field="settle_s")
    rollout = Rollout(
        name=name.strip(),
        description=description,
        requires_approval=requires_approval,
        conflict_policy=conflict_policy,
        settle_s=settle_s,
        max_retries=max_retries,
        retryable_error_codes=list(retryable_error_codes or []),
        scheduled_for=scheduled_for,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
    )
    wave_rows = [_wave(index, spec, rollout) for index, spec in enumerate(waves)]
    _check_hardware(releases, wave_rows)
    rollout.save()
    RolloutRelease.objects.bulk_create(
        RolloutRelease(rollout=rollout, release=release, component_id=release.component_id) for release in releases
    )
    for wave in wave_rows:
        wave.rollout = rollout
    Wave.objects.bulk_create(wave_rows)
    audit_record(
        actor=actor,
        action="rollout.create",
        obj=rollout,
        after={
            "releases": [str(r) for r in releases],
            "waves": [{"cohort": w.cohort.name if w.cohort else None, "size": f"{w.size_value:g} {w.size_kind}"}
                      for w in wave_rows],
            "requires_approval": requires_approval,
            "conflict_policy": conflict_policy,
        },
    )
    broadcast_event(
        "rollout.state",
        {"rollout": rollout.pk, "name": rollout.name, "state": rollout.state, "previous": None,
         "actor": actor_label(actor), "reason": ""},
        groups=rollout_groups(rollout),
    )
    return rollout


@transaction.atomic
def rollout_submit(*, rollout: Rollout, actor) -> Rollout:
    """Draft → awaiting approval (when it needs one) or scheduled."""
    rollout = rollout_lock(rollout)
    target = Rollout.State.AWAITING_APPROVAL if rollout.requires_approval else Rollout.State.SCHEDULED
    return transition(rollout, target, actor=actor, action="submit")


@transaction.atomic
def rollout_approve(*, rollout: Rollout, actor, reason: str = "") -> Rollout:
    """Four-eyes: someone other than the creator approves; the rollout becomes scheduled."""
    rollout = rollout_lock(rollout)
    if not getattr(actor, "is_authenticated", False):
        raise RolloutError("only a signed-in person can approve a rollout", field="approver")
    if rollout.created_by_id is None or rollout.created_by_id == actor.pk:
        raise RolloutError("a rollout must be approved by someone other than its creator", field="approver")
    return transition(
        rollout, Rollout.State.SCHEDULED, actor=actor, reason=reason, action="approve",
        fields={"approved_by": actor, "approved_at": timezone.now()},
    )


def start_locked(
    rollout: Rollout, *, actor, reason: str = "", now: datetime | None = None, budget_override: bool = False
) -> bool:
    """Start a locked, scheduled rollout now, or leave it waiting; True when it started."""
    now = now or timezone.now()
    if rollout.state != Rollout.State.SCHEDULED:
        label = Rollout.State(rollout.state).label.lower()
        raise RolloutError(f"only a scheduled rollout can start; this one is {label}", field="state")
    freeze = freeze_active()
    if freeze is not None:
        raise RolloutError(f"the fleet is frozen ({freeze.reason}); lift the freeze first", field="state")
    conflicts = rollout_conflicts(rollout)
    if conflicts:
        message = describe_conflicts(conflicts)
        if rollout.conflict_policy == Rollout.ConflictPolicy.REFUSE and actor is not None:
            raise RolloutError(f"cannot start: {message}", field="conflict_policy")
        if rollout.waiting_reason != message[:500]:
            Rollout.objects.filter(pk=rollout.pk).update(waiting_reason=message[:500], scheduled_for=
                                                         rollout.scheduled_for or now)
            audit_record(actor=actor, action="rollout.wait", obj=rollout, reason=message[:500],
                         after={"conflicts": conflicts})
        rollout.waiting_reason = message[:500]
        return False
    # Combination budget (apps.governance): a plan that breaks it needs an admin override.
    from apps.governance.services import rollout_budget_gate

    refusal = rollout_budget_gate(rollout=rollout, actor=actor, override=budget_override, reason=reason)
    if refusal is not None:
        if actor is not None:
            raise RolloutError(f"cannot start: {refusal.message}", field=refusal.field)
        if rollout.waiting_reason != refusal.message[:500]:
            Rollout.objects.filter(pk=rollout.pk).update(waiting_reason=refusal.message[:500])
            audit_record(actor=actor, action="rollout.wait", obj=rollout, reason=refusal.message[:500])
        rollout.waiting_reason = refusal.message[:500]
        return False
    transition(
        rollout, Rollout.State.RUNNING, actor=actor, reason=reason, action="start",
        fields={"started_at": now, "current_wave": 0, "waiting_reason": "", "gates_since": None},
    )
    enqueue_evaluate(rollout.pk)
    return True


@transaction.atomic
def rollout_start(*, rollout: Rollout, actor, reason: str = "", budget_override: bool = False) -> Rollout:
    """Start a scheduled rollout now. With conflicts: refuse (RolloutError) or wait, by its policy.
    A plan breaking the combination budget is refused unless an admin overrides (with a reason)."""
    rollout = rollout_lock(rollout)
    start_locked(rollout, actor=actor, reason=reason, budget_override=budget_override)
    return rollout


@transaction.atomic
def rollout_pause(*, rollout: Rollout, actor, reason: str) -> Rollout:
    reason = require_reason(reason, "pause")
    return transition(rollout_lock(rollout), Rollout.State.PAUSED, actor=actor, reason=reason, action="pause")


@transaction.atomic
def rollout_resume(*, rollout: Rollout, actor, reason: str) -> Rollout:
    """Paused or halted → running. After a halt, gates only look at data from now on."""
    reason = require_reason(reason, "resume")
    rollout = rollout_lock(rollout)
    if freeze_active() is not None:
        hint = "unfreeze it explicitly" if rollout.frozen else "lift the freeze first"
        raise RolloutError(f"the fleet is frozen: {hint}", field="state")
    fields: dict[str, Any] = {"frozen": False}
    was_halted = rollout.state == Rollout.State.HALTED
    if was_halted:
        fields.update(gates_since=timezone.now(), halted_at=None)
    transition(rollout, Rollout.State.RUNNING, actor=actor, reason=reason, action="resume", fields=fields,
               audit_extra={"overrode_halt": rollout.halt_reason} if was_halted else None)
    if was_halted:
        Wave.objects.filter(rollout=rollout, state=Wave.State.HALTED).update(state=Wave.State.RUNNING)
    enqueue_evaluate(rollout.pk)
    return rollout


@transaction.atomic
def rollout_abort(*, rollout: Rollout, actor, reason: str) -> Rollout:
    """Stop for good: devices not started are canceled, devices mid-install are asked to cancel."""
    reason = require_reason(reason, "abort")
    rollout = rollout_lock(rollout)
    now = timezone.now()
    transition(rollout, Rollout.State.ABORTED, actor=actor, reason=reason, action="abort",
               fields={"finished_at": now})
    cancel_open_deployments(rollout, code="rollout_aborted", now=now)
    Wave.objects.filter(rollout=rollout, state__in=(Wave.State.PENDING, Wave.State.RUNNING, Wave.State.HALTED)).update(
        state=Wave.State.ABORTED, finished_at=now
    )
    release_locks(rollout, only_finished=False)
    return rollout


@transaction.atomic
def rollout_halt(*, rollout: Rollout, reason: str, evidence: dict, actor=None) -> Rollout:
    """Stop new deployments at once and record why. Idempotent: a second halt keeps the first evidence."""
    rollout = rollout_lock(rollout)
    if rollout.state == Rollout.State.HALTED:
        return rollout
    now = timezone.now()
    evidence = {**evidence, "halted_at": now.isoformat()}
    transition(rollout, Rollout.State.HALTED, actor=actor, reason=reason, action="halt",
               fields={"halted_at": now, "halt_reason": reason, "halt_evidence": evidence},
               audit_extra={"evidence": evidence})
    Wave.objects.filter(rollout=rollout, index=rollout.current_wave, state=Wave.State.RUNNING).update(
        state=Wave.State.HALTED
    )
    # Same transaction: a halt that rolls back leaves no alert behind. Keyed by rollout, so a
    # halt → resume → halt before anyone acknowledged stays one open alert.
    alert_raise(kind=Alert.Kind.HALT, severity=Alert.Severity.CRITICAL, title=f"Rollout halted: {rollout.name}",
                detail=reason, evidence=evidence, rollout=rollout, dedupe_key=f"halt:rollout:{rollout.pk}",
                first_failing_at=evidence.get("first_failing_report_at"))
    broadcast_event(
        "rollout.halted",
        {"rollout": rollout.pk, "name": rollout.name, "reason": reason, "evidence": evidence},
        groups=rollout_groups(rollout, wall=True),
    )
    return rollout


@transaction.atomic
def rollout_rollback(*, rollout: Rollout, actor, reason: str) -> Rollout:
    """A new, running rollout of the previous release(s) to exactly the devices this one changed."""
    from apps.fleet.services import cohort_create, cohort_members_set

    reason = require_reason(reason, "roll back")
    rollout = rollout_lock(rollout)
    if rollout.state in (Rollout.State.DRAFT, Rollout.State.AWAITING_APPROVAL, Rollout.State.SCHEDULED):
        raise RolloutError("a rollout that never started changed no device", field="state")
    if rollout.state not in Rollout.FINAL_STATES:
        rollout_abort(rollout=rollout, actor=actor, reason=f"rolled back: {reason}")
    changed, previous = _changed_devices(rollout)
    if not changed:
        raise RolloutError("no device runs a release of this rollout: nothing to roll back", field="state")
    releases = [_previous_release(component, versions) for component, versions in sorted(previous.items())]
    cohort = cohort_create(
        name=f"rollback-{rollout.pk}-{timezone.now():%Y%m%d%H%M%S}", kind=Cohort.Kind.EXPLICIT, actor=actor,
        description=f"Devices changed by rollout #{rollout.pk} {rollout.name}"[:300],
    )
    cohort_members_set(cohort=cohort, actor=actor, device_uids=changed)
    rollback = Rollout.objects.create(
        name=f"Roll back {rollout.name}"[:120],
        description=reason,
        rollback_of=rollout,
        conflict_policy=Rollout.ConflictPolicy.REFUSE,
        settle_s=rollout.settle_s,
        max_retries=rollout.max_retries,
        retryable_error_codes=rollout.retryable_error_codes,
        created_by=actor if getattr(actor, "is_authenticated", False) else None,
        state=Rollout.State.SCHEDULED,
    )
    RolloutRelease.objects.bulk_create(
        RolloutRelease(rollout=rollback, release=r, component_id=r.component_id) for r in releases
    )
    Wave.objects.create(rollout=rollback, index=0, name="rollback", cohort=cohort, size_kind=Wave.SizeKind.PERCENT,
                        size_value=100, success_min_count=1, success_min_percent=0, spike_gate={"enabled": False})
    audit_record(actor=actor, action="rollout.rollback", obj=rollback, reason=reason,
                 after={"rollback_of": rollout.pk, "devices": len(changed), "releases": [str(r) for r in releases]})
    start_locked(rollback, actor=actor, reason=reason)
    return rollback


def _changed_devices(rollout: Rollout) -> tuple[list[str], dict[str, dict[str, int]]]:
    """Devices that installed and still run a target version, and the versions they came from."""
    rows = Deployment.objects.filter(rollout=rollout, installed_at__isnull=False).values_list(
        "device__uid", "device__installed", "from_versions", "to_versions"
    )
    changed: list[str] = []
    previous: dict[str, dict[str, int]] = {}
    for uid, installed, before, after in rows:
        moved = {c: v for c, v in after.items() if installed.get(c) == v and before.get(c) and before[c] != v}
        if moved:
            changed.append(uid)
            for component in moved:
                counts = previous.setdefault(component, {})
                counts[before[component]] = counts.get(before[component], 0) + 1
    return changed, previous


def _previous_release(component: str, versions: dict[str, int]) -> Release:
    # The rollout records one release per component: the most common previous one. Each
    # deployment still goes back to the device's own previous version (selection.rollback_versions).
    version = max(sorted(versions), key=lambda v: versions[v])
    release = Release.objects.filter(component__name=component, version=version).first()
    if release is None:
        raise RolloutError(f"release {component} {version} is not in the catalogue", field="releases")
    return release
