"""hawkBit Management API subset under /rest/v1/ (HTTP Basic auth, fleetweb roles)."""

from django.db import transaction
from django.http import HttpResponse, JsonResponse
from django.urls import reverse

from apps.accounts.roles import ADMIN, OPERATOR, VIEWER, has_role
from apps.fleet.models import Artifact, Device, Release
from apps.rollouts.models import Deployment

from . import selectors, services
from .auth import hawkbit_error, mgmt_api, parse_json
from .models import ActionStatus, DistributionSet, HawkbitAction, TenantConfig

MAX_BATCH = 500


def _ms(value) -> int | None:
    return int(value.timestamp() * 1000) if value else None


def _href(request, name: str, **kwargs) -> dict:
    return {"href": request.build_absolute_uri(reverse(name, kwargs=kwargs))}


def _list_body(request, what: str) -> list:
    data = parse_json(request)
    if not isinstance(data, list) or not data or len(data) > MAX_BATCH:
        raise services.HawkbitError(f"body must be a JSON list of 1 to {MAX_BATCH} {what}")
    if not all(isinstance(item, dict) for item in data):
        raise services.HawkbitError(f"every item must be a JSON object describing one of the {what}")
    return data


def _text(item: dict, key: str, *, required: bool = False, max_len: int = 512) -> str:
    value = item.get(key)
    if value is None and not required:
        return ""
    if not isinstance(value, str) or not value.strip() or len(value) > max_len:
        raise services.HawkbitError(f"{key} is required: a non-empty string of at most {max_len} characters"
                                    if required else f"{key} must be a string of at most {max_len} characters")
    return value.strip()


def _tenant(request) -> str:
    return request.GET.get("tenant") or services.DEFAULT_TENANT


# --- system configuration -----------------------------------------------------------------


@mgmt_api({"GET": VIEWER, "PUT": ADMIN})
def system_config(request, key: str):
    if request.method == "PUT":
        data = parse_json(request)
        if not isinstance(data, dict) or "value" not in data:
            raise services.HawkbitError('body must be {"value": …}')
        config = services.tenant_config_set(tenant=_tenant(request), key=key, value=data["value"], actor=request.user)
    else:
        config = TenantConfig.objects.filter(tenant=_tenant(request).upper()).first() or TenantConfig(
            tenant=_tenant(request).upper())
    return JsonResponse({
        "value": services.config_value(config, key),
        "global": config.pk is None,
        "lastModifiedAt": _ms(config.updated_at),
        "lastModifiedBy": config.updated_by or None,
        "_links": {"self": _href(request, "hawkbit-mgmt-config", key=key)},
    })


# --- targets ---------------------------------------------------------------------------------


def _update_status(device: Device) -> str:
    last = Deployment.objects.filter(device=device).order_by("-id").values_list("state", flat=True).first()
    if last in Deployment.OPEN_STATES:
        return "pending"
    if last in (Deployment.State.FAILED, Deployment.State.ROLLED_BACK):
        return "error"
    if last == Deployment.State.SUCCEEDED:
        return "in_sync"
    return "registered" if device.last_seen is None else "unknown"


def _target(request, device: Device, token: str | None = None) -> dict:
    info = getattr(device, "hawkbit", None)
    body = {
        "controllerId": device.uid,
        "name": info.name if info else device.uid,
        "description": info.description if info else "",
        "updateStatus": _update_status(device),
        "lastControllerRequestAt": _ms(device.last_seen),
        "createdAt": _ms(device.created_at),
        "requestAttributes": not device.attributes,
        "_links": {
            "self": _href(request, "hawkbit-mgmt-target", controller_id=device.uid),
            "attributes": _href(request, "hawkbit-mgmt-target-attributes", controller_id=device.uid),
            "actions": _href(request, "hawkbit-mgmt-target-actions", controller_id=device.uid),
        },
    }
    if token is not None:
        # Shown once: fleetweb stores only the token's hash.
        body["securityToken"] = token
    return body


@mgmt_api({"POST": ADMIN})
def targets(request):
    created = []
    for item in _list_body(request, "targets"):
        controller_id = _text(item, "controllerId", required=True, max_len=128)
        token = item.get("securityToken")
        if token is not None and (not isinstance(token, str) or len(token) < 16 or len(token) > 128):
            raise services.HawkbitError("securityToken must be a string of 16 to 128 characters")
        created.append((controller_id, item, token))
    results = []
    with transaction.atomic():
        for controller_id, item, token in created:
            device, plain = services.target_create(
                controller_id=controller_id, actor=request.user, name=_text(item, "name", max_len=128),
                description=_text(item, "description"), security_token=token,
            )
            results.append(_target(request, device, plain))
    return JsonResponse(results, status=201, safe=False)


