"""The hawkBit Management API subset: Basic auth and roles, targets, modules, artifacts, sets, assignments, actions."""

import hashlib
import json
import os

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from apps.fleet.models import Artifact, Component, Device, Release, hash_token
from apps.hawkbit.models import ActionStatus, DistributionSet, HawkbitAction
from apps.rollouts.models import ComponentLock, Deployment, Rollout, RolloutRelease
from tests.factories import ComponentFactory, DeviceFactory, ReleaseFactory
from tests.hawkbit.conftest import assign, basic, ddi_auth, make_module, make_set, make_target

pytestmark = [pytest.mark.django_db, pytest.mark.urls("tests.hawkbit.urls")]


def mgmt(name: str, **kwargs) -> str:
    return reverse(f"hawkbit-mgmt-{name}", kwargs=kwargs)


def post(client, path, body, user):
    return client.post(path, data=json.dumps(body), content_type="application/json", **basic(user))


def test_it_answers_401_to_anonymous_and_wrong_passwords(client, admin_user):
    response = client.get(mgmt("target", controller_id="x"))
    assert response.status_code == 401 and response["WWW-Authenticate"].startswith("Basic")
    assert client.get(mgmt("target", controller_id="x"), HTTP_AUTHORIZATION="Basic YWxpY2UtYWRtaW46bm9wZQ==").status_code == 401


def test_it_lets_viewers_read_and_nothing_more(client, viewer_user, media_root):
    make_target()
    assert client.get(mgmt("target", controller_id="hb-dev-1"), **basic(viewer_user)).status_code == 200
    assert post(client, mgmt("targets"), [{"controllerId": "x-1"}], viewer_user).status_code == 403
    assert post(client, mgmt("modules"), [{"name": "os", "version": "1", "type": "os"}], viewer_user).status_code == 403
    assert client.put(mgmt("config", key="pollingTime"), data='{"value": "00:05:00"}', content_type="application/json",
                      **basic(viewer_user)).status_code == 403
    assert client.get(mgmt("config", key="pollingTime"), **basic(viewer_user)).status_code == 200


def test_it_lets_operators_assign_but_not_configure(client, operator_user, media_root):
    device = make_target()
    dist = make_set(make_module())
    response = post(client, mgmt("set-assign", set_id=dist.pk), [{"id": device.uid}], operator_user)
    assert response.status_code == 200
    assert client.put(mgmt("config", key="pollingTime"), data='{"value": "00:05:00"}', content_type="application/json",
                      **basic(operator_user)).status_code == 403
    assert post(client, mgmt("targets"), [{"controllerId": "x-1"}], operator_user).status_code == 403


def test_it_configures_the_tenant_through_system_configs(client, admin_user):
    make_target()
    put = lambda key, value: client.put(mgmt("config", key=key), data=json.dumps({"value": value}),  # noqa: E731
                                        content_type="application/json", **basic(admin_user))
    response = put("pollingTime", "00:00:30")
    assert response.status_code == 200 and response.json()["value"] == "00:00:30"
    poll = client.get(reverse("hawkbit-ddi-base", kwargs={"tenant": "DEFAULT", "controller_id": "hb-dev-1"}),
                      **ddi_auth())
    assert poll.json()["config"]["polling"]["sleep"] == "00:00:30"
    assert put("pollingTime", "30 seconds").status_code == 400
    assert put("authentication.gatewaytoken.enabled", True).status_code == 400  # no key yet
    assert put("authentication.gatewaytoken.key", "a-long-gateway-key-123").status_code == 200
    assert put("authentication.gatewaytoken.enabled", True).status_code == 200
    key = client.get(mgmt("config", key="authentication.gatewaytoken.key"), **basic(admin_user)).json()["value"]
    assert key == "(set)"  # stored hashed: never shown again
    assert put("authentication.targettoken.enabled", "no").status_code == 400
    assert client.get(mgmt("config", key="no.such.key"), **basic(admin_user)).status_code == 404


