"""fleetweb.middleware: a transient PostgreSQL/Redis error becomes 503 + Retry-After, never a 500.

Injected: the errors a dead connection raises (django.db OperationalError/InterfaceError, redis
ConnectionError/TimeoutError), from a view and from an inner layer that Django already turned
into a 500. Asserted: JSON 503 for the device API, DDI and Management API paths, a plain 503
page elsewhere, Retry-After on both; other exceptions are left to Django.
"""

import json

import pytest
import redis
from django.core.handlers.exception import convert_exception_to_response
from django.db import InterfaceError, OperationalError
from django.test import RequestFactory

from fleetweb.middleware import ServiceUnavailableMiddleware

pytestmark = pytest.mark.faults


def _raising(exc):
    def view(request):
        raise exc

    return view


@pytest.mark.parametrize("path", ["/api/v1/devices/d-1/checkin", "/DEFAULT/controller/v1/d-1", "/rest/v1/targets"])
@pytest.mark.parametrize("exc", [OperationalError("server closed the connection"), InterfaceError("closed"),
                                 redis.ConnectionError("refused"), redis.TimeoutError("timeout")])
def test_it_answers_json_503_with_retry_after_for_device_and_api_paths(path, exc):
    request = RequestFactory().post(path)
    middleware = ServiceUnavailableMiddleware(_raising(exc))
    response = middleware.process_exception(request, exc)
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert response["Content-Type"] == "application/json"
    body = json.loads(response.content)
    assert body["error"] == "unavailable" and "retry" in body["detail"]


def test_it_answers_a_plain_503_page_for_pages():
    request = RequestFactory().get("/rollouts/")
    response = ServiceUnavailableMiddleware(_raising(OperationalError())).process_exception(
        request, OperationalError("the database system is shutting down"))
    assert response.status_code == 503 and response["Retry-After"] == "5"
    assert response["Content-Type"].startswith("text/html") and b"briefly unavailable" in response.content


def test_it_turns_a_500_from_an_inner_layer_into_a_503():
    # An inner middleware (or an on_commit hook) raised: Django already made a 500 out of it.
    inner = convert_exception_to_response(_raising(redis.ConnectionError("Connection refused")))
    response = ServiceUnavailableMiddleware(inner)(RequestFactory().post("/api/v1/enroll"))
    assert response.status_code == 503 and json.loads(response.content)["error"] == "unavailable"


def test_it_leaves_other_errors_to_django():
    request = RequestFactory().get("/api/v1/openapi.json")
    assert ServiceUnavailableMiddleware(_raising(ValueError())).process_exception(request, ValueError("bug")) is None
    inner = convert_exception_to_response(_raising(KeyError("bug")))
    assert ServiceUnavailableMiddleware(inner)(request).status_code == 500
