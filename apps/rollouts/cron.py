"""A tiny cron matcher for maintenance windows: "MIN HOUR DOM MON DOW" with * , - / (no names).

Day-of-month and day-of-week follow classic (Vixie) cron: when both are restricted, a day
matches if either does. Day-of-week 0 and 7 are both Sunday. Times are wall-clock times in
the window's time zone (zoneinfo), so a window at "0 2 * * *" in Europe/Berlin opens at 02:00
local time in winter and in summer.
"""

from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

FIELDS = (("minute", 0, 59), ("hour", 0, 23), ("day of month", 1, 31), ("month", 1, 12), ("day of week", 0, 7))


class CronError(ValueError):
    """A schedule or time zone that cannot be used; the message names the field."""


@dataclass(frozen=True)
class CronSchedule:
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int]
    months: frozenset[int]
    weekdays: frozenset[int]  # 0 = Sunday
    days_restricted: bool
    weekdays_restricted: bool

    def matches(self, local: datetime) -> bool:
        if local.minute not in self.minutes or local.hour not in self.hours or local.month not in self.months:
            return False
        day_ok = local.day in self.days
        weekday_ok = (local.isoweekday() % 7) in self.weekdays
        if self.days_restricted and self.weekdays_restricted:
            return day_ok or weekday_ok
        return day_ok and weekday_ok


def _parse_field(text: str, name: str, low: int, high: int) -> frozenset[int]:
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            if not step_text.isdigit() or int(step_text) < 1:
                raise CronError(f"{name}: step must be a positive number, not {step_text!r}")
            step = int(step_text)
        if part == "*":
            start, end = low, high
        elif "-" in part:
            start_text, end_text = part.split("-", 1)
            if not (start_text.isdigit() and end_text.isdigit()):
                raise CronError(f"{name}: {part!r} is not a range like 1-5")
            start, end = int(start_text), int(end_text)
        elif part.isdigit():
            start = int(part)
            end = high if step > 1 else start
        else:
            raise CronError(f"{name}: {part!r} is not a number, range or *")
        if not (low <= start <= high and low <= end <= high) or start > end:
            raise CronError(f"{name}: {part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return frozenset(values)


def parse_cron(text: str) -> CronSchedule:
    parts = text.split()
    if len(parts) != 5:
        raise CronError("a schedule has five fields: MIN HOUR DOM MON DOW (e.g. '0 2 * * 1-5')")
    parsed = [_parse_field(part, name, low, high) for part, (name, low, high) in zip(parts, FIELDS, strict=True)]
    weekdays = frozenset(day % 7 for day in parsed[4])
    return CronSchedule(
        minutes=parsed[0],
        hours=parsed[1],
        days=parsed[2],
        months=parsed[3],
        weekdays=weekdays,
        days_restricted=parts[2] != "*",
        weekdays_restricted=parts[4] != "*",
    )


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise CronError(f"unknown time zone {name!r}") from exc


def window_open(schedule: CronSchedule, *, duration_min: int, tz: ZoneInfo, at: datetime) -> bool:
    """True when a window that starts at a schedule match and lasts `duration_min` covers `at`.

    Walks back minute by minute in UTC (converting each to local time), so DST gaps and
    repeated hours are handled by zoneinfo, not by us. At most one week of minutes.
    """
    minute = at.replace(second=0, microsecond=0)
    for back in range(duration_min):
        if schedule.matches((minute - timedelta(minutes=back)).astimezone(tz)):
            return True
    return False
