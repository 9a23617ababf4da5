"""Outbound webhook wire format: the JSON body, the HMAC signature, one HTTP POST.

No database here: services.py decides what to send and records what happened.

Signature (see docs/alerts.md for a receiver's check)::

    X-Fleetweb-Timestamp: <unix seconds when this attempt was sent>
    X-Fleetweb-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + raw body)>

The timestamp is part of the signed material, so a receiver that rejects old timestamps also
rejects a replayed request; every retry is signed afresh with its own timestamp.
"""

import hashlib
import hmac
import http.client
import json
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

SIGNATURE_HEADER = "X-Fleetweb-Signature"
TIMESTAMP_HEADER = "X-Fleetweb-Timestamp"
EVENT_HEADER = "X-Fleetweb-Event"
DELIVERY_HEADER = "X-Fleetweb-Delivery"
USER_AGENT = "fleetweb-webhooks/1"
EXCERPT = 500


def body_for(payload: dict[str, Any]) -> str:
    """The exact text sent (and signed): compact JSON, keys in a stable order."""
    return json.dumps(payload, cls=DjangoJSONEncoder, separators=(",", ":"), sort_keys=True)


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The X-Fleetweb-Signature value for `body` sent at `timestamp`."""
    message = str(timestamp).encode() + b"." + body
    return "sha256=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, tolerance_s: int = 300) -> bool:
    """What a receiver does (docs/alerts.md copies it): a fresh timestamp and a matching HMAC."""
    try:
        sent = int(timestamp)
    except (TypeError, ValueError):
        return False
    if abs(time.time() - sent) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, sent, body), signature or "")


@dataclass
class Response:
    """What one POST came back with: a status (None when no HTTP answer came) or an error."""

    status_code: int | None
    excerpt: str = ""
    error: str = ""
    duration_ms: int = 0
    retry_after_s: float | None = None

    @property
    def ok(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def transient(self) -> bool:
        """Worth retrying: no answer (connection refused, timeout, DNS), 429, or a 5xx."""
        return self.status_code is None or self.status_code == 429 or self.status_code >= 500


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A redirect would turn the POST into a GET (or re-send the signed body somewhere else):
    # a 3xx is reported as it is, not followed.
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None


_opener = urllib.request.build_opener(_NoRedirects)


def _retry_after(headers) -> float | None:
    raw = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(raw)) if raw else None
    except ValueError:
        return None  # an HTTP date: the backoff schedule applies


def post(*, url: str, secret: str, body: str, event: str, delivery_id: str, timeout_s: float) -> Response:
    """POST the signed body once; never raises for network or HTTP failures (they are the answer)."""
    raw = body.encode()
    timestamp = int(time.time())
    request = urllib.request.Request(
        url,
        data=raw,
        method="POST",
        headers={
            "Content-Type": "application/json",
            "User-Agent": USER_AGENT,
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret, timestamp, raw),
            EVENT_HEADER: event,
            DELIVERY_HEADER: delivery_id,
        },
    )
    started = time.monotonic()

    def took() -> int:
        return int((time.monotonic() - started) * 1000)

    try:
        with _opener.open(request, timeout=timeout_s) as answer:
            text = answer.read(EXCERPT).decode("utf-8", "replace")
            return Response(answer.status, excerpt=text, duration_ms=took())
    except urllib.error.HTTPError as answer:
        try:
            text = answer.read(EXCERPT).decode("utf-8", "replace")
        except OSError:
            text = ""
        return Response(answer.code, excerpt=text, duration_ms=took(), retry_after_s=_retry_after(answer.headers))
    except (OSError, http.client.HTTPException, ValueError) as exc:  # URLError, timeouts, resets
        reason = getattr(exc, "reason", exc)
        return Response(None, error=f"{type(reason).__name__}: {reason}"[:300], duration_ms=took())