def _device(controller_id: str) -> Device:
    device = Device.objects.select_related("hawkbit").filter(uid=controller_id).first()
    if device is None:
        raise services.HawkbitError(f"target {controller_id!r} not found", status=404,
                                    code=services.NOT_FOUND)
    return device


@mgmt_api({"GET": VIEWER, "DELETE": ADMIN})
def target(request, controller_id: str):
    device = _device(controller_id)
    if request.method == "DELETE":
        services.target_delete(device=device, actor=request.user)
        return HttpResponse(status=200)
    return JsonResponse(_target(request, device))


@mgmt_api({"GET": VIEWER})
def target_attributes(request, controller_id: str):
    device = _device(controller_id)
    return JsonResponse({str(k): str(v) for k, v in device.attributes.items()})


# --- actions ---------------------------------------------------------------------------------

DETAIL_STATUS = {
    Deployment.State.PENDING: "running",
    Deployment.State.DOWNLOADING: "download",
    Deployment.State.INSTALLING: "running",
    Deployment.State.SETTLING: "running",
    Deployment.State.SUCCEEDED: "finished",
    Deployment.State.FAILED: "error",
    Deployment.State.CANCELED: "canceled",
    Deployment.State.ROLLED_BACK: "error",
}


def _action(request, deployment: Deployment) -> dict:
    action = selectors.action_of(deployment)
    canceling = deployment.cancel_requested and deployment.is_open
    body = {
        "id": deployment.pk,
        "type": "cancel" if canceling or deployment.state == Deployment.State.CANCELED else "update",
        "status": "pending" if deployment.is_open else "finished",
        "detailStatus": "canceling" if canceling else DETAIL_STATUS[deployment.state],
        "forceType": action.action_type if action else HawkbitAction.Type.FORCED,
        "createdAt": _ms(deployment.created_at),
        "lastModifiedAt": _ms(deployment.updated_at),
        "rollout": deployment.rollout_id,
        "_links": {
            "self": _href(request, "hawkbit-mgmt-action", controller_id=deployment.device.uid, action_id=deployment.pk),
            "target": _href(request, "hawkbit-mgmt-target", controller_id=deployment.device.uid),
            "status": _href(request, "hawkbit-mgmt-action-status", controller_id=deployment.device.uid,
                            action_id=deployment.pk),
        },
    }
    if action is not None and action.distribution_set_id:
        body["_links"]["distributionset"] = _href(request, "hawkbit-mgmt-set", set_id=action.distribution_set_id)
    if action is not None and action.has_maintenance_window:
        body["maintenanceWindow"] = {"schedule": action.maintenance_schedule,
                                     "duration": action.maintenance_duration,
                                     "timezone": action.maintenance_timezone}
    return body


def _deployment(controller_id: str, action_id: int) -> Deployment:
    deployment = (Deployment.objects.select_related("device", "hawkbit")
                  .filter(pk=action_id, device__uid=controller_id).first())
    if deployment is None:
        raise services.HawkbitError(f"action {action_id} of target {controller_id!r} not found", status=404,
                                    code=services.NOT_FOUND)
    return deployment


@mgmt_api({"GET": VIEWER})
def target_actions(request, controller_id: str):
    device = _device(controller_id)
    deployments = Deployment.objects.filter(device=device).select_related("device", "hawkbit").order_by("-id")[:100]
    content = [_action(request, d) for d in deployments]
    return JsonResponse({"content": content, "total": len(content), "size": len(content)})


@mgmt_api({"GET": VIEWER, "DELETE": OPERATOR})
def action(request, controller_id: str, action_id: int):
    deployment = _deployment(controller_id, action_id)
    if request.method == "DELETE":
        force = request.GET.get("force", "").lower() == "true"
        services.action_cancel(deployment=deployment, actor=request.user, force=force)
        return HttpResponse(status=204)
    return JsonResponse(_action(request, deployment))


def _int_param(request, name: str, default: int, high: int) -> int:
    raw = request.GET.get(name, "")
    if raw == "":
        return default
    if not raw.isdigit() or int(raw) > high:
        raise services.HawkbitError(f"{name} must be an integer from 0 to {high}")
    return int(raw)


