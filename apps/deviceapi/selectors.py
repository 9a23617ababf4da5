"""Reads for the device API: what a device should run. Cheap, per device, no fleet-wide work."""

import json
import time
from datetime import UTC

from django.db import connection
from django.db.models import DEFERRED
from django.urls import reverse
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from apps.fleet.models import Artifact, Component, Device
from apps.rollouts.models import Deployment

_COMPONENTS: tuple[float, frozenset[str]] = (0.0, frozenset())
COMPONENT_CACHE_S = 30.0


def component_names() -> frozenset[str]:
    """Known component names, cached per process for a few seconds (components change rarely)."""
    global _COMPONENTS
    loaded_at, names = _COMPONENTS
    if time.monotonic() - loaded_at > COMPONENT_CACHE_S or not names:
        names = frozenset(Component.objects.values_list("name", flat=True))
        _COMPONENTS = (time.monotonic(), names)
    return names


def component_cache_clear() -> None:
    global _COMPONENTS
    _COMPONENTS = (0.0, frozenset())


# The check-in's only read: the device with everything the answer and the fast path need, and
# whether it has an open deployment (served by deployment_device_state_idx). Raw SQL: no ORM
# query compilation on the hot path.
CHECKIN_DEVICE_SQL = (
    "SELECT d.id, d.uid, d.hw_model, d.attributes, d.tags, d.installed, d.combination_id, d.token_hash, "
    "d.token_revoked, d.last_seq, d.last_seen, d.poll_interval_s, "
    "EXISTS (SELECT 1 FROM rollouts_deployment x WHERE x.device_id = d.id AND x.state IN (%s, %s, %s, %s)) "
    "FROM fleet_device d WHERE d.uid = %s"
)
CHECKIN_DEVICE_FIELDS = ("id", "uid", "hw_model", "attributes", "tags", "installed", "combination_id", "token_hash",
                         "token_revoked", "last_seq", "last_seen", "poll_interval_s")
_JSON_AT = (3, 4, 5)
_OPEN_STATES = tuple(state.value for state in Deployment.OPEN_STATES)


def checkin_device(uid: str) -> tuple[Device, bool] | None:
    """The device named `uid` (auth fields included) and whether it has an open deployment; one statement."""
    with connection.cursor() as cursor:
        cursor.execute(CHECKIN_DEVICE_SQL, [*_OPEN_STATES, uid])
        row = cursor.fetchone()
    if row is None:
        return None
    values = list(row[:12])
    for index in _JSON_AT:
        if isinstance(values[index], str | bytes):
            values[index] = json.loads(values[index])
    if isinstance(values[10], str):  # SQLite (the demo) hands back text
        values[10] = parse_datetime(values[10])
    if values[10] is not None and timezone.is_naive(values[10]):
        values[10] = timezone.make_aware(values[10], UTC)
    values[8] = bool(values[8])
    by_name = dict(zip(CHECKIN_DEVICE_FIELDS, values, strict=True))
    # from_db takes the values in the model's field order (absent ones deferred).
    ordered = [by_name.get(f.attname, DEFERRED) for f in Device._meta.concrete_fields]
    return Device.from_db(connection.alias, CHECKIN_DEVICE_FIELDS, ordered), bool(row[12])


def device_deployment(*, device: Device, deployment_id: int) -> Deployment | None:
    return Deployment.objects.filter(pk=deployment_id, device=device).select_related("rollout").first()


# A pending deployment of a rollout in one of these states is held: the device is not told.
HELD_ROLLOUT_STATES = ("halted", "paused", "aborted")


def device_open_deployments(device: Device, *, read: list[Deployment] | None = None) -> list[Deployment]:
    """Open deployments the device may act on now (released by the pacer, not held by a halt).

    `read`: the device's open deployments (rollout loaded) as the check-in already read and
    advanced them; filtered here instead of reading them again.
    """
    if read is not None:
        return [
            d for d in read
            if d.state in Deployment.OPEN_STATES and d.released_at is not None
            and not (d.state == Deployment.State.PENDING and d.rollout.state in HELD_ROLLOUT_STATES)
        ]
    return list(
        Deployment.objects.filter(device=device, state__in=Deployment.OPEN_STATES, released_at__isnull=False)
        .exclude(rollout__state__in=HELD_ROLLOUT_STATES, state=Deployment.State.PENDING)
        .only("id", "rollout_id", "state", "to_versions", "from_versions", "cancel_requested")
    )


def device_desired_state(*, device: Device, request, deployments: list[Deployment] | None = None) -> dict:
    """The check-in answer: per component, what is installed and what the device should run."""
    components: dict[str, dict] = {
        name: {"installed": version, "target": version} for name, version in sorted(device.installed.items())
    }
    deployments = device_open_deployments(device, read=deployments)
    wanted: dict[tuple[str, str], Deployment] = {}
    for deployment in deployments:
        for name, version in deployment.to_versions.items():
            wanted[(name, version)] = deployment
    artifacts_by_key: dict[tuple[str, str], list[dict]] = {}
    if wanted:
        rows = Artifact.objects.filter(
            release__component__name__in={name for name, _ in wanted},
            release__version__in={version for _, version in wanted},
        ).values("id", "filename", "size", "sha256", "sha1", "md5", "url", "release__component__name",
                 "release__version")
        for row in rows:
            key = (row["release__component__name"], row["release__version"])
            if key not in wanted:
                continue
            link = row["url"] or request.build_absolute_uri(
                reverse("deviceapi:artifact", kwargs={"device_id": device.uid, "artifact_id": row["id"]})
            )
            artifacts_by_key.setdefault(key, []).append(
                {"filename": row["filename"], "size": row["size"], "sha256": row["sha256"], "sha1": row["sha1"],
                 "md5": row["md5"], "url": link}
            )
    for (name, version), deployment in wanted.items():
        entry = components.setdefault(name, {"installed": None, "target": version})
        entry.update(
            {
                "target": version,
                "deployment_id": deployment.pk,
                "deployment_state": deployment.state,
                "action": "cancel" if deployment.cancel_requested else "install",
                "feedback_url": request.build_absolute_uri(
                    reverse("deviceapi:feedback", kwargs={"device_id": device.uid, "deployment_id": deployment.pk})
                ),
                "artifacts": artifacts_by_key.get((name, version), []),
            }
        )
    return {
        "device_id": device.uid,
        "next_checkin_s": device.effective_poll_interval_s,
        "components": components,
    }
