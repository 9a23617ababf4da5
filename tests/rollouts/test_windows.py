"""Maintenance windows: the cron matcher, time zones, and the engine releasing devices only inside a window."""

from datetime import UTC, datetime, timedelta

import pytest

from apps.rollouts.cron import CronError, parse_cron, window_open, zone
from apps.rollouts.models import Deployment
from apps.rollouts.services import RolloutError, maintenance_window_create

from .conftest import explicit_cohort, make_devices, running_rollout, tick, wave


def _open(schedule, at, minutes=60, tz="UTC"):
    return window_open(parse_cron(schedule), duration_min=minutes, tz=zone(tz), at=at)


@pytest.mark.parametrize(
    ("schedule", "at", "expected"),
    [
        ("0 2 * * *", datetime(2026, 1, 5, 2, 0, tzinfo=UTC), True),
        ("0 2 * * *", datetime(2026, 1, 5, 2, 59, tzinfo=UTC), True),
        ("0 2 * * *", datetime(2026, 1, 5, 3, 0, tzinfo=UTC), False),
        ("0 2 * * *", datetime(2026, 1, 5, 1, 59, tzinfo=UTC), False),
        ("*/15 * * * *", datetime(2026, 1, 5, 7, 31, tzinfo=UTC), True),
        ("0 22 * * 1-5", datetime(2026, 1, 5, 22, 30, tzinfo=UTC), True),  # Monday
        ("0 22 * * 1-5", datetime(2026, 1, 4, 22, 30, tzinfo=UTC), False),  # Sunday
        ("0 22 * * 0,6", datetime(2026, 1, 4, 22, 30, tzinfo=UTC), True),
        ("0 22 * * 7", datetime(2026, 1, 4, 22, 30, tzinfo=UTC), True),  # 7 is Sunday too
        # Day of month and day of week both restricted: either matches (classic cron).
        ("0 3 1 * 3", datetime(2026, 1, 7, 3, 10, tzinfo=UTC), True),  # a Wednesday, not the 1st
        ("0 3 1 * 3", datetime(2026, 1, 1, 3, 10, tzinfo=UTC), True),  # the 1st, a Thursday
        ("0 3 1 * 3", datetime(2026, 1, 8, 3, 10, tzinfo=UTC), False),
        ("0 0 * 6-8 *", datetime(2026, 7, 1, 0, 5, tzinfo=UTC), True),
        ("0 0 * 6-8 *", datetime(2026, 9, 1, 0, 5, tzinfo=UTC), False),
        # A window that starts late in the evening runs past midnight.
        ("30 23 * * *", datetime(2026, 1, 6, 0, 15, tzinfo=UTC), True),
    ],
)
def test_it_matches_cron_windows(schedule, at, expected):
    assert _open(schedule, at) is expected


def test_it_uses_the_window_time_zone_across_daylight_saving():
    # 02:00 in Berlin is 01:00 UTC in winter and 00:00 UTC in summer.
    assert _open("0 2 * * *", datetime(2026, 1, 5, 1, 30, tzinfo=UTC), tz="Europe/Berlin")
    assert not _open("0 2 * * *", datetime(2026, 1, 5, 0, 30, tzinfo=UTC), tz="Europe/Berlin")
    assert _open("0 2 * * *", datetime(2026, 7, 5, 0, 30, tzinfo=UTC), tz="Europe/Berlin")
    assert not _open("0 2 * * *", datetime(2026, 7, 5, 1, 30, tzinfo=UTC), tz="Europe/Berlin")


@pytest.mark.parametrize("text", ["* * * *", "60 * * * *", "* 24 * * *", "5-1 * * * *", "*/0 * * * *", "a * * * *",
                                  "* * 0 * *", "* * * 13 *", "* * * * 8"])
def test_it_refuses_malformed_schedules(text):
    with pytest.raises(CronError):
        parse_cron(text)


def test_it_refuses_an_unknown_time_zone_when_creating_a_window(operator_user):
    cohort = explicit_cohort(make_devices(1))
    with pytest.raises(RolloutError) as exc:
        maintenance_window_create(cohort=cohort, schedule="0 2 * * *", duration_min=60, actor=operator_user,
                                  timezone_name="Mars/Olympus")
    assert exc.value.field == "schedule"


def test_it_releases_devices_only_inside_the_cohort_window(operator_user, new_os):
    cohort = explicit_cohort(make_devices(3))
    maintenance_window_create(cohort=cohort, schedule="0 2 * * *", duration_min=120, actor=operator_user,
                              timezone_name="Europe/Berlin")
    rollout = running_rollout(operator_user, [new_os], [wave(cohort)])
    noon = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
    tick(rollout, now=noon)
    released = Deployment.objects.filter(rollout=rollout, released_at__isnull=False)
    assert Deployment.objects.filter(rollout=rollout).count() == 3 and released.count() == 0
    tick(rollout, now=noon + timedelta(hours=12, minutes=30))  # 01:30 Berlin: still closed
    assert released.count() == 0
    tick(rollout, now=noon + timedelta(hours=13, minutes=30))  # 02:30 Berlin: open
    assert released.count() == 3
