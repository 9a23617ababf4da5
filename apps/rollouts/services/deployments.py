"""Per-device deployment changes. The check-in hook and feedback are the contract with the device API."""

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from apps.audit.services import audit_record
from apps.fleet.models import Device

from ..models import ComponentLock, Deployment
from .common import RolloutError


class FeedbackError(Exception):
    def __init__(self, message: str, *, status: int = 409, code: str = "conflict"):
        super().__init__(message)
        self.status = status
        self.code = code


def _unhealthy(health: dict[str, int]) -> bool:
    # One crash in a report is the fleet's normal noise (the baseline crashes too); whether
    # the new release crashes *more* is the spike gate's statistical question. A device fails
    # its settle only on a burst that no healthy device shows: a crash loop, failing checks.
    events = (health.get("crashes") or 0) + (health.get("failed_health_checks") or 0)
    return events >= settings.FLEET["SETTLE_UNHEALTHY_EVENTS"]


def deployments_on_checkin(
    *, device: Device, installed: dict[str, str], health: dict[str, int], now: datetime
) -> list[Deployment]:
    """Advance the device's open deployments from what it reports (inside the check-in transaction).

    Returns the deployments it read, with their new states, so the check-in answer needs no
    second read of them.

    Success is only recorded once the device runs the new version *and* stayed healthy for
    the rollout's settle time; coming back on the old version after an install is a failure
    (an A/B fallback), never a success.
    """
    open_deployments = list(
        Deployment.objects.filter(device=device, state__in=Deployment.OPEN_STATES).select_related("rollout")
    )
    silent = [d.pk for d in open_deployments if d.silent]
    if silent:
        # The device is back: it is not silent any more, whatever happens next.
        Deployment.objects.filter(pk__in=silent).update(silent=False)
    for deployment in open_deployments:
        on_target = all(installed.get(name) == version for name, version in deployment.to_versions.items())
        if deployment.state == Deployment.State.SETTLING:
            # A check-in the device sent just before its "installed" report can be processed
            # just after it: it still shows the old version and the old health. Only reports
            # that arrive after a short grace period are evidence of a fallback.
            grace = timedelta(seconds=settings.FLEET["FALLBACK_GRACE_S"])
            if deployment.installed_at and now < deployment.installed_at + grace:
                continue
            if not on_target:
                _finish(deployment, Deployment.State.FAILED, now, code="fallback",
                        detail="device came back on the previous version after installing")
            elif _unhealthy(health):
                _finish(deployment, Deployment.State.FAILED, now, code="unhealthy_after_install",
                        detail=f"unhealthy while settling: {health}")
            elif deployment.settle_until and now >= deployment.settle_until:
                _finish(deployment, Deployment.State.SUCCEEDED, now)
        elif on_target and deployment.state in (Deployment.State.DOWNLOADING, Deployment.State.INSTALLING):
            _settle(deployment, now)
        elif on_target and deployment.state == Deployment.State.PENDING and deployment.released_at:
            _settle(deployment, now)
    return open_deployments


def _settle(deployment: Deployment, now: datetime) -> None:
    settle_until = now + timedelta(seconds=deployment.rollout.settle_s)
    Deployment.objects.filter(pk=deployment.pk, state=deployment.state).update(
        state=Deployment.State.SETTLING, installed_at=deployment.installed_at or now, settle_until=settle_until
    )
    deployment.state = Deployment.State.SETTLING
    deployment.settle_until = settle_until


def _finish(deployment: Deployment, state: str, now: datetime, *, code: str = "", detail: str = "") -> bool:
    changed = Deployment.objects.filter(pk=deployment.pk, state=deployment.state).update(
        state=state, finished_at=now, error_code=code, error_detail=detail[:1000]
    )
    if changed:
        deployment.state = state
    return bool(changed)


# Open states in the order a device goes through them; feedback never moves a deployment back.
# Downloading and installing are one step: multi-chunk clients (hawkBit) download the next
# chunk after installing the first, so they may alternate.
_STEP = {Deployment.State.PENDING: 0, Deployment.State.DOWNLOADING: 1, Deployment.State.INSTALLING: 1,
         Deployment.State.SETTLING: 2}
