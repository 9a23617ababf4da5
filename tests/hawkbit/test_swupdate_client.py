"""A real hawkBit client: Debian's SWUpdate (suricatta) against fleetweb served by uvicorn on loopback.

The server runs in a subprocess on the test database, so these tests use transactional
test cases (the data must be committed for the server to see it).
"""

import time
from pathlib import Path

import pytest

from apps.hawkbit import services
from apps.hawkbit.models import ActionStatus
from apps.fleet.models import Device
from apps.rollouts.models import ComponentLock, Deployment, Rollout
from tests.hawkbit import swu
from tests.hawkbit.conftest import TOKEN, assign, make_module, make_set, make_target

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]

DEADLINE_S = 60


def wait_for(condition, *, what: str, logs: list[Path], timeout: float = DEADLINE_S):
    """Poll a condition (a DB read, a file) until true; fail with the process logs after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.2)
    tails = "\n".join(f"--- {log.name}\n{log.read_text()[-4000:] if log.exists() else '(none)'}" for log in logs)
    pytest.fail(f"timed out after {timeout} s waiting for {what}\n{tails}")


@pytest.fixture
def lab(tmp_path, media_root):
    binary = swu.swupdate_binary()
    swu.make_certificate(tmp_path)
    return {"binary": binary, "dir": tmp_path, "cert": tmp_path / "cert.pem", "media": media_root,
            "server_log": tmp_path / "uvicorn.log", "client_log": tmp_path / "swupdate.log"}


def release_with_image(lab, *, bad_hash: bool = False):
    target = lab["dir"] / "installed.txt"
    image = swu.build_swu(lab["dir"] / "image", target=target, payload=b"fleet payload 1.0.1\n", bad_hash=bad_hash)
    release = make_module(files={"update.swu": image.read_bytes()})
    return make_set(release), target


def statuses(deployment) -> list[tuple[str, list[str]]]:
    return list(ActionStatus.objects.filter(deployment=deployment).order_by("id").values_list("type", "messages"))


def reported(deployment, message: str) -> bool:
    return any(message in text for _, messages in statuses(deployment) for text in messages)


def state_of(deployment) -> str:
    return Deployment.objects.get(pk=deployment.pk).state


def client_args(lab, url: str, device) -> dict:
    return dict(binary=lab["binary"], url=url, device=device.uid, token=TOKEN, cert=lab["cert"], workdir=lab["dir"],
                log=lab["client_log"])


def test_it_installs_an_image_with_swupdate_and_the_deployment_succeeds(lab):
    device = make_target("swu-dev-1")
    dist, target = release_with_image(lab)
    logs = [lab["server_log"], lab["client_log"]]
    with swu.uvicorn_server(lab["server_log"], media_root=lab["media"]) as url:
        (deployment,) = assign(dist, device)
        with swu.suricatta(**client_args(lab, url, device)):
            wait_for(lambda: reported(deployment, "All Chunks Installed."), what="SWUpdate's install report", logs=logs)
        # SWUpdate installed and would now reboot; until it confirms the new system, nothing has succeeded.
        assert target.read_bytes() == b"fleet payload 1.0.1\n"
        assert state_of(deployment) == Deployment.State.INSTALLING
        assert Device.objects.get(pk=device.pk).installed == {}
        # After the reboot SWUpdate starts with `-c 2` (the new system is good) and closes the action.
        with swu.suricatta(**client_args(lab, url, device), confirm=2):
            wait_for(lambda: state_of(deployment) == Deployment.State.SUCCEEDED, what="the deployment to succeed",
                     logs=logs)
    assert Device.objects.get(pk=device.pk).installed == {"os": "1.0.1"}
    assert Rollout.objects.get(pk=deployment.rollout_id).state == Rollout.State.COMPLETED
    assert reported(deployment, "Update Installed.")
    assert not ComponentLock.objects.filter(deployment=deployment).exists()


def test_it_reports_a_failing_install_as_a_failed_deployment(lab):
    device = make_target("swu-dev-2")
    dist, target = release_with_image(lab, bad_hash=True)
    logs = [lab["server_log"], lab["client_log"]]
    with swu.uvicorn_server(lab["server_log"], media_root=lab["media"]) as url:
        (deployment,) = assign(dist, device)
        with swu.suricatta(**client_args(lab, url, device)):
            wait_for(lambda: state_of(deployment) == Deployment.State.FAILED, what="the deployment to fail", logs=logs)
    failed = Deployment.objects.get(pk=deployment.pk)
    # The failure counts where the rollout gates look: a failed deployment of the wave, with the device's words.
    assert Deployment.objects.filter(wave=failed.wave, state=Deployment.State.FAILED).count() == 1
    assert failed.error_detail  # the device's closing details
    assert ActionStatus.objects.filter(deployment=deployment, type="error").exists()
    assert reported(deployment, "HASH mismatch")  # SWUpdate's own log lines reach the action's status log
    assert Device.objects.get(pk=device.pk).installed == {}
    assert not target.exists()


def test_it_delivers_a_cancel_to_swupdate_and_the_deployment_is_canceled(lab):
    device = make_target("swu-dev-3")
    dist, target = release_with_image(lab)
    logs = [lab["server_log"], lab["client_log"]]
    with swu.uvicorn_server(lab["server_log"], media_root=lab["media"]) as url:
        (deployment,) = assign(dist, device)
        services.action_cancel(deployment=deployment, actor="tests")
        assert state_of(deployment) == Deployment.State.PENDING  # soft: the device has to confirm
        with swu.suricatta(**client_args(lab, url, device)):
            wait_for(lambda: state_of(deployment) == Deployment.State.CANCELED, what="the cancel confirmation",
                     logs=logs)
    assert reported(deployment, "cancellation acknowledged.")
    assert ActionStatus.objects.filter(deployment=deployment, type="canceled").exists()
    assert not target.exists()