def test_it_creates_targets_and_shows_the_security_token_once(client, admin_user):
    response = post(client, mgmt("targets"), [{"controllerId": "t-1", "name": "Truck 1"},
                                              {"controllerId": "t-2", "securityToken": "given-token-0123456789"}],
                    admin_user)
    assert response.status_code == 201
    first, second = response.json()
    assert first["controllerId"] == "t-1" and first["name"] == "Truck 1" and len(first["securityToken"]) >= 32
    assert second["securityToken"] == "given-token-0123456789"
    assert Device.objects.get(uid="t-1").token_hash == hash_token(first["securityToken"])
    assert Device.objects.get(uid="t-2").token_hash == hash_token("given-token-0123456789")
    shown = client.get(mgmt("target", controller_id="t-1"), **basic(admin_user)).json()
    assert "securityToken" not in shown and shown["updateStatus"] == "registered"
    assert shown["_links"]["self"]["href"] == "http://testserver/rest/v1/targets/t-1"
    assert post(client, mgmt("targets"), [{"controllerId": "t-1"}], admin_user).status_code == 409
    assert post(client, mgmt("targets"), [{"controllerId": "bad id/"}], admin_user).status_code == 400


def test_it_shows_target_attributes_and_deletes_targets(client, admin_user):
    DeviceFactory(uid="t-9", attributes={"region": "eu-west", "hw": "rpi4"})
    response = client.get(mgmt("target-attributes", controller_id="t-9"), **basic(admin_user))
    assert response.json() == {"region": "eu-west", "hw": "rpi4"}
    assert client.delete(mgmt("target", controller_id="t-9"), **basic(admin_user)).status_code == 200
    assert not Device.objects.filter(uid="t-9").exists()
    assert client.get(mgmt("target", controller_id="t-9"), **basic(admin_user)).status_code == 404


def test_it_creates_software_modules_as_releases(client, admin_user, operator_user):
    response = post(client, mgmt("modules"), [{"name": "os", "version": "39.2", "type": "os"},
                                              {"name": "Agent", "version": "2.5", "type": "application"}], admin_user)
    assert response.status_code == 201
    os_module, agent = response.json()
    assert (os_module["name"], os_module["version"], os_module["type"]) == ("os", "39.2", "os")
    assert agent["name"] == "agent" and agent["type"] == "application"
    assert Component.objects.get(name="os").kind == "os" and Component.objects.get(name="agent").kind == "app"
    assert Release.objects.get(pk=os_module["id"]).version == "39.2"
    # An operator adds releases of existing components; a new component needs an admin.
    assert post(client, mgmt("modules"), [{"name": "os", "version": "39.3", "type": "os"}], operator_user).status_code == 201
    refused = post(client, mgmt("modules"), [{"name": "newapp", "version": "1", "type": "application"}], operator_user)
    assert refused.status_code == 403 and "admin" in refused.json()["message"]
    assert post(client, mgmt("modules"), [{"name": "os", "version": "39.2", "type": "os"}], admin_user).status_code == 409


def test_it_deletes_a_software_module_and_a_repeated_delete_still_succeeds(
    client, operator_user, media_root, django_capture_on_commit_callbacks
):
    release = make_module(files={"a.swu": b"abc"})
    artifact = release.artifacts.get()
    path = artifact.file.path
    with django_capture_on_commit_callbacks(execute=True):
        assert client.delete(mgmt("module", module_id=release.pk), **basic(operator_user)).status_code == 200
    assert not Release.objects.filter(pk=release.pk).exists() and not Artifact.objects.filter(pk=artifact.pk).exists()
    assert client.delete(mgmt("module", module_id=release.pk), **basic(operator_user)).status_code == 200
    assert client.delete(mgmt("module", module_id=987654), **basic(operator_user)).status_code == 404
    assert not os.path.exists(path)  # the file went with it, after commit


def test_it_keeps_a_deployed_module(client, operator_user, media_root):
    release = make_module()
    assign(make_set(release), make_target())
    assert client.delete(mgmt("module", module_id=release.pk), **basic(operator_user)).status_code == 409
    assert RolloutRelease.objects.filter(release=release).exists()


