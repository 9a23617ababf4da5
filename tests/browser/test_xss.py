"""Device-supplied strings are shown as text: script payloads in attributes, hw_model, versions,
deployment error details and audit entries never run or become elements in a real Chromium."""

import pytest
from django.utils import timezone

from apps.audit.services import audit_record
from apps.fleet.models import Combination
from apps.rollouts.models import Deployment, Rollout, Wave
from tests.browser.conftest import login
from tests.conftest import PASSWORD
from tests.factories import ComponentFactory, DeviceFactory

MARK = "window.__xss=1"
PAYLOADS = [
    f"<script>{MARK}</script>",
    f'<img src=x onerror="{MARK}" data-xss>',
    f'"><svg onload="{MARK}" data-xss>',
    "'><iframe srcdoc=\"<script>parent.__xss=1</script>\" data-xss>",
]
JOINED = " ".join(PAYLOADS)


@pytest.fixture
def hostile(db):
    ComponentFactory(name="os", kind="os")
    # Stored as-is, as hawkBit configData (any string up to 512 chars) or an older client could.
    versions = {"os": "1.0-rc1+build~7"}  # the native API's version grammar forbids markup
    combination, _ = Combination.objects.get_or_create(key=Combination.key_for(versions),
                                                        defaults={"versions": versions, "device_count": 1})
    device = DeviceFactory(uid="evil-1", hw_model=PAYLOADS[1][:64], installed=versions, combination=combination,
                           attributes={"region": PAYLOADS[0], "note": PAYLOADS[2], "x": PAYLOADS[3]})
    rollout = Rollout.objects.create(name=f"os {PAYLOADS[1]}"[:100], state=Rollout.State.RUNNING,
                                     started_at=timezone.now())
    wave = Wave.objects.create(rollout=rollout, index=0, state="running")
    Deployment.objects.create(rollout=rollout, wave=wave, device=device, released_at=timezone.now(),
                              from_versions=versions, to_versions={"os": "2.0"}, state=Deployment.State.FAILED,
                              error_code="E_XSS", error_detail=JOINED[:1000])
    audit_record(actor=f"device:{device.uid}", action="device.report", obj=device, reason=JOINED,
                 after={"detail": PAYLOADS[1]})
    return device, rollout


def assert_inert(page, url: str) -> None:
    dialogs = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.goto(url)
    page.wait_for_load_state("networkidle")
    assert page.evaluate("window.__xss") is None, url
    assert page.locator("[data-xss]").count() == 0, url
    assert page.locator("script", has_text="__xss").count() == 0, url
    assert dialogs == [], url


def test_it_shows_device_supplied_markup_as_text_on_every_page(page, app_server, viewer_user, hostile):
    device, rollout = hostile
    login(page, app_server, viewer_user.username, PASSWORD)
    for path in ("/devices/", f"/devices/{device.uid}/", f"/rollouts/{rollout.pk}/", "/rollouts/", "/wall/",
                 "/audit/", "/"):
        assert_inert(page, app_server + path)
    page.goto(f"{app_server}/devices/{device.uid}/")
    page.wait_for_load_state("networkidle")
    # The payloads are there, as visible text.
    assert "<script>" in page.locator("body").inner_text()
    page.goto(f"{app_server}/rollouts/{rollout.pk}/")
    page.wait_for_load_state("networkidle")
    assert "onerror" in page.locator("body").inner_text()
