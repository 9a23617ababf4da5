"""Reads for the hawkBit APIs: per device or per object, never over the fleet."""

from django.db.models import Prefetch

from apps.fleet.models import Artifact, Device, Release
from apps.rollouts.models import Deployment

from .models import HawkbitAction

# What the DDI auth and poll read of a device; the poll's only write is one UPDATE.
DEVICE_FIELDS = ("id", "uid", "token_hash", "token_revoked", "installed", "attributes", "poll_interval_s",
                 "combination_id", "last_seen")
OFFERED_STATES = (Deployment.State.PENDING, Deployment.State.DOWNLOADING, Deployment.State.INSTALLING)


def ddi_device(controller_id: str) -> Device | None:
    return Device.objects.filter(uid=controller_id).only(*DEVICE_FIELDS).first()


def device_actions(device: Device) -> list[Deployment]:
    """The device's open deployments it may act on now, oldest first (one indexed query).

    A pending deployment of a halted or paused rollout is held back, as in the native API.
    """
    return list(
        Deployment.objects.filter(device=device, state__in=Deployment.OPEN_STATES, released_at__isnull=False)
        .exclude(rollout__state__in=("halted", "paused", "aborted"), state=Deployment.State.PENDING)
        .select_related("hawkbit")
        .only("id", "rollout_id", "device_id", "state", "to_versions", "cancel_requested", "settle_until",
              "hawkbit__action_type", "hawkbit__maintenance_schedule", "hawkbit__maintenance_duration",
              "hawkbit__maintenance_timezone", "hawkbit__deployment_id")
        .order_by("id")
    )


def device_action(device: Device, action_id: int) -> Deployment | None:
    return Deployment.objects.filter(pk=action_id, device=device).select_related("hawkbit").first()


def last_finished_action_id(device: Device) -> int | None:
    return (
        Deployment.objects.filter(device=device, state=Deployment.State.SUCCEEDED)
        .order_by("-finished_at", "-id").values_list("id", flat=True).first()
    )


def action_of(deployment: Deployment) -> HawkbitAction | None:
    try:
        return deployment.hawkbit
    except HawkbitAction.DoesNotExist:
        return None


def deployment_releases(deployment: Deployment) -> list[Release]:
    """The releases a deployment installs, with their artifacts, in component order."""
    releases = []
    query = Release.objects.select_related("component").prefetch_related(
        Prefetch("artifacts", queryset=Artifact.objects.order_by("filename"))
    )
    wanted = deployment.to_versions
    for release in query.filter(component__name__in=list(wanted), version__in=list(wanted.values())):
        if wanted.get(release.component.name) == release.version:
            releases.append(release)
    return sorted(releases, key=lambda r: (r.component.position, r.component.name))


def device_may_download(device: Device, release: Release) -> bool:
    """A device downloads only what one of its open deployments installs (hawkBit: an assigned module)."""
    versions = Deployment.objects.filter(device=device, state__in=Deployment.OPEN_STATES).values_list(
        "to_versions", flat=True
    )
    return any(v.get(release.component.name) == release.version for v in versions)
