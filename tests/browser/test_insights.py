"""Health by combination in Chromium: in a simulated fleet where vision 1.4 crashes only on os 39.2, the
heatmap points at that one cell."""

import random

from playwright.sync_api import expect

from apps.simulator.fleetsim import HealthModel
from apps.simulator.profiles import (
    DEFAULT_PROFILE,
    profile_check,
    profile_mark_sick_pairing,
)
from tests.browser.conftest import login, screenshot
from tests.conftest import PASSWORD
from tests.factories import ComponentFactory, ReleaseFactory
from tests.insights.conftest import fleet_device, report, rollup_now

PAIRINGS = [(os_version, vision) for os_version in ("39.1", "39.2") for vision in ("1.3", "1.4")]


def simulate_reports(devices_per_pairing: int = 10, reports_per_device: int = 6) -> None:
    """Health reports drawn from the simulator's own health model (seeded), over the last hour."""
    profile = profile_mark_sick_pairing(profile_check({**DEFAULT_PROFILE, "combinations": []}), "vision=1.4@os=39.2")
    model = HealthModel(profile_check(profile))
    rng = random.Random(42)
    for os_version, vision in PAIRINGS:
        for i in range(devices_per_pairing):
            device = fleet_device(f"sim-{os_version}-{vision}-{i}", os_version, vision)
            for seq in range(reports_per_device):
                counters = model.sample({"os": os_version, "vision": vision}, 600, rng)
                report(device, seq=seq, minutes_ago=2 + seq * 10, interval_s=600,
                       crashes=counters["crashes"], failed_checks=counters["failed_health_checks"])


def test_it_points_the_heatmap_at_the_sick_pairing(page, app_server, viewer_user):
    os_component = ComponentFactory(name="os", kind="os", position=0)
    vision = ComponentFactory(name="vision", kind="app", position=10)
    for os_version in ("39.1", "39.2"):
        ReleaseFactory(component=os_component, version=os_version)
    for version in ("1.3", "1.4"):
        ReleaseFactory(component=vision, version=version)
    simulate_reports()
    rollup_now()

    login(page, app_server, viewer_user.username, PASSWORD)
    page.get_by_role("link", name="Health").click()
    page.get_by_label("Window").select_option("1")
    page.get_by_label("Application").select_option("vision")
    page.get_by_role("button", name="Show").click()

    sick = page.locator('td.rate-cell[data-os="39.2"][data-app="1.4"]')
    expect(sick).to_have_class("rate-cell rate-4 worst")
    for os_version, app_version in PAIRINGS:
        if (os_version, app_version) == ("39.2", "1.4"):
            continue
        cell = page.locator(f'td.rate-cell[data-os="{os_version}"][data-app="{app_version}"]')
        expect(cell).to_be_visible()
        assert int(cell.get_attribute("data-level")) < 4, (os_version, app_version)
        assert "worst" not in cell.get_attribute("class")
    expect(page.locator("#heat-summary")).to_contain_text("os 39.2 × vision 1.4")
    expect(sick).to_have_attribute("title", __import__("re").compile(r"10 devices now"))
    screenshot(page, "insights-heatmap")


def test_it_lists_stragglers_and_starts_a_follow_up_in_one_click(page, app_server, operator_user):
    from datetime import timedelta

    from django.utils import timezone

    from apps.fleet.models import Device
    from apps.rollouts.models import Deployment, Rollout
    from apps.rollouts.services import deployment_feedback
    from tests.rollouts.conftest import (
        explicit_cohort,
        make_devices,
        running_rollout,
        tick,
        wave,
    )

    os_component = ComponentFactory(name="os", kind="os", position=0)
    vision = ComponentFactory(name="vision", kind="app", position=10)
    ReleaseFactory(component=os_component, version="39.1")
    target = ReleaseFactory(component=vision, version="1.4")
    devices = make_devices(4, prefix="cam", installed={"os": "39.1", "vision": "1.3"})
    rollout = running_rollout(operator_user, [target], [wave(explicit_cohort(devices))], name="vision 1.4 to cameras")
    tick(rollout)
    tick(rollout)
    for device in devices[:2]:
        deployment_feedback(deployment=Deployment.objects.get(rollout=rollout, device=device), state="failed",
                            error_code="disk_busy")
    Device.objects.update(last_seen=timezone.now() - timedelta(seconds=5))
    # devices[1] failed and went offline (not retryable); devices[2] is offline, not reached yet.
    Device.objects.filter(pk__in=[devices[1].pk, devices[2].pk]).update(last_seen=timezone.now() - timedelta(days=1))

    login(page, app_server, operator_user.username, PASSWORD)
    page.goto(f"{app_server}/rollouts/{rollout.pk}/")
    page.get_by_role("link", name="Stragglers").click()
    expect(page.locator('[data-reason="failing"] .value')).to_have_text("2")
    expect(page.locator('[data-reason="offline"] .value')).to_have_text("1")
    expect(page.locator('[data-reason="pending"] .value')).to_have_text("1")
    expect(page.locator("#retryable-count")).to_have_text("1")
    expect(page.locator(f'tr[data-uid="{devices[0].uid}"]')).to_contain_text("disk_busy")
    page.get_by_text("Follow-up rollout for 1 retryable device").click()
    screenshot(page, "insights-stragglers")
    page.get_by_role("button", name="Create draft follow-up rollout").click()

    followup = Rollout.objects.exclude(pk=rollout.pk).get()
    expect(page).to_have_url(f"{app_server}/rollouts/{followup.pk}/")
    expect(page.locator("ul.messages")).to_contain_text("Draft follow-up rollout created for 1 devices")
    assert followup.state == Rollout.State.DRAFT
    assert list(followup.waves.get().cohort.members.values_list("uid", flat=True)) == [devices[0].uid]


def test_it_charts_combinations_over_time_with_the_rollouts_marked(page, app_server, operator_user, viewer_user):
    from datetime import timedelta

    from django.utils import timezone

    from apps.fleet.models import SpreadSample
    from apps.rollouts.models import Rollout

    now = timezone.now()
    for minutes, combinations in ((50, 5), (40, 6), (30, 7), (20, 5), (10, 3)):
        SpreadSample.objects.create(at=now - timedelta(minutes=minutes), devices=100, online=90,
                                    combinations=combinations)
    Rollout.objects.create(name="os 40.0 everywhere", state=Rollout.State.COMPLETED,
                           started_at=now - timedelta(minutes=45), finished_at=now - timedelta(minutes=15))

    login(page, app_server, viewer_user.username, PASSWORD)
    page.goto(f"{app_server}/insights/spread/?hours=24")
    expect(page.locator("#chart-spread-summary")).to_contain_text("Now 3 combinations; 5 at the start")
    expect(page.locator("#chart-spread-history canvas")).to_have_count(1)
    expect(page.locator("#chart-markers li")).to_have_count(2)
    expect(page.locator('#chart-markers li[data-kind="start"]')).to_contain_text("os 40.0 everywhere")
    expect(page.locator('#chart-markers li[data-kind="complete"]')).to_contain_text("os 40.0 everywhere")
    screenshot(page, "insights-spread")
