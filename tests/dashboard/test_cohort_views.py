"""Cohort pages: viewers read, admins edit through the services, the editor's live preview."""

import pytest
from django.test import Client

from apps.audit.models import AuditEntry
from apps.fleet.models import Cohort
from tests.dashboard.helpers import components, place
from tests.factories import CohortFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def fleet():
    components()
    place(3, {"os": "39.1"}, hw_model="rpi4")
    place(2, {"os": "39.1"}, hw_model="nuc")


def test_it_lists_cohorts_with_device_counts(viewer_client, fleet):
    CohortFactory(name="pis", filter_text='hw == "rpi4"')
    CohortFactory(name="nucs", filter_text='hw == "nuc"')
    page = viewer_client.get("/cohorts/").content.decode()
    assert page.index("nucs") < page.index("pis")
    assert '<td class="num">3</td>' in page and '<td class="num">2</td>' in page


def test_it_hides_edit_controls_from_viewers(viewer_client, fleet):
    cohort = CohortFactory(name="pis")
    assert "New cohort" not in viewer_client.get("/cohorts/").content.decode()
    detail = viewer_client.get(f"/cohorts/{cohort.pk}/").content.decode()
    assert "Edit cohort" not in detail and "<strong>3</strong>" in detail


@pytest.mark.parametrize("path", ["/cohorts/new/", "/cohorts/{pk}/edit/", "/cohorts/preview.json?filter=x"])
def test_it_refuses_editing_to_viewers_and_operators(viewer_client, operator_client, path):
    cohort = CohortFactory()
    for client in (viewer_client, operator_client):
        assert client.get(path.format(pk=cohort.pk)).status_code == 403
    assert viewer_client.post("/cohorts/new/", {"name": "x", "filter_text": "tag:a"}).status_code == 403
    assert not Cohort.objects.filter(name="x").exists()


def test_it_creates_a_cohort_through_the_service(admin_client, admin_user, fleet):
    response = admin_client.post(
        "/cohorts/new/",
        {"name": "pis", "description": "all Pis", "filter_text": 'hw == "rpi4"'},
    )
    cohort = Cohort.objects.get(name="pis")
    assert response.status_code == 302 and response["Location"] == f"/cohorts/{cohort.pk}/"
    assert cohort.created_by == admin_user
    assert AuditEntry.objects.filter(action="cohort.create", object_id=str(cohort.pk), actor=admin_user).exists()


def test_it_shows_a_filter_error_inline_with_its_position(admin_client):
    response = admin_client.post("/cohorts/new/", {"name": "bad", "filter_text": 'hw == "rpi4" and\nregion =='})
    page = response.content.decode()
    assert response.status_code == 400
    assert not Cohort.objects.filter(name="bad").exists()
    assert "(line 2, column" in page
    assert 'region ==\n         <span class="mark">^</span>' in page


def test_it_reports_a_duplicate_name_on_the_name_field(admin_client):
    CohortFactory(name="pis")
    response = admin_client.post("/cohorts/new/", {"name": "pis", "filter_text": 'hw == "rpi4"'})
    assert response.status_code == 400
    assert "already exists" in response.context["form"].errors["name"][0]


def test_it_updates_a_cohort_and_audits_before_and_after(admin_client):
    cohort = CohortFactory(name="pis", filter_text='hw == "rpi4"')
    response = admin_client.post(
        f"/cohorts/{cohort.pk}/edit/",
        {"name": "pis", "description": "", "filter_text": 'hw ~ "rpi"'},
    )
    assert response.status_code == 302
    cohort.refresh_from_db()
    assert cohort.filter_text == 'hw ~ "rpi"'
    entry = AuditEntry.objects.get(action="cohort.update")
    assert (entry.before["filter"], entry.after["filter"]) == (
        'hw == "rpi4"',
        'hw ~ "rpi"',
    )


def test_it_requires_the_csrf_token(admin_user):
    client = Client(enforce_csrf_checks=True)
    client.force_login(admin_user)
    assert client.post("/cohorts/new/", {"name": "pis", "filter_text": "tag:a"}).status_code == 403


def test_it_previews_the_matching_count_and_a_sample(admin_client, fleet):
    data = admin_client.get("/cohorts/preview.json", {"filter": 'hw == "rpi4"'}).json()
    assert data["ok"] is True and data["count"] == 3
    assert len(data["sample"]) == 3 and data["sample"] == sorted(data["sample"])


def test_it_previews_an_error_with_its_position(admin_client):
    data = admin_client.get("/cohorts/preview.json", {"filter": 'hw == "rpi4" and'}).json()
    assert data["ok"] is False
    assert data["position"] == len('hw == "rpi4" and')
    assert data["error"]
