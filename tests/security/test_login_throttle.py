"""Login throttling: N failures per username + IP lock the pair out, correct password included."""

import base64

import pytest
from django.core.cache import cache

from tests.conftest import PASSWORD


@pytest.fixture(autouse=True)
def throttled(settings):
    settings.FLEET = {**settings.FLEET, "LOGIN_FAILURES_MAX": 3, "LOGIN_FAILURE_WINDOW_S": 60}
    cache.clear()
    yield
    cache.clear()


def login(client, username, password, ip="10.1.1.1"):
    return client.post("/accounts/login/", {"username": username, "password": password}, REMOTE_ADDR=ip)


def test_it_refuses_even_the_right_password_after_too_many_failures(client, operator_user):
    for _ in range(3):
        assert login(client, operator_user.username, "wrong").status_code == 200
    response = login(client, operator_user.username, PASSWORD)
    assert response.status_code == 200  # the form again, not the redirect of a successful login
    assert "Too many failed logins" in response.content.decode()
    assert "_auth_user_id" not in client.session


def test_it_still_logs_in_below_the_limit(client, operator_user):
    for _ in range(2):
        login(client, operator_user.username, "wrong")
    response = login(client, operator_user.username, PASSWORD)
    assert response.status_code == 302
    assert client.session["_auth_user_id"] == str(operator_user.pk)


def test_it_locks_only_that_username_and_address(client, operator_user, viewer_user):
    for _ in range(3):
        login(client, operator_user.username, "wrong", ip="10.1.1.1")
    assert login(client, viewer_user.username, PASSWORD, ip="10.1.1.1").status_code == 302
    client.logout()
    assert login(client, operator_user.username, PASSWORD, ip="10.2.2.2").status_code == 302


def test_it_lets_the_user_in_again_once_the_window_passes(client, operator_user):
    for _ in range(3):
        login(client, operator_user.username, "wrong")
    assert login(client, operator_user.username, PASSWORD).status_code == 200
    cache.clear()  # the window's key expiring (Redis TTL) is exactly its deletion
    assert login(client, operator_user.username, PASSWORD).status_code == 302


def test_it_throttles_the_admin_login_too(client, admin_user):
    for _ in range(3):
        client.post("/admin/login/", {"username": admin_user.username, "password": "wrong"}, REMOTE_ADDR="10.1.1.1")
    response = client.post("/admin/login/?next=/admin/", {"username": admin_user.username, "password": PASSWORD},
                           REMOTE_ADDR="10.1.1.1")
    assert response.status_code == 200
    assert "Too many failed logins" in response.content.decode()


def test_it_throttles_http_basic_on_the_management_api(client, viewer_user):
    def basic(password):
        encoded = base64.b64encode(f"{viewer_user.username}:{password}".encode()).decode()
        return {"HTTP_AUTHORIZATION": f"Basic {encoded}", "REMOTE_ADDR": "10.1.1.1"}

    assert client.get("/rest/v1/system/configs/pollingTime", **basic(PASSWORD)).status_code == 200
    for _ in range(3):
        assert client.get("/rest/v1/system/configs/pollingTime", **basic("wrong")).status_code == 401
    assert client.get("/rest/v1/system/configs/pollingTime", **basic(PASSWORD)).status_code == 401
