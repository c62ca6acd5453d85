"""When the next snapshot can exist, from SNAPSHOT_SCHEDULE (NCRONTAB), so answers can be cached until then.

NCRONTAB as the Functions host reads it: six fields `second minute hour day month day-of-week`, UTC, each
`*`, `n`, `a-b`, `*/s`, `a-b/s`, `a/s` or a comma list of those; month and day names (JAN, MON) allowed.
Where day and day-of-week are both restricted this matches either (cron's rule), which can only make the
answer earlier than the host's: a cache lifetime computed from it is never too long.
"""

from __future__ import annotations

import functools
from datetime import UTC, date, datetime, timedelta

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
_DAYS = ("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT")
# Per field: lowest, highest, names (a name's value is its index + the offset), offset.
_FIELDS = (
    (0, 59, (), 0),
    (0, 59, (), 0),
    (0, 23, (), 0),
    (1, 31, (), 0),
    (1, 12, _MONTHS, 1),
    (0, 7, _DAYS, 0),
)
_HORIZON_DAYS = 5 * 366  # "0 0 0 29 2 *" fires once in four years; anything rarer counts as never


class Schedule:
    def __init__(self, expression: str) -> None:
        fields = expression.split()
        if len(fields) != 6:
            raise ValueError("expected six fields")
        sets = [_parse_field(text, *spec) for text, spec in zip(fields, _FIELDS, strict=True)]
        self.seconds, self.minutes, self.hours, self.days, self.months, dow = sets
        self.weekdays = {d % 7 for d in dow}  # 0 and 7 are both Sunday
        self._any_day = fields[3] == "*"
        self._any_weekday = fields[5] == "*"

    def _day_matches(self, day: date) -> bool:
        if day.month not in self.months:
            return False
        in_month = day.day in self.days
        in_week = (day.isoweekday() % 7) in self.weekdays
        if self._any_day or self._any_weekday:
            return in_month and in_week
        return in_month or in_week

    def next_after(self, moment: datetime) -> datetime | None:
        """The first occurrence at or after `moment` (UTC, whole seconds), None if none within years."""
        moment = moment.astimezone(UTC)
        if moment.microsecond:
            moment = moment.replace(microsecond=0) + timedelta(seconds=1)
        day = moment.date()
        for offset in range(_HORIZON_DAYS):
            current = day + timedelta(days=offset)
            if not self._day_matches(current):
                continue
            floor = moment.time() if offset == 0 else None
            for hour in sorted(self.hours):
                for minute in sorted(self.minutes):
                    for second in sorted(self.seconds):
                        candidate = datetime(
                            current.year, current.month, current.day, hour, minute, second, tzinfo=UTC
                        )
                        if floor is None or candidate >= moment:
                            return candidate
        return None


def _parse_field(text: str, low: int, high: int, names: tuple[str, ...], offset: int) -> set[int]:
    values: set[int] = set()
    for part in text.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if step < 1:
            raise ValueError(f"bad step in {part!r}")
        if span == "*":
            start, end = low, high
        elif "-" in span:
            first, _, last = span.partition("-")
            start, end = _value(first, names, offset), _value(last, names, offset)
        else:
            start = _value(span, names, offset)
            end = high if step_text else start
        if not low <= start <= end <= high:
            raise ValueError(f"{part!r} is out of range {low}-{high}")
        values.update(range(start, end + 1, step))
    return values


def _value(text: str, names: tuple[str, ...], offset: int) -> int:
    upper = text.upper()
    if upper in names:
        return names.index(upper) + offset
    if not text.isdigit():
        raise ValueError(f"{text!r} is not a number")
    return int(text)


@functools.lru_cache(maxsize=8)
def parse(expression: str) -> Schedule | None:
    """The schedule, or None when it cannot be read (callers then fall back to their cap)."""
    try:
        return Schedule(expression)
    except ValueError:
        return None


def seconds_until_next_snapshot(
    expression: str, latest_generated_at: datetime | None, now: datetime, run_deadline_seconds: float
) -> float | None:
    """Seconds until a snapshot newer than `latest_generated_at` can be published: 0 while a scheduled run
    that could still publish one may be running, None when the schedule is unreadable.

    A run started at occurrence t publishes between t and t + run deadline, and only if t is later than the
    latest snapshot (publishing never goes back in time). Manual runs are not scheduled: callers cap this.
    """
    schedule = parse(expression)
    if schedule is None:
        return None
    earliest = now - timedelta(seconds=run_deadline_seconds)
    if latest_generated_at is not None:
        earliest = max(earliest, latest_generated_at + timedelta(seconds=1))
    occurrence = schedule.next_after(earliest)
    if occurrence is None:
        return float(_HORIZON_DAYS * 86400)
    return max(0.0, (occurrence - now).total_seconds())
