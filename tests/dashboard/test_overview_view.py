"""The fleet overview page, its JSON, the spread series endpoint and the wall screen page."""

import pytest
from django.utils import timezone

from apps.fleet.models import SpreadSample
from apps.rollouts.models import Rollout
from tests.dashboard.helpers import components, place
from tests.factories import CohortFactory

pytestmark = pytest.mark.django_db


def test_it_sends_anonymous_visitors_to_the_login_page(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_it_refuses_users_without_a_role(outsider_client):
    assert outsider_client.get("/").status_code == 403
    assert outsider_client.get("/wall/").status_code == 403


def test_it_shows_the_combination_count_and_the_heatmap_numbers(viewer_client):
    components("agent")
    place(1200, {"os": "39.1", "agent": "2.0"})
    place(3, {"os": "38.0", "agent": "2.0"})
    page = viewer_client.get("/").content.decode()
    assert 'data-key="combinations">2<' in page
    assert 'data-key="devices">1,203<' in page  # numbers formatted
    assert '<td class="heat-5">1,200</td>' in page
    assert '<td class="heat-1">3</td>' in page  # a light cell still says its number
    assert 'data-live-socket="/ws/fleet/?cohort=&amp;app=agent"' in page


def test_it_filters_the_overview_by_cohort(viewer_client):
    components()
    place(4, {"os": "39.1"}, hw_model="rpi4")
    place(2, {"os": "40.0"}, hw_model="nuc")
    cohort = CohortFactory(name="nucs", filter_text='hw == "nuc"')
    response = viewer_client.get(f"/?cohort={cohort.pk}")
    page = response.content.decode()
    assert 'data-key="devices">2<' in page
    assert f'<option value="{cohort.pk}" selected>nucs</option>' in page
    assert f"/ws/fleet/?cohort={cohort.pk}" in page
    assert viewer_client.get(f"/overview.json?cohort={cohort.pk}").json()["devices"] == 2


def test_it_answers_404_for_an_unknown_cohort(viewer_client):
    assert viewer_client.get("/?cohort=999999").status_code == 404
    assert viewer_client.get("/?cohort=abc").status_code == 404


def test_it_serves_the_spread_series(viewer_client):
    SpreadSample.objects.create(
        devices=3,
        online=2,
        combinations=2,
        version_share={"os": {"39.1": 2, "40.0": 1}},
    )
    data = viewer_client.get("/spread.json?component=os&hours=abc").json()
    assert data["hours"] == 24
    assert data["combinations"] == [2]
    assert data["share"]["39.1"] == [pytest.approx(66.67)]


def test_it_shows_running_rollouts_and_halts_on_the_wall(viewer_client):
    Rollout.objects.create(
        name="agent 2.1 canary",
        state=Rollout.State.RUNNING,
        progress_counts={"waves": [{"wave": 0, "total": 20, "succeeded": 5, "failed": 1}]},
    )
    Rollout.objects.create(
        name="os 40 eu",
        state=Rollout.State.HALTED,
        halted_at=timezone.now(),
        halt_reason="crash rate 4.1% on 37 updated devices vs 0.3% baseline",
    )
    page = viewer_client.get("/wall/").content.decode()
    assert "agent 2.1 canary" in page and "5 of 20 updated (25.0%), 1 failed" in page
    assert "HALTED: os 40 eu" in page and "crash rate 4.1% on 37 updated devices" in page
    assert 'data-live-socket="/ws/wall/"' in page
    assert '<nav aria-label="Main">' not in page  # full screen: no navigation bar


def test_it_shows_admin_links_only_to_admins(viewer_client, admin_client):
    assert "/admin/" not in viewer_client.get("/").content.decode()
    assert 'href="/admin/"' in admin_client.get("/").content.decode()


def test_it_marks_the_current_page_in_the_navigation(viewer_client):
    page = viewer_client.get("/audit/").content.decode()
    assert '<a href="/audit/" aria-current="page">Audit log</a>' in page
    assert '<a href="/" aria-current="page">' not in page
