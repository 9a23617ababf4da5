"""The fleet overview and the wall screen follow the fleet live, without reloading."""

from django.db import transaction
from django.utils import timezone
from playwright.sync_api import expect

from apps.live.broadcast import ROLLOUTS, WALL, broadcast_event, rollout_group
from apps.rollouts.models import Rollout
from tests.browser.conftest import login, screenshot
from tests.browser.helpers import checkin, demo_fleet, in_thread
from tests.conftest import PASSWORD
from tests.factories import ComponentFactory, DeviceFactory


def test_it_updates_the_combination_count_when_a_device_checks_in_with_a_new_one(page, app_server, viewer_user):
    ComponentFactory(name="os", kind="os")
    DeviceFactory(uid="rpi-kitchen")
    DeviceFactory(uid="rpi-garage")
    checkin(app_server, "rpi-kitchen", 1, {"os": "39.1"})
    login(page, app_server, viewer_user.username, PASSWORD)
    combinations = page.locator('#stat-combinations [data-key="combinations"]')
    expect(combinations).to_have_text("1")
    expect(page.locator("#live-status")).to_have_text("● Live", timeout=10_000)
    page.evaluate("window.__notReloaded = true")

    checkin(app_server, "rpi-garage", 1, {"os": "40.0"})
    expect(combinations).to_have_text("2", timeout=10_000)
    expect(page.locator("#top-combinations")).to_contain_text("os 40.0")
    expect(page.locator("#heatmap")).to_contain_text("40.0")
    assert page.evaluate("window.__notReloaded") is True


def test_it_shows_the_spread_of_a_demo_fleet(page, app_server, viewer_user):
    demo_fleet()
    login(page, app_server, viewer_user.username, PASSWORD)
    expect(page.locator('#stat-combinations [data-key="combinations"]')).to_have_text("7")
    expect(page.locator("#heatmap tbody tr")).to_have_count(4)
    expect(page.locator("#chart-combinations canvas")).to_have_count(1, timeout=10_000)
    expect(page.locator("#chart-share-summary")).to_contain_text("39.2")
    expect(page.locator("#live-status")).to_have_text("● Live", timeout=10_000)
    screenshot(page, "overview")


def test_it_shows_a_halt_on_the_wall_within_seconds(page, app_server, viewer_user):
    demo_fleet(60)
    running = Rollout.objects.create(
        name="agent 2.4.0 → eu",
        state=Rollout.State.RUNNING,
        started_at=timezone.now(),
        progress_counts={"waves": [{"wave": 0, "total": 40, "succeeded": 31, "failed": 1}]},
    )
    doomed = Rollout.objects.create(
        name="os 39.2 → canaries",
        state=Rollout.State.RUNNING,
        started_at=timezone.now(),
        progress_counts={"waves": [{"wave": 0, "total": 12, "succeeded": 5, "failed": 2}]},
    )
    login(page, app_server, viewer_user.username, PASSWORD)
    page.get_by_role("link", name="Wall screen").click()
    expect(page.locator("#live-status")).to_have_text("● Live", timeout=10_000)
    expect(page.locator(f'#wall-rollouts [data-rollout="{running.pk}"]')).to_contain_text("31 of 40 updated")
    expect(page.locator("#wall-halts")).to_contain_text("No halts")

    def halt():
        with transaction.atomic():
            Rollout.objects.filter(pk=doomed.pk).update(
                state=Rollout.State.HALTED,
                halted_at=timezone.now(),
                halt_reason="crash rate 4.1% on 37 updated devices vs 0.3% baseline (p<0.001)",
            )
            broadcast_event(
                "rollout.state",
                {
                    "rollout": doomed.pk,
                    "name": doomed.name,
                    "state": "halted",
                    "previous": "running",
                    "actor": "system",
                    "reason": "",
                },
                groups=(ROLLOUTS, rollout_group(doomed.pk), WALL),
            )

    in_thread(halt)
    expect(page.locator("#wall-halts")).to_contain_text("HALTED: os 39.2 → canaries", timeout=5_000)
    expect(page.locator("#wall-halts")).to_contain_text("crash rate 4.1%")
    expect(page.locator("#wall-alerts")).to_contain_text("running → halted")
    screenshot(page, "wall")
