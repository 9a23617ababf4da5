"""Keyboard use: the skip link, visible focus, and times in the viewer's time zone."""

from datetime import datetime
from zoneinfo import ZoneInfo

from playwright.sync_api import expect

from apps.audit.models import AuditEntry
from apps.audit.services import audit_record
from tests.browser.conftest import login
from tests.conftest import PASSWORD


def test_it_reaches_the_content_by_keyboard_with_visible_focus(page, app_server, viewer_user):
    login(page, app_server, viewer_user.username, PASSWORD)
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    assert skip.bounding_box()["x"] >= 0  # shown on screen while focused
    page.keyboard.press("Enter")
    assert page.evaluate("document.activeElement.id") == "main"
    page.keyboard.press("Tab")
    cohort_select = page.get_by_label("Cohort")
    expect(cohort_select).to_be_focused()
    assert cohort_select.evaluate("el => getComputedStyle(el).outlineStyle") == "solid"


def test_it_shows_audit_times_in_the_viewers_time_zone(page, app_server, viewer_user):
    entry = audit_record(actor="alice", action="cohort.create", object_type="fleet.cohort", object_id="1")
    AuditEntry.objects.filter(pk=entry.pk).update(at=datetime(2026, 3, 1, 23, 30, tzinfo=ZoneInfo("UTC")))
    login(page, app_server, viewer_user.username, PASSWORD)
    page.get_by_role("link", name="Audit log").click()
    # The browser runs in Europe/Berlin with en-GB: 23:30 UTC is 00:30 the next day there.
    expect(page.locator("#audit-table tbody tr").last.locator("time")).to_have_text("02/03/2026, 00:30:00")
