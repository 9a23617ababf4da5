"""The audit log is append-only: no route, admin page, model method or SQL statement edits or deletes it."""

import pytest
from django.contrib.auth import get_user_model
from django.db import DatabaseError, transaction

from apps.audit.models import AuditEntry
from apps.audit.services import audit_record

from . import matrix
from .test_permission_matrix import http_routes

pytestmark = pytest.mark.django_db


@pytest.fixture
def entry(admin_user):
    audit_record(actor=admin_user, action="rollout.halt", obj=admin_user, reason="crash spike")
    return AuditEntry.objects.filter(action="rollout.halt").get()


def test_it_offers_no_route_that_writes_the_audit_log():
    # /audit/ is the only audit page outside the admin, and it is read-only (GET only).
    audit_routes = [r for r in http_routes() if "audit" in r and not r.startswith(matrix.ADMIN_PREFIX)]
    assert audit_routes == ["audit/"]
    assert set(matrix.ROUTES["audit/"]) == {"GET"}


def test_it_answers_a_post_to_the_audit_page_without_changing_it(admin_client, entry):
    before = list(AuditEntry.objects.values())
    admin_client.post("/audit/", {"action": "x", "id": entry.pk})
    assert list(AuditEntry.objects.values()) == before


def test_it_shows_audit_entries_read_only_in_the_admin_even_to_superusers(db, entry):
    from django.test import Client

    superuser = get_user_model().objects.create_superuser("root", "root@example.com", "pw-irrelevant")
    client = Client()
    client.force_login(superuser)
    assert client.get("/admin/audit/auditentry/").status_code == 200
    assert client.get("/admin/audit/auditentry/add/").status_code == 403
    assert client.post(f"/admin/audit/auditentry/{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    response = client.post(f"/admin/audit/auditentry/{entry.pk}/change/", {"action": "forged"})
    assert response.status_code in (200, 403)  # the view page, never a save
    bulk = client.post("/admin/audit/auditentry/", {"action": "delete_selected", "_selected_action": [entry.pk]})
    assert bulk.status_code in (200, 302, 403)
    entry.refresh_from_db()
    assert entry.action == "rollout.halt"
    assert AuditEntry.objects.filter(pk=entry.pk).exists()


def test_it_refuses_changes_and_deletes_through_the_model(entry):
    entry.action = "forged"
    with pytest.raises(PermissionError):
        entry.save()
    with pytest.raises(PermissionError):
        entry.delete()


def test_it_refuses_queryset_update_and_delete_in_the_database(entry):
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).update(action="forged")
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).update(after={"forged": True})
    with pytest.raises(DatabaseError), transaction.atomic():
        AuditEntry.objects.filter(pk=entry.pk).delete()
    entry.refresh_from_db()
    assert entry.action == "rollout.halt"


def test_it_still_lets_a_user_account_be_removed_keeping_its_entries(entry, admin_user):
    admin_user.delete()  # actor_id goes NULL (SET_NULL); the entry and its label stay
    entry.refresh_from_db()
    assert entry.actor_id is None and entry.actor_label == "alice-admin"
