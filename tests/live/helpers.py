"""Websocket test helpers: a logged-in WebsocketCommunicator against the real ASGI application."""

import asyncio
import sys
import types

try:
    import daphne.testing  # noqa: F401
except ImportError:
    # channels.testing imports daphne only for ChannelsLiveServerTestCase, which we do not use
    # (browser tests run uvicorn). fleetweb does not install daphne and its Twisted stack just
    # for that import, so it gets a placeholder; WebsocketCommunicator itself needs nothing of it.
    _stub = types.ModuleType("daphne.testing")
    _stub.DaphneProcess = None
    sys.modules.setdefault("daphne", types.ModuleType("daphne"))
    sys.modules["daphne.testing"] = _stub

from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from fleetweb.asgi import application

ORIGIN = (b"origin", b"http://127.0.0.1")


@database_sync_to_async
def session_cookie(user) -> str:
    client = Client()
    client.force_login(user)
    return client.cookies["sessionid"].value


async def communicator(path: str, user=None, *, origin: tuple[bytes, bytes] = ORIGIN) -> WebsocketCommunicator:
    headers = [origin]
    if user is not None:
        headers.append((b"cookie", f"sessionid={await session_cookie(user)}".encode()))
    return WebsocketCommunicator(application, path, headers=headers)


async def receive_all(comm: WebsocketCommunicator, within: float) -> list[dict]:
    """Every JSON message that arrives within `within` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    messages = []
    # receive_nothing waits without consuming; a timed-out receive_output would cancel the app.
    while (left := deadline - loop.time()) > 0:
        if not await comm.receive_nothing(timeout=left, interval=0.01):
            messages.append(await comm.receive_json_from())
    return messages
