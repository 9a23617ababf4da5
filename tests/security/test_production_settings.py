"""Production hardening: secure cookies, HSTS, websocket origin checks and CSRF on every form."""

import json
import os
import re
import subprocess
import sys

import pytest
from django.test import Client

from tests.processes import ROOT

from . import matrix
from .test_permission_matrix import fill

SETTINGS_DUMP = """
import json, django
django.setup()
from django.conf import settings as s
print(json.dumps({k: getattr(s, k, None) for k in (
    "SESSION_COOKIE_SECURE", "CSRF_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY", "SECURE_HSTS_SECONDS",
    "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_SSL_REDIRECT", "SECURE_CONTENT_TYPE_NOSNIFF", "DEBUG",
    "MIDDLEWARE")}))
"""


def test_it_sets_secure_cookies_and_hsts_in_production():
    env = {k: v for k, v in os.environ.items() if not k.startswith("DJANGO_")}
    env.update(DJANGO_SETTINGS_MODULE="fleetweb.settings.prod", DJANGO_SECRET_KEY="s" * 60,
               DJANGO_ALLOWED_HOSTS="fleet.example.com")
    result = subprocess.run([sys.executable, "-c", SETTINGS_DUMP], cwd=ROOT, env=env, capture_output=True,
                            text=True, check=False, timeout=120)
    assert result.returncode == 0, result.stderr
    prod = json.loads(result.stdout.strip().splitlines()[-1])
    assert prod["SESSION_COOKIE_SECURE"] and prod["CSRF_COOKIE_SECURE"] and prod["SESSION_COOKIE_HTTPONLY"]
    assert prod["SECURE_HSTS_SECONDS"] >= 31536000 and prod["SECURE_HSTS_INCLUDE_SUBDOMAINS"]
    assert prod["SECURE_SSL_REDIRECT"] and prod["SECURE_CONTENT_TYPE_NOSNIFF"]
    assert prod["DEBUG"] is False
    assert "django.middleware.csrf.CsrfViewMiddleware" in prod["MIDDLEWARE"]


def test_it_validates_websocket_origins():
    from channels.security.websocket import OriginValidator

    from fleetweb.asgi import application

    assert isinstance(application.application_mapping["websocket"], OriginValidator)


@pytest.mark.asyncio
@pytest.mark.django_db(transaction=True)
async def test_it_refuses_a_websocket_from_a_foreign_origin(viewer_user):
    from tests.live.helpers import communicator

    comm = await communicator("/ws/fleet/", viewer_user, origin=(b"origin", b"https://evil.example.net"))
    connected, _ = await comm.connect()
    assert not connected
    await comm.disconnect()
    from channels.db import database_sync_to_async
    from django.db import connections

    await database_sync_to_async(connections.close_all)()  # the helper's worker-thread connection


FORM_RE = re.compile(r"<form\b([^>]*)>(.*?)</form>", re.DOTALL | re.IGNORECASE)


def test_it_puts_a_csrf_token_in_every_post_form(admin_user, world):
    client = Client()
    client.force_login(admin_user)
    checked = 0
    pages = [(r, e) for r, e in matrix.ROUTES.items() if "GET" in e and e["GET"]["admin"] == matrix.ALLOW
             and e.get("auth") != "basic"]
    for route, entry in pages:
        response = client.get(fill(route, entry.get("kwargs", {}), world["objects"]))
        if response.status_code != 200 or "text/html" not in response.get("Content-Type", ""):
            continue
        for attrs, inner in FORM_RE.findall(response.content.decode()):
            if re.search(r"method\s*=\s*[\"']?post", attrs, re.IGNORECASE):
                assert 'name="csrfmiddlewaretoken"' in inner, (route, attrs)
                checked += 1
    assert checked >= 3  # rollout actions, new rollout, cohort forms at least


def test_it_refuses_a_post_without_a_csrf_token(operator_user, world):
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator_user)
    response = client.post(f"/rollouts/{world['objects']['rollout']}/action/", {"action": "pause"})
    assert response.status_code == 403
