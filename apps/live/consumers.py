"""Websocket consumers, one per dashboard surface.

Protocol (server → client, JSON):

- ``{"type": "snapshot", "surface": s, "seq": 0, "data": {...}}`` once, right after connecting;
- ``{"type": "delta", "surface": s, "seq": n, "data": {key: value, ...}, "events": [...]}``
  afterwards: the top-level keys of the snapshot whose value changed (replace them), plus
  the notable broadcast events since the previous message (rollout state changes, freezes).

Broadcasts only say that something changed. A consumer marks itself dirty and, at most once
per PUSH_INTERVAL_S and never sooner than PUSH_INTERVAL_S after the first change it saw,
recomputes its snapshot (shared per process, see coalescing.py) and sends what changed. The
delay is what makes sender-side throttling (broadcast.broadcast_throttled) lossless; for the
same reason a consumer recomputes once, PUSH_INTERVAL_S after its snapshot. Every
RESYNC_S it also recomputes unprompted: devices go offline without any event, and the
pub/sub channel layer drops messages while Redis reconnects.

Close codes: 4401 not logged in, 4403 no fleet role, 4404 no such rollout/cohort.
Consumers only read the database.
"""

import asyncio
import logging
from typing import Any
from urllib.parse import parse_qs

from channels.db import database_sync_to_async
from channels.generic.websocket import AsyncJsonWebsocketConsumer
from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection

from apps.accounts.roles import VIEWER, has_role
from apps.dashboard import selectors
from apps.ops.metrics import WEBSOCKETS

from .broadcast import FLEET, ROLLOUTS, WALL, rollout_group
from .coalescing import shared_snapshots

log = logging.getLogger(__name__)

PUSH_INTERVAL_S = float(getattr(settings, "LIVE_PUSH_INTERVAL_S", 1.0))
RESYNC_S = float(getattr(settings, "LIVE_RESYNC_S", 30.0))
MAX_EVENTS = 20
# Events that only mean "recompute": not forwarded to the page.
QUIET_EVENTS = frozenset({"fleet.changed", "rollout.progress", "device.enrolled"})

CLOSE_UNAUTHENTICATED = 4401
CLOSE_FORBIDDEN = 4403
CLOSE_NOT_FOUND = 4404


class Refused(Exception):
    def __init__(self, code: int):
        super().__init__(code)
        self.code = code


