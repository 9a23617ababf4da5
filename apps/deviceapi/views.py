"""Device API v1 (native JSON). Plain sync views: served by gunicorn sync workers in production."""

import os
import re
import time

from django.conf import settings
from django.core.exceptions import RequestDataTooBig
from django.db import DatabaseError
from django.http import FileResponse, HttpResponse, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_GET, require_POST

from apps.fleet.models import Artifact, HealthReport
from apps.fleet.services import CheckinReport, EnrollmentError, device_checkin, device_enroll
from apps.ops.metrics import record_checkin, record_checkin_error

from . import selectors
from .auth import bearer_token, device_required, error, unauthorized
from .validation import COMPONENT_RE, MAX_COUNTER, NAME_RE, VERSION_RE, Checker, Invalid, parse_json_object

CHECKIN_FIELDS = {"seq", "installed", "health", "attributes", "sent_at"}
HEALTH_FIELDS = {"interval_s", *HealthReport.COUNTERS, "extra"}
FEEDBACK_STATES = {"downloading", "downloaded", "installing", "installed", "succeeded", "failed", "canceled"}


def invalid(exc: Invalid) -> JsonResponse:
    record_checkin_error("invalid")
    first = exc.errors[0]
    return error(400, "invalid", f"{first['field']}: {first['detail']}", field=first["field"], errors=exc.errors)


def _body(request) -> dict:
    max_bytes = settings.FLEET["MAX_CHECKIN_BODY"]
    try:
        body = request.body
    except RequestDataTooBig as exc:  # above DATA_UPLOAD_MAX_MEMORY_SIZE: Django would answer an HTML 400
        raise Invalid([{"field": "body", "detail": f"larger than {max_bytes} bytes"}]) from exc
    return parse_json_object(body, max_bytes=max_bytes)


@csrf_exempt
@require_POST
def enroll(request):
    try:
        data = _body(request)
        check = Checker(data)
        check.unknown({"device_id", "enrollment_secret", "hw_model", "attributes", "tags"})
        uid = check.string(data, "device_id", "device_id", required=True, pattern=NAME_RE, max_len=128)
        secret = check.string(data, "enrollment_secret", "enrollment_secret", required=True, max_len=200)
        hw_model = check.string(data, "hw_model", "hw_model", required=False, pattern=NAME_RE, max_len=64)
        attributes = check.attributes(data, "attributes", "attributes")
        tags = check.tags(data, "tags", "tags")
        check.done()
    except Invalid as exc:
        return invalid(exc)
    try:
        device, token = device_enroll(
            uid=uid, secret=secret, hw_model=hw_model or "", attributes=attributes, tags=tags
        )
    except EnrollmentError as exc:
        return error(exc.status, "enrollment_refused", str(exc), field=exc.field)
    return JsonResponse(
        {
            "device_id": device.uid,
            "token": token,
            "poll_interval_s": device.effective_poll_interval_s,
            "checkin_url": request.build_absolute_uri(f"/api/v1/devices/{device.uid}/checkin"),
        },
        status=201,
    )


def _read_checkin(data: dict) -> CheckinReport:
    check = Checker(data)
    check.unknown(CHECKIN_FIELDS)
    seq = check.integer(data, "seq", "seq", required=True)
    installed: dict[str, str] = {}
    raw_installed = data.get("installed")
    if not isinstance(raw_installed, dict):
        check.error("installed", "is required: an object of component name → version")
    elif len(raw_installed) > 32:
        check.error("installed", "at most 32 components")
    else:
        for name, version in raw_installed.items():
            field = f"installed.{name}"[:100]
            if not COMPONENT_RE.match(name):
                check.error(field, "component names are lower-case letters, digits and '-'")
            elif not isinstance(version, str) or not VERSION_RE.match(version):
                check.error(field, "version must be a string of letters, digits and . _ : + ~ -, at most 64")
            else:
                installed[name] = version
    health = data.get("health", {})
    counters: dict[str, int] = {}
    extra: dict[str, int] = {}
    interval_s = None
    if not isinstance(health, dict):
        check.error("health", "must be an object")
    else:
        check.unknown(HEALTH_FIELDS, health, "health.")
        interval_s = check.integer(health, "interval_s", "health.interval_s", required="seq" in data and bool(health),
                                   low=1, high=7 * 86400)
        for name in HealthReport.COUNTERS:
            value = check.integer(health, name, f"health.{name}", required=False, high=MAX_COUNTER)
            counters[name] = value or 0
        raw_extra = health.get("extra", {})
        if not isinstance(raw_extra, dict) or len(raw_extra) > 16:
            check.error("health.extra", "must be an object of at most 16 counters")
        else:
            for name in raw_extra:
                if not re.match(r"^[a-z][a-z0-9_]{0,47}$", name):
                    check.error(f"health.extra.{name}"[:100], "counter names are lower-case letters, digits and '_'")
                else:
                    value = check.integer(raw_extra, name, f"health.extra.{name}", required=True, high=MAX_COUNTER)
                    if value is not None:
                        extra[name] = value
    attributes = check.attributes(data, "attributes", "attributes")
    check.string(data, "sent_at", "sent_at", required=False, max_len=40)
    check.done()
    return CheckinReport(
        seq=seq, installed=installed, health=counters, interval_s=interval_s or 0, extra=extra, attributes=attributes
    )



def unavailable() -> JsonResponse:
    record_checkin_error("unavailable")
    return error(503, "unavailable", "the server could not record the check-in; retry later",
                 headers={"Retry-After": "5"})


