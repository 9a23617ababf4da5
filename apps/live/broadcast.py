"""The only module that sends to Channels groups.

Services call `broadcast_event(...)` inside their transaction; the message is sent only
after the transaction commits (a rolled-back change is never shown to anyone). Events are
also appended to a short in-process list while `capture_events()` is active, so tests can
assert exactly which events a service emitted.
"""

import logging
import threading
from contextlib import contextmanager
from typing import Any

from asgiref.sync import async_to_sync
from django.db import transaction

log = logging.getLogger(__name__)

# Group names: one per dashboard surface, plus one per rollout detail page.
FLEET = "fleet"
ROLLOUTS = "rollouts"
WALL = "wall"


def rollout_group(rollout_id: int) -> str:
    return f"rollout.{rollout_id}"


_capture = threading.local()


@contextmanager
def capture_events():
    """Collect the events sent (after commit) while the block runs: for tests."""
    previous = getattr(_capture, "events", None)
    _capture.events = []
    try:
        yield _capture.events
    finally:
        _capture.events = previous


def _send(groups: tuple[str, ...], event: dict[str, Any]) -> None:
    events = getattr(_capture, "events", None)
    if events is not None:
        events.append(event)
    from channels.layers import get_channel_layer

    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "fleet.event", "event": event}
    for group in groups:
        try:
            async_to_sync(layer.group_send)(group, message)
        except Exception:  # noqa: BLE001 - a live page missing one push re-syncs; the change is committed
            log.warning("broadcast to %s failed", group, exc_info=True)


def broadcast_event(kind: str, payload: dict[str, Any], *, groups: tuple[str, ...]) -> None:
    """Send `{"kind": kind, **payload}` to the groups once the current transaction commits."""
    event = {"kind": kind, **payload}
    transaction.on_commit(lambda: _send(groups, event))
