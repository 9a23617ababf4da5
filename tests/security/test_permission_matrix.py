"""Every route × every role answers as tests/security/matrix.py says; a route without an entry fails."""

import base64
import re

import pytest
from django.contrib import admin
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver

from apps.live.routing import websocket_urlpatterns
from apps.rollouts.models import Rollout
from tests.conftest import PASSWORD
from tests.factories import DeviceFactory

from . import matrix
from .conftest import DEVICE_TOKEN


def http_routes() -> list[str]:
    """Every route of the root URLconf, levels joined as Django prints them."""
    found: list[str] = []

    def walk(patterns, prefix: str) -> None:
        for pattern in patterns:
            route = prefix + str(pattern.pattern)
            if isinstance(pattern, URLResolver):
                walk(pattern.url_patterns, route)
            elif isinstance(pattern, URLPattern):
                found.append(route)

    walk(get_resolver().url_patterns, "")
    return found


def test_it_has_a_matrix_entry_for_every_http_route():
    missing = [r for r in http_routes() if r not in matrix.ROUTES and not r.startswith(matrix.ADMIN_PREFIX)]
    assert not missing, f"routes without an entry in tests/security/matrix.py ROUTES: {missing}"


def test_it_has_a_matrix_entry_for_every_websocket_route():
    routes = [str(p.pattern) for p in websocket_urlpatterns]
    missing = [r for r in routes if r not in matrix.WEBSOCKETS]
    assert not missing, f"websocket routes without an entry in tests/security/matrix.py WEBSOCKETS: {missing}"


def test_it_lists_no_route_that_no_longer_exists():
    stale = set(matrix.ROUTES) - set(http_routes())
    assert not stale, f"matrix entries for routes that are gone: {stale}"


def test_it_covers_every_role_in_every_cell():
    for route, entry in {**matrix.ROUTES, **matrix.WEBSOCKETS}.items():
        for method in ("GET", "POST", "PUT", "DELETE"):
            if method in entry:
                assert set(entry[method]) == set(matrix.ROLES), (route, method)


# --- requesting each cell -----------------------------------------------------------------------


def fill(route: str, kwargs: dict, objects: dict) -> str:
    values = {k: (str(v).format(**objects) if isinstance(v, str) else str(v)) for k, v in kwargs.items()}

    def sub(match: re.Match) -> str:
        return values[match.group(1)]

    return "/" + re.sub(r"<(?:\w+:)?(\w+)>", sub, route)


def client_for(role: str, entry: dict, world: dict) -> tuple[Client, dict]:
    client = Client()
    headers: dict = {}
    if role == "device":
        headers["HTTP_AUTHORIZATION"] = f"{entry.get('device_auth', 'Bearer')} {DEVICE_TOKEN}"
    elif role in world["users"]:
        user = world["users"][role]
        if entry.get("auth") == "basic":
            encoded = base64.b64encode(f"{user.username}:{PASSWORD}".encode()).decode()
            headers["HTTP_AUTHORIZATION"] = f"Basic {encoded}"
        else:
            client.force_login(user)
    return client, headers


def verdict(response) -> str | int:
    status = response.status_code
    if status in (301, 302):
        location = response.headers.get("Location", "")
        if location.startswith("/admin/login/"):
            return matrix.ADMIN_LOGIN
        if location.startswith("/accounts/login/"):
            return matrix.LOGIN
    if status in (401, 403, 405):
        return status
    assert status < 500, f"server error {status}"
    return matrix.ALLOW


def answer(world: dict, route: str, method: str, role: str) -> str | int:
    entry = matrix.ROUTES[route]
    client, headers = client_for(role, entry, world)
    url = fill(route, entry.get("kwargs", {}), world["objects"])
    response = client.generic(method, url, b"", content_type="application/json", **headers)
    return verdict(response)


# One test per route (its fixtures cost more than its requests): every method × role cell.
@pytest.mark.parametrize("route", list(matrix.ROUTES), ids=lambda r: "/" + r)
def test_it_answers_each_route_and_role_as_the_matrix_says(world, route):
    entry = matrix.ROUTES[route]
    wrong = []
    for method in ("GET", "POST", "PUT", "DELETE"):
        for role, expected in entry.get(method, {}).items():
            if method in ("PUT", "DELETE") and expected == matrix.ALLOW:
                continue  # an allowed PUT/DELETE would really change data; only denies are requested
            got = answer(world, route, method, role)
            if got != expected:
                wrong.append(f"{method} as {role}: expected {expected}, got {got}")
    assert not wrong, wrong


def admin_urls() -> list[str]:
    """Admin routes without parameters: index, app lists (one per app), changelists and add pages."""
    urls = ["/admin/"]
    for model in admin.site._registry:
        meta = model._meta
        urls += [f"/admin/{meta.app_label}/{meta.model_name}/", f"/admin/{meta.app_label}/{meta.model_name}/add/"]
    urls += sorted({f"/admin/{m._meta.app_label}/" for m in admin.site._registry})
    return urls


@pytest.mark.parametrize("role", matrix.ROLES)
def test_it_keeps_the_admin_site_to_staff(world, role):
    client, headers = client_for(role, {}, world)
    expected = matrix.ADMIN_SITE[role]
    for url in admin_urls():
        got = verdict(client.get(url, **headers))
        if expected == "staff":
            assert got in (matrix.ALLOW, 403), (url, got)
        else:
            assert got == expected, (url, got)


# --- websockets ------------------------------------------------------------------------------


WS_CELLS = [(route, role) for route in matrix.WEBSOCKETS for role in matrix.ROLES]


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("route", "role"), WS_CELLS, ids=[f"{r} as {o}" for r, o in WS_CELLS])
async def test_it_lets_each_role_open_each_websocket_as_the_matrix_says(route, role):
    from channels.db import database_sync_to_async
    from django.db import connections

    from apps.accounts import roles
    from apps.accounts.services import user_create
    from tests.live.helpers import communicator

    @database_sync_to_async
    def prepare():
        device = DeviceFactory(token=DEVICE_TOKEN)
        rollout = Rollout.objects.create(name="ws matrix rollout")
        user = None
        if role in ("viewer", "operator", "admin"):
            user = user_create(username=f"ws-{role}", password=PASSWORD, role=getattr(roles, role.upper()))
        return device, rollout, user

    device, rollout, user = await prepare()
    entry = matrix.WEBSOCKETS[route]
    path = fill(route, entry.get("kwargs", {}), {"device": device.uid, "rollout": rollout.pk})
    comm = await communicator(path, user)
    if role == "device":
        comm.scope["headers"].append((b"authorization", f"Bearer {DEVICE_TOKEN}".encode()))
    connected, _ = await comm.connect()
    expected = entry["GET"][role]
    try:
        if expected == matrix.ACCEPT:
            assert connected
            first = await comm.receive_json_from(timeout=5)
            assert first["type"] == "snapshot"
        else:
            output = await comm.receive_output(timeout=5)
            assert output == {"type": "websocket.close", "code": expected}
    finally:
        await comm.disconnect()
        await database_sync_to_async(connections.close_all)()
