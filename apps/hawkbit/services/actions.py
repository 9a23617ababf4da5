"""Assignments and the life of an action: cancel, DDI feedback, the poll's write."""

import uuid
from dataclasses import dataclass

from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from apps.audit.services import audit_record
from apps.fleet.models import Cohort, Device
from apps.fleet.services import device_installed_set
from apps.rollouts.models import ComponentLock, Deployment, FleetFreeze, Rollout, RolloutRelease, Wave

from .. import maintenance
from ..models import ActionStatus, DistributionSet, HawkbitAction
from .common import NOT_FOUND, HawkbitError


@dataclass
class MaintenanceWindow:
    schedule: str
    duration: str
    timezone: str


def status_add(
    *, deployment: Deployment, type: str, messages: list[str] | None = None, code: int | None = None
) -> None:
    """Append to the action's status log (hawkBit keeps at most a few dozen messages per entry)."""
    messages = [message[:512] for message in (messages or [])][:48]
    ActionStatus.objects.create(deployment=deployment, type=type, messages=messages, code=code)


@transaction.atomic
def hawkbit_assign(
    *, distribution_set: DistributionSet, devices: list[Device], actor, action_type: str = "forced",
    maintenance_window: MaintenanceWindow | None = None,
) -> list[Deployment]:
    """Assign a distribution set to devices directly: a one-wave rollout running at once.

    Every (device, component) pair is claimed with a ComponentLock; a device another
    active rollout is updating for one of the set's components is refused (409) and
    nothing is written.
    """
    if distribution_set.deleted:
        raise HawkbitError("the distribution set is deleted", status=404, code=NOT_FOUND)
    if action_type not in HawkbitAction.Type.values:
        raise HawkbitError(f"type must be one of {', '.join(HawkbitAction.Type.values)}")
    if maintenance_window is not None:
        try:
            maintenance.validate(maintenance_window.schedule, maintenance_window.duration, maintenance_window.timezone)
        except maintenance.ScheduleError as exc:
            raise HawkbitError(f"maintenanceWindow: {exc}",
                               code="hawkbit.server.error.maintenanceScheduleInvalid") from exc
    freeze = FleetFreeze.objects.filter(active=True).first()
    if freeze is not None:
        raise HawkbitError(f"the fleet is frozen ({freeze.reason}); no new deployments until the freeze is lifted",
                           status=409, code="hawkbit.server.error.fleetFrozen")
    releases = list(distribution_set.releases.select_related("component"))
    if not releases:
        raise HawkbitError("the distribution set has no software modules",
                           code="hawkbit.server.error.distributionset.incomplete")
    to_versions = {r.component.name: r.version for r in releases}
    component_ids = [r.component_id for r in releases]
    # Locks of deployments that already ended are leftovers; they must not block a new assignment.
    ComponentLock.objects.filter(
        device__in=devices, component_id__in=component_ids, deployment__state__in=Deployment.FINAL_STATES
    ).delete()
    busy = list(
        ComponentLock.objects.filter(device__in=devices, component_id__in=component_ids)
        .values_list("device__uid", "component__name", "deployment__rollout__name")
    )
    if busy:
        uid, component, rollout = busy[0]
        raise HawkbitError(
            f"target {uid} is already being updated for {component} by rollout {rollout!r}; "
            f"cancel that action first ({len(busy)} conflict(s))",
            status=409, code="hawkbit.server.error.target.alreadyUpdating",
        )
    now = timezone.now()
    label = uuid.uuid4().hex[:8]
    user = actor if getattr(actor, "is_authenticated", False) else None
    cohort = Cohort.objects.create(name=f"hawkbit-{label}", kind=Cohort.Kind.EXPLICIT, created_by=user,
                                   description=f"hawkBit assignment of {distribution_set}")
    cohort.members.set(devices)
    rollout = Rollout.objects.create(
        name=f"hawkBit assignment {distribution_set} ({label})", state=Rollout.State.RUNNING, created_by=user,
        started_at=now, settle_s=0,
        description=f"Direct assignment through the hawkBit Management API ({action_type}).",
    )
    RolloutRelease.objects.bulk_create(
        [RolloutRelease(rollout=rollout, release=r, component_id=r.component_id) for r in releases]
    )
    wave = Wave.objects.create(rollout=rollout, index=0, name="assignment", cohort=cohort,
                               size_kind=Wave.SizeKind.PERCENT, size_value=100, state=Wave.State.RUNNING,
                               started_at=now, planned_devices=len(devices),
                               # A direct assignment is every named target, not a sample: the engine
                               # must not complete it at 90% and cancel the rest, and hawkBit has no
                               # health counters to compare.
                               success_min_percent=100, spike_gate={"enabled": False})
    deployments = Deployment.objects.bulk_create(
        [Deployment(rollout=rollout, wave=wave, device=d, released_at=now, from_versions=dict(d.installed),
                    to_versions=to_versions) for d in devices]
    )
    try:
        with transaction.atomic():
            ComponentLock.objects.bulk_create(
                [ComponentLock(device=dep.device, component_id=cid, deployment=dep)
                 for dep in deployments for cid in component_ids]
            )
    except IntegrityError as exc:  # a concurrent assignment claimed a pair after our check
        raise HawkbitError("a target is already being updated by another rollout; retry", status=409,
                           code="hawkbit.server.error.target.alreadyUpdating") from exc
    window = maintenance_window or MaintenanceWindow("", "", "")
    HawkbitAction.objects.bulk_create(
        [HawkbitAction(deployment=dep, distribution_set=distribution_set, action_type=action_type,
                       maintenance_schedule=window.schedule, maintenance_duration=window.duration,
                       maintenance_timezone=window.timezone) for dep in deployments]
    )
    ActionStatus.objects.bulk_create(
        [ActionStatus(deployment=dep, type="running", messages=[f"Assignment initiated by user '{actor}'"])
         for dep in deployments]
    )
    audit_record(actor=actor, action="hawkbit.assign", obj=rollout,
                 after={"set": str(distribution_set), "targets": [d.uid for d in devices], "type": action_type})
    return deployments


