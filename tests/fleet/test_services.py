"""Fleet services write audit entries and keep combination counts exact."""

import pytest

from apps.audit.models import AuditEntry
from apps.fleet.models import Combination
from apps.fleet.services import (
    component_create,
    device_installed_set,
    device_register,
    device_token_revoke,
    release_create,
)
from apps.live.broadcast import capture_events
from tests.factories import DeviceFactory

pytestmark = pytest.mark.django_db


def test_it_audits_component_and_release_creation(admin_user):
    component = component_create(name="os", kind="os", actor=admin_user)
    release = release_create(component=component, version="40.0", actor=admin_user, supported_hardware=["rpi4"])
    entries = list(AuditEntry.objects.order_by("id").values_list("action", "actor_label", "after"))
    assert entries[-2][:2] == ("component.create", admin_user.username)
    assert entries[-1][0] == "release.create"
    assert entries[-1][2]["supported_hardware"] == ["rpi4"]
    assert release.supports("rpi4") and not release.supports("imx8")


def test_it_refuses_an_invalid_version(admin_user):
    from django.core.exceptions import ValidationError

    component = component_create(name="os", kind="os", actor=admin_user)
    with pytest.raises(ValidationError) as info:
        release_create(component=component, version="1.0; rm -rf /", actor=admin_user)
    assert "version" in info.value.message_dict


def test_it_registers_a_device_and_audits_token_revocation(admin_user):
    device, token = device_register(uid="pre-1", actor=admin_user, hw_model="rpi4", tags=["lab"])
    assert device.token_matches(token)
    device_token_revoke(device=device, actor=admin_user, reason="lost")
    assert not device.token_matches(token)
    entry = AuditEntry.objects.get(action="device.token_revoke")
    assert entry.reason == "lost" and entry.actor == admin_user


def test_it_keeps_combination_counts_when_devices_move(db):
    devices = [DeviceFactory() for _ in range(3)]
    for device in devices:
        device_installed_set(device=device, installed={"os": "1"})
    device_installed_set(device=devices[0], installed={"os": "2"})
    device_installed_set(device=devices[0], installed={"os": "2"})  # no change, no double count
    counts = dict(Combination.objects.values_list("key", "device_count"))
    assert counts == {"os=1": 2, "os=2": 1}


def test_it_broadcasts_enrollment_only_after_commit(django_capture_on_commit_callbacks):
    from apps.fleet.services import device_enroll, enrollment_secret_create

    from django.core.cache import cache

    _, secret = enrollment_secret_create(name="s", actor="tests")
    cache.delete_many(["live:throttle:fleet:fleet.changed", "live:throttle:wall:fleet.changed"])
    with capture_events() as events:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            device_enroll(uid="dev-x", secret=secret)
        assert events == []  # nothing before commit
        for callback in callbacks:
            callback()
    assert events == [{"kind": "fleet.changed"}]
