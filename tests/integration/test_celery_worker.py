"""A real Celery worker process, on the real Redis broker, working on the test database."""

import pytest

from apps.fleet.models import Combination, SpreadSample
from apps.fleet.services import device_installed_set
from apps.fleet.tasks import recount_combinations, spread_snapshot
from tests.factories import DeviceFactory
from tests.processes import celery_worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.integration]


def test_it_repairs_drifted_combination_counts_in_a_real_worker():
    devices = [DeviceFactory() for _ in range(4)]
    for index, device in enumerate(devices):
        device_installed_set(device=device, installed={"os": "1" if index < 3 else "2"})
    # Simulate drift (a crash between two writes in an older version, a manual SQL fix...).
    Combination.objects.filter(key="os=1").update(device_count=42)
    with celery_worker(name="recount"):
        result = recount_combinations.delay().get(timeout=30)
    assert result == {"combinations": 2, "fixed": 1}
    assert dict(Combination.objects.values_list("key", "device_count")) == {"os=1": 3, "os=2": 1}


def test_it_samples_the_spread_in_a_real_worker():
    for index in range(5):
        device_installed_set(device=DeviceFactory(), installed={"os": "39.1", "agent": "2" if index % 2 else "3"})
    with celery_worker(name="spread"):
        sample_id = spread_snapshot.delay().get(timeout=30)
    sample = SpreadSample.objects.get(pk=sample_id)
    assert sample.devices == 5 and sample.combinations == 2
    assert sample.version_share == {"os": {"39.1": 5}, "agent": {"2": 2, "3": 3}}