class LiveConsumer(AsyncJsonWebsocketConsumer):
    """Base: auth and role check, snapshot on connect, coalesced deltas, periodic resync."""

    surface = ""
    role = VIEWER

    async def connect(self) -> None:
        self.joined: list[str] = []
        self._tasks: list[asyncio.Task] = []
        self._flusher: asyncio.Task | None = None
        self._dirty_since: float | None = None
        self._events: list[dict[str, Any]] = []
        self._last: dict[str, Any] = {}
        self._last_push = 0.0
        self._dirty_latest = 0.0
        self._seq = 0
        try:
            await self._authorize()
            await self.setup()
        except Refused as refused:
            # Accept first so the browser sees the close code (a refused handshake has none).
            await self.accept()
            await self.close(code=refused.code)
            return
        for group in self.group_names():
            await self.channel_layer.group_add(group, self.channel_name)
            self.joined.append(group)
        await self.accept()
        WEBSOCKETS.labels(self.surface).inc()
        # Joined before computing the snapshot: a change committed meanwhile still arrives.
        await self._push(initial=True, not_before=asyncio.get_running_loop().time())
        # One recompute a push interval later: a throttled event dropped just after the snapshot
        # belongs to a window whose first event was sent before this socket joined.
        self._mark_dirty()
        self._tasks.append(asyncio.create_task(self._resync()))

    async def _authorize(self) -> None:
        user = self.scope.get("user")
        if user is None or not user.is_authenticated:
            raise Refused(CLOSE_UNAUTHENTICATED)
        if not await database_sync_to_async(has_role)(user, self.role):
            raise Refused(CLOSE_FORBIDDEN)

    async def disconnect(self, code: int) -> None:
        for task in [*getattr(self, "_tasks", []), getattr(self, "_flusher", None)]:
            if task is not None:
                task.cancel()
        joined = getattr(self, "joined", [])
        for group in joined:
            await self.channel_layer.group_discard(group, self.channel_name)
        if joined:
            WEBSOCKETS.labels(self.surface).dec()

    async def receive_json(self, content: Any, **kwargs) -> None:
        """Clients have nothing to say; the page is read-only over this socket."""

    # --- per surface ------------------------------------------------------------------------

    async def setup(self) -> None:
        """Read and check the connection's parameters; raise Refused to turn it away."""

    def group_names(self) -> list[str]:
        raise NotImplementedError

    def snapshot_key(self) -> tuple:
        return (self.surface,)

    def compute(self) -> dict[str, Any]:
        """The surface's snapshot (runs in a worker thread, may use the ORM)."""
        raise NotImplementedError

    # --- coalescing ---------------------------------------------------------------------------

    async def fleet_event(self, message: dict[str, Any]) -> None:
        event = message.get("event", {})
        # The wall hears a halt on two groups: forward it once.
        if event.get("kind") not in QUIET_EVENTS and len(self._events) < MAX_EVENTS and event not in self._events:
            self._events.append(event)
        self._mark_dirty()

    def _mark_dirty(self) -> None:
        loop = asyncio.get_running_loop()
        if self._dirty_since is None:
            self._dirty_since = loop.time()
        # A shared snapshot may be reused only if it started after the *latest* change we
        # heard of: one computed after the first event but before a later one would be stale.
        self._dirty_latest = loop.time()
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush())

    async def _flush(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._dirty_since is not None:
                first = self._dirty_since
                # Leading edge: push at once unless the last push is less than an interval ago
                # (at most one push per interval either way). Waiting a full interval after every
                # first event put ~1 s into every update (bench/fanout.py: p50 1.5 s → see docs).
                due = max(first, self._last_push + PUSH_INTERVAL_S)
                if due > loop.time():
                    await asyncio.sleep(due - loop.time())
                since, self._dirty_since = self._dirty_latest, None
                await self._push(initial=False, not_before=since)
                if self._dirty_since is None and loop.time() < first + PUSH_INTERVAL_S:
                    # Pushed early: recompute once more an interval later, because a throttled
                    # event dropped inside the window (broadcast.THROTTLE_WINDOW_S) announced a
                    # change this push may not include. No message if nothing changed.
                    self._dirty_since = self._dirty_latest = loop.time()
        except Exception:
            log.exception("live push failed for %s", self.surface)
        finally:
            self._flusher = None

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(RESYNC_S)
            self._mark_dirty()

    def _compute_in_pool(self) -> dict[str, Any]:
        # A pool thread must not keep its own database connection open between snapshots
        # (connections would pile up per thread); reconnecting costs a few ms per push.
        try:
            return self.compute()
        finally:
            connection.close()

    async def _push(self, *, initial: bool, not_before: float) -> None:
        data = await shared_snapshots.get(
            self.snapshot_key(),
            # Not thread-sensitive: the surfaces' snapshots (already shared per key) compute in
            # parallel in the executor's threads instead of queueing on the one sync thread, where
            # under a loaded database each waited for the others (bench/fanout.py, docs/performance.md).
            database_sync_to_async(self._compute_in_pool, thread_sensitive=False),
            not_before=not_before,
        )
        events, self._events = self._events, []
        self._last_push = asyncio.get_running_loop().time()
        if initial:
            self._last = data
            await self.send_json({"type": "snapshot", "surface": self.surface, "seq": 0, "data": data})
            return
        changed = {key: value for key, value in data.items() if self._last.get(key) != value}
        self._last = data
        if not changed and not events:
            return
        self._seq += 1
        await self.send_json(
            {
                "type": "delta",
                "surface": self.surface,
                "seq": self._seq,
                "data": changed,
                "events": events,
            }
        )

    @classmethod
    async def encode_json(cls, content: Any) -> str:
        import json

        return json.dumps(content, cls=DjangoJSONEncoder)


def _query_param(scope: dict, name: str) -> str:
    values = parse_qs(scope.get("query_string", b"").decode("latin-1")).get(name)
    return values[0] if values else ""


class FleetConsumer(LiveConsumer):
    """The fleet overview: `/ws/fleet/?cohort=<id>&app=<component>`."""

    surface = "fleet"

    async def setup(self) -> None:
        raw = _query_param(self.scope, "cohort")
        self.cohort_id = int(raw) if raw.isdigit() else None
        self.app = _query_param(self.scope, "app")[:48]
        if self.cohort_id is not None and not await database_sync_to_async(_cohort_exists)(self.cohort_id):
            raise Refused(CLOSE_NOT_FOUND)

    def group_names(self) -> list[str]:
        return [FLEET]

    def snapshot_key(self) -> tuple:
        return (self.surface, self.cohort_id, self.app)

    def compute(self) -> dict[str, Any]:
        from apps.fleet.models import Cohort

        cohort = Cohort.objects.filter(pk=self.cohort_id).first() if self.cohort_id else None
        return selectors.fleet_summary(cohort=cohort, app=self.app or None)


def _cohort_exists(pk: int) -> bool:
    from apps.fleet.models import Cohort

    return Cohort.objects.filter(pk=pk).exists()


class RolloutsConsumer(LiveConsumer):
    """The rollouts list: `/ws/rollouts/`."""

    surface = "rollouts"

    def group_names(self) -> list[str]:
        return [ROLLOUTS]

    def compute(self) -> dict[str, Any]:
        return selectors.rollouts_snapshot()


class RolloutConsumer(LiveConsumer):
    """One rollout's detail page: `/ws/rollouts/<id>/`."""

    surface = "rollout"

    async def setup(self) -> None:
        self.rollout_id = int(self.scope["url_route"]["kwargs"]["rollout_id"])
        if not await database_sync_to_async(_rollout_exists)(self.rollout_id):
            raise Refused(CLOSE_NOT_FOUND)

    def group_names(self) -> list[str]:
        return [rollout_group(self.rollout_id)]

    def snapshot_key(self) -> tuple:
        return (self.surface, self.rollout_id)

    def compute(self) -> dict[str, Any]:
        return selectors.rollout_snapshot(self.rollout_id) or {
            "rollout": None,
            "waves": [],
            "freeze": None,
        }


def _rollout_exists(pk: int) -> bool:
    from apps.rollouts.models import Rollout

    return Rollout.objects.filter(pk=pk).exists()


class WallConsumer(LiveConsumer):
    """The on-call wall screen: `/ws/wall/` (halts, alerts and their acks, freezes, rollout changes, fleet health)."""

    surface = "wall"

    def group_names(self) -> list[str]:
        return [WALL, ROLLOUTS]

    def compute(self) -> dict[str, Any]:
        return selectors.wall_snapshot()
