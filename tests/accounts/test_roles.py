"""Roles: who may see which page, the admin site, and login."""

import pytest
from django.urls import reverse

from apps.accounts import roles
from apps.audit.models import AuditEntry
from tests.conftest import PASSWORD
from tests.factories import DeviceFactory

pytestmark = pytest.mark.django_db


def test_it_creates_the_three_role_groups_with_permissions():
    from django.contrib.auth.models import Group

    groups = {g.name: g for g in Group.objects.prefetch_related("permissions")}
    assert set(roles.ORDER) <= set(groups)
    viewer = {p.codename for p in groups["viewer"].permissions.all()}
    admin = {p.codename for p in groups["admin"].permissions.all()}
    assert "view_device" in viewer and "change_cohort" not in viewer
    assert {"view_device", "change_cohort", "add_device"} <= admin


def test_it_ranks_roles(admin_user, operator_user, viewer_user, outsider_user):
    assert roles.user_role(admin_user) == roles.ADMIN
    assert roles.has_role(admin_user, roles.OPERATOR)
    assert roles.has_role(operator_user, roles.VIEWER) and not roles.has_role(operator_user, roles.ADMIN)
    assert roles.user_role(viewer_user) == roles.VIEWER and not roles.has_role(viewer_user, roles.OPERATOR)
    assert roles.user_role(outsider_user) is None and not roles.has_role(outsider_user, roles.VIEWER)


@pytest.mark.parametrize("name", ["dashboard:overview", "dashboard:devices", "dashboard:overview_data"])
def test_it_sends_anonymous_users_to_the_login_page(client, name):
    response = client.get(reverse(name))
    assert response.status_code == 302
    assert response["Location"].startswith(reverse("accounts:login"))


@pytest.mark.parametrize("name", ["dashboard:overview", "dashboard:devices", "dashboard:overview_data"])
def test_it_forbids_users_without_a_role(outsider_client, name):
    assert outsider_client.get(reverse(name)).status_code == 403


@pytest.mark.parametrize("persona", ["viewer_client", "operator_client", "admin_client"])
def test_it_shows_the_fleet_pages_to_every_role(request, persona):
    client = request.getfixturevalue(persona)
    DeviceFactory(uid="dev-visible")
    assert client.get(reverse("dashboard:overview")).status_code == 200
    page = client.get(reverse("dashboard:devices"))
    assert page.status_code == 200 and b"dev-visible" in page.content
    assert client.get(reverse("dashboard:device", args=["dev-visible"])).status_code == 200


@pytest.mark.parametrize("persona, allowed", [("viewer_client", False), ("operator_client", False), ("admin_client", True)])
def test_it_lets_only_admins_into_the_admin_site(request, persona, allowed):
    client = request.getfixturevalue(persona)
    response = client.get("/admin/fleet/device/")
    assert (response.status_code == 200) is allowed


def test_it_never_lets_anyone_edit_or_delete_audit_entries_in_the_admin(admin_client, admin_user):
    admin_user.is_superuser = True
    admin_user.save()
    entry = AuditEntry.objects.create(actor_label="x", action="test", object_type="t", object_id="1")
    assert admin_client.get(f"/admin/audit/auditentry/{entry.pk}/delete/").status_code == 403
    response = admin_client.post(f"/admin/audit/auditentry/{entry.pk}/change/", {"action": "forged"})
    assert response.status_code == 403
    entry.refresh_from_db()
    assert entry.action == "test"
    with pytest.raises(PermissionError):
        entry.delete()


def test_it_logs_in_with_the_login_page(client, viewer_user):
    page = client.get(reverse("accounts:login"))
    assert page.status_code == 200 and b"csrfmiddlewaretoken" in page.content
    response = client.post(reverse("accounts:login"), {"username": viewer_user.username, "password": PASSWORD})
    assert response.status_code == 302
    assert client.get(reverse("dashboard:overview")).status_code == 200


def test_it_rejects_a_wrong_password_with_a_form_error(client, viewer_user):
    response = client.post(reverse("accounts:login"), {"username": viewer_user.username, "password": "nope"})
    assert response.status_code == 200
    assert b"role=\"alert\"" in response.content


def test_it_generates_an_enrollment_secret_in_the_admin_and_shows_it_once(admin_client, admin_user):
    from apps.fleet.models import EnrollmentSecret, hash_token

    admin_user.is_superuser = True
    admin_user.save()
    response = admin_client.post(
        "/admin/fleet/enrollmentsecret/add/", {"name": "factory-line-2", "uses_left": "5", "default_tags": "[]"},
        follow=True,
    )
    assert response.status_code == 200
    shown = [str(m) for m in response.context["messages"] if "shown once" in str(m)]
    assert len(shown) == 1
    secret = shown[0].rsplit(": ", 1)[1]
    record = EnrollmentSecret.objects.get(name="factory-line-2")
    assert record.secret_hash == hash_token(secret) and record.uses_left == 5
    assert secret not in str(list(EnrollmentSecret.objects.values()))
