"""Governance test helpers: a catalogue (os, app), devices on known combinations, explicit cohorts."""

import pytest
from django.core.cache import cache

from apps.fleet.models import Cohort, Device
from apps.fleet.services import device_installed_set
from apps.rollouts.services import rollout_create, rollout_submit
from tests.factories import ComponentFactory, DeviceFactory, ReleaseFactory


@pytest.fixture(autouse=True)
def _fresh_cache():
    cache.clear()
    yield


@pytest.fixture
def catalogue(db):
    os_component = ComponentFactory(name="os", kind="os", position=0)
    app = ComponentFactory(name="app", kind="app", position=1)
    return {
        "os 40.0": ReleaseFactory(component=os_component, version="40.0"),
        "os 39.1": ReleaseFactory(component=os_component, version="39.1"),
        "app 2.0": ReleaseFactory(component=app, version="2.0"),
    }


def make_devices(n: int, installed: dict, prefix: str = "g") -> list[Device]:
    devices = []
    start = Device.objects.count()
    for i in range(n):
        device = DeviceFactory(uid=f"{prefix}-{start + i:05d}")
        device_installed_set(device=device, installed=dict(installed))
        devices.append(device)
    return devices


def explicit_cohort(devices, name: str) -> Cohort:
    cohort = Cohort.objects.create(name=name, kind=Cohort.Kind.EXPLICIT)
    cohort.members.set(devices)
    return cohort


def scheduled_rollout(actor, releases, cohort, sizes=(100,), name="plan"):
    waves = [{"cohort": cohort if i == 0 else None, "size_kind": "percent", "size_value": size,
              "success_min_percent": 0, "spike_gate": {"enabled": False}} for i, size in enumerate(sizes)]
    rollout = rollout_create(name=name, releases=releases, waves=waves, actor=actor, settle_s=0)
    rollout_submit(rollout=rollout, actor=actor)
    rollout.refresh_from_db()
    return rollout
