"""Webhook deliveries: the signed body, which endpoints get what, retry rules, the attempt log.

The receiver is a real HTTP server on loopback (the outside world); attempts are made by calling
the service a task calls (the retry loop through a real Celery worker is in test_webhook_worker.py).
"""

import hashlib
import hmac
import json
import time

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from apps.alerts.models import Alert, WebhookDelivery, WebhookEndpoint
from apps.alerts.services import (
    alert_acknowledge,
    alert_raise,
    webhook_delivery_attempt,
    webhook_endpoint_create,
    webhook_endpoint_update,
)
from apps.alerts.webhooks import verify
from apps.audit.models import AuditEntry
from tests.alerts.receiver import webhook_receiver
from tests.processes import free_port

SECRET = "s3cret-s3cret-s3cret-0123456789"


def endpoint(url: str, **kw) -> WebhookEndpoint:
    return webhook_endpoint_create(actor="tests", name=kw.pop("name", "pager"), url=url, secret=SECRET, **kw)


def raise_halt(**kw) -> Alert:
    return alert_raise(**{"kind": "halt", "severity": "critical", "title": "Rollout halted: os 39.2",
                          "detail": "crash rate 4.1%", "evidence": {"crash_rate": 0.041}, **kw})


def send_all(delivery: WebhookDelivery) -> float | None:
    return webhook_delivery_attempt(delivery_id=delivery.pk)


@pytest.mark.django_db
def test_it_signs_timestamp_and_raw_body_with_the_endpoint_secret():
    with webhook_receiver([200]) as receiver:
        endpoint(receiver.url)
        alert = raise_halt()
        [delivery] = WebhookDelivery.objects.filter(alert=alert)
        assert send_all(delivery) is None
        [request] = receiver.wait_for(1)
    timestamp = request.headers["X-Fleetweb-Timestamp"]
    expected = hmac.new(SECRET.encode(), timestamp.encode() + b"." + request.body, hashlib.sha256).hexdigest()
    assert request.headers["X-Fleetweb-Signature"] == f"sha256={expected}"
    assert abs(int(timestamp) - time.time()) < 60
    assert verify(SECRET, timestamp, request.body, request.headers["X-Fleetweb-Signature"])
    assert not verify("another-secret-0123456789", timestamp, request.body, request.headers["X-Fleetweb-Signature"])
    assert not verify(SECRET, timestamp, request.body + b" ", request.headers["X-Fleetweb-Signature"])
    assert not verify(SECRET, str(int(timestamp) - 3600), request.body, request.headers["X-Fleetweb-Signature"])
    body = json.loads(request.body)
    assert body["event"] == "raised" and request.headers["X-Fleetweb-Event"] == "raised"
    assert body["delivery_id"] == str(delivery.delivery_id) == request.headers["X-Fleetweb-Delivery"]
    assert {k: body["alert"][k] for k in ("id", "kind", "severity", "title", "detail", "evidence", "rollout")} == {
        "id": alert.pk, "kind": "halt", "severity": "critical", "title": "Rollout halted: os 39.2",
        "detail": "crash rate 4.1%", "evidence": {"crash_rate": 0.041}, "rollout": None,
    }
    assert body["alert"]["created_at"] == alert.created_at.isoformat()
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("succeeded", 1)
    [attempt] = delivery.attempt_log.all()
    assert (attempt.number, attempt.status_code, attempt.next_retry_at) == (1, 200, None)
    assert attempt.response_excerpt == '{"ok": true}'


@pytest.mark.django_db
def test_it_creates_no_delivery_for_an_alert_that_rolls_back(django_capture_on_commit_callbacks):
    endpoint("http://127.0.0.1:9/hooks")
    with (
        django_capture_on_commit_callbacks(execute=True) as callbacks,
        pytest.raises(RuntimeError),
        transaction.atomic(),
    ):
        raise_halt()
        assert WebhookDelivery.objects.count() == 1
        raise RuntimeError("the halt's transaction fails later")
    assert WebhookDelivery.objects.count() == 0
    assert callbacks == []


@pytest.mark.django_db
def test_it_enqueues_one_delivery_per_endpoint_that_wants_the_kind():
    pager = endpoint("http://127.0.0.1:9/a", name="pager", kinds=["halt"])
    chat = endpoint("http://127.0.0.1:9/b", name="chat")
    endpoint("http://127.0.0.1:9/c", name="budget-only", kinds=["budget_breach"])
    endpoint("http://127.0.0.1:9/d", name="off", enabled=False)
    alert = raise_halt()
    assert sorted(WebhookDelivery.objects.filter(alert=alert).values_list("endpoint", flat=True)) == sorted(
        [pager.pk, chat.pk]
    )
    again = raise_halt(dedupe_key="halt:1")
    raise_halt(dedupe_key="halt:1")  # the open alert comes back: no second event
    assert WebhookDelivery.objects.filter(alert=again).count() == 2


