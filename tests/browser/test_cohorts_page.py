"""Cohorts in the browser: an admin writes a filter with a live preview; a viewer can only look."""

from playwright.sync_api import expect

from apps.fleet.models import Cohort
from tests.browser.conftest import login, screenshot
from tests.browser.helpers import demo_fleet
from tests.conftest import PASSWORD
from tests.factories import CohortFactory


def test_it_lets_an_admin_create_a_cohort_with_a_live_preview(page, app_server, admin_user):
    demo_fleet()
    CohortFactory(name="canaries", filter_text="tag:canary", description="one device in ten")
    login(page, app_server, admin_user.username, PASSWORD)
    page.get_by_role("link", name="Cohorts").click()
    page.get_by_role("link", name="New cohort").click()
    page.get_by_label("Name").fill("eu nucs")
    filter_box = page.get_by_label("Filter", exact=True)
    expected = sum(1 for _ in Cohort(filter_text='hw == "nuc" and region ~ "eu"').devices())

    filter_box.fill('hw == "nuc" and region ~ "eu"')
    preview = page.locator("#cohort-preview")
    expect(preview.locator('[data-preview="count"]')).to_have_text(f"Matches {expected} devices", timeout=5_000)
    expect(preview.locator(".sample li")).to_have_count(min(expected, 10))

    filter_box.fill('hw == "nuc" and (region ~ "eu"')
    expect(preview.locator('[data-preview="error"]')).to_contain_text("(line 1, column", timeout=5_000)
    expect(preview.locator(".mark")).to_have_text("^")
    expect(filter_box).to_have_attribute("aria-invalid", "true")
    screenshot(page, "cohort-edit")

    # Saved anyway: the server refuses with the same inline error.
    page.get_by_role("button", name="Create cohort").click()
    expect(page.get_by_role("alert")).to_contain_text("column")
    assert not Cohort.objects.filter(name="eu nucs").exists()

    page.get_by_label("Filter", exact=True).fill('hw == "nuc" and region ~ "eu"')
    page.get_by_role("button", name="Create cohort").click()
    expect(page.get_by_role("heading", name="eu nucs")).to_be_visible()
    expect(page.locator("dl.facts")).to_contain_text(str(expected))
    page.get_by_role("link", name="← Cohorts").click()
    expect(page.locator("#cohort-table")).to_contain_text("eu nucs")
    screenshot(page, "cohorts")


def test_it_shows_a_viewer_no_edit_controls_and_refuses_the_edit_page(page, app_server, viewer_user):
    cohort = CohortFactory(name="canaries", filter_text="tag:canary")
    login(page, app_server, viewer_user.username, PASSWORD)
    page.get_by_role("link", name="Cohorts").click()
    expect(page.locator("#cohort-table")).to_contain_text("canaries")
    expect(page.get_by_role("link", name="New cohort")).to_have_count(0)
    expect(page.get_by_role("link", name="Edit canaries")).to_have_count(0)
    page.get_by_role("link", name="canaries").click()
    expect(page.get_by_role("link", name="Edit cohort")).to_have_count(0)
    response = page.goto(f"{app_server}/cohorts/{cohort.pk}/edit/")
    assert response.status == 403


def test_it_filters_the_audit_log(page, app_server, admin_user):
    CohortFactory(name="canaries", filter_text="tag:canary")
    login(page, app_server, admin_user.username, PASSWORD)
    for name in ("pis", "nucs"):
        page.goto(f"{app_server}/cohorts/new/")
        page.get_by_label("Name").fill(name)
        page.get_by_label("Filter", exact=True).fill('hw ~ "rpi"')
        page.get_by_role("button", name="Create cohort").click()
        expect(page.get_by_role("heading", name=name)).to_be_visible()
    page.get_by_role("link", name="Audit log").click()
    page.get_by_label("Action").select_option("cohort.create")
    page.get_by_role("button", name="Filter").click()
    rows = page.locator("#audit-table tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("nucs")
    expect(rows.first).to_contain_text(admin_user.username)
    screenshot(page, "audit")
