"""The DDI API v1 as hawkBit clients use it: polling, deployments, feedback, cancel, config data, downloads."""

import json

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from apps.fleet.models import Device
from apps.hawkbit import services
from apps.hawkbit.models import ActionStatus
from apps.rollouts.models import ComponentLock, Deployment, Rollout
from tests.hawkbit.conftest import TOKEN, assign, ddi_auth, make_module, make_set, make_target

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.hawkbit.urls")]

PAYLOAD = bytes(range(256)) * 4  # 1024 bytes


def url(name: str, uid: str = "hb-dev-1", tenant: str = "DEFAULT", **kwargs) -> str:
    return reverse(f"hawkbit-ddi-{name}", kwargs={"tenant": tenant, "controller_id": uid, **kwargs})


def feedback(client, action_id: int, execution: str, finished: str = "none", *, uid: str = "hb-dev-1",
             token: str = TOKEN, cancel: bool = False, details=None, progress=None):
    status = {"execution": execution, "result": {"finished": finished}, "details": details or []}
    if progress:
        status["result"]["progress"] = progress
    name = "cancel-feedback" if cancel else "deployment-feedback"
    return client.post(url(name, uid, action_id=action_id), data=json.dumps({"id": str(action_id), "status": status}),
                       content_type="application/json", **ddi_auth(token))


@pytest.fixture
def device(db):
    return make_target()


@pytest.fixture
def action(device, media_root):
    os_release = make_module(files={"image.swu": PAYLOAD})
    app_release = make_module(name="agent", version="2.0", module_type="application", files={"agent.tar": b"app"})
    (deployment,) = assign(make_set(os_release, app_release), device)
    return deployment


def test_it_answers_a_poll_with_the_polling_time_and_no_links_when_idle(client, device):
    response = client.get(url("base"), **ddi_auth())
    assert response.status_code == 200
    assert response.json()["config"] == {"polling": {"sleep": "00:01:00"}}  # FLEET POLL_INTERVAL_S in tests
    assert "deploymentBase" not in response.json()["_links"]


def test_it_records_the_poll_with_a_single_update(client, device):
    with CaptureQueriesContext(connection) as queries:
        assert client.get(url("base"), **ddi_auth()).status_code == 200
    writes = [q["sql"] for q in queries.captured_queries if not q["sql"].lstrip().upper().startswith("SELECT")]
    assert len(writes) == 1 and writes[0].startswith('UPDATE "fleet_device"'), writes
    assert Device.objects.get(pk=device.pk).last_seen is not None


def test_it_links_the_deployment_absolutely_with_the_etag(client, action, settings):
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "fleet.example"]
    response = client.get(url("base"), HTTP_HOST="fleet.example:8443", HTTP_X_FORWARDED_PROTO="https", **ddi_auth())
    href = response.json()["_links"]["deploymentBase"]["href"]
    assert href.startswith(f"https://fleet.example:8443/DEFAULT/controller/v1/hb-dev-1/deploymentBase/{action.pk}?c=")
    assert href.split("?c=")[1].lstrip("-").isdigit()


def test_it_describes_the_deployment_with_chunks_artifacts_and_hashes(client, action):
    response = client.get(url("deployment", action_id=action.pk), **ddi_auth())
    assert response.status_code == 200
    body = response.json()
    assert body["id"] == str(action.pk) and int(body["id"]) == action.pk
    assert body["deployment"]["download"] == "forced" and body["deployment"]["update"] == "forced"
    assert "maintenanceWindow" not in body["deployment"]
    chunks = {c["part"]: c for c in body["deployment"]["chunks"]}
    assert set(chunks) == {"os", "bApp"}
    assert chunks["os"]["name"] == "os" and chunks["os"]["version"] == "1.0.1"
    (artifact,) = chunks["os"]["artifacts"]
    assert artifact["filename"] == "image.swu" and artifact["size"] == len(PAYLOAD)
    assert set(artifact["hashes"]) == {"sha1", "md5", "sha256"}
    assert artifact["_links"]["download-http"]["href"].startswith("http://testserver/DEFAULT/controller/v1/hb-dev-1/")
    assert ActionStatus.objects.filter(deployment=action, type="retrieved").count() == 1


@pytest.mark.parametrize(("action_type", "download", "update"),
                         [("soft", "attempt", "attempt"), ("downloadonly", "forced", "skip")])
def test_it_announces_the_action_type(client, device, media_root, action_type, download, update):
    (deployment,) = assign(make_set(make_module()), device, action_type=action_type)
    body = client.get(url("deployment", action_id=deployment.pk), **ddi_auth()).json()["deployment"]
    assert (body["download"], body["update"]) == (download, update)