def _release_locks_and_maybe_complete(deployment: Deployment, now) -> None:
    ComponentLock.objects.filter(deployment=deployment).delete()
    # A direct assignment's rollout is done when none of its deployments is open any more.
    # (The engine would only complete it once 90 % succeeded; a direct assignment has no gates to pass.)
    if not Deployment.objects.filter(rollout_id=deployment.rollout_id, state__in=Deployment.OPEN_STATES).exists():
        completed = Rollout.objects.filter(pk=deployment.rollout_id, state=Rollout.State.RUNNING,
                                           name__startswith="hawkBit assignment").update(
            state=Rollout.State.COMPLETED, finished_at=now)
        if completed:
            audit_record(actor=None, action="rollout.complete", object_type="rollouts.rollout",
                         object_id=str(deployment.rollout_id), reason="every device of the hawkBit assignment finished")


def _finish_settled(deployment: Deployment, now) -> bool:
    """SETTLING → SUCCEEDED once the settle time is over: the same conditional transition
    as the check-in's (apps.rollouts.services._finish), so a racing engine tick cannot double-count."""
    if deployment.state != Deployment.State.SETTLING or (deployment.settle_until and deployment.settle_until > now):
        return False
    changed = Deployment.objects.filter(pk=deployment.pk, state=Deployment.State.SETTLING).update(
        state=Deployment.State.SUCCEEDED, finished_at=now
    )
    if changed:
        deployment.state = Deployment.State.SUCCEEDED
        _release_locks_and_maybe_complete(deployment, now)
    return bool(changed)


@transaction.atomic
def action_cancel(*, deployment: Deployment, actor, force: bool = False) -> Deployment:
    """Soft cancel: the device is told (cancelAction) and confirms; force: canceled at once."""
    deployment = Deployment.objects.select_for_update().get(pk=deployment.pk)
    if deployment.state in Deployment.FINAL_STATES:
        raise HawkbitError(f"action {deployment.pk} is already {deployment.state}", status=409,
                           code="hawkbit.server.error.action.cancelFailed")
    now = timezone.now()
    if force:
        Deployment.objects.filter(pk=deployment.pk).update(
            state=Deployment.State.CANCELED, finished_at=now, cancel_requested=False,
            error_detail="force-quit through the hawkBit Management API")
        deployment.state = Deployment.State.CANCELED
        status_add(deployment=deployment, type="canceled", messages=[f"Action force-quit by user '{actor}'"])
        _release_locks_and_maybe_complete(deployment, now)
    else:
        Deployment.objects.filter(pk=deployment.pk).update(cancel_requested=True)
        deployment.cancel_requested = True
        status_add(deployment=deployment, type="canceling", messages=[f"Cancel requested by user '{actor}'"])
    audit_record(actor=actor, action="hawkbit.action_force_quit" if force else "hawkbit.action_cancel",
                 obj=deployment)
    return deployment


def action_retrieved(*, deployment: Deployment) -> None:
    """The device fetched its deploymentBase for the first time (hawkBit's 'retrieved' status)."""
    with transaction.atomic():
        if Deployment.objects.filter(pk=deployment.pk, first_seen_at__isnull=True).update(first_seen_at=timezone.now()):
            status_add(deployment=deployment, type="retrieved",
                       messages=["Target retrieved update action and should start now the download."])


