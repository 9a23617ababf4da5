"""Dashboard reads that stay cheap at a million devices: maintained sizes, sampled estimates, maintained progress."""

from datetime import timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

from apps.dashboard.selectors import cohort_preview, fleet_summary, rollout_snapshot
from apps.dashboard.selectors import cohorts as cohorts_module
from apps.dashboard.selectors import counts as counts_module
from apps.dashboard.selectors.counts import fleet_size
from apps.fleet.models import Combination, Device
from apps.rollouts.engine import rollout_evaluate
from apps.rollouts.models import Deployment
from apps.rollouts.services import rollout_create, rollout_start, rollout_submit
from tests.dashboard.helpers import components, place
from tests.factories import (
    CohortFactory,
    ComponentFactory,
    DeviceFactory,
    ReleaseFactory,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def large_fleet(monkeypatch):
    """2,000 devices (half in eu-west, a quarter online) and the dashboard told the fleet is "large"."""
    components()
    combination = Combination.objects.create(key=Combination.key_for({"os": "39.1"}), versions={"os": "39.1"})
    now = timezone.now()
    Device.objects.bulk_create(
        Device(
            uid=f"big-{i:05d}", hw_model="rpi4", installed={"os": "39.1"}, combination=combination,
            attributes={"region": "eu-west" if i % 2 else "us-east"},
            last_seen=now if i % 4 == 0 else now - timedelta(days=2),
        )
        for i in range(2000)
    )
    Combination.objects.filter(pk=combination.pk).update(device_count=2000)
    monkeypatch.setattr(counts_module, "EXACT_COUNT_LIMIT", 100)
    monkeypatch.setattr(counts_module, "SAMPLE_ROWS", 1000)
    monkeypatch.setattr(cohorts_module, "PREVIEW_SAMPLE_ROWS", 1000)
    cache.delete("dashboard:estimate:online")
    yield
    cache.delete("dashboard:estimate:online")


def test_it_takes_the_fleet_size_from_the_maintained_combination_counts():
    components()
    place(3, {"os": "39.1"})
    DeviceFactory()  # has not reported a combination yet: counted directly
    Combination.objects.update(device_count=1000)  # what the maintained counter says wins
    assert fleet_size() == 1001


def test_it_counts_online_devices_exactly_on_a_small_fleet():
    components()
    place(2, {"os": "39.1"}, last_seen=timezone.now())
    place(1, {"os": "39.1"})
    summary = fleet_summary()
    assert (summary["online"], summary["offline"], summary["online_estimated"]) == (2, 1, False)


def test_it_estimates_online_devices_from_a_sample_on_a_large_fleet(large_fleet):
    summary = fleet_summary()
    assert summary["devices"] == 2000
    assert summary["online_estimated"] is True
    assert 300 <= summary["online"] <= 700  # 500 really online; a ~50 % page sample
    assert summary["offline"] == 2000 - summary["online"]


def test_it_marks_the_estimate_on_the_overview_page(viewer_client, large_fleet):
    page = viewer_client.get("/").content.decode()
    assert 'data-estimated="online" title=' in page
    assert 'data-estimated="online" hidden' not in page


def test_it_hides_the_estimate_mark_when_counts_are_exact(viewer_client):
    components()
    place(2, {"os": "39.1"})
    assert 'data-estimated="online" hidden' in viewer_client.get("/").content.decode()


def test_it_previews_a_broad_filter_by_sample_on_a_large_fleet(large_fleet):
    preview = cohort_preview('region == "eu-west"')
    assert preview.ok and preview.estimated
    assert 0 < preview.sampled < 2000
    assert 700 <= preview.count <= 1300  # 1,000 really match
    assert len(preview.sample) == 10 and preview.sample == sorted(preview.sample)
    assert set(Device.objects.filter(uid__in=preview.sample).values_list("attributes__region", flat=True)) == {
        "eu-west"}


def test_it_gives_an_exact_preview_when_only_a_few_devices_match(large_fleet):
    preview = cohort_preview('id == "big-00007" or id == "big-01999"')
    assert (preview.count, preview.sample, preview.estimated) == (2, ["big-00007", "big-01999"], False)


def test_it_previews_a_filter_that_matches_nothing_as_zero(large_fleet):
    preview = cohort_preview('region == "mars"')
    assert (preview.count, preview.sample, preview.estimated) == (0, [], False)


def test_it_shows_a_running_rollout_from_the_engines_maintained_counts(operator_user):
    components()
    place(6, {"os": "39.1"}, hw_model="rpi4", last_seen=timezone.now())
    release = ReleaseFactory(component=ComponentFactory(name="os"), version="40.0")
    cohort = CohortFactory(name="pis", filter_text='hw == "rpi4"')
    rollout = rollout_create(name="os 40", releases=[release], waves=[{"cohort": cohort, "size_value": 100}],
                             actor=operator_user)
    rollout_submit(rollout=rollout, actor=operator_user)
    rollout_start(rollout=rollout, actor=operator_user)
    rollout_evaluate(rollout.pk)
    first = rollout_snapshot(rollout.pk)
    assert first["devices"] == 6 and first["done"] == 0
    Deployment.objects.filter(rollout=rollout).update(state=Deployment.State.SUCCEEDED, finished_at=timezone.now())
    # Until the engine's next tick the page shows the counts as of the last one (no recount per view).
    assert rollout_snapshot(rollout.pk)["done"] == 0
    rollout_evaluate(rollout.pk)
    assert rollout_snapshot(rollout.pk)["done"] == 6
