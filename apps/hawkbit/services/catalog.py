"""Targets, software modules, artifacts and distribution sets created through the Management API."""

import hashlib
import re

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from apps.audit.services import audit_record
from apps.fleet.models import Artifact, Component, Device, Release, hash_token, new_token
from apps.rollouts.models import RolloutRelease

from ..models import DeletedModule, DistributionSet, TargetInfo
from .common import ALREADY_EXISTS, COMPONENT_RE, NOT_FOUND, OS_MODULE_TYPES, HawkbitError


@transaction.atomic
def target_create(
    *, controller_id: str, actor, name: str = "", description: str = "", security_token: str | None = None
) -> tuple[Device, str]:
    """Register a hawkBit target as a device; the security token is returned once and stored hashed."""
    token = security_token or new_token()
    device = Device(uid=controller_id, token_hash=hash_token(token), enrolled_at=timezone.now())
    try:
        device.full_clean(exclude=["combination"], validate_unique=False)
    except ValidationError as exc:
        raise HawkbitError(f"controllerId {controller_id!r}: {'; '.join(exc.messages)}") from exc
    try:
        with transaction.atomic():
            device.save()
    except IntegrityError as exc:
        raise HawkbitError(f"target {controller_id!r} already exists", status=409,
                           code=ALREADY_EXISTS) from exc
    TargetInfo.objects.create(device=device, name=name or controller_id, description=description)
    audit_record(actor=actor, action="hawkbit.target_create", obj=device, after={"name": name or controller_id})
    return device, token


@transaction.atomic
def target_delete(*, device: Device, actor) -> None:
    audit_record(actor=actor, action="hawkbit.target_delete", obj=device)
    device.delete()


@transaction.atomic
def target_autoregister(*, controller_id: str, tenant: str) -> Device:
    """A gateway-authenticated poll from an unknown controller id registers it (as hawkBit does)."""
    device, created = Device.objects.get_or_create(uid=controller_id, defaults={"enrolled_at": timezone.now()})
    if created:
        TargetInfo.objects.create(device=device, name=controller_id)
        audit_record(actor=f"gateway:{tenant}", action="hawkbit.target_autoregister", obj=device)
    return device


@transaction.atomic
def target_attributes_set(*, device: Device, data: dict[str, str], mode: str = "merge") -> dict:
    """DDI configData: the device's attributes (which cohort filters can use)."""
    if mode == "replace":
        attributes = dict(data)
    elif mode == "remove":
        attributes = {key: value for key, value in device.attributes.items() if key not in data}
    else:
        attributes = {**device.attributes, **data}
    Device.objects.filter(pk=device.pk).update(attributes=attributes)
    device.attributes = attributes
    return attributes


# --- software modules and artifacts -----------------------------------------------------


def component_name_for(module_name: str) -> str:
    """A hawkBit module name as a fleet component name (lower-case, '-' for anything else)."""
    name = re.sub(r"[^a-z0-9-]+", "-", module_name.strip().lower()).strip("-")
    if not COMPONENT_RE.match(name):
        raise HawkbitError(
            f"module name {module_name!r} cannot be a component name: "
            "use letters, digits and '-', starting with a letter"
        )
    return name


@transaction.atomic
def module_create(
    *, name: str, version: str, module_type: str, actor, description: str = "", may_create_component: bool = True
) -> Release:
    """A software module is a Release of the Component named like the module (created when missing)."""
    from apps.fleet.services import component_create, release_create

    component_name = component_name_for(name)
    kind = Component.Kind.OS if module_type.lower() in OS_MODULE_TYPES else Component.Kind.APP
    component = Component.objects.filter(name=component_name).first()
    if component is None:
        if not may_create_component:
            raise HawkbitError(
                f"component {component_name!r} does not exist; creating one needs the admin role",
                status=403, code="hawkbit.server.error.insufficientPermission",
            )
        component = component_create(name=component_name, kind=kind, actor=actor,
                                     position=0 if kind == Component.Kind.OS else 100)
    elif component.kind != kind:
        raise HawkbitError(f"component {component_name!r} is of kind {component.kind}, not {kind}")
    if Release.objects.filter(component=component, version=version).exists():
        raise HawkbitError(f"module {component_name} {version} already exists", status=409,
                           code=ALREADY_EXISTS)
    try:
        return release_create(component=component, version=version, actor=actor, notes=description)
    except ValidationError as exc:  # a version with characters fleetweb refuses
        raise HawkbitError(f"invalid module: {'; '.join(exc.messages)}") from exc


