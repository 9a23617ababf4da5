"""Insights pages, JSON, CSV exports and the follow-up action: content, bad input and roles."""

import csv
import io

import pytest
from django.test import Client

from apps.fleet.models import SpreadSample
from apps.rollouts.models import Rollout
from tests.insights.conftest import rollup_now, seed_pairing_fleet
from tests.insights.test_stragglers import scene  # noqa: F401 - fixture

pytestmark = pytest.mark.django_db


def csv_rows(response) -> list[list[str]]:
    body = b"".join(response.streaming_content).decode()
    return list(csv.reader(io.StringIO(body)))


def test_it_shows_the_heatmap_with_the_sick_cell_marked(viewer_client, catalogue):
    seed_pairing_fleet()
    rollup_now()
    response = viewer_client.get("/insights/health/", {"hours": 1, "app": "vision"})
    html = response.content.decode()
    assert response.status_code == 200
    assert 'data-os="39.2" data-app="1.4" data-level="4"' in html
    assert "stands out" in html and "os 39.2 × vision 1.4" in html


def test_it_answers_bad_heatmap_input_with_a_form_error_or_json_naming_the_field(viewer_client, catalogue):
    page = viewer_client.get("/insights/health/", {"hours": "7"})
    assert page.status_code == 400 and "hours" in page.content.decode()
    api = viewer_client.get("/insights/health.json", {"metric": "vibes"})
    assert api.status_code == 400 and "metric" in api.json()["errors"]
    assert viewer_client.get("/insights/health.json", {"app": "nope"}).json()["errors"].keys() == {"app"}


def test_it_serves_the_heatmap_as_json(viewer_client, catalogue):
    seed_pairing_fleet()
    rollup_now()
    data = viewer_client.get("/insights/health.json", {"hours": 6, "metric": "crashes"}).json()
    assert data["worst"]["os"] == "39.2" and data["worst"]["app"] == "1.4" and data["worst"]["level"] == 4


def test_it_exports_the_spread_as_csv(viewer_client, catalogue):
    seed_pairing_fleet(per_cell=2)
    response = viewer_client.get("/insights/spread.csv")
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
    rows = csv_rows(response)
    assert rows[0] == ["os", "vision", "devices", "first_seen", "last_seen", "key", "certified"]
    assert sorted((r[0], r[1], r[2]) for r in rows[1:]) == [
        ("39.1", "1.3", "2"), ("39.1", "1.4", "2"), ("39.2", "1.3", "2"), ("39.2", "1.4", "2")]
    assert {r[6] for r in rows[1:]} == {"no"}  # nothing certified yet


def test_it_says_which_spread_rows_are_certified(viewer_client, admin_user, catalogue):
    from apps.governance.services import certified_combination_create

    seed_pairing_fleet(per_cell=1)
    certified_combination_create(patterns={"os": "39.1", "vision": "*"}, actor=admin_user)
    rows = csv_rows(viewer_client.get("/insights/spread.csv"))
    assert {(r[0], r[1]): r[6] for r in rows[1:]} == {
        ("39.1", "1.3"): "yes", ("39.1", "1.4"): "yes", ("39.2", "1.3"): "no", ("39.2", "1.4"): "no"}


def test_it_charts_combinations_over_time_with_rollouts_marked(viewer_client, scene):  # noqa: F811
    rollout = scene[0]
    SpreadSample.objects.create(devices=8, online=8, combinations=2)
    data = viewer_client.get("/insights/spread.json", {"hours": 24}).json()
    assert data["combinations"] == [2]
    assert [(m["kind"], m["rollout"]) for m in data["markers"]] == [("start", rollout.pk)]
    assert viewer_client.get("/insights/spread.json", {"hours": "x"}).status_code == 400
    assert viewer_client.get("/insights/spread/").status_code == 200


def test_it_lists_stragglers_and_exports_them(viewer_client, scene):  # noqa: F811
    rollout, devices, *_ = scene
    page = viewer_client.get(f"/insights/rollouts/{rollout.pk}/stragglers/")
    html = page.content.decode()
    assert page.status_code == 200
    assert f'data-uid="{devices["failing_online"].uid}" data-reason="failing"' in html
    assert "Follow-up rollout" not in html  # a viewer cannot start one
    rows = csv_rows(viewer_client.get(f"/insights/rollouts/{rollout.pk}/stragglers.csv", {"reason": "failing"}))
    assert rows[0] == ["device", "hw_model", "vision", "last_seen", "reason", "detail", "deployment", "retryable"]
    assert {(r[0], r[4], r[5], r[7]) for r in rows[1:]} == {
        (devices["failing_online"].uid, "failing", "not_enough_space", "yes"),
        (devices["failing_offline"].uid, "failing", "not_enough_space", "no"),
    }
    bad = viewer_client.get(f"/insights/rollouts/{rollout.pk}/stragglers.csv", {"days": "-1"})
    assert bad.status_code == 400 and "days" in bad.json()["errors"]


def test_it_creates_the_follow_up_from_one_click_and_opens_its_plan(operator_client, scene):  # noqa: F811
    rollout, devices, *_ = scene
    page = operator_client.get(f"/insights/rollouts/{rollout.pk}/stragglers/").content.decode()
    assert "Follow-up rollout for 1 retryable device" in page
    response = operator_client.post(f"/insights/rollouts/{rollout.pk}/follow-up/")
    followup = Rollout.objects.exclude(pk=rollout.pk).get()
    assert response.status_code == 302 and response["Location"] == f"/rollouts/{followup.pk}/"
    assert list(followup.waves.get().cohort.members.values_list("uid", flat=True)) == [devices["failing_online"].uid]


def test_it_keeps_viewers_and_outsiders_out_of_what_they_may_not_do(viewer_client, outsider_client, scene):  # noqa: F811
    rollout = scene[0]
    assert viewer_client.post(f"/insights/rollouts/{rollout.pk}/follow-up/").status_code == 403
    assert Rollout.objects.count() == 1
    for url in ("/insights/health/", "/insights/spread.csv", f"/insights/rollouts/{rollout.pk}/stragglers.csv"):
        assert outsider_client.get(url).status_code == 403
        assert Client().get(url).status_code == 302  # anonymous: to the login page


def test_it_needs_csrf_for_the_follow_up(operator_user, scene):  # noqa: F811
    client = Client(enforce_csrf_checks=True)
    client.force_login(operator_user)
    assert client.post(f"/insights/rollouts/{scene[0].pk}/follow-up/").status_code == 403
    assert Rollout.objects.count() == 1