def test_it_holds_the_install_outside_the_maintenance_window(client, device, media_root):
    closed = services.MaintenanceWindow(schedule="0 0 0 1 1 ? 2000", duration="00:00:01", timezone="+00:00")
    (deployment,) = assign(make_set(make_module()), device, window=closed)
    body = client.get(url("deployment", action_id=deployment.pk), **ddi_auth()).json()["deployment"]
    assert body["maintenanceWindow"] == "unavailable" and body["update"] == "skip"
    open_now = services.MaintenanceWindow(schedule="0 * * ? * *", duration="00:05:00", timezone="+02:00")
    (other,) = assign(make_set(make_module(name="agent", module_type="application"), name="agent-set"),
                      device, window=open_now)
    body = client.get(url("deployment", action_id=other.pk), **ddi_auth()).json()["deployment"]
    assert body["maintenanceWindow"] == "available" and body["update"] == "forced"


@pytest.mark.parametrize("header", [None, "Bearer " + TOKEN, "TargetToken wrong-token", "GatewayToken " + TOKEN])
def test_it_answers_401_without_valid_device_credentials(client, device, header):
    headers = {"HTTP_AUTHORIZATION": header} if header else {}
    response = client.get(url("base"), **headers)
    assert response.status_code == 401
    assert "WWW-Authenticate" in response


def test_it_refuses_target_tokens_when_the_tenant_switched_them_off(client, device):
    services.tenant_config_set(tenant="DEFAULT", key="authentication.targettoken.enabled", value=False, actor="tests")
    assert client.get(url("base"), **ddi_auth()).status_code == 401
    # Other tenants keep their own setting.
    assert client.get(url("base", tenant="other"), **ddi_auth()).status_code == 200


def test_it_accepts_a_gateway_token_and_registers_an_unknown_controller(client, device):
    gateway = "gateway-key-0123456789"
    assert client.get(url("base", "new-dev"), **ddi_auth(gateway, "GatewayToken")).status_code == 401
    services.tenant_config_set(tenant="DEFAULT", key="authentication.gatewaytoken.key", value=gateway, actor="tests")
    services.tenant_config_set(tenant="DEFAULT", key="authentication.gatewaytoken.enabled", value=True, actor="tests")
    assert client.get(url("base", "new-dev"), **ddi_auth(gateway, "GatewayToken")).status_code == 200
    assert Device.objects.filter(uid="new-dev").exists()
    assert client.get(url("base"), **ddi_auth(gateway, "GatewayToken")).status_code == 200
    assert client.get(url("base"), **ddi_auth("wrong-gateway-key-000", "GatewayToken")).status_code == 401


def test_it_keeps_a_device_away_from_another_devices_action(client, action):
    make_target("hb-dev-2", token="other-token-0123456789")
    other = {"uid": "hb-dev-2", "token": "other-token-0123456789"}
    response = client.get(url("deployment", "hb-dev-2", action_id=action.pk), **ddi_auth(other["token"]))
    assert response.status_code == 404
    assert feedback(client, action.pk, "closed", "failure", **other).status_code == 404
    assert feedback(client, action.pk, "closed", "success", cancel=True, **other).status_code == 404
    # Its own token on the other device's URL is no key either.
    assert client.get(url("deployment", "hb-dev-2", action_id=action.pk), **ddi_auth()).status_code == 401
    assert Deployment.objects.get(pk=action.pk).state == Deployment.State.PENDING


def test_it_answers_exactly_200_to_feedback_and_tracks_progress(client, action):
    response = feedback(client, action.pk, "proceeding", details=["Installing"], progress={"cnt": 1, "of": 4})
    assert response.status_code == 200 and response.content == b""
    deployment = Deployment.objects.get(pk=action.pk)
    assert deployment.state == Deployment.State.INSTALLING and deployment.progress == 25
    assert feedback(client, action.pk, "download").status_code == 200
    assert Deployment.objects.get(pk=action.pk).state == Deployment.State.DOWNLOADING


def test_it_succeeds_on_closed_success_and_records_the_installed_versions(client, action, device):
    assert feedback(client, action.pk, "closed", "success", details=["done"]).status_code == 200
    deployment = Deployment.objects.get(pk=action.pk)
    assert deployment.state == Deployment.State.SUCCEEDED
    assert Device.objects.get(pk=device.pk).installed == {"os": "1.0.1", "agent": "2.0"}
    assert Device.objects.get(pk=device.pk).combination.device_count == 1
    assert Rollout.objects.get(pk=deployment.rollout_id).state == Rollout.State.COMPLETED
    assert not ComponentLock.objects.filter(deployment=deployment).exists()
    # The poll now points at what is installed.
    links = client.get(url("base"), **ddi_auth()).json()["_links"]
    assert "deploymentBase" not in links
    assert links["installedBase"]["href"].endswith(f"/installedBase/{action.pk}")
    assert client.get(url("installed", action_id=action.pk), **ddi_auth()).status_code == 200


def test_it_fails_on_closed_failure_and_answers_410_afterwards(client, action):
    assert feedback(client, action.pk, "closed", "failure", details=["disk full"]).status_code == 200
    deployment = Deployment.objects.get(pk=action.pk)
    assert deployment.state == Deployment.State.FAILED and "disk full" in deployment.error_detail
    assert feedback(client, action.pk, "proceeding").status_code == 410
    assert feedback(client, action.pk, "closed", "success").status_code == 410
    # A retried report of the same result is not an error.
    assert feedback(client, action.pk, "closed", "failure").status_code == 200
    assert client.get(url("deployment", action_id=action.pk), **ddi_auth()).status_code == 404