@mgmt_api({"GET": VIEWER})
def action_status(request, controller_id: str, action_id: int):
    deployment = _deployment(controller_id, action_id)
    offset = _int_param(request, "offset", 0, 10**9)
    limit = _int_param(request, "limit", 50, 500)
    field, _, direction = request.GET.get("sort", "id:DESC").partition(":")
    if field not in ("id", "reportedAt") or direction.upper() not in ("ASC", "DESC", ""):
        raise services.HawkbitError("sort must be id:ASC, id:DESC, reportedAt:ASC or reportedAt:DESC")
    order = "id" if direction.upper() == "ASC" else "-id"
    rows = ActionStatus.objects.filter(deployment=deployment)
    total = rows.count()
    page = rows.order_by(order)[offset:offset + limit]
    content = []
    for row in page:
        entry = {"id": row.id, "type": row.type, "messages": row.messages, "reportedAt": _ms(row.reported_at),
                 "timestamp": _ms(row.reported_at)}
        if row.code is not None:
            entry["code"] = row.code
        content.append(entry)
    return JsonResponse({"content": content, "total": total, "size": len(content)})


# --- software modules and artifacts -----------------------------------------------------------


def _module(request, release: Release) -> dict:
    return {
        "id": release.pk,
        "name": release.component.name,
        "version": release.version,
        "type": "os" if release.component.kind == "os" else "application",
        "typeName": "OS" if release.component.kind == "os" else "Application",
        "vendor": "",
        "description": release.notes,
        "deleted": False,
        "encrypted": False,
        "createdAt": _ms(release.created_at),
        "_links": {
            "self": _href(request, "hawkbit-mgmt-module", module_id=release.pk),
            "artifacts": _href(request, "hawkbit-mgmt-artifacts", module_id=release.pk),
        },
    }


@mgmt_api({"POST": OPERATOR})
def modules(request):
    items = _list_body(request, "software modules")
    results = []
    with transaction.atomic():
        for item in items:
            module_type = _text(item, "type", required=True, max_len=64)
            if module_type.lower() not in ("os", "application", "bapp", "app", "runtime"):
                raise services.HawkbitError("type must be os or application")
            release = services.module_create(
                name=_text(item, "name", required=True, max_len=64), version=_text(item, "version", required=True,
                                                                                max_len=64),
                module_type=module_type, description=_text(item, "description"), actor=request.user,
                may_create_component=has_role(request.user, ADMIN),
            )
            results.append(_module(request, release))
    return JsonResponse(results, status=201, safe=False)


def _release(module_id: int) -> Release:
    release = Release.objects.select_related("component").filter(pk=module_id).first()
    if release is None:
        raise services.HawkbitError(f"software module {module_id} not found", status=404,
                                    code=services.NOT_FOUND)
    return release


@mgmt_api({"GET": VIEWER, "DELETE": OPERATOR})
def module(request, module_id: int):
    if request.method == "DELETE":
        services.module_delete(module_id=module_id, actor=request.user)
        return HttpResponse(status=200)
    return JsonResponse(_module(request, _release(module_id)))


def _artifact(request, artifact: Artifact) -> dict:
    return {
        "id": artifact.pk,
        "providedFilename": artifact.filename,
        "size": artifact.size,
        "hashes": {"sha1": artifact.sha1, "md5": artifact.md5, "sha256": artifact.sha256},
        "_links": {"self": _href(request, "hawkbit-mgmt-artifacts", module_id=artifact.release_id)},
    }


@mgmt_api({"GET": VIEWER, "POST": OPERATOR})
def artifacts(request, module_id: int):
    release = _release(module_id)
    if request.method == "GET":
        return JsonResponse([_artifact(request, a) for a in release.artifacts.all()], safe=False)
    uploaded = request.FILES.get("file")
    if uploaded is None:
        raise services.HawkbitError("multipart field 'file' is required")
    expected = {"sha1": request.POST.get("sha1sum", ""), "md5": request.POST.get("md5sum", ""),
                "sha256": request.POST.get("sha256sum", "")}
    artifact = services.artifact_upload(release=release, uploaded=uploaded, actor=request.user,
                                        filename=request.POST.get("filename", ""), expected=expected)
    return JsonResponse(_artifact(request, artifact), status=201)


# --- distribution sets and assignments --------------------------------------------------------