@transaction.atomic
def module_delete(*, module_id: int, actor) -> bool:
    """Delete a module; True when it existed, False when it was deleted before (a repeat)."""
    release = Release.objects.select_for_update().filter(pk=module_id).first()
    if release is None:
        if DeletedModule.objects.filter(module_id=module_id).exists():
            return False
        raise HawkbitError(f"software module {module_id} not found", status=404,
                           code=NOT_FOUND)
    if RolloutRelease.objects.filter(release=release).exists():
        raise HawkbitError(f"software module {module_id} was deployed; it is kept for the rollout history",
                           status=409, code="hawkbit.server.error.entityReadOnly")
    audit_record(actor=actor, action="hawkbit.module_delete", obj=release)
    for artifact in release.artifacts.all():
        if artifact.file:
            path = artifact.file.name
            storage = artifact.file.storage
            transaction.on_commit(lambda storage=storage, path=path: storage.delete(path))
    release.distribution_sets.clear()
    release.delete()
    DeletedModule.objects.create(module_id=module_id)
    return True


def _hashes(uploaded) -> tuple[int, str, str, str]:
    sha1, md5, sha256 = hashlib.sha1(), hashlib.md5(), hashlib.sha256()  # noqa: S324 - hawkBit needs them
    size = 0
    for chunk in uploaded.chunks():
        size += len(chunk)
        sha1.update(chunk)
        md5.update(chunk)
        sha256.update(chunk)
    uploaded.seek(0)
    return size, sha1.hexdigest(), md5.hexdigest(), sha256.hexdigest()


@transaction.atomic
def artifact_upload(
    *, release: Release, uploaded, actor, filename: str = "", expected: dict[str, str] | None = None
) -> Artifact:
    """Store an uploaded file as an artifact of the release, with its size and hashes."""
    filename = (filename or uploaded.name or "").strip()
    if not filename or "/" in filename or "\\" in filename or len(filename) > 200:
        raise HawkbitError("the file needs a plain file name (no '/', at most 200 characters)")
    if Artifact.objects.filter(release=release, filename=filename).exists():
        raise HawkbitError(f"an artifact named {filename!r} already exists in this module", status=409,
                           code="hawkbit.server.error.artifact.uploadFailed.filenameAlreadyExists")
    size, sha1, md5, sha256 = _hashes(uploaded)
    for name, actual in (("sha1", sha1), ("md5", md5), ("sha256", sha256)):
        wanted = (expected or {}).get(name)
        if wanted and wanted.lower() != actual:
            raise HawkbitError(f"{name} of the upload is {actual}, not {wanted}",
                               code=f"hawkbit.server.error.artifact.uploadFailed.checksum.{name}.match")
    artifact = Artifact(release=release, filename=filename, size=size, sha1=sha1, md5=md5, sha256=sha256)
    artifact.file.save(filename, uploaded, save=False)
    path, storage = artifact.file.name, artifact.file.storage
    try:
        with transaction.atomic():
            artifact.save()
    except IntegrityError as exc:
        storage.delete(path)
        raise HawkbitError(f"an artifact named {filename!r} already exists in this module", status=409,
                           code="hawkbit.server.error.artifact.uploadFailed.filenameAlreadyExists") from exc
    audit_record(actor=actor, action="hawkbit.artifact_upload", obj=artifact,
                 after={"filename": filename, "size": size, "sha256": sha256})
    return artifact


# --- distribution sets -------------------------------------------------------------------


@transaction.atomic
def distribution_set_create(
    *, name: str, version: str, module_ids: list[int], actor, description: str = "", set_type: str = "os_app",
    required_migration_step: bool = False,
) -> DistributionSet:
    releases = list(Release.objects.filter(pk__in=module_ids).select_related("component"))
    missing = sorted(set(module_ids) - {r.pk for r in releases})
    if missing:
        raise HawkbitError(f"unknown software modules: {', '.join(map(str, missing))}", status=404,
                           code=NOT_FOUND)
    components = [r.component.name for r in releases]
    if len(set(components)) != len(components):
        raise HawkbitError("a distribution set holds at most one module per component")
    if DistributionSet.objects.filter(name=name, version=version, deleted=False).exists():
        raise HawkbitError(f"distribution set {name}:{version} already exists", status=409,
                           code=ALREADY_EXISTS)
    created_by = str(getattr(actor, "username", actor))[:160]
    dist = DistributionSet.objects.create(name=name, version=version, description=description, type=set_type,
                                          required_migration_step=required_migration_step, created_by=created_by)
    dist.releases.set(releases)
    audit_record(actor=actor, action="hawkbit.set_create", obj=dist,
                 after={"modules": sorted(f"{r.component.name}={r.version}" for r in releases)})
    return dist


@transaction.atomic
def distribution_set_delete(*, dist: DistributionSet, actor) -> bool:
    """Soft delete (actions keep referring to it); False when it was deleted before."""
    changed = DistributionSet.objects.filter(pk=dist.pk, deleted=False).update(deleted=True)
    if changed:
        audit_record(actor=actor, action="hawkbit.set_delete", obj=dist)
    return bool(changed)
