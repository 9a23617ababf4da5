"""Webhook deliveries through a real Celery worker: retries with backoff, nothing before commit."""

import json
import time
from itertools import pairwise

import pytest
from django.db import transaction

from apps.alerts.models import WebhookDelivery
from apps.alerts.services import alert_raise, webhook_endpoint_create
from apps.alerts.webhooks import verify
from tests.alerts.receiver import webhook_receiver
from tests.processes import celery_worker

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

SECRET = "s3cret-s3cret-s3cret-0123456789"


@pytest.fixture
def fast_backoff(monkeypatch):
    # The worker reads its settings from the environment it is started with.
    monkeypatch.setenv("FLEET_WEBHOOK_BACKOFF_S", "0.3")
    monkeypatch.setenv("FLEET_WEBHOOK_MAX_ATTEMPTS", "5")


def wait_for_state(delivery_id: int, state: str, timeout: float = 30.0) -> WebhookDelivery:
    """Poll the row the worker writes (another process: there is no event to await)."""
    deadline = time.monotonic() + timeout
    while True:
        delivery = WebhookDelivery.objects.get(pk=delivery_id)
        if delivery.state == state:
            return delivery
        if time.monotonic() > deadline:
            raise AssertionError(f"delivery is {delivery.state} after {timeout} s, expected {state}")
        time.sleep(0.1)


def test_it_retries_through_the_worker_until_the_receiver_accepts(fast_backoff):
    with webhook_receiver([500, 503, 200]) as receiver, celery_worker(name="h6-webhooks"):
        webhook_endpoint_create(actor="tests", name="pager", url=receiver.url, secret=SECRET)
        alert = alert_raise(kind="halt", severity="critical", title="Rollout halted: os 39.2")
        requests = receiver.wait_for(3)
        delivery = wait_for_state(WebhookDelivery.objects.get(alert=alert).pk, "succeeded")
    attempts = list(delivery.attempt_log.all())
    assert [(a.number, a.status_code) for a in attempts] == [(1, 500), (2, 503), (3, 200)]
    assert [a.next_retry_at is not None for a in attempts] == [True, True, False]
    assert delivery.attempts == 3 and delivery.delivered_at is not None
    # Every attempt carries the same body and delivery id, each freshly and validly signed.
    assert len({r.body for r in requests}) == 1
    assert {r.headers["X-Fleetweb-Delivery"] for r in requests} == {str(delivery.delivery_id)}
    for request in requests:
        assert verify(SECRET, request.headers["X-Fleetweb-Timestamp"], request.body,
                      request.headers["X-Fleetweb-Signature"])
    # Backoff: the second retry waited about twice as long as the first (0.3 s, then 0.6 s).
    gaps = [b.at - a.at for a, b in pairwise(requests)]
    assert gaps[0] >= 0.25 and gaps[1] >= 0.5


def test_it_sends_nothing_for_an_alert_whose_transaction_rolled_back():
    with webhook_receiver([200]) as receiver, celery_worker(name="h6-webhooks"):
        webhook_endpoint_create(actor="tests", name="pager", url=receiver.url, secret=SECRET)
        with pytest.raises(RuntimeError), transaction.atomic():
            alert_raise(kind="halt", severity="critical", title="rolled back")
            raise RuntimeError("the caller's transaction fails after raising")
        kept = alert_raise(kind="halt", severity="critical", title="committed")
        [request] = receiver.wait_for(1)
        wait_for_state(WebhookDelivery.objects.get(alert=kept).pk, "succeeded")
    assert json.loads(request.body)["alert"]["title"] == "committed"
    assert len(receiver.requests) == 1
    assert WebhookDelivery.objects.count() == 1
