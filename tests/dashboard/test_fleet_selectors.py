"""The version-combination spread: counts, shares, long tail, heatmap, cohort filter, time series."""

from datetime import timedelta

import pytest
from django.utils import timezone

from apps.dashboard.selectors import fleet_summary, spread_series
from apps.dashboard.selectors.fleet import version_sort_key
from apps.fleet.models import SpreadSample
from tests.dashboard.helpers import components, place
from tests.factories import CohortFactory, DeviceFactory

pytestmark = pytest.mark.django_db


def test_it_counts_live_combinations_and_their_shares():
    components("agent")
    place(6, {"os": "39.1", "agent": "2.0"})
    place(3, {"os": "39.1", "agent": "1.9"})
    place(1, {"os": "38.0", "agent": "1.9"})
    DeviceFactory()  # never reported: counted as a device, not in the spread
    summary = fleet_summary()
    assert (summary["devices"], summary["reporting"], summary["combinations"]) == (
        11,
        10,
        3,
    )
    top = summary["top_combinations"][0]
    assert top["versions"] == [
        ["os", "39.1"],
        ["agent", "2.0"],
    ]  # the OS first, then apps by position
    assert (top["devices"], top["share"]) == (6, 60.0)


def test_it_ignores_combinations_no_device_runs_any_more():
    components()
    place(2, {"os": "40.0"})
    place(0, {"os": "39.0"})
    assert fleet_summary()["combinations"] == 1


def test_it_puts_combinations_under_one_percent_in_the_long_tail():
    components("agent")
    place(200, {"os": "39.1", "agent": "2.0"})
    place(1, {"os": "39.1", "agent": "1.0"})
    place(1, {"os": "37.0", "agent": "1.0"})
    tail = fleet_summary()["long_tail"]
    assert (tail["combinations"], tail["devices"]) == (2, 2)
    assert tail["share"] == pytest.approx(0.99, abs=0.01)


def test_it_builds_the_os_by_app_heatmap_newest_versions_first():
    components("agent", "ui")
    place(4, {"os": "39.10", "agent": "2.0", "ui": "1"})
    place(2, {"os": "39.9", "agent": "2.0", "ui": "2"})
    place(1, {"os": "39.9"})
    heat = fleet_summary()["heatmap"]
    assert heat["os"] == "os" and heat["app"] == "agent"
    assert heat["rows"] == ["39.10", "39.9"]
    assert heat["cols"] == ["2.0", "—"]
    assert heat["cells"] == [[4, 0], [2, 1]]
    assert heat["max"] == 4


def test_it_uses_the_chosen_app_for_the_heatmap():
    components("agent", "ui")
    place(2, {"os": "40", "agent": "2.0", "ui": "7"})
    assert fleet_summary(app="ui")["heatmap"]["cols"] == ["7"]
    # An unknown component falls back to the first app rather than failing.
    assert fleet_summary(app="nope")["heatmap"]["app"] == "agent"


def test_it_folds_rare_versions_into_other():
    components("agent")
    for minor in range(15):
        place(15 - minor, {"os": f"39.{minor}", "agent": "1.0"})
    heat = fleet_summary()["heatmap"]
    assert len(heat["rows"]) == 13 and heat["rows"][-1] == "other"
    assert heat["cells"][-1] == [3 + 2 + 1]


def test_it_filters_everything_by_cohort():
    components("agent")
    place(5, {"os": "39.1", "agent": "2.0"}, hw_model="rpi4")
    place(3, {"os": "38.0", "agent": "1.9"}, hw_model="nuc")
    cohort = CohortFactory(filter_text='hw == "nuc"')
    summary = fleet_summary(cohort=cohort)
    assert (summary["devices"], summary["combinations"], summary["cohort_name"]) == (
        3,
        1,
        cohort.name,
    )
    assert summary["top_combinations"][0]["versions"] == [
        ["os", "38.0"],
        ["agent", "1.9"],
    ]
    assert summary["heatmap"]["cells"] == [[3]]


def test_it_orders_versions_naturally():
    assert sorted(["39.10", "39.9", "40.0-rc1", "40.0"], key=version_sort_key) == [
        "39.9",
        "39.10",
        "40.0",
        "40.0-rc1",
    ]


def test_it_returns_the_spread_over_time_as_shares():
    now = timezone.now()
    SpreadSample.objects.create(
        at=now - timedelta(hours=30),
        devices=1,
        online=1,
        combinations=9,
        version_share={"os": {"1": 1}},
    )
    SpreadSample.objects.create(
        at=now - timedelta(minutes=2),
        devices=4,
        online=4,
        combinations=3,
        version_share={"os": {"39.1": 3, "40.0": 1}},
    )
    SpreadSample.objects.create(
        at=now - timedelta(minutes=1),
        devices=4,
        online=4,
        combinations=2,
        version_share={"os": {"39.1": 1, "40.0": 3}},
    )
    series = spread_series(component="os", hours=24)
    assert series["combinations"] == [3, 2]
    assert series["share"] == {"40.0": [25.0, 75.0], "39.1": [75.0, 25.0]}
    assert len(series["t"]) == 2 and series["t"][0] < series["t"][1]


def test_it_thins_long_series_to_the_point_limit():
    now = timezone.now()
    SpreadSample.objects.bulk_create(
        SpreadSample(
            at=now - timedelta(minutes=i),
            devices=1,
            online=1,
            combinations=i,
            version_share={},
        )
        for i in range(100)
    )
    series = spread_series(hours=24, max_points=10)
    assert len(series["t"]) <= 10
    assert series["combinations"][-1] == 0  # the newest sample is always kept
