"""Login throttling: too many failed logins for one username from one IP lock that pair out.

Counted in the cache (Redis) per sha256(username, IP) in a fixed window of
FLEET["LOGIN_FAILURE_WINDOW_S"] seconds that starts at the first failure. At
FLEET["LOGIN_FAILURES_MAX"] failures (0 = off) every attempt is refused, a correct password
included, until the window passes. Keyed by username and IP together so an attacker cannot lock
a person out from elsewhere by guessing their username, and one office NAT does not lock out
everyone. The check sits in the authentication backend, so the login page, the admin login
and the hawkBit Management API's HTTP Basic auth all count and all refuse. If the cache is
down, logins are not throttled (fail open) rather than impossible.
"""

import hashlib
import logging

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.contrib.auth.signals import user_login_failed
from django.core.cache import cache
from django.core.exceptions import PermissionDenied

log = logging.getLogger(__name__)


def _limits() -> tuple[int, int]:
    fleet = settings.FLEET
    return int(fleet.get("LOGIN_FAILURES_MAX", 5)), int(fleet.get("LOGIN_FAILURE_WINDOW_S", 900))


def client_ip(request) -> str:
    return (request.META.get("REMOTE_ADDR") if request is not None else None) or "unknown"


def _key(username: str, ip: str) -> str:
    digest = hashlib.sha256(f"{(username or '').strip().lower()}\0{ip}".encode()).hexdigest()
    return f"login-fail:{digest}"


def is_locked(username: str, request) -> bool:
    limit, _ = _limits()
    if limit <= 0:
        return False
    try:
        return int(cache.get(_key(username, client_ip(request))) or 0) >= limit
    except Exception:
        log.warning("login throttling: cache unavailable, not throttling", exc_info=True)
        return False


def failure_record(*, username: str, request) -> None:
    limit, window = _limits()
    if limit <= 0:
        return
    key = _key(username, client_ip(request))
    try:
        # add() starts the window; incr() keeps its expiry.
        if not cache.add(key, 1, timeout=window):
            cache.incr(key)
    except Exception:
        log.warning("login throttling: cache unavailable, failure not counted", exc_info=True)


def _on_login_failed(sender, credentials, request=None, **kwargs):
    failure_record(username=credentials.get("username", ""), request=request)


user_login_failed.connect(_on_login_failed, dispatch_uid="fleet-login-throttle")


class ThrottledModelBackend(ModelBackend):
    """ModelBackend that refuses a locked-out username + IP before checking the password."""

    def authenticate(self, request, username=None, password=None, **kwargs):
        if username is None:
            username = kwargs.get(self._username_field(), "")
        if is_locked(username, request):
            # PermissionDenied stops authenticate() from trying other backends.
            raise PermissionDenied("too many failed logins")
        return super().authenticate(request, username=username, password=password, **kwargs)

    @staticmethod
    def _username_field() -> str:
        from django.contrib.auth import get_user_model

        return get_user_model().USERNAME_FIELD
