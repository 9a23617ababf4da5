"""Device authentication: one decorator that puts the authenticated device on the request."""

from functools import wraps

from django.http import JsonResponse

from apps.fleet.models import Device
from apps.ops.metrics import record_checkin_error

DEVICE_FIELDS = (
    "id", "uid", "hw_model", "attributes", "tags", "installed", "combination_id", "token_hash",
    "token_revoked", "last_seq", "last_seen", "poll_interval_s",
)


def error(status: int, code: str, detail: str, *, field: str | None = None, errors=None, headers=None):
    body = {"error": code, "detail": detail}
    if field is not None:
        body["field"] = field
    if errors is not None:
        body["errors"] = errors
    response = JsonResponse(body, status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def unauthorized(detail: str):
    record_checkin_error("unauthorized")
    return error(401, "unauthorized", detail, headers={"WWW-Authenticate": 'Bearer realm="fleetweb-device"'})


def bearer_token(request) -> str | None:
    header = request.META.get("HTTP_AUTHORIZATION", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


def device_required(view):
    """Authenticate `Authorization: Bearer <token>` against the device named in the URL.

    The device id in the path and the token must belong together, so a device can only
    ever read or write its own data. Unknown device and wrong token answer the same 401.
    """

    @wraps(view)
    def wrapper(request, device_id: str, *args, **kwargs):
        token = bearer_token(request)
        if token is None:
            return unauthorized("missing 'Authorization: Bearer <device token>' header")
        device = Device.objects.filter(uid=device_id).only(*DEVICE_FIELDS).first()
        if device is None or not device.token_matches(token):
            return unauthorized("unknown device or wrong token")
        request.device = device
        return view(request, *args, **kwargs)

    return wrapper
