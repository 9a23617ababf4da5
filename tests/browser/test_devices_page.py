"""A person logs in and watches devices check in, without reloading the page."""

import json
import urllib.request

from playwright.sync_api import expect

from apps.fleet.models import Device
from tests.browser.conftest import login, screenshot
from tests.conftest import PASSWORD
from tests.factories import ComponentFactory, DeviceFactory


def checkin(base_url: str, uid: str, seq: int, os_version: str = "39.1") -> dict:
    body = json.dumps({"seq": seq, "installed": {"os": os_version}, "health": {"interval_s": 60}}).encode()
    request = urllib.request.Request(
        f"{base_url}/api/v1/devices/{uid}/checkin", data=body, method="POST",
        headers={"Authorization": f"Bearer token-{uid}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def test_it_shows_devices_checking_in_live(page, app_server, viewer_user):
    ComponentFactory(name="os", kind="os")
    DeviceFactory(uid="rpi-kitchen")
    DeviceFactory(uid="rpi-garage")
    login(page, app_server, viewer_user.username, PASSWORD)
    page.get_by_role("link", name="Devices").click()
    row = page.locator('tr[data-uid="rpi-kitchen"]')
    expect(row.locator('[data-field="last_seen"]')).to_have_text("never")
    expect(row.locator('[data-field="online"]')).to_contain_text("offline")

    checkin(app_server, "rpi-kitchen", 1)
    # The page refreshes its rows by itself: no reload.
    expect(row.locator('[data-field="online"]')).to_contain_text("online", timeout=10_000)
    expect(row.locator('[data-field="checkins"]')).to_have_text("1")
    first_seen = row.locator('[data-field="last_seen"]').inner_text()
    assert first_seen != "never"
    assert Device.objects.get(uid="rpi-kitchen").checkin_count == 1

    checkin(app_server, "rpi-kitchen", 2)
    expect(row.locator('[data-field="checkins"]')).to_have_text("2", timeout=10_000)
    expect(page.locator('tr[data-uid="rpi-garage"] [data-field="online"]')).to_contain_text("offline")
    screenshot(page, "devices")


def test_it_rejects_a_bad_login_and_keeps_the_user_out(page, app_server, viewer_user):
    page.goto(f"{app_server}/accounts/login/")
    page.get_by_label("Username").fill(viewer_user.username)
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("correct username and password")
    page.goto(f"{app_server}/devices/")
    expect(page).to_have_url(f"{app_server}/accounts/login/?next=/devices/")
