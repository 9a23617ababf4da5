"""Per-process sharing of snapshot computations between consumers of the same surface.

A broadcast reaches every consumer of a group at the same moment; without sharing, fifty
open overview pages would run the same aggregate fifty times a second. Consumers ask for a
snapshot by key; a computation already *started after* the caller's change arrived is
reused, so no consumer is ever served data older than the event it is reacting to.
"""

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any

# Finished computations older than this are dropped from the table.
KEEP_S = 10.0


class SharedSnapshots:
    def __init__(self) -> None:
        self._entries: dict[Hashable, tuple[float, asyncio.Future]] = {}

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[Any]], *, not_before: float) -> Any:
        """The result of `compute()` for `key`, from a run that started at or after `not_before`.

        `not_before` is on the running loop's clock (`loop.time()`).
        """
        loop = asyncio.get_running_loop()
        entry = self._entries.get(key)
        if entry is not None and entry[1].get_loop() is loop and entry[0] >= not_before:
            return await asyncio.shield(entry[1])
        self._prune(loop)
        # A task of its own, shielded: a consumer that disconnects mid-computation does not
        # cancel the result other consumers are waiting for.
        task = asyncio.ensure_future(compute())
        self._entries[key] = (loop.time(), task)
        return await asyncio.shield(task)

    def _prune(self, loop: asyncio.AbstractEventLoop) -> None:
        horizon = loop.time() - KEEP_S
        for key, (started, future) in list(self._entries.items()):
            if future.get_loop() is not loop or (future.done() and started < horizon):
                if future.done() and not future.cancelled():
                    future.exception()  # retrieved: no "exception was never retrieved" noise
                del self._entries[key]


shared_snapshots = SharedSnapshots()