@pytest.mark.django_db
def test_it_delivers_an_acknowledged_event_with_who_took_it(viewer_user):
    with webhook_receiver([200]) as receiver:
        endpoint(receiver.url)
        alert = raise_halt()
        alert_acknowledge(alert=alert, actor=viewer_user, note="on it")
        alert_acknowledge(alert=alert, actor=viewer_user)  # lost race / repeat: no second event
        deliveries = list(WebhookDelivery.objects.filter(alert=alert).order_by("id"))
        assert [d.event for d in deliveries] == ["raised", "acknowledged"]
        send_all(deliveries[1])
        [request] = receiver.wait_for(1)
    body = json.loads(request.body)
    assert body["event"] == "acknowledged"
    assert (body["alert"]["acknowledged_by"], body["alert"]["ack_note"], body["alert"]["open"]) == (
        "victor-oncall", "on it", False,
    )


@pytest.mark.django_db
@pytest.mark.parametrize("status", [500, 502, 503, 429])
def test_it_schedules_a_retry_with_exponential_backoff_on_5xx_and_429(settings, status):
    settings.FLEET = {**settings.FLEET, "WEBHOOK_BACKOFF_S": 10.0, "WEBHOOK_BACKOFF_MAX_S": 25.0,
                      "WEBHOOK_MAX_ATTEMPTS": 5}
    with webhook_receiver([status]) as receiver:
        endpoint(receiver.url)
        [delivery] = WebhookDelivery.objects.filter(alert=raise_halt())
        delays = [send_all(delivery) for _ in range(3)]
        receiver.wait_for(3)
    assert delays == [10.0, 20.0, 25.0]
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("retrying", 3)
    attempts = list(delivery.attempt_log.all())
    assert [a.status_code for a in attempts] == [status] * 3
    assert all(a.next_retry_at is not None for a in attempts)
    assert "scripted failure" in attempts[0].response_excerpt


@pytest.mark.django_db
@pytest.mark.parametrize("status", [400, 401, 404, 410])
def test_it_never_retries_a_4xx_other_than_429(status):
    with webhook_receiver([status]) as receiver:
        endpoint(receiver.url)
        [delivery] = WebhookDelivery.objects.filter(alert=raise_halt())
        assert send_all(delivery) is None
        assert send_all(delivery) is None  # a duplicate task finds the delivery finished
        receiver.wait_for(1)
        assert len(receiver.requests) == 1
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("failed", 1)


@pytest.mark.django_db
def test_it_retries_when_nothing_listens_and_gives_up_after_the_last_attempt(settings):
    settings.FLEET = {**settings.FLEET, "WEBHOOK_MAX_ATTEMPTS": 2, "WEBHOOK_BACKOFF_S": 1.0}
    endpoint(f"http://127.0.0.1:{free_port()}/nobody-home")
    [delivery] = WebhookDelivery.objects.filter(alert=raise_halt())
    assert send_all(delivery) == 1.0
    assert send_all(delivery) is None
    delivery.refresh_from_db()
    assert (delivery.state, delivery.attempts) == ("failed", 2)
    first, last = delivery.attempt_log.all()
    assert first.status_code is None and "refused" in first.error.lower()
    assert first.next_retry_at is not None and last.next_retry_at is None


@pytest.mark.django_db
def test_it_stops_retrying_once_the_endpoint_is_disabled(admin_user):
    with webhook_receiver([503]) as receiver:
        hook = endpoint(receiver.url)
        [delivery] = WebhookDelivery.objects.filter(alert=raise_halt())
        assert send_all(delivery) is not None
        webhook_endpoint_update(endpoint=hook, actor=admin_user, name=hook.name, url=hook.url, kinds=[],
                                enabled=False)
        assert send_all(delivery) is None
        assert len(receiver.requests) == 1
    delivery.refresh_from_db()
    assert delivery.state == "failed"
    assert delivery.attempt_log.last().error == "endpoint disabled"


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("field", "values"),
    [
        ("url", {"url": "ftp://example.com/hook"}),
        ("url", {"url": "file:///etc/passwd"}),
        ("url", {"url": "not a url"}),
        ("secret", {"secret": "short"}),
        ("kinds", {"kinds": ["halt", "nonsense"]}),
        ("name", {"name": "  "}),
    ],
)
def test_it_rejects_a_bad_endpoint_naming_the_field(field, values):
    data = {"actor": "tests", "name": "pager", "url": "https://hooks.example.com/x", "secret": SECRET, **values}
    with pytest.raises(ValidationError) as error:
        webhook_endpoint_create(**data)
    assert field in error.value.message_dict
    assert WebhookEndpoint.objects.count() == 0


@pytest.mark.django_db
def test_it_keeps_the_secret_when_an_update_leaves_it_empty_and_never_audits_it(admin_user):
    hook = endpoint("https://hooks.example.com/x")
    webhook_endpoint_update(endpoint=hook, actor=admin_user, name="pager-2", url="https://hooks.example.com/y",
                            kinds=["halt"], enabled=True)
    hook.refresh_from_db()
    assert (hook.name, hook.url, hook.kinds, hook.secret) == ("pager-2", "https://hooks.example.com/y", ["halt"],
                                                             SECRET)
    entries = AuditEntry.objects.filter(action__startswith="webhook.")
    assert [e.action for e in entries.order_by("id")] == ["webhook.create", "webhook.update"]
    assert all(SECRET not in json.dumps([e.before, e.after]) for e in entries)
