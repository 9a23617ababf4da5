"""cohort_silence_check: a cohort whose devices stop checking in raises one `cohort_silent` alert."""

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from apps.alerts.models import Alert, CohortWatch
from apps.alerts.services import alert_acknowledge, cohort_silence_check
from apps.alerts.tasks import cohort_silence_scan
from apps.fleet.models import Cohort
from tests.factories import CohortFactory, DeviceFactory

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def knobs(settings):
    # 60 s polls (test settings) × 3 intervals: "recent" means the last 3 minutes.
    settings.FLEET = {**settings.FLEET, "POLL_INTERVAL_S": 60, "COHORT_SILENT_INTERVALS": 3,
                      "COHORT_SILENT_MIN_SHARE": 0.5, "COHORT_SILENT_MINUTES": 30, "COHORT_SILENT_MIN_DEVICES": 3,
                      "COHORT_SILENT_MAX_COHORTS": 200}


def devices(region: str, ages_s: list[float | None]) -> None:
    now = timezone.now()
    for age in ages_s:
        DeviceFactory(attributes={"region": region}, last_seen=None if age is None else now - timedelta(seconds=age))


def cohort(region: str) -> Cohort:
    return CohortFactory(name=region, filter_text=f'region == "{region}"')


def test_it_raises_one_alert_when_most_of_a_cohort_stops_checking_in():
    quiet = cohort("eu-north")
    devices("eu-north", [30, 60, 600, 900, 1200])  # 2 of 5 recent: 40% < 50%
    devices("eu-west", [30, 30, 30])
    cohort("eu-west")
    [alert] = cohort_silence_check()
    assert (alert.kind, alert.severity, alert.dedupe_key) == ("cohort_silent", "warning", f"cohort_silent:{quiet.pk}")
    assert alert.title == "Cohort eu-north went silent"
    assert "2 of 5 devices (40%) checked in within the last 3 min" in alert.detail
    assert (alert.evidence["total"], alert.evidence["recent"], alert.evidence["cohort_id"]) == (5, 2, quiet.pk)
    assert cohort_silence_check() == []  # still silent: no second alert
    assert Alert.objects.filter(kind="cohort_silent").count() == 1


def test_it_raises_a_critical_alert_when_no_member_checked_in_for_the_limit():
    cohort("ap-south")
    devices("ap-south", [3600, 4000, None])
    [alert] = cohort_silence_check()
    assert alert.severity == "critical"
    assert alert.evidence["nobody_for_minutes"] is True


def test_it_leaves_healthy_and_tiny_cohorts_alone():
    cohort("eu-west")
    devices("eu-west", [10, 20, 30, 4000])  # 75% recent
    cohort("lab")
    devices("lab", [4000, 5000])  # under COHORT_SILENT_MIN_DEVICES
    cohort("empty")
    assert cohort_silence_check() == []
    assert CohortWatch.objects.count() == 3 and not CohortWatch.objects.filter(silent=True).exists()


def test_it_raises_again_after_the_cohort_recovered_and_went_silent_again(viewer_user):
    quiet = cohort("eu-north")
    devices("eu-north", [600, 900, 1200])
    [first] = cohort_silence_check()
    alert_acknowledge(alert=first, actor=viewer_user)
    assert cohort_silence_check() == []  # acknowledged but still the same silence
    quiet.devices().update(last_seen=timezone.now())
    assert cohort_silence_check() == []
    assert CohortWatch.objects.get(cohort=quiet).silent is False
    quiet.devices().update(last_seen=timezone.now() - timedelta(hours=2))
    [second] = cohort_silence_check()
    assert second.pk != first.pk and second.is_open


def test_it_reads_each_cohort_with_one_aggregate_query():
    for region in ("a", "b", "c"):
        cohort(region)
        devices(region, [30, 600, 900])
    with CaptureQueriesContext(connection) as queries:
        cohort_silence_check()
    device_reads = [q["sql"] for q in queries.captured_queries if '"fleet_device"' in q["sql"]]
    assert len(device_reads) == 3
    assert all("COUNT(" in sql and "MAX(" in sql for sql in device_reads)


def test_it_checks_at_most_the_limit_per_run_least_recently_checked_first(settings):
    settings.FLEET = {**settings.FLEET, "COHORT_SILENT_MAX_COHORTS": 2}
    names = ["a", "b", "c"]
    for name in names:
        cohort(name)
        devices(name, [600, 900, 1200])
    assert cohort_silence_scan.apply().get() == 2  # the beat task
    assert {a.evidence["cohort"] for a in Alert.objects.all()} == {"a", "b"}
    cohort_silence_check()
    assert {a.evidence["cohort"] for a in Alert.objects.all()} == {"a", "b", "c"}


def test_it_counts_explicit_members():
    group = CohortFactory(name="pilot", kind="explicit", filter_text="")
    devices("x", [600, 900, 1200, 30])
    from apps.fleet.models import Device

    group.members.set(Device.objects.all())
    [alert] = cohort_silence_check()
    assert (alert.evidence["total"], alert.evidence["recent"]) == (4, 1)
