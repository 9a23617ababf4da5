"""Health by combination: the rollup and the OS × app heatmap read from it."""

from datetime import timedelta

import pytest

from apps.insights.models import CombinationHealth
from apps.insights.selectors import health_heatmap
from apps.rollouts.models import Deployment
from tests.insights.conftest import (
    combination,
    fleet_device,
    report,
    rollup_now,
    seed_pairing_fleet,
)

pytestmark = pytest.mark.django_db


def cell(heatmap: dict, os_version: str, vision: str) -> dict:
    row = next(r for r in heatmap["rows"] if r["os"] == os_version)
    return next(c for c in row["cells"] if c["app"] == vision)


def test_it_rates_each_pairing_per_device_hour_from_the_rollup(catalogue):
    seed_pairing_fleet(per_cell=6)
    rollup_now()
    heatmap = health_heatmap(hours=1, app="vision")
    sick = cell(heatmap, "39.2", "1.4")
    # 6 devices × 3 reports × 3 crashes over 6 × 3 × 10 minutes = 54 crashes in 3 device-hours.
    assert (sick["events"], sick["reports"], sick["exposure_h"], sick["devices"]) == (54, 18, 3.0, 6)
    assert sick["rate"] == pytest.approx(18.0)
    healthy = cell(heatmap, "39.1", "1.3")
    assert healthy["events"] == 1 and healthy["rate"] == pytest.approx(1 / 3)
    # The rest of the fleet for the sick cell: 3 crashes over 9 device-hours.
    assert sick["rest_rate"] == pytest.approx(3 / 9) and sick["ratio"] == pytest.approx(54.0)
    assert heatmap["os_component"] == "os" and heatmap["app_versions"] == ["1.4", "1.3"]


def test_it_gives_only_the_sick_pairing_the_top_class(catalogue):
    seed_pairing_fleet(per_cell=6)
    rollup_now()
    heatmap = health_heatmap(hours=1, app="vision")
    levels = {(c["os"], c["app"]): c["level"] for row in heatmap["rows"] for c in row["cells"]}
    assert levels[("39.2", "1.4")] == 4
    assert all(level <= 2 for key, level in levels.items() if key != ("39.2", "1.4")), levels
    assert (heatmap["worst"]["os"], heatmap["worst"]["app"]) == ("39.2", "1.4")


def test_it_does_not_flag_a_healthy_fleet(catalogue):
    seed_pairing_fleet(per_cell=6, sick=None)
    rollup_now()
    heatmap = health_heatmap(hours=1, app="vision")
    assert max(c["level"] for row in heatmap["rows"] for c in row["cells"]) <= 2


def test_it_caps_a_cell_with_few_data_below_the_alarm_classes(catalogue):
    seed_pairing_fleet(per_cell=6, sick=None)
    # One device alone on its pairing, one short report full of crashes: a huge rate on 1 device-minute.
    alone = fleet_device("alone", "40.0", "1.4")
    assert alone.combination_id == combination("40.0", "1.4").pk
    report(alone, seq=0, minutes_ago=2, crashes=9, interval_s=60)
    rollup_now()
    heatmap = health_heatmap(hours=1, app="vision")
    lonely = cell(heatmap, "40.0", "1.4")
    assert lonely["ratio"] > 100 and lonely["few_data"] is True and lonely["level"] == 2
    assert cell(heatmap, "39.2", "1.3")["few_data"] is False


def test_it_leaves_reports_outside_the_window_out(catalogue):
    device = fleet_device("old-news", "39.1", "1.3")
    report(device, seq=0, minutes_ago=90, crashes=7)
    report(device, seq=1, minutes_ago=10, crashes=1)
    rollup_now()
    assert cell(health_heatmap(hours=1, app="vision"), "39.1", "1.3")["events"] == 1
    assert cell(health_heatmap(hours=6, app="vision"), "39.1", "1.3")["events"] == 8


def test_it_counts_each_report_once_however_often_the_rollup_runs(catalogue):
    seed_pairing_fleet(per_cell=2)
    first = rollup_now()
    again = rollup_now()
    assert first["rows"] > 0 and again["rows"] == 0
    total = sum(row.crashes for row in CombinationHealth.objects.all())
    assert total == 2 * 3 * 3 + 3  # sick cell + one background crash in each of three cells


def test_it_counts_a_report_written_late_into_its_own_bucket(catalogue):
    device = fleet_device("buffered", "39.1", "1.3")
    report(device, seq=0, minutes_ago=30, crashes=1)
    rollup_now()
    # The check-in buffer flushes a report stamped 20 minutes ago only now (a worker was down).
    late = report(device, seq=1, minutes_ago=20, crashes=4)
    rollup_now()
    assert cell(health_heatmap(hours=1, app="vision"), "39.1", "1.3")["events"] == 5
    bucket = CombinationHealth.objects.get(bucket__lte=late.received_at, bucket__gt=late.received_at - timedelta(minutes=5))
    assert bucket.crashes == 4


def test_it_rolls_up_in_bounded_batches_until_caught_up(catalogue):
    from apps.insights.services import combination_health_rollup

    seed_pairing_fleet(per_cell=1)  # 12 reports
    combination_health_rollup(max_span_s=10 ** 8)  # sees them
    runs = 0
    while combination_health_rollup(max_reports=5, max_span_s=10 ** 8)["behind"]:
        runs += 1
        assert runs < 10
    assert runs == 2  # 5 + 5 + 2
    assert sum(row.reports for row in CombinationHealth.objects.all()) == 4 * 3


def test_it_rates_failed_installs_by_the_device_combination(catalogue, operator_user):
    from datetime import timedelta

    from django.utils import timezone

    from apps.rollouts.models import Rollout, RolloutRelease, Wave

    rollout = Rollout.objects.create(name="r", state=Rollout.State.RUNNING)
    RolloutRelease.objects.create(rollout=rollout, release=catalogue["vision=1.4"],
                                  component=catalogue["vision=1.4"].component)
    wave = Wave.objects.create(rollout=rollout, index=0)
    now = timezone.now() - timedelta(minutes=2)  # older than the rollup's lag
    for i in range(6):
        device = fleet_device(f"f-{i}", "39.2" if i < 3 else "39.1", "1.3")
        Deployment.objects.create(rollout=rollout, wave=wave, device=device, finished_at=now,
                                  state=Deployment.State.FAILED if i < 3 else Deployment.State.SUCCEEDED)
    rollup_now()
    heatmap = health_heatmap(hours=1, app="vision", metric="failed_installs")
    assert cell(heatmap, "39.2", "1.3")["rate"] == 100.0
    assert cell(heatmap, "39.1", "1.3")["rate"] == 0.0 and cell(heatmap, "39.1", "1.3")["level"] == 0
