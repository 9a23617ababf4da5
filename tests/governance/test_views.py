"""Governance pages, the overview's certified share, and the rollout plan page's prediction and override."""

from apps.audit.models import AuditEntry
from apps.governance.models import CertifiedCombination, CombinationBudget
from apps.governance.services import budget_set, certified_combination_create
from apps.rollouts.models import Rollout

from .conftest import explicit_cohort, make_devices, scheduled_rollout


def test_it_lets_an_admin_certify_from_the_page(admin_client, catalogue):
    make_devices(2, {"os": "39.1", "app": "1.0"})
    response = admin_client.post("/governance/certified/", {"patterns": "os=39.*", "note": "lab"})
    assert response.status_code == 302
    assert CertifiedCombination.objects.get().patterns == {"os": "39.*"}
    page = admin_client.get("/governance/").content.decode()
    assert 'data-certified="1"' in page and 'data-certified="0"' not in page


def test_it_shows_a_form_error_naming_the_bad_pattern(admin_client, db):
    response = admin_client.post("/governance/certified/", {"patterns": "os"})
    assert response.status_code == 400
    assert "write component=version" in response.content.decode()
    assert not CertifiedCombination.objects.exists()


def test_it_lets_viewers_read_but_not_change(viewer_client, operator_client, db):
    assert viewer_client.get("/governance/certified/").status_code == 200
    assert viewer_client.get("/governance/budgets/").status_code == 200
    assert viewer_client.post("/governance/certified/", {"patterns": "os=1"}).status_code == 403
    assert operator_client.post("/governance/budgets/", {"max_combinations": "3", "top_k": "3"}).status_code == 403
    assert not CertifiedCombination.objects.exists() and not CombinationBudget.objects.exists()


def test_it_saves_a_budget_and_rejects_a_budget_without_limits(admin_client, db):
    response = admin_client.post("/governance/budgets/", {"top_k": "3"})
    assert response.status_code == 400
    assert "Set at least one limit." in response.content.decode()
    response = admin_client.post("/governance/budgets/", {"max_combinations": "8", "max_outside_share": "10",
                                                          "top_k": "3"})
    assert response.status_code == 302
    budget = CombinationBudget.objects.get()
    assert (budget.cohort_id, budget.max_combinations, budget.max_outside_share) == (None, 8, 10.0)
    assert AuditEntry.objects.filter(action="governance.budget_set").count() == 1


def test_the_overview_shows_devices_on_uncertified_combinations(viewer_client, admin_user, catalogue):
    make_devices(3, {"os": "39.1", "app": "1.0"})
    make_devices(1, {"os": "40.0", "app": "1.1"})
    certified_combination_create(patterns="os=39.1", actor=admin_user)
    page = viewer_client.get("/").content.decode()
    assert 'data-key="certified-share">75.0%' in page
    assert 'data-key="uncertified-devices">1<' in page
    assert "<code>os 40.0</code>" in page


def _plan(catalogue, admin_user, operator_user, limit=3):
    cohort = explicit_cohort(make_devices(5, {"os": "39.1", "app": "1.0"}) +
                             make_devices(5, {"os": "39.1", "app": "1.1"}), "pis")
    budget_set(cohort=None, max_combinations=limit, actor=admin_user)
    return scheduled_rollout(operator_user, [catalogue["os 40.0"]], cohort)


def test_the_plan_page_warns_when_the_plan_breaks_the_budget(operator_client, catalogue, admin_user, operator_user):
    rollout = _plan(catalogue, admin_user, operator_user)
    page = operator_client.get(f"/rollouts/{rollout.pk}/").content.decode()
    assert "This plan breaks the combination budget" in page
    assert "Whole fleet: 4 live combinations during wave 1 (budget 3, now 2)" in page
    assert 'name="budget_override"' not in page  # operators get no override


def test_an_operator_start_over_budget_gets_a_409_with_the_field(operator_client, catalogue, admin_user,
                                                                 operator_user):
    rollout = _plan(catalogue, admin_user, operator_user)
    url = f"/rollouts/{rollout.pk}/action/"
    response = operator_client.post(url, {"action": "start", "reason": "go", "budget_override": "1"},
                                    HTTP_ACCEPT="application/json")
    assert response.status_code == 409
    assert response.json() == {"error": "cannot start: only an admin can override the combination budget",
                                "field": "budget_override"}
    response = operator_client.post(url, {"action": "start", "reason": "go"})
    assert response.status_code == 409
    assert "an admin may override it with a reason" in response.content.decode()
    assert Rollout.objects.get(pk=rollout.pk).state == Rollout.State.SCHEDULED


def test_an_admin_overrides_from_the_plan_page(admin_client, catalogue, admin_user, operator_user):
    rollout = _plan(catalogue, admin_user, operator_user)
    page = admin_client.get(f"/rollouts/{rollout.pk}/").content.decode()
    assert 'name="budget_override"' in page
    response = admin_client.post(f"/rollouts/{rollout.pk}/action/",
                                 {"action": "start", "reason": "CVE fix", "budget_override": "1"})
    assert response.status_code == 302
    assert Rollout.objects.get(pk=rollout.pk).state == Rollout.State.RUNNING
    assert AuditEntry.objects.get(action="rollout.budget_override").reason == "CVE fix"


def test_the_plan_page_says_within_budget(operator_client, catalogue, admin_user, operator_user):
    rollout = _plan(catalogue, admin_user, operator_user, limit=4)
    page = operator_client.get(f"/rollouts/{rollout.pk}/").content.decode()
    assert "Within budget in every wave." in page
    assert "This plan breaks" not in page


def test_the_new_rollout_form_preview_predicts_an_unsaved_plan(operator_client, catalogue, admin_user):
    cohort = explicit_cohort(make_devices(4, {"os": "39.1", "app": "1.0"}) +
                             make_devices(4, {"os": "39.1", "app": "1.1"}), "pis")
    budget_set(cohort=None, max_combinations=3, actor=admin_user)
    release = catalogue["os 40.0"].pk
    response = operator_client.get("/governance/plan-preview/",
                                   {"release": [release], "wave": [f"{cohort.pk}:count:2", ":percent:100"]})
    assert response.status_code == 200
    page = response.content.decode()
    assert "This plan breaks the combination budget" in page
    assert "Starting it will need an admin override" in page
    assert "Whole fleet: 4 live combinations during wave 1 (budget 3, now 2)" in page


def test_the_plan_preview_names_the_bad_field(operator_client, viewer_client, catalogue):
    release = catalogue["os 40.0"].pk
    response = operator_client.get("/governance/plan-preview/", {"release": [release], "wave": [":percent:100"]})
    assert response.status_code == 400
    assert response.json() == {"error": "wave 1 needs a cohort", "field": "wave"}
    response = operator_client.get("/governance/plan-preview/", {"wave": ["1:percent:x"]})
    assert response.json()["field"] == "release"
    assert viewer_client.get("/governance/plan-preview/", {"release": [release]}).status_code == 403
