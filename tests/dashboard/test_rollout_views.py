"""Rollout pages: list, detail with role-aware controls, the create form, actions, the fleet freeze."""

import pytest
from django.utils import timezone

from apps.rollouts.models import FleetFreeze, Rollout
from apps.rollouts.services import rollout_create
from tests.dashboard.helpers import components, place
from tests.factories import CohortFactory, ComponentFactory, ReleaseFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def release():
    components()
    place(4, {"os": "39.1"}, hw_model="rpi4")
    return ReleaseFactory(component=ComponentFactory(name="os"), version="40.0")


@pytest.fixture
def cohort(release):
    return CohortFactory(name="pis", filter_text='hw == "rpi4"')


@pytest.fixture
def draft(release, cohort, operator_user):
    return rollout_create(
        name="os 40", releases=[release], waves=[{"cohort": cohort, "size_value": 50}], actor=operator_user
    )


def test_it_lists_rollouts_with_their_state_in_words(viewer_client, draft):
    page = viewer_client.get("/rollouts/").content.decode()
    assert "os 40" in page and '<span class="badge state-draft">Draft</span>' in page
    assert "New rollout" not in page


def test_it_offers_new_rollout_to_operators(operator_client):
    assert "New rollout" in operator_client.get("/rollouts/").content.decode()


def test_it_shows_viewers_no_controls(viewer_client, draft):
    page = viewer_client.get(f"/rollouts/{draft.pk}/").content.decode()
    assert "Confirm" not in page and 'data-live-socket="/ws/rollouts/' in page


def test_it_shows_operators_the_controls_of_the_current_state(operator_client, draft):
    response = operator_client.get(f"/rollouts/{draft.pk}/")
    controls = response.context["controls"]
    assert controls["now"] == ["submit", "abort"]
    assert "approve" not in controls["by_state"]["awaiting_approval:0"]  # the creator cannot approve
    assert controls["by_state"]["paused:1"][-1] == "unfreeze"
    page = response.content.decode()
    assert '<details class="control" data-action="submit">' in page
    assert '<details class="control" data-action="pause" hidden>' in page


def test_it_lets_another_operator_approve(second_operator, draft):
    from apps.dashboard.selectors import rollout_actions

    draft.state = Rollout.State.AWAITING_APPROVAL
    assert "approve" in rollout_actions(draft, second_operator)


def test_it_submits_a_draft_through_the_service(operator_client, draft):
    response = operator_client.post(f"/rollouts/{draft.pk}/action/", {"action": "submit"})
    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.state == Rollout.State.SCHEDULED


def test_it_shows_the_services_refusal_and_changes_nothing(operator_client, draft):
    response = operator_client.post(f"/rollouts/{draft.pk}/action/", {"action": "abort", "reason": ""}, follow=True)
    assert "Could not abort" in response.content.decode()
    draft.refresh_from_db()
    assert draft.state == Rollout.State.DRAFT


def test_it_refuses_actions_to_viewers(viewer_client, draft):
    assert viewer_client.post(f"/rollouts/{draft.pk}/action/", {"action": "submit"}).status_code == 403
    draft.refresh_from_db()
    assert draft.state == Rollout.State.DRAFT


def test_it_shows_the_halt_banner_with_the_detection_delay(viewer_client, draft):
    now = timezone.now()
    Rollout.objects.filter(pk=draft.pk).update(
        state=Rollout.State.HALTED,
        halted_at=now,
        halt_reason="Wave 1: crash rate 4.1% vs 0.3%",
        halt_evidence={
            "first_failing_report_at": (now - timezone.timedelta(seconds=42)).isoformat(),
            "halted_at": now.isoformat(),
        },
    )
    page = viewer_client.get(f"/rollouts/{draft.pk}/").content.decode()
    assert 'class="halt-banner" role="alert"' in page
    assert "Wave 1: crash rate 4.1% vs 0.3%" in page
    assert "First failing report to halt: <strong>42 s</strong>" in page


def wave_post(**extra) -> dict:
    data = {"wave-TOTAL_FORMS": "3", "wave-INITIAL_FORMS": "0", "wave-MIN_NUM_FORMS": "1", "wave-MAX_NUM_FORMS": "10"}
    for i in range(3):
        data.update(
            {
                f"wave-{i}-size_kind": "percent",
                f"wave-{i}-size_value": "100",
                f"wave-{i}-min_soak_s": "600",
                f"wave-{i}-success_min_percent": "90",
                f"wave-{i}-spike_gate": "on",
            }
        )
    data.update(extra)
    return data


def test_it_creates_a_rollout_with_the_waves_filled_in(operator_client, release, cohort):
    response = operator_client.post(
        "/rollouts/new/",
        wave_post(
            **{
                "r-name": "os 40 to pis",
                "r-releases": [release.pk],
                "r-settle_s": "60",
                "wave-0-cohort": cohort.pk,
                "wave-0-size_value": "25",
                "wave-1-cohort": cohort.pk,
            }
        ),
    )
    rollout = Rollout.objects.get(name="os 40 to pis")
    assert response.status_code == 302 and response["Location"] == f"/rollouts/{rollout.pk}/"
    waves = list(rollout.waves.order_by("index").values_list("size_value", "cohort_id"))
    assert waves == [(25.0, cohort.pk), (100.0, cohort.pk)]  # the untouched third wave is skipped


def test_it_shows_the_services_wave_error(operator_client, release):
    response = operator_client.post(
        "/rollouts/new/",
        wave_post(
            **{
                "r-name": "no cohort",
                "r-releases": [release.pk],
                "r-settle_s": "60",
            }
        ),
    )
    assert response.status_code == 400
    assert "wave 1 needs a cohort" in response.content.decode()
    assert not Rollout.objects.filter(name="no cohort").exists()


def test_it_refuses_the_create_form_to_viewers(viewer_client):
    assert viewer_client.get("/rollouts/new/").status_code == 403


def test_it_previews_how_many_devices_a_wave_reaches(operator_client, cohort):
    data = operator_client.get(
        "/rollouts/wave-preview.json", {"cohort": cohort.pk, "size_kind": "percent", "size_value": "50"}
    ).json()
    assert (data["cohort_devices"], data["would_select"]) == (4, 2)
    assert operator_client.get("/rollouts/wave-preview.json", {"size_value": "x"}).status_code == 400


def test_it_lets_on_call_freeze_but_not_lift_the_freeze(viewer_client):
    response = viewer_client.post(
        "/rollouts/freeze/", {"reason": "INC-42 wifi outage", "active": "1", "next": "/wall/"}
    )
    assert response.status_code == 302 and response["Location"] == "/wall/"
    assert FleetFreeze.objects.get(active=True).reason == "INC-42 wifi outage"
    viewer_client.post("/rollouts/freeze/", {"reason": "over", "active": "0"})
    assert FleetFreeze.objects.filter(active=True).exists()


def test_it_requires_a_reason_to_freeze(viewer_client):
    response = viewer_client.post("/rollouts/freeze/", {"reason": " ", "active": "1"}, follow=True)
    assert not FleetFreeze.objects.exists()
    assert response.status_code == 200


def test_it_serves_the_health_series(viewer_client, draft):
    data = viewer_client.get(f"/rollouts/{draft.pk}/health.json").json()
    assert data == {"metric": "crashes", "min_ratio": None, "points": []}
    assert viewer_client.get(f"/rollouts/{draft.pk}/health.json?metric=bogus").status_code == 400
