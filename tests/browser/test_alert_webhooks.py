"""A cohort going silent: the alert reaches every open wall and a local webhook receiver (validly
signed); acknowledging it on one wall shows on the other live and goes out as an `acknowledged` event."""

import json
import time
from datetime import timedelta

from django.utils import timezone
from playwright.sync_api import expect

from apps.alerts.models import Alert, WebhookDelivery
from apps.alerts.services import cohort_silence_check, webhook_endpoint_create
from apps.alerts.webhooks import verify
from tests.alerts.receiver import webhook_receiver
from tests.browser.conftest import login, screenshot
from tests.browser.helpers import in_thread
from tests.conftest import PASSWORD
from tests.factories import CohortFactory, DeviceFactory
from tests.processes import celery_worker

SECRET = "wall-test-secret-0123456789abcdef"


def _signed(request) -> bool:
    return verify(SECRET, request.headers["X-Fleetweb-Timestamp"], request.body,
                  request.headers["X-Fleetweb-Signature"])


def test_it_delivers_a_silent_cohort_to_the_wall_and_a_signed_webhook_and_shares_the_ack(
    page, browser, browser_context_args, app_server, viewer_user, operator_user, admin_user
):
    now = timezone.now()
    CohortFactory(name="eu-north", filter_text='region == "eu-north"')
    for i, age_s in enumerate([20, 3600, 3700, 4000, 5000]):
        DeviceFactory(uid=f"north-{i}", attributes={"region": "eu-north"}, last_seen=now - timedelta(seconds=age_s))
    other_context = browser.new_context(**browser_context_args)
    other = other_context.new_page()
    walls = (page, other)
    with webhook_receiver([200]) as receiver, celery_worker(name="h6-browser"):
        webhook_endpoint_create(actor="tests", name="pager", url=receiver.url, secret=SECRET)
        try:
            for wall, user in ((page, viewer_user), (other, operator_user)):
                login(wall, app_server, user.username, PASSWORD)
                wall.goto(f"{app_server}/wall/")
                expect(wall.locator("#live-status")).to_have_text("● Live", timeout=10_000)
                wall.evaluate("window.__notReloaded = true")

            in_thread(cohort_silence_check)
            alert = Alert.objects.get(kind="cohort_silent")
            items = [wall.locator(f'#wall-alert-list [data-alert="{alert.pk}"]') for wall in walls]
            for item in items:
                expect(item).to_contain_text("Cohort eu-north went silent", timeout=5_000)
                expect(item).to_contain_text("1 of 5 devices (20%)")
                expect(item).to_contain_text("OPEN")

            [raised] = receiver.wait_for(1)
            assert _signed(raised)
            body = json.loads(raised.body)
            assert (body["event"], body["alert"]["id"], body["alert"]["kind"]) == ("raised", alert.pk, "cohort_silent")

            items[0].get_by_role("button", name="Acknowledge").click()
            expect(items[1]).to_contain_text("acknowledged by victor-oncall at", timeout=5_000)
            expect(items[1].get_by_role("button", name="Acknowledge")).to_have_count(0)
            assert other.evaluate("window.__notReloaded") is True

            acked = receiver.wait_for(2)[1]
            assert _signed(acked)
            body = json.loads(acked.body)
            assert (body["event"], body["alert"]["id"], body["alert"]["acknowledged_by"]) == (
                "acknowledged", alert.pk, "victor-oncall",
            )
            screenshot(other, "wall-cohort-silent-acknowledged")

            # The admin's delivery log shows both deliveries, each answered 200 on the first attempt.
            # The worker records the answer just after the receiver saw it: poll its row (another process).
            deadline = time.monotonic() + 30
            while WebhookDelivery.objects.filter(state="succeeded").count() < 2:
                assert time.monotonic() < deadline, "the worker did not record both deliveries"
                time.sleep(0.1)
            admin = other_context.browser.new_context(**browser_context_args).new_page()
            login(admin, app_server, admin_user.username, PASSWORD)
            admin.get_by_role("link", name="Webhooks").click()
            admin.get_by_role("link", name="delivery log").click()
            rows = admin.locator("#delivery-log tbody tr[data-state]")
            expect(rows).to_have_count(2)
            expect(admin.locator('#delivery-log tr[data-state="succeeded"]')).to_have_count(2)
            expect(rows.first).to_contain_text("HTTP 200")
            screenshot(admin, "webhook-deliveries")
            admin.context.close()
        finally:
            other_context.close()