def test_it_uploads_artifacts_with_hashes_and_rejects_duplicate_names(client, operator_user, media_root):
    release = make_module()
    content = b"image bytes" * 100
    upload = lambda name, **extra: client.post(  # noqa: E731
        mgmt("artifacts", module_id=release.pk), data={"file": SimpleUploadedFile(name, content), **extra},
        **basic(operator_user))
    response = upload("image.swu")
    assert response.status_code == 201
    body = response.json()
    assert body["providedFilename"] == "image.swu" and body["size"] == len(content)
    assert body["hashes"] == {"sha1": hashlib.sha1(content).hexdigest(), "md5": hashlib.md5(content).hexdigest(),
                              "sha256": hashlib.sha256(content).hexdigest()}
    assert open(Artifact.objects.get(pk=body["id"]).file.path, "rb").read() == content
    duplicate = upload("image.swu")
    assert duplicate.status_code == 409 and "already exists" in duplicate.json()["message"]
    assert upload("other.swu", sha256sum="0" * 64).status_code == 400
    assert Artifact.objects.filter(release=release).count() == 1
    listed = client.get(mgmt("artifacts", module_id=release.pk), **basic(operator_user)).json()
    assert [a["providedFilename"] for a in listed] == ["image.swu"]


def test_it_creates_and_deletes_distribution_sets(client, operator_user):
    os_release = ReleaseFactory(component=ComponentFactory(name="os", kind="os"), version="39.1")
    app_release = ReleaseFactory(component=ComponentFactory(name="agent"), version="2.4")
    response = post(client, mgmt("sets"), [{"name": "base", "version": "1", "type": "os_app",
                                            "modules": [{"id": os_release.pk}, {"id": app_release.pk}]}], operator_user)
    assert response.status_code == 201
    (body,) = response.json()
    assert {m["id"] for m in body["modules"]} == {os_release.pk, app_release.pk} and body["complete"] is True
    two_os = ReleaseFactory(component=os_release.component, version="39.2")
    bad = post(client, mgmt("sets"), [{"name": "x", "version": "1", "modules": [{"id": os_release.pk}, {"id": two_os.pk}]}],
               operator_user)
    assert bad.status_code == 400
    assert post(client, mgmt("sets"), [{"name": "y", "version": "1", "modules": [{"id": 999999}]}],
                operator_user).status_code == 404
    assert client.delete(mgmt("set", set_id=body["id"]), **basic(operator_user)).status_code == 200
    assert client.delete(mgmt("set", set_id=body["id"]), **basic(operator_user)).status_code == 200
    assert DistributionSet.objects.get(pk=body["id"]).deleted
    assert post(client, mgmt("set-assign", set_id=body["id"]), [{"id": "t"}], operator_user).status_code == 404


def test_it_assigns_a_set_as_a_running_one_wave_rollout(client, operator_user, media_root):
    devices = [make_target("a-1", token="token-a-1-0123456789"), make_target("a-2", token="token-a-2-0123456789")]
    Device.objects.filter(pk=devices[0].pk).update(installed={"os": "1.0.0"})
    dist = make_set(make_module())
    window = {"schedule": "0 0 2 ? * *", "duration": "01:00:00", "timezone": "+01:00"}
    response = post(client, mgmt("set-assign", set_id=dist.pk),
                    [{"id": "a-1", "type": "soft", "maintenanceWindow": window}, {"id": "a-2"}], operator_user)
    assert response.status_code == 200
    body = response.json()
    assert body["assigned"] == 2 and body["total"] == 2 and len(body["assignedActions"]) == 2
    deployments = Deployment.objects.filter(pk__in=[a["id"] for a in body["assignedActions"]])
    assert {d.device.uid: d.from_versions for d in deployments} == {"a-1": {"os": "1.0.0"}, "a-2": {}}
    assert all(d.to_versions == {"os": "1.0.1"} and d.released_at for d in deployments)
    rollout = deployments[0].rollout
    assert rollout.state == Rollout.State.RUNNING and rollout.settle_s == 0
    assert rollout.waves.get().cohort.members.count() >= 1
    action = HawkbitAction.objects.get(deployment__device__uid="a-1")
    assert action.action_type == "soft" and action.maintenance_schedule == "0 0 2 ? * *"
    assert ComponentLock.objects.filter(deployment__in=deployments).count() == 2


