"""Freeze windows: times when no deployment may start without an explicit override.

The file that ``CONVEYOR_FREEZE_FILE`` names (YAML or JSON) lists windows, each in its own time
zone::

    windows:
      - name: weekend
        timezone: Europe/Berlin
        rrule: "FREQ=WEEKLY;BYDAY=FR;BYHOUR=18;BYMINUTE=0"   # when each one starts
        duration_minutes: 3720                              # until Monday 06:00
      - name: year-end
        timezone: America/New_York
        start: "2026-12-24T00:00"
        end: "2027-01-02T00:00"

A recurring window is an iCalendar recurrence rule (RFC 5545, read by ``dateutil.rrule``) for
its starts, in local time of its zone (so 18:00 stays 18:00 across daylight saving changes),
and a duration. A one-off window has a start and an end. Producers refuse an update, restart,
release or Fargate apply enqueued inside a window (exit 2, naming it) unless it overrides the
freeze with a reason, which is recorded; a release's next wave waits for a window to end.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dateutil.rrule import rrulestr  # type: ignore[import-untyped]  # no stubs in the lock
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# How far back a recurring window's rule is read for a start whose window still covers now.
_LONGEST_MINUTES = 31 * 1440


class FreezeWindow(BaseModel):
    """One window: recurring (rrule + duration_minutes) or one-off (start + end)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100)
    timezone: str = "UTC"
    rrule: str | None = None
    duration_minutes: int | None = Field(default=None, ge=1, le=_LONGEST_MINUTES)
    start: datetime.datetime | None = None
    end: datetime.datetime | None = None

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                f"unknown time zone {value!r}; give an IANA name such as Europe/Berlin or UTC"
            ) from None
        return value

    @field_validator("rrule")
    @classmethod
    def _a_rule(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            rrulestr(value, dtstart=datetime.datetime(2026, 1, 1))
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"not an iCalendar recurrence rule ({exc}); for example "
                "FREQ=WEEKLY;BYDAY=FR;BYHOUR=18;BYMINUTE=0"
            ) from None
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> FreezeWindow:
        recurring = self.rrule is not None or self.duration_minutes is not None
        once = self.start is not None or self.end is not None
        if recurring == once:
            raise ValueError(
                "give either rrule with duration_minutes (a recurring window) or start with "
                "end (a one-off window)"
            )
        if recurring and (self.rrule is None or self.duration_minutes is None):
            raise ValueError("a recurring window needs both rrule and duration_minutes")
        if once:
            if self.start is None or self.end is None:
                raise ValueError("a one-off window needs both start and end")
            if self.end <= self.start:
                raise ValueError("end must be after start")
        return self

    def _local(self, moment: datetime.datetime) -> datetime.datetime:
        zone = ZoneInfo(self.timezone)
        return moment.replace(tzinfo=zone) if moment.tzinfo is None else moment.astimezone(zone)

    def covering(self, now: float) -> tuple[float, float] | None:
        """(start, end) in epoch seconds of this window's occurrence covering ``now``."""
        zone = ZoneInfo(self.timezone)
        here = datetime.datetime.fromtimestamp(now, tz=zone)
        if self.start is not None and self.end is not None:
            start, end = self._local(self.start), self._local(self.end)
            return (start.timestamp(), end.timestamp()) if start <= here < end else None
        if self.rrule is None or self.duration_minutes is None:
            return None  # the validator makes every window one kind or the other
        # The rule runs in naive local time, so its hours stay local across DST changes.
        local = here.replace(tzinfo=None)
        span = datetime.timedelta(minutes=self.duration_minutes)
        rule = rrulestr(self.rrule, dtstart=(local - span).replace(second=0, microsecond=0))
        begun = rule.before(local, inc=True)
        if begun is None:
            return None
        start = begun.replace(tzinfo=zone)
        end = (begun + span).replace(tzinfo=zone)
        return (start.timestamp(), end.timestamp()) if start <= here < end else None


class FreezeCalendar(BaseModel):
    """Every freeze window of a fleet."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    windows: list[FreezeWindow] = Field(default_factory=list)

    def active(self, now: float) -> Freeze | None:
        """The window covering ``now`` that ends last (None: no freeze now)."""
        found = [
            Freeze(window.name, *span)
            for window in self.windows
            if (span := window.covering(now)) is not None
        ]
        return max(found, key=lambda f: f.ends, default=None)


@dataclass(frozen=True)
class Freeze:
    """A freeze in force: its window's name and its occurrence's start and end (epoch)."""

    name: str
    starts: float
    ends: float

    def describe(self) -> str:
        """For messages: the window and when it ends (UTC)."""
        end = datetime.datetime.fromtimestamp(self.ends, tz=datetime.UTC)
        return f"freeze window {self.name!r} (until {end:%Y-%m-%d %H:%M} UTC)"


def load_calendar(path: str | Path) -> FreezeCalendar:
    """Read a freeze file; ValueError naming the file and the field when it cannot be used."""
    import yaml
    from pydantic import ValidationError

    from producers.contract.jobs import describe_validation_error

    try:
        data: Any = yaml.safe_load(Path(path).read_text())
    except OSError as exc:
        raise ValueError(f"freeze file {path}: cannot read it ({exc.strerror})") from None
    except yaml.YAMLError as exc:
        raise ValueError(f"freeze file {path}: not YAML or JSON ({exc})") from None
    try:
        return FreezeCalendar.model_validate(data or {})
    except ValidationError as exc:
        problems = "; ".join(describe_validation_error(exc))
        raise ValueError(f"freeze file {path}: {problems}") from None


_CACHE: dict[str, tuple[float, FreezeCalendar]] = {}


def calendar_at(path: str) -> FreezeCalendar:
    """The freeze file at ``path``, read again only when it changed (workers check it at every
    release advance). ValueError when it cannot be used."""
    try:
        changed = Path(path).stat().st_mtime
    except OSError as exc:
        raise ValueError(f"freeze file {path}: cannot read it ({exc.strerror})") from None
    cached = _CACHE.get(path)
    if cached is not None and cached[0] == changed:
        return cached[1]
    calendar = load_calendar(path)
    _CACHE[path] = (changed, calendar)
    return calendar
