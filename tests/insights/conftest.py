"""Insights helpers: a two-component fleet (os × vision) with health reports, and the rollup run to now."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.fleet.models import Combination, Device, HealthReport
from apps.fleet.services import device_installed_set
from apps.insights.services import combination_health_rollup
from tests.factories import ComponentFactory, DeviceFactory, ReleaseFactory


@pytest.fixture
def catalogue(db):
    os_component = ComponentFactory(name="os", kind="os", position=0)
    vision = ComponentFactory(name="vision", kind="app", position=10)
    releases = {}
    for version in ("39.1", "39.2"):
        releases[f"os={version}"] = ReleaseFactory(component=os_component, version=version)
    for version in ("1.3", "1.4"):
        releases[f"vision={version}"] = ReleaseFactory(component=vision, version=version)
    return releases


def fleet_device(uid: str, os_version: str, vision: str, **fields) -> Device:
    device = DeviceFactory(uid=uid, **fields)
    device_installed_set(device=device, installed={"os": os_version, "vision": vision})
    device.refresh_from_db()
    return device


def report(device: Device, *, seq: int, minutes_ago: float, crashes: int = 0, failed_checks: int = 0,
           interval_s: int = 600) -> HealthReport:
    return HealthReport.objects.create(
        device=device, seq=seq, received_at=timezone.now() - timedelta(minutes=minutes_ago), interval_s=interval_s,
        combination_id=device.combination_id, crashes=crashes, failed_health_checks=failed_checks,
    )


def seed_pairing_fleet(*, per_cell: int = 6, sick=("39.2", "1.4")) -> dict[tuple[str, str], list[Device]]:
    """Four pairings of os × vision, `per_cell` devices each, three 10-minute reports per device in the
    last 40 minutes. The sick pairing crashes 3 times per report; every other pairing has one crash on
    the first device's first report only (a healthy background rate)."""
    cells = {}
    for os_version in ("39.1", "39.2"):
        for vision in ("1.3", "1.4"):
            devices = [fleet_device(f"d-{os_version}-{vision}-{i}", os_version, vision) for i in range(per_cell)]
            cells[(os_version, vision)] = devices
            for i, device in enumerate(devices):
                for seq in range(3):
                    if (os_version, vision) == sick:
                        crashes = 3
                    else:
                        crashes = 1 if (i == 0 and seq == 0) else 0
                    report(device, seq=seq, minutes_ago=5 + seq * 10, crashes=crashes)
    return cells


def rollup_now() -> dict:
    """Run the rollup until it has counted every report already in the database.

    A run counts reports up to the highest id the previous run saw (so that a slow insert
    transaction can commit first), hence two runs; the deployments' time cursor reads up to
    now − lag, and the reports these tests stamp are at least a minute old."""
    combination_health_rollup(max_span_s=10 ** 8)
    return combination_health_rollup(max_span_s=10 ** 8)


def combination(os_version: str, vision: str) -> Combination:
    return Combination.objects.get(key=Combination.key_for({"os": os_version, "vision": vision}))