def test_it_refuses_a_device_another_rollout_is_updating(client, operator_user, media_root):
    device = make_target()
    release = make_module()
    assign(make_set(release), device)
    again = post(client, mgmt("set-assign", set_id=make_set(release, name="again").pk), [{"id": device.uid}],
                 operator_user)
    assert again.status_code == 409 and "already being updated" in again.json()["message"]
    assert Deployment.objects.filter(device=device).count() == 1
    assert post(client, mgmt("set-assign", set_id=make_set(release, name="x").pk), [{"id": "ghost"}],
                operator_user).status_code == 404
    bad_window = [{"id": device.uid, "maintenanceWindow": {"schedule": "every day", "duration": "01:00:00"}}]
    assert post(client, mgmt("set-assign", set_id=make_set(release, name="y").pk), bad_window,
                operator_user).status_code == 400


def test_it_shows_actions_and_cancels_them_softly_or_by_force(client, operator_user, viewer_user, media_root):
    device = make_target()
    (deployment,) = assign(make_set(make_module()), device)
    path = mgmt("action", controller_id=device.uid, action_id=deployment.pk)
    shown = client.get(path, **basic(viewer_user)).json()
    assert (shown["id"], shown["type"], shown["status"], shown["forceType"]) == (deployment.pk, "update", "pending", "forced")
    assert client.delete(path, **basic(viewer_user)).status_code == 403
    assert client.delete(path, **basic(operator_user)).status_code == 204
    shown = client.get(path, **basic(viewer_user)).json()
    assert shown["type"] == "cancel" and shown["detailStatus"] == "canceling" and shown["status"] == "pending"
    assert client.delete(path + "?force=true", **basic(operator_user)).status_code == 204
    assert Deployment.objects.get(pk=deployment.pk).state == Deployment.State.CANCELED
    assert client.get(path, **basic(viewer_user)).json()["status"] == "finished"
    assert client.delete(path, **basic(operator_user)).status_code == 409
    other = make_target("other-dev", token="other-token-0123456789")
    assert client.get(mgmt("action", controller_id=other.uid, action_id=deployment.pk),
                      **basic(viewer_user)).status_code == 404


def test_it_lists_the_action_status_newest_first_with_the_devices_messages(client, viewer_user, media_root):
    device = make_target()
    (deployment,) = assign(make_set(make_module()), device)
    feedback_url = reverse("hawkbit-ddi-deployment-feedback",
                           kwargs={"tenant": "DEFAULT", "controller_id": device.uid, "action_id": deployment.pk})
    for execution, finished, details in [("proceeding", "none", ["Downloading"]), ("closed", "success", ["Done", "ok"])]:
        body = {"status": {"execution": execution, "result": {"finished": finished}, "details": details}}
        assert client.post(feedback_url, data=json.dumps(body), content_type="application/json",
                           **ddi_auth()).status_code == 200
    path = mgmt("action-status", controller_id=device.uid, action_id=deployment.pk)
    body = client.get(path + "?offset=0&limit=2&sort=id:DESC", **basic(viewer_user)).json()
    assert body["total"] == 3 and body["size"] == 2
    assert [(e["type"], e["messages"]) for e in body["content"]] == [("finished", ["Done", "ok"]),
                                                                     ("running", ["Downloading"])]
    oldest = client.get(path + "?offset=0&limit=1&sort=id:ASC", **basic(viewer_user)).json()["content"][0]
    assert oldest["type"] == "running" and "Assignment" in oldest["messages"][0]
    assert client.get(path + "?sort=name:UP", **basic(viewer_user)).status_code == 400
    assert ActionStatus.objects.filter(deployment=deployment).count() == 3
