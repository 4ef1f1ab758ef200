"""The schedule maths of PipelineJobs: cron in a time zone (DST, month ends), aliases, ``@every``, missed
ticks and the starting deadline. Table-driven; every time is written in UTC unless it says otherwise."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from orchest_operator.jobs.schedule import Schedule, ScheduleError, due, parse_duration


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def local(text: str, zone: str, fold: int = 0) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=ZoneInfo(zone), fold=fold).astimezone(UTC)


def ticks(schedule: Schedule, start: datetime, n: int) -> list[datetime]:
    out = []
    for _ in range(n):
        start = schedule.next_after(start)
        out.append(start)
    return out


@pytest.mark.parametrize(
    ("expression", "zone", "start", "expected"),
    [
        ("@hourly", "UTC", utc("2026-01-01 10:20"), [utc("2026-01-01 11:00"), utc("2026-01-01 12:00")]),
        ("@daily", "UTC", utc("2026-01-01 10:20"), [utc("2026-01-02 00:00"), utc("2026-01-03 00:00")]),
        ("@weekly", "UTC", utc("2026-01-01 00:00"), [utc("2026-01-04 00:00"), utc("2026-01-11 00:00")]),
        ("@monthly", "UTC", utc("2026-01-15 00:00"), [utc("2026-02-01 00:00"), utc("2026-03-01 00:00")]),
        ("@yearly", "UTC", utc("2026-06-01 00:00"), [utc("2027-01-01 00:00"), utc("2028-01-01 00:00")]),
        ("@annually", "UTC", utc("2026-06-01 00:00"), [utc("2027-01-01 00:00"), utc("2028-01-01 00:00")]),
        # a tick exactly at the start is not "after" it
        ("0 3 * * *", "UTC", utc("2026-01-01 03:00"), [utc("2026-01-02 03:00"), utc("2026-01-03 03:00")]),
        # day 31 only exists in some months; L is the last day of every month
        ("0 0 31 * *", "UTC", utc("2026-01-31 12:00"), [utc("2026-03-31 00:00"), utc("2026-05-31 00:00")]),
        ("0 0 L * *", "UTC", utc("2026-01-31 12:00"), [utc("2026-02-28 00:00"), utc("2026-03-31 00:00")]),
        ("0 0 29 2 *", "UTC", utc("2026-01-01 00:00"), [utc("2028-02-29 00:00"), utc("2032-02-29 00:00")]),
        # the zone's wall clock: 09:00 in New York is 14:00 UTC in winter, 13:00 in summer
        (
            "0 9 * * *",
            "America/New_York",
            utc("2026-03-07 15:00"),
            [utc("2026-03-08 13:00"), utc("2026-03-09 13:00")],
        ),
        # spring forward in Berlin: 02:30 does not exist on 2026-03-29, the tick runs at 03:00 CEST
        (
            "30 2 * * *",
            "Europe/Berlin",
            local("2026-03-28 12:00", "Europe/Berlin"),
            [local("2026-03-29 03:00", "Europe/Berlin"), local("2026-03-30 02:30", "Europe/Berlin")],
        ),
        # fall back in Berlin: 02:30 happens twice on 2026-10-25, the daily tick runs once
        (
            "30 2 * * *",
            "Europe/Berlin",
            local("2026-10-24 12:00", "Europe/Berlin"),
            [local("2026-10-25 02:30", "Europe/Berlin"), local("2026-10-26 02:30", "Europe/Berlin")],
        ),
        # but an hourly schedule ticks in both of that night's 02:00 hours (real hours go by)
        (
            "0 * * * *",
            "Europe/Berlin",
            local("2026-10-25 01:30", "Europe/Berlin"),
            [
                local("2026-10-25 02:00", "Europe/Berlin"),
                local("2026-10-25 02:00", "Europe/Berlin", fold=1),
                local("2026-10-25 03:00", "Europe/Berlin"),
            ],
        ),
        # @every falls on multiples of the duration since the epoch, whatever the zone
        (
            "@every 10m",
            "Asia/Tokyo",
            utc("2026-01-01 10:21:05"),
            [utc("2026-01-01 10:30"), utc("2026-01-01 10:40")],
        ),
        ("@every 90s", "UTC", utc("2026-01-01 00:00"), [utc("2026-01-01 00:01:30"), utc("2026-01-01 00:03")]),
        ("@every 1h30m", "UTC", utc("2026-01-01 00:00"), [utc("2026-01-01 01:30"), utc("2026-01-01 03:00")]),
    ],
)
def test_next_ticks(expression: str, zone: str, start: datetime, expected: list[datetime]) -> None:
    assert ticks(Schedule.parse(expression, zone), start, len(expected)) == expected


def test_results_are_utc_to_the_second() -> None:
    tick = Schedule.parse("*/5 * * * *", "Europe/Berlin").next_after(utc("2026-01-01 10:01:02.5"))
    assert tick == utc("2026-01-01 10:05") and tick.tzinfo is UTC and tick.microsecond == 0


@pytest.mark.parametrize(
    ("expression", "zone", "moment", "expected"),
    [
        ("0 3 * * *", "UTC", utc("2026-01-02 03:00"), utc("2026-01-02 03:00")),
        ("0 3 * * *", "UTC", utc("2026-01-02 02:59:59"), utc("2026-01-01 03:00")),
        ("@every 10s", "UTC", utc("2026-01-01 00:00:19"), utc("2026-01-01 00:00:10")),
        (
            "30 2 * * *",
            "Europe/Berlin",
            local("2026-03-29 12:00", "Europe/Berlin"),
            local("2026-03-29 03:00", "Europe/Berlin"),
        ),
    ],
)
def test_latest_tick_until(expression: str, zone: str, moment: datetime, expected: datetime) -> None:
    assert Schedule.parse(expression, zone).latest_until(moment) == expected


@pytest.mark.parametrize(
    ("expression", "zone", "field", "fragment"),
    [
        ("61 * * * *", "UTC", "spec.schedule", "Bad minute"),
        ("* * * *", "UTC", "spec.schedule", "5-field"),
        ("* * * * * *", "UTC", "spec.schedule", "5-field"),
        ("0 0 30 2 *", "UTC", "spec.schedule", "day-of-month"),
        ("@fortnightly", "UTC", "spec.schedule", "unknown '@fortnightly'"),
        ("@every 5s", "UTC", "spec.schedule", "at least 10s"),
        ("@every 1d", "UTC", "spec.schedule", "not a duration"),
        ("@every", "UTC", "spec.schedule", "not a duration"),
        ("@daily", "Mars/Olympus", "spec.timeZone", "not an IANA time zone"),
        ("@daily", "../etc/passwd", "spec.timeZone", "not an IANA time zone"),
    ],
)
def test_bad_schedules_name_their_field(expression: str, zone: str, field: str, fragment: str) -> None:
    with pytest.raises(ScheduleError) as caught:
        Schedule.parse(expression, zone)
    assert caught.value.field == field
    assert fragment in str(caught.value)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("10s", 10), ("1h30m", 5400), ("1.5h", 5400), ("500ms", 0.5), ("2m3s", 123)],
)
def test_go_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


HOURLY = Schedule.parse("@hourly")


@pytest.mark.parametrize(
    ("since", "now", "deadline", "tick", "missed"),
    [
        # nothing due yet
        (utc("2026-01-01 10:00"), utc("2026-01-01 10:59"), None, None, 0),
        # the tick is due (at it, or a little late)
        (utc("2026-01-01 10:00"), utc("2026-01-01 11:00"), None, utc("2026-01-01 11:00"), 0),
        (utc("2026-01-01 10:00"), utc("2026-01-01 11:00:30"), 60, utc("2026-01-01 11:00"), 0),
        # the operator was down for three ticks: only the latest runs, two are missed
        (utc("2026-01-01 10:00"), utc("2026-01-01 13:00:30"), 60, utc("2026-01-01 13:00"), 2),
        # ... and without a deadline the latest still runs, however late
        (utc("2026-01-01 10:00"), utc("2026-01-01 13:50"), None, utc("2026-01-01 13:00"), 2),
        # past the deadline the latest is missed too
        (utc("2026-01-01 10:00"), utc("2026-01-01 13:02"), 60, None, 3),
        # a deadline of 0 runs a tick only when seen at its very second
        (utc("2026-01-01 10:00"), utc("2026-01-01 11:00:01"), 0, None, 1),
    ],
)
def test_due(
    since: datetime, now: datetime, deadline: int | None, tick: datetime | None, missed: int
) -> None:
    result = due(HOURLY, since, now, deadline)
    assert (result.tick, result.missed) == (tick, missed)
    assert result.next == HOURLY.next_after(now)


def test_missed_ticks_name_the_first_and_the_last() -> None:
    result = due(HOURLY, utc("2026-01-01 10:00"), utc("2026-01-01 13:10"), 60)
    assert (result.first_missed, result.last_missed) == (utc("2026-01-01 11:00"), utc("2026-01-01 13:00"))
    result = due(HOURLY, utc("2026-01-01 10:00"), utc("2026-01-01 13:00:30"), 60)
    assert (result.first_missed, result.last_missed) == (utc("2026-01-01 11:00"), utc("2026-01-01 12:00"))


def test_missed_ticks_are_counted_up_to_a_limit() -> None:
    every = Schedule.parse("@every 10s")
    result = due(every, utc("2026-01-01 00:00"), utc("2026-02-01 00:00"), 60)
    assert result.tick == utc("2026-02-01 00:00") and result.missed == 999
    cron = Schedule.parse("* * * * *")
    assert cron.count_between(utc("2026-01-01 00:00"), utc("2026-02-01 00:00")) == 1000
