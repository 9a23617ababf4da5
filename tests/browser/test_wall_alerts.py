"""Alerts on the wall screen: a halt shows up on every open wall, one person acknowledges it, and
every wall shows who did, without reloading."""

import re
from datetime import timedelta

from django.utils import timezone
from playwright.sync_api import expect

from apps.alerts.models import Alert
from apps.rollouts.models import Rollout
from apps.rollouts.services import rollout_halt
from tests.browser.conftest import login, screenshot
from tests.browser.helpers import demo_fleet, in_thread
from tests.conftest import PASSWORD


def test_it_shows_an_acknowledgement_on_every_open_wall_without_reloading(
    page, browser, browser_context_args, app_server, viewer_user, operator_user
):
    demo_fleet(60)
    rollout = Rollout.objects.create(
        name="os 39.2 → canaries",
        state=Rollout.State.RUNNING,
        started_at=timezone.now(),
        progress_counts={"waves": [{"wave": 0, "total": 12, "succeeded": 5, "failed": 2}]},
    )
    # A second person (own session) at a second wall.
    other_context = browser.new_context(**browser_context_args)
    other = other_context.new_page()
    walls = (page, other)
    try:
        for wall, user in ((page, viewer_user), (other, operator_user)):
            login(wall, app_server, user.username, PASSWORD)
            wall.goto(f"{app_server}/wall/")
            expect(wall.locator("#live-status")).to_have_text("● Live", timeout=10_000)
            expect(wall.locator("#wall-alert-list")).to_contain_text("No alerts")
            wall.evaluate("window.__notReloaded = true")

        first_failing = timezone.now() - timedelta(seconds=42)
        in_thread(rollout_halt, rollout=rollout, reason="crash rate 4.1% on 37 updated devices vs 0.3% baseline",
                  evidence={"first_failing_report_at": first_failing.isoformat()})
        alert = Alert.objects.get(rollout=rollout)
        items = [wall.locator(f'#wall-alert-list [data-alert="{alert.pk}"]') for wall in walls]
        for item in items:
            expect(item).to_contain_text("Rollout halted: os 39.2 → canaries", timeout=5_000)
            expect(item).to_contain_text("crash rate 4.1%")
            expect(item).to_contain_text(re.compile(r"4[23] s from the first failing report to the halt"))
            expect(item).to_contain_text("OPEN")

        items[0].get_by_role("button", name="Acknowledge").click()

        for item in items:
            expect(item).to_contain_text("acknowledged by victor-oncall at", timeout=5_000)
            expect(item.get_by_role("button", name="Acknowledge")).to_have_count(0)
        for wall in walls:
            assert wall.evaluate("window.__notReloaded") is True
        assert Alert.objects.get(pk=alert.pk).acknowledged_by == viewer_user
        screenshot(page, "wall")
    finally:
        other_context.close()
