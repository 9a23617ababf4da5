"""Shared fixtures: persona users (admin, operator, on-call viewer, outsider) and devices."""

import pytest
from django.test import Client

from apps.accounts import roles
from apps.accounts.services import user_create
from apps.deviceapi.selectors import component_cache_clear

PASSWORD = "correct-horse-battery-staple"


@pytest.fixture(autouse=True)
def _fresh_component_cache():
    component_cache_clear()
    yield
    component_cache_clear()


def _user(username: str, role: str | None):
    if role is None:
        from django.contrib.auth import get_user_model

        return get_user_model().objects.create_user(username=username, password=PASSWORD)
    return user_create(username=username, password=PASSWORD, role=role, actor="tests")


@pytest.fixture
def admin_user(db):
    return _user("alice-admin", roles.ADMIN)


@pytest.fixture
def operator_user(db):
    return _user("oscar-operator", roles.OPERATOR)


@pytest.fixture
def second_operator(db):
    return _user("olga-operator", roles.OPERATOR)


@pytest.fixture
def viewer_user(db):
    return _user("victor-oncall", roles.VIEWER)


@pytest.fixture
def outsider_user(db):
    return _user("mallory-norole", None)


def _client_for(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def admin_client(admin_user):  # noqa: F811 - replaces pytest-django's superuser admin_client
    return _client_for(admin_user)


@pytest.fixture
def operator_client(operator_user):
    return _client_for(operator_user)


@pytest.fixture
def viewer_client(viewer_user):
    return _client_for(viewer_user)


@pytest.fixture
def outsider_client(outsider_user):
    return _client_for(outsider_user)
