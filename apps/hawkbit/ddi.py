"""hawkBit DDI API v1 (device side), under /{tenant}/controller/v1/{controllerId}.

Plain sync views like the native device API. Clients are strict: feedback is answered
with exactly 200 and an empty body, links are absolute HAL links.
"""

import zlib

from django.core.exceptions import RequestDataTooBig
from django.http import HttpResponse, JsonResponse
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods, require_POST, require_safe

from apps.deviceapi.views import serve_artifact
from apps.fleet.models import Release
from apps.rollouts.models import Deployment
from apps.rollouts.services import FeedbackError

from . import maintenance, selectors, services
from .auth import ddi_auth, hawkbit_error, parse_json
from .models import HawkbitAction

EXECUTIONS = {"closed", "proceeding", "canceled", "scheduled", "rejected", "resumed", "downloaded", "download"}
FINISHED = {"success", "failure", "none"}
MAX_FEEDBACK_BODY = 256 * 1024
BAD_REQUEST = "hawkbit.server.error.request"


def not_found(message: str):
    return hawkbit_error(404, services.NOT_FOUND, message)


def _origin(request) -> str:
    """scheme://host[:port] as the client reached us, honouring a proxy's X-Forwarded-Proto."""
    forwarded = request.META.get("HTTP_X_FORWARDED_PROTO", "").split(",")[0].strip().lower()
    scheme = forwarded if forwarded in ("http", "https") else request.scheme
    return f"{scheme}://{request.get_host()}"


def _link(request, name: str, **kwargs) -> str:
    return _origin(request) + reverse(name, kwargs=kwargs)


def _sleep(seconds: int) -> str:
    return f"{seconds // 3600:02d}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _handling(deployment: Deployment, now) -> tuple[str, str, str | None]:
    """(download, update, maintenanceWindow) of an action, as hawkBit announces them."""
    action = selectors.action_of(deployment)
    action_type = action.action_type if action else HawkbitAction.Type.FORCED
    download, update = {
        HawkbitAction.Type.SOFT: ("attempt", "attempt"),
        HawkbitAction.Type.DOWNLOAD_ONLY: ("forced", "skip"),
    }.get(action_type, ("forced", "forced"))
    window = None
    if action is not None and action.has_maintenance_window:
        is_open = maintenance.window_open(action.maintenance_schedule, action.maintenance_duration,
                                          action.maintenance_timezone, now)
        window = "available" if is_open else "unavailable"
        if not is_open:
            update = "skip"
    return download, update, window


def _etag(deployment: Deployment, handling: tuple) -> str:
    # Changes whenever what the device would read at deploymentBase changes (hawkBit's `?c=`).
    key = f"{deployment.pk}:{deployment.cancel_requested}:{':'.join(str(h) for h in handling)}"
    return str(zlib.crc32(key.encode()) - 2**31)


@require_GET
@ddi_auth
def base(request, tenant: str, controller_id: str):
    """The poll: one UPDATE (last seen), one read of the device's open actions."""
    device = request.device
    now = timezone.now()
    services.poll_seen(device=device, now=now)
    offered = None
    for deployment in selectors.device_actions(device):
        if deployment.state == Deployment.State.SETTLING:
            services.settle_due(deployment=deployment, now=now)
        elif offered is None and deployment.state in selectors.OFFERED_STATES:
            offered = deployment
    ids = {"tenant": tenant, "controller_id": controller_id}
    links = {}
    if offered is not None and offered.cancel_requested:
        links["cancelAction"] = {"href": _link(request, "hawkbit-ddi-cancel", action_id=offered.pk, **ids)}
    elif offered is not None:
        href = _link(request, "hawkbit-ddi-deployment", action_id=offered.pk, **ids)
        links["deploymentBase"] = {"href": f"{href}?c={_etag(offered, _handling(offered, now))}"}
    else:
        finished = selectors.last_finished_action_id(device)
        if finished is not None:
            links["installedBase"] = {"href": _link(request, "hawkbit-ddi-installed", action_id=finished, **ids)}
    if not device.attributes:
        links["configData"] = {"href": _link(request, "hawkbit-ddi-config-data", **ids)}
    sleep = device.poll_interval_s or services.tenant_config(tenant).polling_seconds
    return JsonResponse({"config": {"polling": {"sleep": _sleep(sleep)}}, "_links": links})


def _chunks(request, deployment: Deployment, tenant: str, controller_id: str) -> list[dict]:
    chunks = []
    for release in selectors.deployment_releases(deployment):
        artifacts = []
        for artifact in release.artifacts.all():
            href = artifact.url or _link(request, "hawkbit-ddi-artifact", tenant=tenant, controller_id=controller_id,
                                         module_id=release.pk, filename=artifact.filename)
            links = {"download": {"href": href}, "download-http": {"href": href}}
            if not artifact.url:
                links["md5sum"] = links["md5sum-http"] = {"href": f"{href}.MD5SUM"}
            artifacts.append({
                "filename": artifact.filename,
                "size": artifact.size,
                "hashes": {"sha1": artifact.sha1, "md5": artifact.md5, "sha256": artifact.sha256},
                "_links": links,
            })
        chunks.append({
            "part": "os" if release.component.kind == "os" else "bApp",
            "version": release.version,
            "name": release.component.name,
            "artifacts": artifacts,
        })
    return chunks


@require_GET
@ddi_auth
def deployment_base(request, tenant: str, controller_id: str, action_id: int):
    deployment = selectors.device_action(request.device, action_id)
    if deployment is None or deployment.state in Deployment.FINAL_STATES or deployment.cancel_requested:
        return not_found( f"no open action {action_id} for this target")
    download, update, window = _handling(deployment, timezone.now())
    services.action_retrieved(deployment=deployment)
    body = {"download": download, "update": update}
    if window is not None:
        body["maintenanceWindow"] = window
    body["chunks"] = _chunks(request, deployment, tenant, controller_id)
    return JsonResponse({"id": str(deployment.pk), "deployment": body})


