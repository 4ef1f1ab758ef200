"""When a PipelineJob's ticks fall: cron expressions, ``@hourly``..``@yearly`` and ``@every <duration>``,
in an IANA time zone. Pure: every function takes the times it reasons about.

Cron arithmetic (day-of-month/day-of-week rules, month ends, DST gaps and repeats) is cronsim's, run in the
job's time zone: a daily 02:30 tick in Europe/Berlin runs at 03:00 on the day the clocks skip 02:30 and
once on the day 02:30 happens twice, as cron does. ``@every`` ticks fall on whole multiples of the duration
since the Unix epoch, so they never depend on when the operator started or the job was last edited
(``@every 10m`` ticks at :00, :10, ...). Every result is an aware datetime in UTC, to the second.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from cronsim import CronSim, CronSimError

MIN_EVERY = timedelta(seconds=10)
"""The shortest ``@every``: a batch of runs every few seconds is a mistake, not a schedule."""
MAX_COUNTED = 1000
"""Missed ticks are counted up to this many; beyond it the count says "more than"."""

ALIASES = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1, "m": 60, "h": 3600}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class ScheduleError(ValueError):
    """An expression or zone that cannot be scheduled; ``field`` names the spec field at fault."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


def parse_duration(text: str) -> timedelta:
    """A Go duration (``90s``, ``1h30m``, ``1.5h``): what ``@every`` takes in Argo and robfig/cron."""
    text = text.strip()
    pos, seconds = 0, 0.0
    for match in _DURATION.finditer(text):
        if match.start() != pos:
            break
        seconds += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(f"{text!r} is not a duration such as 90s, 10m or 1h30m")
    return timedelta(seconds=seconds)


def zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(
            "spec.timeZone", f"{name!r} is not an IANA time zone (e.g. Europe/Berlin)"
        ) from None


@dataclass(frozen=True)
class Schedule:
    """A parsed schedule. Build it with :meth:`parse`."""

    expression: str
    zone: ZoneInfo
    cron: str | None = None
    every: timedelta | None = field(default=None)

    @classmethod
    def parse(cls, expression: str, time_zone: str = "UTC") -> Schedule:
        tz = zone(time_zone)
        text = " ".join(expression.split())
        if text.startswith("@every"):
            try:
                every = parse_duration(text.removeprefix("@every"))
            except ValueError as err:
                raise ScheduleError("spec.schedule", f"@every: {err}") from None
            if every < MIN_EVERY:
                raise ScheduleError("spec.schedule", f"@every must be at least {MIN_EVERY.seconds}s")
            return cls(expression, tz, every=every)
        cron = ALIASES.get(text.lower(), text)
        if cron.startswith("@"):
            raise ScheduleError(
                "spec.schedule", f"unknown {cron.split()[0]!r}; use @hourly..@yearly or @every <duration>"
            )
        if len(cron.split()) != 5:
            raise ScheduleError("spec.schedule", f"{expression!r} is not a 5-field cron expression")
        try:
            CronSim(cron, datetime(2000, 1, 1, tzinfo=tz))
        except (CronSimError, ValueError) as err:
            raise ScheduleError("spec.schedule", f"{expression!r}: {err}") from None
        return cls(expression, tz, cron=cron)

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after ``moment``."""
        if self.every is not None:
            step = self.every.total_seconds()
            count = int((moment - _EPOCH).total_seconds() // step) + 1
            return _second(_EPOCH + timedelta(seconds=count * step))
        assert self.cron is not None
        return _second(next(CronSim(self.cron, moment.astimezone(self.zone).replace(microsecond=0))))

    def latest_until(self, moment: datetime) -> datetime | None:
        """The last tick at or before ``moment`` (``None`` if a cron expression has none in the past)."""
        if self.every is not None:
            step = self.every.total_seconds()
            count = int((moment - _EPOCH).total_seconds() // step)
            return _second(_EPOCH + timedelta(seconds=count * step))
        assert self.cron is not None
        start = moment.astimezone(self.zone).replace(microsecond=0) + timedelta(seconds=1)
        try:
            return _second(next(CronSim(self.cron, start, reverse=True)))
        except StopIteration:
            return None

    def count_between(self, after: datetime, until: datetime, limit: int = MAX_COUNTED) -> int:
        """How many ticks fall in (``after``, ``until``], counting up to ``limit``."""
        if until <= after:
            return 0
        if self.every is not None:
            step = self.every.total_seconds()
            since = (after - _EPOCH).total_seconds() // step
            return min(limit, int((until - _EPOCH).total_seconds() // step - since))
        assert self.cron is not None
        count = 0
        for tick in CronSim(self.cron, after.astimezone(self.zone).replace(microsecond=0)):
            if tick > until or count >= limit:
                break
            count += 1
        return count


def _second(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(microsecond=0)


@dataclass(frozen=True)
class Due:
    """What the clock says at one moment: the tick to run now (if any), the ticks missed, the next tick."""

    tick: datetime | None
    """The tick to run now: the latest one since ``since``, if it is still within the starting deadline."""
    missed: int
    """Ticks since ``since`` that will never run (up to ``MAX_COUNTED``)."""
    first_missed: datetime | None
    last_missed: datetime | None
    next: datetime


def due(schedule: Schedule, since: datetime, now: datetime, deadline_seconds: int | None) -> Due:
    """The ticks in (``since``, ``now``]: only the latest may run, and only within ``deadline_seconds`` of
    it (no deadline: however late). Every older one is missed; so is the latest when it is too late."""
    nxt = schedule.next_after(now)
    latest = schedule.latest_until(now)
    if latest is None or latest <= since:
        return Due(None, 0, None, None, nxt)
    count = schedule.count_between(since, now)
    late = deadline_seconds is not None and (now - latest).total_seconds() > deadline_seconds
    if late:
        return Due(None, count, schedule.next_after(since), latest, nxt)
    if count <= 1:
        return Due(latest, 0, None, None, nxt)
    previous = schedule.latest_until(latest - timedelta(seconds=1))
    return Due(latest, count - 1, schedule.next_after(since), previous, nxt)
