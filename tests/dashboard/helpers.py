"""Fleet data for dashboard tests: devices placed on combinations with exact maintained counts."""

from apps.fleet.models import Combination, Component, Device
from tests.factories import DeviceFactory


def components(*apps: str) -> None:
    Component.objects.get_or_create(name="os", defaults={"kind": "os", "position": 0})
    for i, name in enumerate(apps, start=1):
        Component.objects.get_or_create(name=name, defaults={"kind": "app", "position": i})


def place(n: int, versions: dict[str, str], **device_fields) -> list[Device]:
    """n devices running `versions`, with the combination's count maintained as check-ins do."""
    combination, _ = Combination.objects.get_or_create(
        key=Combination.key_for(versions), defaults={"versions": versions}
    )
    devices = [DeviceFactory(installed=versions, combination=combination, **device_fields) for _ in range(n)]
    combination.device_count = combination.devices.count()
    combination.save(update_fields=["device_count"])
    return devices
