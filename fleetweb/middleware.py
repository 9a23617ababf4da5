"""Transient outages of PostgreSQL or Redis answer 503 with Retry-After, never a 500.

A database restart, a Redis restart or a broker that is briefly away are not bugs: the
request can simply be retried. Devices and API clients get a JSON body (they retry on 503
with Retry-After); people get a short plain page. Everything else still goes to Django's
normal error handling.

Two hooks, because Django turns an exception into a 500 response at the layer that raised
it: `process_exception` catches what a view raised (the common case: the first query of a
request is where a dead connection shows), and a `got_request_exception` receiver marks
the request when a transient error escaped from elsewhere (another middleware, an
on_commit hook), so the outermost layer here can swap that 500 for a 503.
"""

import logging

from django.core.signals import got_request_exception
from django.db import InterfaceError, OperationalError
from django.http import HttpResponse, JsonResponse

log = logging.getLogger(__name__)

RETRY_AFTER_S = 5
JSON_PREFIXES = ("/api/", "/rest/")
# DDI v1 paths are /{tenant}/controller/v1/{controllerId}/...
DDI_MARKER = "/controller/v1/"


def _transient_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OperationalError, InterfaceError]
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        errors += [RedisConnectionError, RedisTimeoutError]
    except ImportError:  # pragma: no cover - redis is a hard dependency
        pass
    try:
        # Publishing a task while the broker is away (raised after kombu's own retries).
        from kombu.exceptions import OperationalError as BrokerError

        errors.append(BrokerError)
    except ImportError:  # pragma: no cover
        pass
    return tuple(errors)


TRANSIENT_ERRORS = _transient_errors()
_MARK = "_fleet_unavailable"


def wants_json(request) -> bool:
    path = request.path
    return path.startswith(JSON_PREFIXES) or DDI_MARKER in path


def unavailable_response(request, exc: BaseException) -> HttpResponse:
    what = "the database" if isinstance(exc, OperationalError | InterfaceError) else "Redis"
    if wants_json(request):
        response = JsonResponse(
            {"error": "unavailable", "detail": f"{what} is briefly unavailable; retry after {RETRY_AFTER_S} s"},
            status=503,
        )
    else:
        response = HttpResponse(
            "<!doctype html><title>Briefly unavailable</title><h1>fleetweb is briefly unavailable</h1>"
            f"<p>A backing service ({what}) is restarting. This page will work again in a few seconds.</p>"
            f'<script>setTimeout(function(){{location.reload()}}, {RETRY_AFTER_S * 1000});</script>',
            status=503, content_type="text/html; charset=utf-8",
        )
    response["Retry-After"] = str(RETRY_AFTER_S)
    response["Cache-Control"] = "no-store"
    return response


def _mark_transient(sender, request=None, **kwargs) -> None:
    import sys

    exc = sys.exc_info()[1]
    if request is not None and isinstance(exc, TRANSIENT_ERRORS):
        setattr(request, _MARK, exc)


got_request_exception.connect(_mark_transient, dispatch_uid="fleetweb.middleware.mark_transient")


class ServiceUnavailableMiddleware:
    """Outermost but one (after SecurityMiddleware): see the module docstring."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        exc = getattr(request, _MARK, None)
        if exc is not None and response.status_code == 500:
            return unavailable_response(request, exc)
        return response

    def process_exception(self, request, exc):
        if isinstance(exc, TRANSIENT_ERRORS):
            log.warning("503 for %s %s: %s: %s", request.method, request.path, type(exc).__name__, exc)
            return unavailable_response(request, exc)
        return None
