"""hawkBit maintenance windows: a Quartz cron schedule, a duration and a UTC offset.

hawkBit sends `maintenanceWindow: available|unavailable` and holds the install
(`update: skip`) outside the window. Only the fields hawkBit users write in practice are
understood: seconds, minutes, hours, day of month, month, day of week (and an optional
year) with `*`, `?`, numbers, lists, ranges and `/` steps.
"""

import re
from datetime import datetime, timedelta, timezone

DAY_NAMES = {name: index for index, name in enumerate(["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"], start=1)}
MONTH_NAMES = {
    name: index
    for index, name in enumerate(
        ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"], start=1
    )
}
DURATION_RE = re.compile(r"^(\d{1,2}):([0-5]\d):([0-5]\d)$")
OFFSET_RE = re.compile(r"^([+-])(\d{2}):(\d{2})$")
# Field ranges: seconds, minutes, hours, day of month, month, day of week (Quartz: 1 = Sunday).
RANGES = [(0, 59), (0, 59), (0, 23), (1, 31), (1, 12), (1, 7)]


class ScheduleError(ValueError):
    pass


def _value(text: str, names: dict[str, int] | None) -> int:
    if names and text.upper() in names:
        return names[text.upper()]
    if not text.isdigit():
        raise ScheduleError(f"not a number: {text!r}")
    return int(text)


def _field(text: str, low: int, high: int, names: dict[str, int] | None = None) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        step = 1
        if "/" in part:
            part, step_text = part.split("/", 1)
            step = _value(step_text, None)
            if step < 1:
                raise ScheduleError("a step must be at least 1")
        if part in ("*", "?"):
            start, end = low, high
        elif "-" in part:
            first, last = part.split("-", 1)
            start, end = _value(first, names), _value(last, names)
        else:
            start = _value(part, names)
            end = high if step > 1 else start
        if not (low <= start <= high and low <= end <= high and start <= end):
            raise ScheduleError(f"{part!r} is outside {low}-{high}")
        values.update(range(start, end + 1, step))
    return values


def parse_schedule(schedule: str) -> list[set[int]]:
    parts = schedule.split()
    if len(parts) not in (6, 7):
        raise ScheduleError("a schedule has 6 or 7 fields: seconds minutes hours day-of-month month day-of-week [year]")
    names = [None, None, None, None, MONTH_NAMES, DAY_NAMES]
    return [_field(text, low, high, names[i]) for i, (text, (low, high)) in enumerate(zip(parts[:6], RANGES))]


def parse_duration(duration: str) -> timedelta:
    match = DURATION_RE.match(duration or "")
    if not match:
        raise ScheduleError("duration must be HH:MM:SS")
    hours, minutes, seconds = (int(g) for g in match.groups())
    return timedelta(hours=hours, minutes=minutes, seconds=seconds)


def parse_offset(offset: str) -> timezone:
    match = OFFSET_RE.match(offset or "+00:00")
    if not match:
        raise ScheduleError("timezone must be a UTC offset like +01:00")
    sign, hours, minutes = match.groups()
    delta = timedelta(hours=int(hours), minutes=int(minutes))
    return timezone(-delta if sign == "-" else delta)


def validate(schedule: str, duration: str, offset: str) -> None:
    parse_schedule(schedule)
    if parse_duration(duration) <= timedelta(0):
        raise ScheduleError("duration must be longer than 0")
    parse_offset(offset)


def _matches(fields: list[set[int]], moment: datetime) -> bool:
    seconds, minutes, hours, days, months, weekdays = fields
    quartz_weekday = moment.isoweekday() % 7 + 1  # Monday=2 … Sunday=1
    return (
        moment.minute in minutes and moment.hour in hours and moment.day in days
        and moment.month in months and quartz_weekday in weekdays and bool(seconds)
    )


def window_open(schedule: str, duration: str, offset: str, now: datetime) -> bool:
    """True when a window that started at a scheduled minute within the last `duration` is still open.

    Walks back minute by minute (a window is at most a day or so long, so this is cheap)
    and ignores the seconds field beyond requiring it to be valid.
    """
    fields = parse_schedule(schedule)
    length = parse_duration(duration)
    local = now.astimezone(parse_offset(offset)).replace(second=0, microsecond=0)
    steps = int(min(length, timedelta(days=2)).total_seconds() // 60)
    return any(_matches(fields, local - timedelta(minutes=back)) for back in range(steps + 1))
