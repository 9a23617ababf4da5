"""POST /alerts/<id>/ack/: who may acknowledge, CSRF, JSON for the wall's fetch, the wall page."""

import pytest
from django.test import Client

from apps.alerts.models import Alert

pytestmark = pytest.mark.django_db


def _url(alert) -> str:
    return f"/alerts/{alert.pk}/ack/"


def test_it_sends_anonymous_users_to_the_login_page(client, alert):
    response = client.post(_url(alert))
    assert response.status_code == 302 and response.url.startswith("/accounts/login/")
    assert Alert.objects.get(pk=alert.pk).is_open


def test_it_forbids_users_without_a_role(outsider_client, alert):
    assert outsider_client.post(_url(alert)).status_code == 403
    assert Alert.objects.get(pk=alert.pk).is_open


def test_it_lets_on_call_viewers_acknowledge_from_the_wall(viewer_client, viewer_user, alert):
    response = viewer_client.post(_url(alert), {"note": "on it"}, HTTP_ACCEPT="application/json")
    assert response.status_code == 200
    body = response.json()
    assert body["acknowledged_by_you"] is True
    assert (body["alert"]["open"], body["alert"]["acknowledged_by"], body["alert"]["ack_note"]) == (
        False, viewer_user.username, "on it")


def test_it_redirects_a_plain_form_post_back_to_the_wall(viewer_client, alert):
    response = viewer_client.post(_url(alert), follow=True)
    assert response.redirect_chain == [("/wall/", 302)]
    assert "Acknowledged: cohort eu-north went quiet" in response.content.decode()


def test_it_tells_the_second_person_who_acknowledged_first(viewer_client, operator_client, alert):
    viewer_client.post(_url(alert))
    body = operator_client.post(_url(alert), HTTP_ACCEPT="application/json").json()
    assert body["acknowledged_by_you"] is False and body["alert"]["acknowledged_by"] == "victor-oncall"


def test_it_refuses_a_post_without_the_csrf_token(viewer_user, alert):
    client = Client(enforce_csrf_checks=True)
    client.force_login(viewer_user)
    assert client.post(_url(alert)).status_code == 403
    assert Alert.objects.get(pk=alert.pk).is_open


def test_it_accepts_only_post(viewer_client, alert):
    assert viewer_client.get(_url(alert)).status_code == 405


def test_it_answers_404_for_an_unknown_alert(viewer_client):
    assert viewer_client.post("/alerts/999999/ack/").status_code == 404


def test_it_shows_open_alerts_with_an_acknowledge_button_on_the_wall(viewer_client, alert):
    page = viewer_client.get("/wall/").content.decode()
    assert "cohort eu-north went quiet" in page and "41 of 60 devices silent for 20 min" in page
    assert f'action="/alerts/{alert.pk}/ack/"' in page and ">Acknowledge</button>" in page
