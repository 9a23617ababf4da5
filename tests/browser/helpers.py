"""Helpers for the dashboard browser tests: device check-ins over the native API, demo data."""

import json
import random
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

from django.db import connection
from django.utils import timezone

from apps.fleet.models import Combination, SpreadSample
from tests.factories import ComponentFactory, DeviceFactory


def checkin(base_url: str, uid: str, seq: int, installed: dict[str, str], *, health: dict | None = None) -> dict:
    body = json.dumps({"seq": seq, "installed": installed, "health": {"interval_s": 60, **(health or {})}}).encode()
    request = urllib.request.Request(
        f"{base_url}/api/v1/devices/{uid}/checkin",
        data=body,
        method="POST",
        headers={
            "Authorization": f"Bearer token-{uid}",
            "Content-Type": "application/json",
        },
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.loads(response.read())


def in_thread(fn, *args, **kwargs):
    """Run fn in a thread of its own: Playwright's sync API keeps an event loop on the test's thread,
    where async_to_sync (used by broadcasts) refuses to run."""

    def call():
        try:
            return fn(*args, **kwargs)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(call).result(timeout=30)


def demo_fleet(n: int = 120, seed: int = 7) -> None:
    """A small fleet spread over OS × agent × ui combinations, with 24 h of converging samples."""
    rng = random.Random(seed)
    ComponentFactory(name="os", kind="os", position=0)
    ComponentFactory(name="agent", kind="app", position=1)
    ComponentFactory(name="ui", kind="app", position=2)
    choices = [
        ({"os": "39.2", "agent": "2.4.0", "ui": "1.8"}, 50),
        ({"os": "39.2", "agent": "2.3.1", "ui": "1.8"}, 20),
        ({"os": "39.1", "agent": "2.3.1", "ui": "1.7"}, 14),
        ({"os": "39.1", "agent": "2.2.0", "ui": "1.7"}, 8),
        ({"os": "38.4", "agent": "2.2.0", "ui": "1.6"}, 5),
        ({"os": "38.4", "agent": "2.1.3", "ui": "1.6"}, 2),
        ({"os": "37.9", "agent": "2.1.3", "ui": "1.5"}, 1),
    ]
    regions = ["eu-west", "eu-north", "us-east", "ap-south"]
    hw = ["rpi4", "rpi4", "nuc", "cm4"]
    now = timezone.now()
    for i in range(n):
        versions = rng.choices([c for c, _ in choices], weights=[w for _, w in choices])[0]
        combination, _ = Combination.objects.get_or_create(
            key=Combination.key_for(versions), defaults={"versions": versions}
        )
        DeviceFactory(
            uid=f"dev-{i:04d}",
            hw_model=rng.choice(hw),
            installed=versions,
            combination=combination,
            attributes={"region": rng.choice(regions)},
            tags={"canary": True} if i % 10 == 0 else {},
            last_seen=now - timedelta(seconds=rng.choice([5, 30, 90, 4000])),
        )
    for combination in Combination.objects.all():
        combination.device_count = combination.devices.count()
        combination.save(update_fields=["device_count"])
    samples = []
    for step in range(48, -1, -1):
        progress = 1 - step / 48
        new = int(30 + 60 * progress)
        samples.append(
            SpreadSample(
                at=now - timedelta(minutes=30 * step),
                devices=n,
                online=int(n * 0.8),
                combinations=max(7, int(14 - 7 * progress)),
                version_share={
                    "os": {
                        "39.2": new,
                        "39.1": int((n - new) * 0.6),
                        "38.4": int((n - new) * 0.4),
                    },
                    "agent": {"2.4.0": new, "2.3.1": n - new},
                },
            )
        )
    SpreadSample.objects.bulk_create(samples)