_FEEDBACK_STEP = {"downloading": Deployment.State.DOWNLOADING, "downloaded": Deployment.State.DOWNLOADING,
                  "installing": Deployment.State.INSTALLING, "installed": Deployment.State.SETTLING,
                  "succeeded": Deployment.State.SETTLING}


@transaction.atomic
def deployment_feedback(
    *, deployment: Deployment, state: str, progress: int | None = None, error_code: str = "", detail: str = ""
) -> Deployment:
    """Apply a device's progress/result report to its deployment."""
    now = timezone.now()
    deployment = Deployment.objects.select_for_update().select_related("rollout").get(pk=deployment.pk)
    if deployment.state in Deployment.FINAL_STATES:
        if deployment.state == state or (state in ("installed", "succeeded") and deployment.state == "succeeded"):
            return deployment  # a retried report of what we already know
        # Late feedback for a closed deployment (canceled by an operator or an abort, or already
        # finished): nothing changes, and the device is told why so it stops reporting.
        why = f" ({deployment.error_code})" if deployment.error_code else ""
        raise FeedbackError(f"deployment already {deployment.state}{why}", status=410, code="gone")
    # Devices retry and networks reorder: a report of a step the deployment has already passed
    # (a late "installing" after "installed", a replayed "installed" while settling) is
    # acknowledged without moving it backwards or restarting its settle time.
    if state in _FEEDBACK_STEP:
        step, current = _STEP[_FEEDBACK_STEP[state]], _STEP[deployment.state]
        if step < current or (step == current and _FEEDBACK_STEP[state] == deployment.state):
            # A replay, or progress within the step it is in: only progress may grow.
            fields = {"progress": progress} if progress is not None and progress > deployment.progress else {}
            if fields or deployment.silent:
                Deployment.objects.filter(pk=deployment.pk).update(**fields, silent=False)
                deployment.progress, deployment.silent = fields.get("progress", deployment.progress), False
            return deployment
    if state == "downloading" or state == "downloaded":
        deployment.state = Deployment.State.DOWNLOADING
    elif state == "installing":
        deployment.state = Deployment.State.INSTALLING
    elif state in ("installed", "succeeded"):
        # Not a success yet: the device must come back on the new version and stay healthy.
        deployment.state = Deployment.State.SETTLING
        deployment.installed_at = now
        deployment.settle_until = now + timedelta(seconds=deployment.rollout.settle_s)
    elif state == "failed":
        deployment.state = Deployment.State.FAILED
        deployment.finished_at = now
        deployment.error_code = error_code or "failed"
        deployment.error_detail = detail[:1000]
    elif state == "canceled":
        deployment.state = Deployment.State.CANCELED
        deployment.finished_at = now
        deployment.cancel_requested = False
    if progress is not None:
        deployment.progress = progress
    if deployment.first_seen_at is None:
        deployment.first_seen_at = now
    deployment.silent = False
    deployment.save()
    return deployment


@transaction.atomic
def deployment_cancel(*, deployment: Deployment, actor, force: bool = False) -> Deployment:
    """Cancel one device's deployment: ask the device (it confirms), or with `force` mark it canceled now.

    Force is for a device that will never answer (replaced, bricked): its claim on the
    component is released at once so another rollout may target it.
    """
    deployment = Deployment.objects.select_for_update().select_related("device").get(pk=deployment.pk)
    if deployment.state in Deployment.FINAL_STATES:
        raise RolloutError(f"the deployment is already {deployment.get_state_display().lower()}", field="state")
    before = {"state": deployment.state, "cancel_requested": deployment.cancel_requested}
    if force:
        deployment.state = Deployment.State.CANCELED
        deployment.finished_at = timezone.now()
        deployment.error_code = "canceled_by_operator"
        deployment.cancel_requested = False
        deployment.retry_at = None
        ComponentLock.objects.filter(deployment=deployment).delete()
    else:
        deployment.cancel_requested = True
    deployment.save()
    audit_record(
        actor=actor, action="deployment.cancel", obj=deployment, before=before,
        after={"state": deployment.state, "cancel_requested": deployment.cancel_requested, "force": force},
    )
    return deployment
