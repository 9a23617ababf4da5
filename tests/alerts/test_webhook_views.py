"""/alerts/webhooks/…: admins manage endpoints and read the delivery log; nobody else gets in."""

import pytest
from django.utils import timezone

from apps.alerts.models import WebhookAttempt, WebhookDelivery, WebhookEndpoint
from apps.alerts.services import alert_raise, webhook_endpoint_create

pytestmark = pytest.mark.django_db

SECRET = "s3cret-s3cret-s3cret-0123456789"
PAGES = ["/alerts/webhooks/", "/alerts/webhooks/new/", "/alerts/webhooks/deliveries/"]


@pytest.fixture
def hook(db) -> WebhookEndpoint:
    return webhook_endpoint_create(actor="tests", name="pager", url="https://hooks.example.com/p", secret=SECRET)


@pytest.mark.parametrize("path", PAGES)
def test_it_denies_viewers_operators_and_outsiders(path, viewer_client, operator_client, outsider_client):
    for client in (viewer_client, operator_client, outsider_client):
        assert client.get(path).status_code == 403
    assert operator_client.post("/alerts/webhooks/new/", {"name": "x", "url": "https://e.com/"}).status_code == 403
    assert WebhookEndpoint.objects.count() == 0


def test_it_denies_the_endpoint_page_to_operators(operator_client, hook):
    assert operator_client.get(f"/alerts/webhooks/{hook.pk}/").status_code == 403
    response = operator_client.post(f"/alerts/webhooks/{hook.pk}/", {"name": "x", "url": "https://evil.example/"})
    assert response.status_code == 403
    hook.refresh_from_db()
    assert hook.url == "https://hooks.example.com/p"


@pytest.mark.parametrize("path", PAGES)
def test_it_sends_anonymous_users_to_the_login_page(client, path):
    response = client.get(path)
    assert response.status_code == 302 and response.url.startswith("/accounts/login/")


def test_it_lets_an_admin_create_an_endpoint_and_shows_a_generated_secret_once(admin_client):
    response = admin_client.post(
        "/alerts/webhooks/new/", {"name": "pager", "url": "https://hooks.example.com/p", "kinds": ["halt"],
                                  "enabled": "on"},
    )
    hook = WebhookEndpoint.objects.get()
    assert response.status_code == 302 and response.url == f"/alerts/webhooks/{hook.pk}/"
    assert (hook.kinds, hook.enabled, len(hook.secret) >= 32) == (["halt"], True, True)
    first = admin_client.get(response.url)
    assert hook.secret in first.content.decode()
    assert hook.secret not in admin_client.get(response.url).content.decode()


def test_it_answers_a_bad_url_with_a_form_error(admin_client):
    response = admin_client.post("/alerts/webhooks/new/", {"name": "pager", "url": "ftp://hooks.example.com/p"})
    assert response.status_code == 400
    assert "url" in response.context["form"].errors
    assert WebhookEndpoint.objects.count() == 0


def test_it_answers_a_short_secret_with_a_form_error(admin_client):
    response = admin_client.post("/alerts/webhooks/new/", {"name": "p", "url": "https://e.com/h", "secret": "short"})
    assert response.status_code == 400
    assert "secret" in response.context["form"].errors


def test_it_lets_an_admin_edit_an_endpoint(admin_client, hook):
    response = admin_client.post(f"/alerts/webhooks/{hook.pk}/", {"name": "pager", "url": "https://e.com/new"})
    assert response.status_code == 302
    hook.refresh_from_db()
    assert (hook.url, hook.enabled, hook.secret) == ("https://e.com/new", False, SECRET)


def test_it_shows_every_attempt_in_the_delivery_log(admin_client, hook):
    alert = alert_raise(kind="halt", severity="critical", title="Rollout halted: os 39.2")
    delivery = WebhookDelivery.objects.get(alert=alert)
    now = timezone.now()
    WebhookAttempt.objects.create(delivery=delivery, number=1, started_at=now, duration_ms=12, status_code=503,
                                  response_excerpt="upstream busy", next_retry_at=now)
    WebhookAttempt.objects.create(delivery=delivery, number=2, started_at=now, duration_ms=9, status_code=200)
    for path in (f"/alerts/webhooks/{hook.pk}/", "/alerts/webhooks/deliveries/"):
        page = admin_client.get(path).content.decode()
        assert str(delivery.delivery_id) in page
        assert "HTTP 503" in page and "HTTP 200" in page and "upstream busy" in page
        assert "Rollout halted: os 39.2" in page
    assert SECRET not in admin_client.get(f"/alerts/webhooks/{hook.pk}/").content.decode()
    listing = admin_client.get("/alerts/webhooks/").content.decode()
    assert "pager" in listing and "https://hooks.example.com/p" in listing


def test_it_answers_an_empty_post_with_form_errors(admin_client, hook):
    for path in ("/alerts/webhooks/new/", f"/alerts/webhooks/{hook.pk}/"):
        response = admin_client.post(path, {})
        assert response.status_code == 400
        assert {"name", "url"} <= set(response.context["form"].errors)
