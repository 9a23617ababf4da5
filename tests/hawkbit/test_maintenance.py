"""Maintenance windows: Quartz cron schedules with a duration and a UTC offset."""

from datetime import UTC, datetime

import pytest

from apps.hawkbit import maintenance


@pytest.mark.parametrize(
    ("now", "expected"),
    [
        (datetime(2026, 3, 4, 1, 0, tzinfo=UTC), True),  # 02:00 at +01:00: the window opens
        (datetime(2026, 3, 4, 1, 59, tzinfo=UTC), True),  # 02:59 local: still inside the hour
        (datetime(2026, 3, 4, 2, 1, tzinfo=UTC), False),  # 03:01 local: closed
        (datetime(2026, 3, 4, 0, 59, tzinfo=UTC), False),  # 01:59 local: not yet
    ],
)
def test_it_opens_the_window_at_the_scheduled_local_time_for_its_duration(now, expected):
    assert maintenance.window_open("0 0 2 ? * *", "01:00:00", "+01:00", now) is expected


def test_it_understands_weekdays_lists_and_steps():
    monday = datetime(2026, 3, 2, 22, 30, tzinfo=UTC)  # a Monday
    assert maintenance.window_open("0 30 22 ? * MON-FRI", "00:10:00", "+00:00", monday)
    assert not maintenance.window_open("0 30 22 ? * SAT,SUN", "00:10:00", "+00:00", monday)
    assert maintenance.window_open("0 0/15 * ? * *", "00:01:00", "+00:00", monday)


@pytest.mark.parametrize(("schedule", "duration", "offset"),
                         [("every day", "01:00:00", "+00:00"), ("0 0 25 ? * *", "01:00:00", "+00:00"),
                          ("0 0 2 ? * *", "1h", "+00:00"), ("0 0 2 ? * *", "01:00:00", "CET")])
def test_it_rejects_schedules_it_cannot_read(schedule, duration, offset):
    with pytest.raises(maintenance.ScheduleError):
        maintenance.validate(schedule, duration, offset)
