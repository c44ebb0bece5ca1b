"""Freeze windows: recurring ones in local time of their zone, one-off ones, bad files."""

from __future__ import annotations

import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from producers.contract.freeze import FreezeCalendar, calendar_at, load_calendar

BERLIN = ZoneInfo("Europe/Berlin")


def at(year: int, month: int, day: int, hour: int, minute: int = 0) -> float:
    return datetime.datetime(year, month, day, hour, minute, tzinfo=BERLIN).timestamp()


WEEKEND = {
    "name": "weekend",
    "timezone": "Europe/Berlin",
    "rrule": "FREQ=WEEKLY;BYDAY=FR;BYHOUR=18;BYMINUTE=0",
    "duration_minutes": 60 * 60,  # Friday 18:00 to Monday 06:00
}


def test_a_weekly_window_covers_friday_evening_to_monday_morning_in_local_time() -> None:
    """Friday 2026-12-04 18:00 Berlin to Monday 06:00: inside, not before, not after; the
    freeze says when it ends."""
    calendar = FreezeCalendar.model_validate({"windows": [WEEKEND]})
    assert calendar.active(at(2026, 12, 4, 17, 59)) is None
    inside = calendar.active(at(2026, 12, 5, 12))
    assert inside is not None
    assert (inside.name, inside.starts, inside.ends) == (
        "weekend",
        at(2026, 12, 4, 18),
        at(2026, 12, 7, 6),
    )
    assert inside.describe() == "freeze window 'weekend' (until 2026-12-07 05:00 UTC)"
    assert calendar.active(at(2026, 12, 7, 6)) is None


def test_the_local_hour_holds_across_a_daylight_saving_change() -> None:
    """Berlin leaves summer time on 2026-10-25: the window still starts Friday 18:00 local,
    both the Friday before (UTC+2) and the one after (UTC+1)."""
    calendar = FreezeCalendar.model_validate({"windows": [WEEKEND]})
    for day in (23, 30):
        assert calendar.active(at(2026, 10, day, 17, 59)) is None
        found = calendar.active(at(2026, 10, day, 18, 1))
        assert found is not None
        assert found.starts == at(2026, 10, day, 18)


def test_a_one_off_window_and_the_latest_ending_of_two() -> None:
    """A one-off window in New York; when two cover the moment, the one ending last is named."""
    calendar = FreezeCalendar.model_validate(
        {
            "windows": [
                WEEKEND,
                {
                    "name": "year-end",
                    "timezone": "America/New_York",
                    "start": "2026-12-24T00:00",
                    "end": "2027-01-02T00:00",
                },
            ]
        }
    )
    new_york = ZoneInfo("America/New_York")
    christmas = datetime.datetime(2026, 12, 26, 12, tzinfo=new_york).timestamp()
    found = calendar.active(christmas)
    assert found is not None
    assert found.name == "year-end"
    assert found.ends == datetime.datetime(2027, 1, 2, tzinfo=new_york).timestamp()
    assert calendar.active(datetime.datetime(2027, 1, 4, 12, tzinfo=new_york).timestamp()) is None


@pytest.mark.parametrize(
    ("window", "message"),
    [
        ({**WEEKEND, "timezone": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({**WEEKEND, "rrule": "EVERY FRIDAY"}, "not an iCalendar recurrence rule"),
        ({"name": "x", "rrule": WEEKEND["rrule"]}, "needs both rrule and duration_minutes"),
        ({"name": "x", "start": "2026-12-24T00:00"}, "needs both start and end"),
        (
            {"name": "x", "start": "2026-12-24T00:00", "end": "2026-12-23T00:00"},
            "end must be after start",
        ),
        ({"name": "x"}, "give either rrule with duration_minutes"),
    ],
)
def test_a_window_that_cannot_be_read_is_refused_naming_the_field(
    tmp_path: Path, window: dict[str, object], message: str
) -> None:
    """Each bad window is refused with the file, the window and what to give instead."""
    import yaml

    path = tmp_path / "freeze.yaml"
    path.write_text(yaml.safe_dump({"windows": [window]}))
    with pytest.raises(ValueError, match=message) as info:
        load_calendar(path)
    assert str(path) in str(info.value)


def test_the_file_is_read_again_once_it_changed(tmp_path: Path) -> None:
    """Workers read the file at every advance; a changed file is read again, an unchanged
    one is not."""
    import os

    import yaml

    path = tmp_path / "freeze.yaml"
    path.write_text(yaml.safe_dump({"windows": []}))
    assert calendar_at(str(path)).windows == []
    path.write_text(yaml.safe_dump({"windows": [WEEKEND]}))
    os.utime(path, (1, 2))
    assert [w.name for w in calendar_at(str(path)).windows] == ["weekend"]
    with pytest.raises(ValueError, match="cannot read it"):
        calendar_at(str(tmp_path / "missing.yaml"))
