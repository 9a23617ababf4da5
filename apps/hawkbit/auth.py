"""Authentication of both hawkBit APIs: device tokens for DDI, HTTP Basic users for Management."""

import base64
import binascii
import json
from functools import wraps

from django.contrib.auth import authenticate
from django.http import JsonResponse
from django.views.decorators.csrf import csrf_exempt

from django.core.exceptions import RequestDataTooBig, ValidationError

from apps.accounts import roles
from apps.fleet.models import name_validator, token_matches

from . import selectors, services

JSON_CONTENT = "application/hal+json"


def hawkbit_error(status: int, code: str, message: str, headers: dict | None = None) -> JsonResponse:
    """hawkBit's error body: {"exceptionClass", "errorCode", "message"}."""
    response = JsonResponse({"exceptionClass": "fleetweb.hawkbit", "errorCode": code, "message": message},
                            status=status)
    for name, value in (headers or {}).items():
        response[name] = value
    return response


def ddi_unauthorized(detail: str) -> JsonResponse:
    return hawkbit_error(401, "hawkbit.server.error.unauthorized", detail,
                         headers={"WWW-Authenticate": 'TargetToken realm="fleetweb hawkBit DDI"'})


def _credentials(request) -> tuple[str, str]:
    scheme, _, token = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    return scheme.strip().lower(), token.strip()


def ddi_auth(view):
    """Authenticate a DDI request and put the device on the request.

    `TargetToken` must be the token of the controller id in the URL (a device can only
    touch its own actions); `GatewayToken` is the tenant's shared key and may register an
    unknown controller id. Each mode works only when the tenant has it switched on;
    anything else answers the same 401.
    """

    @csrf_exempt
    @wraps(view)
    def wrapper(request, tenant: str, controller_id: str, *args, **kwargs):
        scheme, token = _credentials(request)
        if not token or scheme not in ("targettoken", "gatewaytoken"):
            return ddi_unauthorized("missing 'Authorization: TargetToken <token>' or 'GatewayToken <token>' header")
        config = services.tenant_config(tenant)
        device = None
        if scheme == "targettoken" and config.targettoken_enabled:
            device = selectors.ddi_device(controller_id)
            if device is not None and not device.token_matches(token):
                device = None
        elif scheme == "gatewaytoken" and config.gatewaytoken_enabled and token_matches(
            token, config.gatewaytoken_hash
        ):
            device = selectors.ddi_device(controller_id)
            if device is None:
                try:
                    name_validator(controller_id)
                except ValidationError:
                    return hawkbit_error(400, "hawkbit.server.error.request",
                                         "controller id: letters, digits and . _ : - only, at most 128")
                services.target_autoregister(controller_id=controller_id, tenant=config.tenant)
                device = selectors.ddi_device(controller_id)
        if device is None:
            return ddi_unauthorized("unknown target, wrong token or this authentication mode is switched off")
        request.device = device
        request.hawkbit_tenant = tenant
        return view(request, tenant, controller_id, *args, **kwargs)

    return wrapper


def _basic_user(request):
    scheme, _, encoded = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        username, _, password = base64.b64decode(encoded.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return None
    user = authenticate(request, username=username, password=password)
    return user if user is not None and user.is_active else None


def parse_json(request):
    try:
        body = request.body
    except RequestDataTooBig as exc:  # Django's own answer would be an HTML 400
        raise services.HawkbitError("the body is too large", code="hawkbit.server.error.rest.body.notReadable") from exc
    try:
        return json.loads(body or b"null")
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise services.HawkbitError(f"the body is not valid JSON: {exc}",
                                    code="hawkbit.server.error.rest.body.notReadable") from exc


def mgmt_api(methods: dict[str, str]):
    """Management API view: HTTP Basic auth, a fleetweb role per method, hawkBit-style errors.

    `methods` maps each allowed HTTP method to the lowest role that may use it
    (viewer < operator < admin).
    """

    def decorator(view):
        @csrf_exempt
        @wraps(view)
        def wrapper(request, *args, **kwargs):
            user = _basic_user(request)
            if user is None:
                return hawkbit_error(401, "hawkbit.server.error.unauthorized",
                                     "HTTP Basic credentials of a fleetweb user are required",
                                     headers={"WWW-Authenticate": 'Basic realm="fleetweb hawkBit"'})
            role = methods.get(request.method)
            if role is None:
                response = hawkbit_error(405, "hawkbit.server.error.rest.method.notAllowed",
                                         f"{request.method} is not allowed here")
                response["Allow"] = ", ".join(methods)
                return response
            if not roles.has_role(user, role):
                return hawkbit_error(403, "hawkbit.server.error.insufficientPermission",
                                     f"{request.method} here needs the {role} role")
            request.user = user
            try:
                return view(request, *args, **kwargs)
            except services.HawkbitError as exc:
                return hawkbit_error(exc.status, exc.code, str(exc))

        wrapper.methods = methods
        return wrapper

    return decorator
