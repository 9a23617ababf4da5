"""Rollout test helpers: a small catalogue, devices on known versions, explicit cohorts, check-ins."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.fleet.models import Cohort, Device
from apps.fleet.services import CheckinReport, device_checkin, device_installed_set
from apps.rollouts.engine import rollout_evaluate
from apps.rollouts.models import Deployment, Rollout
from apps.rollouts.services import rollout_create, rollout_start, rollout_submit
from tests.factories import ComponentFactory, DeviceFactory, ReleaseFactory


@pytest.fixture
def os_component(db):
    return ComponentFactory(name="os", kind="os")


@pytest.fixture
def old_os(os_component):
    return ReleaseFactory(component=os_component, version="39.1")


@pytest.fixture
def new_os(os_component):
    return ReleaseFactory(component=os_component, version="40.0")


def make_devices(n: int, *, hw: str = "rpi4", region: str = "eu-west", installed=None, prefix: str = "d"):
    devices = []
    start = Device.objects.count()
    for i in range(n):
        device = DeviceFactory(uid=f"{prefix}-{start + i:05d}", hw_model=hw, attributes={"region": region})
        device_installed_set(device=device, installed=dict(installed or {"os": "39.1"}))
        devices.append(device)
    return devices


def explicit_cohort(devices, name: str | None = None) -> Cohort:
    cohort = Cohort.objects.create(name=name or f"cohort-{Cohort.objects.count() + 1}", kind=Cohort.Kind.EXPLICIT)
    cohort.members.set(devices)
    return cohort


def wave(cohort, size_value=100, size_kind="percent", **gates):
    spec = {"cohort": cohort, "size_kind": size_kind, "size_value": size_value, "success_min_percent": 0,
            "spike_gate": {"enabled": False}}
    spec.update(gates)
    return spec


def running_rollout(actor, releases, waves, **options) -> Rollout:
    options.setdefault("settle_s", 0)
    rollout = rollout_create(name=options.pop("name", "test rollout"), releases=releases, waves=waves, actor=actor,
                             **options)
    rollout_submit(rollout=rollout, actor=actor)
    rollout_start(rollout=rollout, actor=actor)
    rollout.refresh_from_db()
    return rollout


def checkin(device: Device, installed: dict, *, crashes: int = 0, interval_s: int = 3600, failed_checks: int = 0):
    device.refresh_from_db()
    report = CheckinReport(
        seq=device.last_seq + 1, installed=installed, interval_s=interval_s,
        health={"crashes": crashes, "failed_health_checks": failed_checks},
    )
    return device_checkin(device=device, report=report)


def later(seconds: float):
    return timezone.now() + timedelta(seconds=seconds)


def tick(rollout: Rollout, *, now=None) -> str:
    outcome = rollout_evaluate(rollout.pk, now=now)
    rollout.refresh_from_db()
    return outcome


def deployed_devices(rollout: Rollout, **filters) -> list[Device]:
    return [d.device for d in Deployment.objects.filter(rollout=rollout, **filters).select_related("device")]


def install_all(rollout: Rollout, version: dict, **filters) -> int:
    """Every released deployment's device comes back on `version` and checks in healthy twice."""
    devices = deployed_devices(rollout, released_at__isnull=False, **filters)
    for device in devices:
        checkin(device, version)
        checkin(device, version)
    return len(devices)
