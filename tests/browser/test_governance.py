"""Combination governance in the browser: the certified share on the overview, the budget warning on a
rollout plan page, an operator refused, and an admin overriding with a reason."""

from playwright.sync_api import expect

from apps.audit.models import AuditEntry
from apps.fleet.models import Component
from apps.governance.services import budget_set, certified_combination_create
from apps.rollouts.models import Rollout
from apps.rollouts.services import rollout_create, rollout_submit
from tests.browser.conftest import login, screenshot
from tests.browser.helpers import checkin
from tests.conftest import PASSWORD
from tests.factories import (
    CohortFactory,
    ComponentFactory,
    DeviceFactory,
    ReleaseFactory,
)


def _fleet(app_server) -> None:
    """8 pis on os 39.1 (app 1.0 or 1.1), 2 on an uncertified os 38.0 build; checked in over HTTP."""
    ComponentFactory(name="os", kind="os", position=0)
    ComponentFactory(name="app", kind="app", position=1)
    plan = [("39.1", "1.0")] * 5 + [("39.1", "1.1")] * 3 + [("38.0", "1.0")] * 2
    for i, (os_version, app_version) in enumerate(plan):
        uid = f"pi-{i}"
        DeviceFactory(uid=uid, hw_model="rpi4")
        checkin(app_server, uid, 1, {"os": os_version, "app": app_version})


def test_it_shows_the_certified_share_on_the_overview(page, app_server, admin_user, viewer_user):
    _fleet(app_server)
    certified_combination_create(patterns="os=39.*", note="regression suite 39", actor=admin_user)

    login(page, app_server, viewer_user.username, PASSWORD)
    card = page.locator("#certified-share")
    expect(card.locator('[data-key="certified-share"]')).to_have_text("80.0%")
    expect(card.locator('[data-key="uncertified-devices"]')).to_have_text("2")
    expect(card.locator("#uncertified-top")).to_contain_text("os 38.0")
    expect(card.locator("#uncertified-top")).not_to_contain_text("os 39.1")
    screenshot(page, "governance-overview")

    card.locator("#uncertified-top a").first.click()
    row = page.locator('#live-combinations tr[data-certified="0"]')
    expect(row).to_have_count(1)
    expect(row).to_contain_text("os 38.0")
    expect(page.locator('#live-combinations tr[data-certified="1"]')).to_have_count(2)


def test_it_warns_on_a_plan_over_budget_and_only_an_admin_overrides(
    page, browser, browser_context_args, app_server, admin_user, operator_user
):
    _fleet(app_server)
    new_os = ReleaseFactory(component=Component.objects.get(name="os"), version="40.0")
    pis = CohortFactory(name="all pis", filter_text='hw == "rpi4"')
    budget_set(cohort=None, max_combinations=4, note="support can test four", actor=admin_user)
    rollout = rollout_create(
        name="os 40 everywhere", releases=[new_os], actor=operator_user, settle_s=0,
        waves=[{"cohort": pis, "size_kind": "percent", "size_value": 20, "success_min_percent": 0},
               {"cohort": None, "size_kind": "percent", "size_value": 100, "success_min_percent": 0}],
    )
    rollout_submit(rollout=rollout, actor=operator_user)

    # The operator sees the warning, gets no override, and the start is refused with the reason why.
    login(page, app_server, operator_user.username, PASSWORD)
    page.goto(f"{app_server}/rollouts/{rollout.pk}/")
    warning = page.locator("#budget-warning")
    expect(warning).to_contain_text("This plan breaks the combination budget")
    expect(warning).to_contain_text("Whole fleet: 5 live combinations during wave 1 (budget 4, now 3)")
    expect(page.locator("#prediction-table tr[data-breach]")).to_have_count(2)
    page.get_by_text("Start…").click()
    expect(page.locator("#budget-override")).to_have_count(0)
    page.get_by_role("button", name="Confirm start").click()
    expect(page.locator("#start-error")).to_contain_text("an admin may override it with a reason")
    expect(page.locator("#rollout-state")).to_have_text("Scheduled")

    admin_context = browser.new_context(**browser_context_args)
    admin = admin_context.new_page()
    try:
        login(admin, app_server, admin_user.username, PASSWORD)
        admin.goto(f"{app_server}/rollouts/{rollout.pk}/")
        expect(admin.locator("#budget-warning")).to_be_visible()
        admin.get_by_text("Start…").click()
        admin.locator("#reason-start").fill("kernel CVE: converge next sprint")
        admin.get_by_label("Override the combination budget").check()
        screenshot(admin, "governance-budget")
        admin.get_by_role("button", name="Confirm start").click()
        expect(admin.locator("#rollout-state")).to_have_text("Running")
    finally:
        admin_context.close()
    assert Rollout.objects.get(pk=rollout.pk).state == Rollout.State.RUNNING
    entry = AuditEntry.objects.get(action="rollout.budget_override")
    assert (entry.actor, entry.reason) == (admin_user, "kernel CVE: converge next sprint")


def test_the_new_rollout_form_predicts_the_plan_against_the_budget(page, app_server, admin_user, operator_user):
    _fleet(app_server)
    ReleaseFactory(component=Component.objects.get(name="os"), version="40.0")
    CohortFactory(name="all pis", filter_text='hw == "rpi4"')
    budget_set(cohort=None, max_combinations=4, actor=admin_user)

    login(page, app_server, operator_user.username, PASSWORD)
    page.goto(f"{app_server}/rollouts/new/")
    page.get_by_label("Releases").select_option(label="os 40.0")
    wave = page.locator("[data-wave-form]").first
    wave.get_by_label("Cohort").select_option(label="all pis")
    panel = page.locator("#plan-prediction")
    # 100% of the pis at once: 3 combinations now, all 3 alive with their 2 new twins during the wave.
    expect(panel.locator("#budget-warning")).to_contain_text("5 live combinations during wave 1 (budget 4, now 3)")
    expect(panel).to_contain_text("Starting it will need an admin override")
    wave.get_by_label("Size", exact=True).fill("1")
    wave.locator('[name$="-size_kind"]').select_option("count")
    # One device: one new combination (4 at the peak), within budget.
    expect(panel.locator("#budget-ok")).to_have_text("Within budget in every wave.")
