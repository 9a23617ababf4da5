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

import asyncio
import os
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
            _group_send(layer, group, message)
        except Exception:
            log.warning("broadcast to %s failed", group, exc_info=True)


_sender: dict = {"pid": None, "loop": None}
_sender_lock = threading.Lock()
SEND_TIMEOUT_S = 5.0


def _sender_loop() -> asyncio.AbstractEventLoop:
    """One long-lived event loop per process, in a daemon thread, that does every group_send.

    async_to_sync from short-lived threads creates (and closes) a loop per call; the channel
    layer keeps connections per loop, and a new loop can reuse a dead one's identity, which
    silently lost messages in a test. One loop per process (re-made after a fork) avoids it.
    """
    with _sender_lock:
        if _sender["pid"] != os.getpid() or _sender["loop"] is None or _sender["loop"].is_closed():
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="fleet-broadcast", daemon=True).start()
            _sender.update(pid=os.getpid(), loop=loop)
        return _sender["loop"]


def _group_send(layer, group: str, message: dict) -> None:
    future = asyncio.run_coroutine_threadsafe(layer.group_send(group, message), _sender_loop())
    future.result(timeout=SEND_TIMEOUT_S)


def broadcast_event(kind: str, payload: dict[str, Any], *, groups: tuple[str, ...]) -> None:
    """Send `{"kind": kind, **payload}` to the groups once the current transaction commits."""
    event = {"kind": kind, **payload}
    transaction.on_commit(lambda: _send(groups, event))


# Sender-side throttling for high-frequency "something changed" signals (check-ins). The
# window must not exceed the consumers' push delay (consumers.PUSH_INTERVAL_S): a consumer
# recomputes its snapshot at least one window after the first event it saw, so every change
# whose event was dropped here (committed inside the window) is in that snapshot.
THROTTLE_WINDOW_S = 1


def _send_throttled(groups: tuple[str, ...], event: dict[str, Any]) -> None:
    from django.core.cache import cache

    wanted = []
    for group in groups:
        try:
            # SET NX EX: the first sender in the window wins, across every process.
            first = cache.add(f"live:throttle:{group}:{event['kind']}", 1, THROTTLE_WINDOW_S)
        except Exception:
            log.warning("broadcast throttle unavailable", exc_info=True)
            first = True
        if first:
            wanted.append(group)
    if wanted:
        _send(tuple(wanted), event)


def broadcast_throttled(kind: str, payload: dict[str, Any], *, groups: tuple[str, ...]) -> None:
    """Like `broadcast_event`, but at most one `kind` event per group per second, fleet-wide.

    For events that only say "recompute": the payload of a dropped event is lost, so put
    nothing in it that a page cannot read back from the database.
    """
    event = {"kind": kind, **payload}
    transaction.on_commit(lambda: _send_throttled(groups, event))


def fleet_changed() -> None:
    """Check-ins (and other per-device changes) call this: fleet pages and the wall recompute."""
    broadcast_throttled("fleet.changed", {}, groups=(FLEET, WALL))