@dataclass
class Feedback:
    execution: str
    finished: str
    details: list[str]
    progress: int | None = None
    code: int | None = None


# execution (+ finished) → hawkBit status type recorded in the action's log.
def _status_type(feedback: Feedback, *, cancel: bool) -> str:
    if feedback.execution == "closed":
        if cancel:
            return "canceled" if feedback.finished == "success" else "canceled_rejected"
        return {"success": "finished", "failure": "error"}.get(feedback.finished, "running")
    if feedback.execution == "rejected":
        return "canceled_rejected" if cancel else "warning"
    return {"proceeding": "running", "resumed": "running", "canceled": "canceled"}.get(feedback.execution,
                                                                                          feedback.execution)


@transaction.atomic
def action_feedback(*, deployment: Deployment, feedback: Feedback) -> Deployment:
    """DDI deploymentBase feedback onto the deployment lifecycle (FeedbackError 410 on a closed action)."""
    from apps.rollouts.services import deployment_feedback

    action = HawkbitAction.objects.filter(deployment_id=deployment.pk).first()
    download_only = action is not None and action.action_type == HawkbitAction.Type.DOWNLOAD_ONLY
    detail = "; ".join(feedback.details)[:1000]
    error_code = str(feedback.code) if feedback.code is not None else ""
    state = None
    if feedback.execution == "closed":
        state = {"success": "installed", "failure": "failed"}.get(feedback.finished)
        if state == "installed" and download_only:
            state = "downloaded"
    elif feedback.execution == "download":
        state = "downloading"
    elif feedback.execution == "downloaded":
        state = "downloaded"
    elif feedback.execution in ("proceeding", "resumed"):
        state = "installing"
    elif feedback.execution == "canceled":
        state = "canceled"
    # scheduled, rejected (a soft action the device postpones): logged, the deployment stays as it is.
    if state is not None:
        deployment = deployment_feedback(deployment=deployment, state=state, progress=feedback.progress,
                                         error_code=error_code, detail=detail if state == "failed" else "")
    now = timezone.now()
    status_add(deployment=deployment, type=_status_type(feedback, cancel=False), messages=feedback.details,
               code=feedback.code)
    if state == "installed" and deployment.state == Deployment.State.SETTLING:
        # hawkBit clients never report versions: a successful close is the device's word it runs the set.
        device = Device.objects.select_for_update().get(pk=deployment.device_id)
        device_installed_set(device=device, installed={**device.installed, **deployment.to_versions}, now=now)
        _finish_settled(deployment, now)
    elif state == "downloaded" and download_only and deployment.state not in Deployment.FINAL_STATES:
        # A download-only action is closed by "downloaded"; nothing was installed, so no version changes.
        Deployment.objects.filter(pk=deployment.pk, state=deployment.state).update(
            state=Deployment.State.SUCCEEDED, finished_at=now, error_detail="download only: downloaded")
        deployment.state = Deployment.State.SUCCEEDED
        _release_locks_and_maybe_complete(deployment, now)
    elif deployment.state in (Deployment.State.FAILED, Deployment.State.CANCELED):
        _release_locks_and_maybe_complete(deployment, now)
    return deployment


@transaction.atomic
def cancel_feedback(*, deployment: Deployment, feedback: Feedback) -> Deployment:
    """DDI cancelAction feedback: closed+success → canceled; rejected or failure → the action runs on."""
    from apps.rollouts.services import deployment_feedback

    status_add(deployment=deployment, type=_status_type(feedback, cancel=True), messages=feedback.details,
               code=feedback.code)
    now = timezone.now()
    confirmed = feedback.execution == "canceled" or (feedback.execution == "closed" and feedback.finished == "success")
    if confirmed:
        deployment = deployment_feedback(deployment=deployment, state="canceled", detail="canceled by the device")
        Deployment.objects.filter(pk=deployment.pk).update(cancel_requested=False)
        deployment.cancel_requested = False
        _release_locks_and_maybe_complete(deployment, now)
    elif feedback.execution == "rejected" or (feedback.execution == "closed" and feedback.finished == "failure"):
        Deployment.objects.filter(pk=deployment.pk).update(cancel_requested=False)
        deployment.cancel_requested = False
    return deployment


def poll_seen(*, device: Device, now) -> None:
    """The DDI poll's one write: last seen and the check-in counter."""
    Device.objects.filter(pk=device.pk).update(last_seen=now, checkin_count=F("checkin_count") + 1)
    device.last_seen = now


def settle_due(*, deployment: Deployment, now) -> bool:
    """A SETTLING deployment of a device that only speaks DDI succeeds when its settle time is over."""
    with transaction.atomic():
        return _finish_settled(deployment, now)
