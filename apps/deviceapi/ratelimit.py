"""Per-device and per-IP request limits for the device-facing APIs (native /api/v1/ and hawkBit DDI).

Fixed one-minute windows counted in Redis: one pipelined round trip per request (INCR and
EXPIRE for the IP key, and for the device key when the path names a device). Over a limit the
answer is 429 with Retry-After (seconds to the next window) and a JSON body.

Limits come from settings.FLEET (0 switches a limit off):

- RATE_LIMIT_DEVICE_PER_MIN (default 120): a healthy device checks in every few minutes; two
  requests a second is far above any retry loop a sane client runs, and well below what a
  stolen token hammering the API would send.
- RATE_LIMIT_IP_PER_MIN (default 6000, 100/s): whole factories and mobile carriers put
  thousands of devices behind one NAT address; 6000 a minute is 1000+ devices at a one-minute
  poll with retries to spare. The per-device limit does the fine-grained work.

The client IP is REMOTE_ADDR: behind a reverse proxy, run the app server so that it sets it
from the proxy's header (uvicorn --proxy-headers / gunicorn forwarded_allow_ips); this module
never trusts X-Forwarded-For itself, which any client could forge.

If Redis does not answer, requests pass (fail open: a Redis outage must not take the fleet
offline), fleet_ratelimit_unavailable_total counts it, and Redis is left alone for a few seconds
so a dead Redis costs one timeout per few seconds, not one per request.
"""

import logging
import re
import time

import redis
from django.conf import settings
from django.http import JsonResponse
from prometheus_client import Counter

log = logging.getLogger(__name__)

WINDOW_S = 60
DOWN_BACKOFF_S = 5.0
DEFAULT_DEVICE_PER_MIN = 120
DEFAULT_IP_PER_MIN = 6000

# The device id is the URL segment after /api/v1/devices/ or after /<tenant>/controller/v1/.
NATIVE_RE = re.compile(r"^/api/v1/(?:devices/(?P<device>[^/]+)(?:/|$)|)")
DDI_RE = re.compile(r"^/[^/]+/controller/v1/(?P<device>[^/]+)")

LIMITED = Counter("fleet_ratelimited_total", "Device API requests refused with 429", ["scope"])
UNAVAILABLE = Counter("fleet_ratelimit_unavailable_total", "Requests let through because Redis did not answer")

_client = None
_down_until = 0.0


def client() -> redis.Redis:
    global _client
    if _client is None:
        # Short timeouts: this sits in front of every check-in.
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=0.25, socket_connect_timeout=0.25)
    return _client


def reset_client() -> None:
    global _client, _down_until
    _client = None
    _down_until = 0.0


def _prefix() -> str:
    return settings.CACHES["default"].get("KEY_PREFIX", "fleetweb")


def classify(path: str) -> tuple[str, str | None] | None:
    """(api, device id or None) for a rate-limited path, None for every other path."""
    match = NATIVE_RE.match(path)
    if match:
        return "native", match.group("device")
    match = DDI_RE.match(path)
    if match:
        return "ddi", match.group("device")
    return None


def count(ip: str, device: str | None, now: float) -> tuple[int, int] | None:
    """This window's (ip count, device count) after counting this request; None if Redis is down."""
    global _down_until
    if now < _down_until:
        UNAVAILABLE.inc()
        return None
    window = int(now // WINDOW_S)
    prefix = f"{_prefix()}:rl:{window}"
    pipe = client().pipeline(transaction=False)
    pipe.incr(f"{prefix}:ip:{ip}")
    pipe.expire(f"{prefix}:ip:{ip}", WINDOW_S * 2)
    if device is not None:
        pipe.incr(f"{prefix}:dev:{device[:128]}")
        pipe.expire(f"{prefix}:dev:{device[:128]}", WINDOW_S * 2)
    try:
        result = pipe.execute()
    except redis.RedisError as exc:
        _down_until = now + DOWN_BACKOFF_S
        UNAVAILABLE.inc()
        log.warning("rate limiter: Redis unavailable, letting requests through: %s", exc)
        return None
    return result[0], (result[2] if device is not None else 0)


def too_many(api: str, scope: str, retry_after: int) -> JsonResponse:
    detail = f"too many requests from this {scope}; retry after {retry_after} s"
    if api == "ddi":
        body = {"exceptionClass": "fleetweb.hawkbit", "errorCode": "hawkbit.server.error.tooManyRequests",
                "message": detail}
    else:
        body = {"error": "rate_limited", "detail": detail, "field": scope, "retry_after": retry_after}
    response = JsonResponse(body, status=429)
    response["Retry-After"] = str(retry_after)
    return response


def check(request) -> JsonResponse | None:
    """The 429 response for a request over a limit, else None."""
    route = classify(request.path_info)
    if route is None:
        return None
    fleet = settings.FLEET
    device_limit = int(fleet.get("RATE_LIMIT_DEVICE_PER_MIN", DEFAULT_DEVICE_PER_MIN))
    ip_limit = int(fleet.get("RATE_LIMIT_IP_PER_MIN", DEFAULT_IP_PER_MIN))
    if device_limit <= 0 and ip_limit <= 0:
        return None
    api, device = route
    now = time.time()
    counts = count(request.META.get("REMOTE_ADDR", "") or "unknown", device, now)
    if counts is None:
        return None
    retry_after = max(1, WINDOW_S - int(now % WINDOW_S))
    if ip_limit > 0 and counts[0] > ip_limit:
        LIMITED.labels("ip").inc()
        return too_many(api, "ip", retry_after)
    if device is not None and device_limit > 0 and counts[1] > device_limit:
        LIMITED.labels("device").inc()
        return too_many(api, "device", retry_after)
    return None


class RateLimitMiddleware:
    """Refuses device API requests over the per-IP or per-device limit (see the module docstring).

    Sync and async capable so it adds no thread hop under ASGI; the Redis call is one local
    round trip with a 0.25 s timeout, done inline in both modes.
    """

    sync_capable = True
    async_capable = True

    def __init__(self, get_response):
        from asgiref.sync import iscoroutinefunction, markcoroutinefunction

        self.get_response = get_response
        self.is_async = iscoroutinefunction(get_response)
        if self.is_async:
            markcoroutinefunction(self)

    def __call__(self, request):
        if self.is_async:
            return self._acall(request)
        return check(request) or self.get_response(request)

    async def _acall(self, request):
        return check(request) or await self.get_response(request)