def _set(request, dist: DistributionSet) -> dict:
    releases = list(dist.releases.select_related("component"))
    return {
        "id": dist.pk,
        "name": dist.name,
        "version": dist.version,
        "description": dist.description,
        "type": dist.type,
        "complete": bool(releases),
        "deleted": dist.deleted,
        "requiredMigrationStep": dist.required_migration_step,
        "createdAt": _ms(dist.created_at),
        "createdBy": dist.created_by,
        "modules": [_module(request, r) for r in releases],
        "_links": {
            "self": _href(request, "hawkbit-mgmt-set", set_id=dist.pk),
            "assignedTargets": _href(request, "hawkbit-mgmt-set-assign", set_id=dist.pk),
        },
    }


@mgmt_api({"POST": OPERATOR})
def sets(request):
    items = _list_body(request, "distribution sets")
    results = []
    with transaction.atomic():
        for item in items:
            raw_modules = item.get("modules", [])
            if not isinstance(raw_modules, list) or not all(
                isinstance(m, dict) and isinstance(m.get("id"), int) for m in raw_modules
            ):
                raise services.HawkbitError('modules must be a list of {"id": <software module id>}')
            dist = services.distribution_set_create(
                name=_text(item, "name", required=True, max_len=128),
                version=_text(item, "version", required=True, max_len=64),
                description=_text(item, "description"), set_type=_text(item, "type", max_len=64) or "os_app",
                module_ids=[m["id"] for m in raw_modules], actor=request.user,
                required_migration_step=bool(item.get("requiredMigrationStep", False)),
            )
            results.append(_set(request, dist))
    return JsonResponse(results, status=201, safe=False)


@mgmt_api({"GET": VIEWER, "DELETE": OPERATOR})
def distribution_set(request, set_id: int):
    dist = DistributionSet.objects.filter(pk=set_id).first()
    if dist is None:
        return hawkbit_error(404, services.NOT_FOUND, f"distribution set {set_id} not found")
    if request.method == "DELETE":
        services.distribution_set_delete(dist=dist, actor=request.user)
        return HttpResponse(status=200)
    return JsonResponse(_set(request, dist))


def _window(item: dict) -> services.MaintenanceWindow | None:
    raw = item.get("maintenanceWindow")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise services.HawkbitError('maintenanceWindow must be {"schedule", "duration", "timezone"}')
    return services.MaintenanceWindow(
        schedule=_text(raw, "schedule", required=True, max_len=128),
        duration=_text(raw, "duration", required=True, max_len=8),
        timezone=_text(raw, "timezone", max_len=6) or "+00:00",
    )


@mgmt_api({"POST": OPERATOR})
def assigned_targets(request, set_id: int):
    dist = DistributionSet.objects.filter(pk=set_id, deleted=False).first()
    if dist is None:
        return hawkbit_error(404, services.NOT_FOUND, f"distribution set {set_id} not found")
    items = _list_body(request, "assignments")
    groups: dict[tuple, list[str]] = {}
    for item in items:
        controller_id = _text(item, "id", required=True, max_len=128)
        action_type = item.get("type", "forced")
        window = _window(item)
        key = (action_type, window.schedule, window.duration, window.timezone) if window else (action_type,)
        groups.setdefault(key, []).append(controller_id)
    uids = [uid for group in groups.values() for uid in group]
    if len(set(uids)) != len(uids):
        raise services.HawkbitError("a target is listed twice")
    devices = {d.uid: d for d in Device.objects.filter(uid__in=uids)}
    missing = [uid for uid in uids if uid not in devices]
    if missing:
        raise services.HawkbitError(f"unknown targets: {', '.join(missing[:10])}", status=404,
                                    code=services.NOT_FOUND)
    deployments = []
    with transaction.atomic():
        for key, group in groups.items():
            window = services.MaintenanceWindow(*key[1:]) if len(key) > 1 else None
            deployments += services.hawkbit_assign(distribution_set=dist, devices=[devices[u] for u in group],
                                                   actor=request.user, action_type=key[0], maintenance_window=window)
    actions = [{"id": d.pk, "_links": {"self": _href(request, "hawkbit-mgmt-action", controller_id=d.device.uid,
                                                         action_id=d.pk)}} for d in deployments]
    return JsonResponse({"assigned": len(actions), "alreadyAssigned": 0, "total": len(actions),
                         "assignedActions": actions})
