"""An operator creates and starts a rollout; progress moves and a halt shows up without reloading."""

from playwright.sync_api import expect

from apps.rollouts.engine import rollout_evaluate
from apps.rollouts.models import Rollout
from tests.browser.conftest import login, screenshot
from tests.browser.helpers import checkin, in_thread
from tests.conftest import PASSWORD
from tests.factories import CohortFactory, ComponentFactory, DeviceFactory, ReleaseFactory

DEVICES = [f"pi-{i}" for i in range(6)]


def test_it_runs_a_rollout_live_from_create_to_halt(page, app_server, operator_user):
    os_component = ComponentFactory(name="os", kind="os", position=0)
    ReleaseFactory(component=os_component, version="40.0")
    for uid in DEVICES:
        DeviceFactory(uid=uid, hw_model="rpi4")
        checkin(app_server, uid, 1, {"os": "39.1"})
    CohortFactory(name="all pis", filter_text='hw == "rpi4"')
    seq = {uid: 1 for uid in DEVICES}

    def report(uid: str, **health) -> None:
        seq[uid] += 1
        checkin(app_server, uid, seq[uid], {"os": "40.0"}, health=health)

    login(page, app_server, operator_user.username, PASSWORD)
    page.get_by_role("link", name="Rollouts").click()
    page.get_by_role("link", name="New rollout").click()
    page.get_by_label("Name", exact=True).fill("os 40 to the pis")
    page.get_by_label("Releases").select_option(label="os 40.0")
    page.get_by_label("Settle time (s)").fill("0")
    wave = page.locator("[data-wave-form]").first
    wave.get_by_label("Cohort").select_option(label="all pis")
    wave.get_by_label("Halt above failed devices").fill("1")
    expect(wave.locator("[data-wave-preview]")).to_contain_text("Reaches 6 of 6 devices", timeout=5_000)
    screenshot(page, "rollout-new")
    page.get_by_role("button", name="Create draft rollout").click()

    expect(page.get_by_role("heading", name="os 40 to the pis")).to_be_visible()
    rollout = Rollout.objects.get(name="os 40 to the pis")
    page.get_by_text("Submit…").click()
    page.get_by_role("button", name="Confirm submit").click()
    expect(page.locator("#rollout-state")).to_have_text("Scheduled")
    page.get_by_text("Start…").click()
    page.get_by_role("button", name="Confirm start").click()
    expect(page.locator("#rollout-state")).to_have_text("Running")
    expect(page.locator("#live-status")).to_have_text("● Live", timeout=10_000)
    page.evaluate("window.__notReloaded = true")

    wave_item = page.locator('#waves [data-wave="0"]')
    in_thread(rollout_evaluate, rollout.pk)  # the engine's tick: the wave starts
    expect(wave_item.locator(".count-pending strong")).to_have_text("6", timeout=5_000)

    for uid in DEVICES[:3]:
        report(uid)  # on the new version: settling
        report(uid)  # settle time 0 and healthy: succeeded
    in_thread(rollout_evaluate, rollout.pk)
    expect(wave_item.locator(".count-succeeded strong")).to_have_text("3", timeout=5_000)
    expect(wave_item.locator(".stack .seg-succeeded")).to_have_count(1)

    for uid in DEVICES[3:5]:
        report(uid)
        report(uid, crashes=3)  # unhealthy while settling: failed
    in_thread(rollout_evaluate, rollout.pk)
    banner = page.locator("#halt-banner [role=alert]")
    expect(banner).to_contain_text("Halted", timeout=5_000)
    expect(banner).to_contain_text("Wave 1")
    expect(page.locator("#rollout-state")).to_have_text("Halted")
    # Controls follow the state: resume and abort now, no pause.
    expect(page.locator('details.control[data-action="resume"]')).to_be_visible()
    expect(page.locator('details.control[data-action="pause"]')).to_be_hidden()
    assert page.evaluate("window.__notReloaded") is True
    screenshot(page, "rollout")

    page.get_by_role("link", name="← Rollouts").click()
    expect(page.locator(f'#rollout-table tr[data-rollout="{rollout.pk}"]')).to_contain_text("Halted")
    screenshot(page, "rollouts")


def test_it_shows_a_viewer_no_rollout_controls(page, app_server, viewer_user, operator_user):
    from apps.rollouts.services import rollout_create

    release = ReleaseFactory(component=ComponentFactory(name="os", kind="os"), version="40.0")
    rollout = rollout_create(
        name="os 40", releases=[release], actor=operator_user, waves=[{"cohort": CohortFactory(name="all")}]
    )
    login(page, app_server, viewer_user.username, PASSWORD)
    page.goto(f"{app_server}/rollouts/{rollout.pk}/")
    expect(page.get_by_role("heading", name="os 40")).to_be_visible()
    expect(page.locator("details.control")).to_have_count(0)
    expect(page.get_by_role("link", name="New rollout")).to_have_count(0)