def test_it_closes_a_download_only_action_on_downloaded(client, device, media_root):
    (deployment,) = assign(make_set(make_module()), device, action_type="downloadonly")
    assert feedback(client, deployment.pk, "downloaded", "success").status_code == 200
    assert Deployment.objects.get(pk=deployment.pk).state == Deployment.State.SUCCEEDED
    assert Device.objects.get(pk=device.pk).installed == {}


@pytest.mark.parametrize("body", ['{"status": {"execution": "exploded", "result": {"finished": "none"}}}',
                                  '{"status": {"execution": "closed", "result": {"finished": "maybe"}}}',
                                  '{"id": 1}', "not json"])
def test_it_rejects_malformed_feedback(client, action, body):
    response = client.post(url("deployment-feedback", action_id=action.pk), data=body,
                           content_type="application/json", **ddi_auth())
    assert response.status_code == 400
    assert Deployment.objects.get(pk=action.pk).state == Deployment.State.PENDING


def test_it_sends_a_cancel_and_cancels_when_the_device_confirms(client, action):
    services.action_cancel(deployment=action, actor="tests")
    links = client.get(url("base"), **ddi_auth()).json()["_links"]
    assert links["cancelAction"]["href"] == f"http://testserver{url('cancel', action_id=action.pk)}"
    assert client.get(url("deployment", action_id=action.pk), **ddi_auth()).status_code == 404
    body = client.get(url("cancel", action_id=action.pk), **ddi_auth()).json()
    assert body == {"id": str(action.pk), "cancelAction": {"stopId": str(action.pk)}}
    assert feedback(client, action.pk, "closed", "success", cancel=True).status_code == 200
    assert Deployment.objects.get(pk=action.pk).state == Deployment.State.CANCELED
    assert client.get(url("cancel", action_id=action.pk), **ddi_auth()).status_code == 404


def test_it_resumes_the_action_when_the_device_rejects_the_cancel(client, action):
    services.action_cancel(deployment=action, actor="tests")
    assert feedback(client, action.pk, "rejected", "none", cancel=True).status_code == 200
    deployment = Deployment.objects.get(pk=action.pk)
    assert not deployment.cancel_requested and deployment.state == Deployment.State.PENDING
    assert "deploymentBase" in client.get(url("base"), **ddi_auth()).json()["_links"]


def test_it_stores_config_data_as_device_attributes(client, device):
    assert "configData" in client.get(url("base"), **ddi_auth()).json()["_links"]
    put = lambda body: client.put(url("config-data"), data=json.dumps(body), content_type="application/json",  # noqa: E731
                                  **ddi_auth())
    response = put({"data": {"hwRevision": "2", "region": "eu-west"}})
    assert response.status_code == 200
    assert Device.objects.get(pk=device.pk).attributes == {"hwRevision": "2", "region": "eu-west"}
    assert put({"data": {"site": "berlin"}, "mode": "replace"}).status_code == 200
    assert Device.objects.get(pk=device.pk).attributes == {"site": "berlin"}
    assert put({"data": {"site": "berlin"}, "mode": "shred"}).status_code == 400
    assert "configData" not in client.get(url("base"), **ddi_auth()).json()["_links"]


def test_it_serves_artifacts_with_ranges(client, action):
    chunk = client.get(url("deployment", action_id=action.pk), **ddi_auth()).json()["deployment"]["chunks"][0]
    href = chunk["artifacts"][0]["_links"]["download-http"]["href"].removeprefix("http://testserver")
    full = client.get(href, **ddi_auth())
    assert full.status_code == 200 and b"".join(full.streaming_content) == PAYLOAD
    assert full["Accept-Ranges"] == "bytes"
    part = client.get(href, HTTP_RANGE="bytes=100-199", **ddi_auth())
    assert part.status_code == 206 and part.content == PAYLOAD[100:200]
    assert part["Content-Range"] == f"bytes 100-199/{len(PAYLOAD)}"
    past = client.get(href, HTTP_RANGE=f"bytes={len(PAYLOAD)}-", **ddi_auth())
    assert past.status_code == 416 and past["Content-Range"] == f"bytes */{len(PAYLOAD)}"
    md5 = client.get(href + ".MD5SUM", **ddi_auth())
    assert md5.status_code == 200 and md5.content.decode().endswith("  image.swu\n")
    assert client.get(href).status_code == 401


def test_it_serves_artifacts_only_to_devices_they_are_assigned_to(client, action):
    make_target("hb-dev-2", token="other-token-0123456789")
    release = action.rollout.targets.get(component__name="os").release
    href = url("artifact", "hb-dev-2", module_id=release.pk, filename="image.swu")
    assert client.get(href, **ddi_auth("other-token-0123456789")).status_code == 404