@csrf_exempt
@require_POST
def checkin(request, device_id: str):
    """The hot path: one SELECT (device, auth, open deployment?) and, on the steady state, one Redis call."""
    started = time.perf_counter()
    token = bearer_token(request)
    if token is None:
        return unauthorized("missing 'Authorization: Bearer <device token>' header")
    try:
        found = selectors.checkin_device(device_id)
    except DatabaseError:
        return unavailable()
    if found is None or not found[0].token_matches(token):
        return unauthorized("unknown device or wrong token")
    device, open_deployments = found
    try:
        report = _read_checkin(_body(request))
    except Invalid as exc:
        return invalid(exc)
    try:
        known = selectors.component_names()
    except DatabaseError:
        return unavailable()
    warnings = [f"installed.{name}: unknown component, ignored" for name in report.installed if name not in known]
    if warnings:
        report.installed = {name: version for name, version in report.installed.items() if name in known}
    if not report.interval_s:
        report.interval_s = device.effective_poll_interval_s
    try:
        result = device_checkin(device=device, report=report, open_deployments=open_deployments)
        body = selectors.device_desired_state(device=device, request=request, deployments=result.deployments)
    except DatabaseError:
        return unavailable()
    body.update({"accepted": result.accepted, "duplicate": result.duplicate, "seq": report.seq})
    if warnings:
        body["warnings"] = warnings
    record_checkin("duplicate" if result.duplicate else "accepted", time.perf_counter() - started,
                   path="buffered" if result.buffered else "sync")
    return JsonResponse(body)


@csrf_exempt
@require_GET
@device_required
def desired_state(request):
    return JsonResponse(selectors.device_desired_state(device=request.device, request=request))


@csrf_exempt
@require_POST
@device_required
def deployment_feedback(request, deployment_id: int):
    from apps.rollouts.services import FeedbackError, deployment_feedback as feedback

    try:
        data = _body(request)
        check = Checker(data)
        check.unknown({"state", "progress", "error_code", "detail"})
        state = check.string(data, "state", "state", required=True, max_len=20)
        if state is not None and state not in FEEDBACK_STATES:
            check.error("state", f"must be one of {', '.join(sorted(FEEDBACK_STATES))}")
        progress = check.integer(data, "progress", "progress", required=False, high=100)
        error_code = check.string(data, "error_code", "error_code", required=False,
                                  pattern=re.compile(r"^[A-Za-z0-9_.:-]{1,64}$"), max_len=64)
        detail = check.string(data, "detail", "detail", required=False, max_len=1000)
        check.done()
    except Invalid as exc:
        return invalid(exc)
    deployment = selectors.device_deployment(device=request.device, deployment_id=deployment_id)
    if deployment is None:
        return error(404, "not_found", "no such deployment for this device", field="deployment_id")
    try:
        deployment = feedback(
            deployment=deployment, state=state, progress=progress, error_code=error_code or "", detail=detail or ""
        )
    except FeedbackError as exc:
        return error(exc.status, exc.code, str(exc), field="state")
    return JsonResponse({"deployment_id": deployment.pk, "state": deployment.state})


@csrf_exempt
@require_GET
@device_required
def artifact_download(request, artifact_id: int):
    artifact = Artifact.objects.filter(pk=artifact_id).first()
    if artifact is None:  # JSON like every other device API answer (found by tests/fuzz)
        return error(404, "not_found", f"no artifact {artifact_id}", field="artifact_id")
    return serve_artifact(request, artifact)


RANGE_RE = re.compile(r"^bytes=(\d*)-(\d*)$")


def serve_artifact(request, artifact: Artifact) -> HttpResponse:
    """Serve an artifact file with single-range support (200, 206, 416)."""
    if not artifact.file:
        return error(404, "not_found", "this artifact is an external reference, not a file")
    try:
        path = artifact.file.path
        size = os.path.getsize(path)
    except (OSError, ValueError, NotImplementedError):
        return error(404, "not_found", "artifact file is missing on the server")
    header = request.META.get("HTTP_RANGE", "").strip()
    if not header:
        response = FileResponse(open(path, "rb"), content_type="application/octet-stream")
        response["Content-Length"] = str(size)
        response["Accept-Ranges"] = "bytes"
        response["Content-Disposition"] = f'attachment; filename="{artifact.filename}"'
        return response
    match = RANGE_RE.match(header)
    if not match or (not match.group(1) and not match.group(2)):
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        return response
    start_s, end_s = match.groups()
    if start_s:
        start = int(start_s)
        end = min(int(end_s), size - 1) if end_s else size - 1
    else:  # suffix range: the last N bytes
        length = int(end_s)
        start = max(size - length, 0)
        end = size - 1
    if start >= size or start > end:
        response = HttpResponse(status=416)
        response["Content-Range"] = f"bytes */{size}"
        response["Accept-Ranges"] = "bytes"
        return response
    with open(path, "rb") as handle:
        handle.seek(start)
        chunk = handle.read(end - start + 1)
    response = HttpResponse(chunk, status=206, content_type="application/octet-stream")
    response["Content-Range"] = f"bytes {start}-{end}/{size}"
    response["Content-Length"] = str(len(chunk))
    response["Accept-Ranges"] = "bytes"
    return response


@require_GET
def openapi(request):
    path = os.path.join(os.path.dirname(__file__), "openapi.json")
    with open(path, encoding="utf-8") as handle:
        return HttpResponse(handle.read(), content_type="application/json")
