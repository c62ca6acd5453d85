"""SNAPSHOT_SCHEDULE arithmetic: when the next snapshot can exist, so answers are cached until then."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from shared.api.schedule import Schedule, parse, seconds_until_next_snapshot

NOW = datetime(2025, 3, 10, 12, 0, tzinfo=UTC)  # a Monday
TODAY_2AM = datetime(2025, 3, 10, 2, 0, tzinfo=UTC)
SATURDAY = datetime(2025, 3, 8, 10, 0, tzinfo=UTC)
DAILY = "0 0 2 * * *"


@pytest.mark.parametrize(
    ("schedule", "latest", "now", "deadline", "expected"),
    [
        # Published today at 02:00: nothing new before tomorrow 02:00.
        (DAILY, TODAY_2AM, NOW, 1500, 14 * 3600),
        # Yesterday's is the latest and today's 02:00 run may still be running (deadline 25 min): now.
        (DAILY, TODAY_2AM - timedelta(days=1), datetime(2025, 3, 10, 2, 10, tzinfo=UTC), 1500, 0),
        # ...and once its deadline has passed, it failed: the next chance is tomorrow.
        (DAILY, TODAY_2AM - timedelta(days=1), datetime(2025, 3, 10, 2, 30, tzinfo=UTC), 1500, 23.5 * 3600),
        ("0 30 9 * * MON-FRI", SATURDAY, SATURDAY, 60, (47 * 60 + 30) * 60),
        ("*/15 * * * * *", None, NOW, 0, 0),
        ("0 */5 * * * *", NOW, NOW + timedelta(seconds=1), 0, 299),
        # Once in four years is still within the horizon; never is the horizon itself.
        ("0 0 0 29 2 *", None, NOW, 0, (datetime(2028, 2, 29, tzinfo=UTC) - NOW).total_seconds()),
        ("0 0 0 31 2 *", None, NOW, 0, 5 * 366 * 86400),
    ],
    ids=[
        "published-today-wait-for-tomorrow",
        "todays-run-may-still-publish",
        "todays-run-past-its-deadline",
        "weekdays-from-saturday",
        "every-15-seconds-is-now",
        "the-latest-second-counts",
        "leap-day-within-the-horizon",
        "never-is-the-horizon",
    ],
)
def test_seconds_until_the_next_snapshot(schedule, latest, now, deadline, expected):
    assert seconds_until_next_snapshot(schedule, latest, now, deadline) == expected


@pytest.mark.parametrize(
    "unreadable",
    ["", "0 0 2 * *", "0 0 25 * * *", "0 0 2 * * FUNDAY", "a b c d e f", "0 */0 * * * *", "0 5-1 * * * *"],
    ids=["empty", "five-fields", "hour-25", "unknown-day-name", "letters", "step-zero", "range-backwards"],
)
def test_an_unreadable_schedule_gives_no_answer(unreadable):
    assert parse(unreadable) is None
    assert seconds_until_next_snapshot(unreadable, None, NOW, 0) is None


@pytest.mark.parametrize(
    ("expression", "moment", "expected"),
    [
        (DAILY, NOW, datetime(2025, 3, 11, 2, 0, tzinfo=UTC)),
        (DAILY, TODAY_2AM, TODAY_2AM),
        (DAILY, TODAY_2AM + timedelta(microseconds=1), datetime(2025, 3, 11, 2, 0, tzinfo=UTC)),
        ("0 0 9 * * SUN", NOW, datetime(2025, 3, 16, 9, 0, tzinfo=UTC)),
        ("0 0 9 * * 7", NOW, datetime(2025, 3, 16, 9, 0, tzinfo=UTC)),
        ("0 0 0 1 JAN-MAR/2 *", NOW, datetime(2026, 1, 1, tzinfo=UTC)),
        # Day and weekday both restricted: either matches (cron's rule).
        ("0 0 0 20 * MON", NOW, datetime(2025, 3, 17, tzinfo=UTC)),
        ("10/20 0 0 * * *", NOW, datetime(2025, 3, 11, 0, 0, 10, tzinfo=UTC)),
        ("0 0 3,1 * * *", NOW, datetime(2025, 3, 11, 1, 0, tzinfo=UTC)),
    ],
    ids=[
        "daily-later-today-is-tomorrow",
        "at-the-occurrence-itself",
        "a-microsecond-late-is-the-next",
        "sunday-by-name",
        "seven-is-sunday-too",
        "named-months-with-a-step",
        "day-or-weekday",
        "start-with-step",
        "list-in-any-order",
    ],
)
def test_next_occurrence(expression, moment, expected):
    assert Schedule(expression).next_after(moment) == expected
