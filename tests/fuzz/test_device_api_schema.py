"""schemathesis against the served OpenAPI document of the native device API, in-process.

Each generated request (valid and invalid bodies, the schema's edge values) goes through
Django's test client as the enrolled device: no 5xx, every 4xx a JSON body naming the
problem, and a rejected request leaves every row as it was. Examples are bounded and
derandomized so CI runs the same cases every time.
"""

import json

import pytest
import schemathesis
from django.test import Client
from django.urls import Resolver404, resolve
from hypothesis import HealthCheck, settings

from apps.fleet.models import Component
from tests.factories import DeviceFactory

from .helpers import FUZZ_SETTINGS, assert_clean_rejection, device_rows, row_counts

DOCUMENT = Client().get("/api/v1/openapi.json").json()
schema = schemathesis.openapi.from_dict(DOCUMENT)


def resolves(path: str) -> bool:
    try:
        resolve(path.split("?")[0])
    except Resolver404:
        return False
    return True


@pytest.fixture
def device(db):
    Component.objects.get_or_create(name="os", defaults={"kind": "os"})
    return DeviceFactory(uid="fuzz-dev", token="fuzz-token", installed={"os": "1.0"})


@pytest.mark.django_db
@schema.parametrize()
@settings(max_examples=10, suppress_health_check=list(HealthCheck), **FUZZ_SETTINGS)
def test_it_never_fails_and_rejects_cleanly(case, device):
    if "device_id" in case.path_parameters:
        case.path_parameters["device_id"] = device.uid
    kwargs = case.as_transport_kwargs(base_url="http://testserver", headers={"Authorization": "Bearer fuzz-token"})
    path = kwargs["url"].removeprefix("http://testserver")
    body = kwargs.get("json")
    data = json.dumps(body) if "json" in kwargs else kwargs.get("data") or b""
    headers = {k: v for k, v in (kwargs.get("headers") or {}).items() if k.lower() != "content-type"}
    before, before_device = row_counts(), device_rows(device)
    response = Client().generic(case.method.upper(), path, data, content_type="application/json", headers=headers,
                                QUERY_STRING="&".join(f"{k}={v}" for k, v in (kwargs.get("params") or {}).items()))
    assert response.status_code < 500, (case.method, path, body, response.content[:500])
    if response.status_code == 405:
        # Method checks (require_POST/GET) answer before any view code: empty body, Allow header.
        assert response["Allow"]
    elif response.status_code == 404 and not resolves(path):
        pass  # the URL matched no route (e.g. a negative id): Django's own 404, no view ran
    elif response.status_code >= 400:
        # 401/403/404/409/410 name the problem in "error"; validation errors also name the field.
        payload = assert_clean_rejection(response.status_code, response.content, needs_field=False)
        assert payload.get("error"), payload
        if response.status_code in (400, 413, 422):
            assert payload.get("field"), payload
        assert row_counts() == before, (path, body)
        assert device_rows(device) == before_device, (path, body)