def _read_feedback(request) -> services.Feedback:
    try:
        size = len(request.body)
    except RequestDataTooBig:  # above Django's upload limit: its own answer would be an HTML 400
        size = MAX_FEEDBACK_BODY + 1
    if size > MAX_FEEDBACK_BODY:
        raise services.HawkbitError(f"feedback larger than {MAX_FEEDBACK_BODY} bytes")
    data = parse_json(request)
    status = data.get("status") if isinstance(data, dict) else None
    if not isinstance(status, dict):
        raise services.HawkbitError("status is required: {\"execution\", \"result\": {\"finished\"}}")
    execution = status.get("execution")
    result = status.get("result") or {}
    finished = result.get("finished", "none") if isinstance(result, dict) else None
    if execution not in EXECUTIONS:
        raise services.HawkbitError(f"status.execution must be one of {', '.join(sorted(EXECUTIONS))}")
    if finished not in FINISHED:
        raise services.HawkbitError(f"status.result.finished must be one of {', '.join(sorted(FINISHED))}")
    details = status.get("details") or []
    if not isinstance(details, list):
        details = [details]
    progress = None
    raw_progress = result.get("progress")
    if isinstance(raw_progress, dict):
        cnt, of = raw_progress.get("cnt"), raw_progress.get("of")
        if isinstance(cnt, int) and isinstance(of, int) and of > 0:
            progress = max(0, min(100, cnt * 100 // of))
    code = status.get("code")
    return services.Feedback(
        execution=execution, finished=finished, details=[str(d) for d in details][:48], progress=progress,
        code=code if isinstance(code, int) and not isinstance(code, bool) else None,
    )


def _feedback(request, action_id: int, apply):
    deployment = selectors.device_action(request.device, action_id)
    if deployment is None:
        return not_found( f"no action {action_id} for this target")
    try:
        apply(deployment=deployment, feedback=_read_feedback(request))
    except services.HawkbitError as exc:
        return hawkbit_error(exc.status, exc.code, str(exc))
    except FeedbackError as exc:
        return hawkbit_error(exc.status, "hawkbit.server.error.action.closed" if exc.status == 410 else exc.code,
                             f"action {action_id}: {exc}")
    # Exactly 200: clients (SWUpdate, rauc-hawkbit-updater) treat 201/204 as failures.
    return HttpResponse(status=200)


@require_POST
@ddi_auth
def deployment_feedback(request, tenant: str, controller_id: str, action_id: int):
    return _feedback(request, action_id, services.action_feedback)


@require_GET
@ddi_auth
def cancel_action(request, tenant: str, controller_id: str, action_id: int):
    deployment = selectors.device_action(request.device, action_id)
    if deployment is None or not deployment.cancel_requested:
        return not_found( f"no cancel for action {action_id}")
    return JsonResponse({"id": str(deployment.pk), "cancelAction": {"stopId": str(deployment.pk)}})


@require_POST
@ddi_auth
def cancel_feedback(request, tenant: str, controller_id: str, action_id: int):
    return _feedback(request, action_id, services.cancel_feedback)


@require_GET
@ddi_auth
def installed_base(request, tenant: str, controller_id: str, action_id: int):
    deployment = selectors.device_action(request.device, action_id)
    if deployment is None or deployment.state != Deployment.State.SUCCEEDED:
        return not_found( f"no installed action {action_id}")
    body = {"download": "forced", "update": "forced", "chunks": _chunks(request, deployment, tenant, controller_id)}
    return JsonResponse({"id": str(deployment.pk), "deployment": body})


@require_http_methods(["PUT"])
@ddi_auth
def config_data(request, tenant: str, controller_id: str):
    try:
        data = parse_json(request)
    except services.HawkbitError as exc:
        return hawkbit_error(exc.status, exc.code, str(exc))
    values = data.get("data") if isinstance(data, dict) else None
    mode = data.get("mode", "merge") if isinstance(data, dict) else None
    if not isinstance(values, dict) or len(values) > 64 or mode not in ("merge", "replace", "remove"):
        return hawkbit_error(400, BAD_REQUEST,
                             "body must be {\"data\": {key: value, …} (at most 64), \"mode\"?: merge|replace|remove}")
    bad = [key for key, value in values.items()
           if len(key) > 128 or not isinstance(value, str | int | float | bool) or len(str(value)) > 512]
    if bad:
        return hawkbit_error(400, BAD_REQUEST, f"attribute {bad[0]!r}: keys ≤128, scalar values ≤512 characters")
    services.target_attributes_set(device=request.device, data={k: str(v) for k, v in values.items()}, mode=mode)
    return HttpResponse(status=200)


@require_safe
@ddi_auth
def artifact_download(request, tenant: str, controller_id: str, module_id: int, filename: str):
    release = Release.objects.select_related("component").filter(pk=module_id).first()
    if release is None or not selectors.device_may_download(request.device, release):
        return not_found( "no such artifact assigned to this target")
    artifact = release.artifacts.filter(filename=filename).first()
    if artifact is None and filename.endswith(".MD5SUM"):
        artifact = release.artifacts.filter(filename=filename.removesuffix(".MD5SUM")).first()
        if artifact is not None:
            return HttpResponse(f"{artifact.md5}  {artifact.filename}\n", content_type="text/plain")
    if artifact is None:
        return not_found( "no such artifact assigned to this target")
    return serve_artifact(request, artifact)
