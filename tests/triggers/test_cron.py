"""Cron schedules: validation, ticks across time zones and DST changes, catch-up after downtime."""

from __future__ import annotations

import dataclasses
import pickle
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from itertools import pairwise
from typing import TypeVar
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from klaw.errors import ConfigError
from klaw.triggers import (
    CatchUp,
    Schedule,
    due,
    next_tick,
    parse_tick_key,
    tick_key,
    ticks_between,
)

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
H = timedelta(hours=1)
M = timedelta(minutes=1)


def utc(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=UTC)


def keys(ticks: list[datetime]) -> list[str]:
    return [tick_key(t) for t in ticks]


def assert_strictly_increasing_utc(ticks: list[datetime]) -> None:
    assert all(t.tzinfo is UTC for t in ticks)
    assert all(a < b for a, b in pairwise(ticks))


# --- plain schedules ------------------------------------------------------------------------


def test_every_minute_window_is_open_at_the_start_and_closed_at_the_end() -> None:
    s = Schedule("w", "* * * * *")
    ticks = ticks_between(s, utc(2026, 5, 1, 12, 0), utc(2026, 5, 1, 12, 5))
    assert keys(ticks) == [f"2026-05-01T12:0{m}:00Z" for m in range(1, 6)]
    assert ticks_between(s, utc(2026, 5, 1, 12, 0), utc(2026, 5, 1, 12, 0)) == []
    assert ticks_between(s, utc(2026, 5, 1, 12, 5), utc(2026, 5, 1, 12, 0)) == []
    # Windows need not fall on whole minutes.
    odd = ticks_between(s, utc(2026, 5, 1, 12, 0, 30), utc(2026, 5, 1, 12, 2, 59))
    assert keys(odd) == ["2026-05-01T12:01:00Z", "2026-05-01T12:02:00Z"]


def test_daily_schedule_in_utc() -> None:
    s = Schedule("w", "0 3 * * *")
    ticks = ticks_between(s, utc(2026, 1, 1), utc(2026, 1, 4, 3))
    assert keys(ticks) == [
        "2026-01-01T03:00:00Z",
        "2026-01-02T03:00:00Z",
        "2026-01-03T03:00:00Z",
        "2026-01-04T03:00:00Z",
    ]
    assert Schedule("w", "@daily").cron == "@daily"
    assert keys(ticks_between(Schedule("w", "@daily"), utc(2026, 1, 1), utc(2026, 1, 2))) == [
        "2026-01-02T00:00:00Z"
    ]


def test_times_are_read_in_the_schedule_time_zone() -> None:
    # India has no DST and a half-hour offset: 09:00 IST is 03:30 UTC.
    kolkata = Schedule("w", "0 9 * * *", timezone="Asia/Kolkata")
    assert keys(ticks_between(kolkata, utc(2026, 6, 1), utc(2026, 6, 2))) == [
        "2026-06-01T03:30:00Z"
    ]
    # New York: UTC-5 in winter, UTC-4 in summer.
    ny = Schedule("w", "0 9 * * *", timezone="America/New_York")
    assert keys(ticks_between(ny, utc(2026, 1, 15), utc(2026, 1, 16))) == ["2026-01-15T14:00:00Z"]
    assert keys(ticks_between(ny, utc(2026, 7, 15), utc(2026, 7, 16))) == ["2026-07-15T13:00:00Z"]
    # Datetimes in any zone are accepted; results are always UTC.
    got = ticks_between(
        ny, datetime(2026, 7, 15, tzinfo=NEW_YORK), datetime(2026, 7, 16, tzinfo=BERLIN)
    )
    assert keys(got) == ["2026-07-15T13:00:00Z"]
    assert got[0].tzinfo is UTC


def test_day_of_week_and_last_day_of_month() -> None:
    weekdays = Schedule("w", "0 8 * * 1-5", timezone="Europe/Berlin")
    # 2026-05-01 is a Friday: Fri, (Sat, Sun skipped), Mon.
    got = ticks_between(weekdays, utc(2026, 5, 1), utc(2026, 5, 4, 23))
    assert keys(got) == ["2026-05-01T06:00:00Z", "2026-05-04T06:00:00Z"]
    last = Schedule("w", "0 0 L * *")
    assert keys(ticks_between(last, utc(2026, 1, 1), utc(2026, 3, 31, 1))) == [
        "2026-01-31T00:00:00Z",
        "2026-02-28T00:00:00Z",
        "2026-03-31T00:00:00Z",
    ]


def test_next_tick() -> None:
    s = Schedule("w", "30 2 * * *", timezone="Europe/Berlin")
    assert next_tick(s, utc(2026, 6, 1)) == utc(2026, 6, 1, 0, 30)
    assert next_tick(s, utc(2026, 6, 1, 0, 30)) == utc(2026, 6, 2, 0, 30)  # strictly after
    assert next_tick(s, utc(2026, 3, 28, 12)) == utc(2026, 3, 29, 1, 30)  # the DST-gap day
    leap = Schedule("w", "0 0 29 2 *")
    assert next_tick(leap, utc(2026, 3, 1)) == utc(2028, 2, 29)
    assert next_tick(Schedule("w", "* * * * *", paused=True), utc(2026, 1, 1)) is None


def test_start_bounds_every_tick() -> None:
    start = datetime(2026, 4, 1, 0, 0, tzinfo=BERLIN)  # 2026-03-31T22:00Z
    s = Schedule("w", "0 * * * *", timezone="Europe/Berlin", start=start)
    got = ticks_between(s, utc(2026, 3, 31, 20), utc(2026, 3, 31, 23))
    assert keys(got) == ["2026-03-31T22:00:00Z", "2026-03-31T23:00:00Z"]  # start is included
    assert next_tick(s, utc(2026, 1, 1)) == utc(2026, 3, 31, 22)
    # A naive start is wall time in the schedule's zone.
    naive = Schedule("w", "0 * * * *", timezone="Europe/Berlin", start=datetime(2026, 4, 1))
    assert naive.start_utc == utc(2026, 3, 31, 22)


def test_paused_schedules_produce_nothing() -> None:
    s = Schedule("w", "* * * * *", catchup=CatchUp.ALL, paused=True)
    assert ticks_between(s, utc(2026, 1, 1), utc(2026, 1, 2)) == []
    assert next_tick(s, utc(2026, 1, 1)) is None
    assert due(s, utc(2026, 1, 1), utc(2026, 1, 2)) == []
    assert due(s, None, utc(2026, 1, 2)) == []


# --- daylight saving time -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("zone", "day", "expected"),
    [
        # Berlin springs forward 2026-03-29 02:00 CET -> 03:00 CEST: 02:30 does not exist and
        # fires at 03:30 CEST (01:30 UTC), once.
        ("Europe/Berlin", (2026, 3, 29), "2026-03-29T01:30:00Z"),
        # New York springs forward 2026-03-08 02:00 EST -> 03:00 EDT: 03:30 EDT = 07:30 UTC.
        ("America/New_York", (2026, 3, 8), "2026-03-08T07:30:00Z"),
    ],
)
def test_daily_in_the_spring_gap_fires_once_shifted_forward(
    zone: str, day: tuple[int, int, int], expected: str
) -> None:
    s = Schedule("w", "30 2 * * *", timezone=zone)
    tz = ZoneInfo(zone)
    start_of_day = datetime(*day, tzinfo=tz)
    got = ticks_between(s, start_of_day, start_of_day + timedelta(hours=23))  # a 23-hour day
    assert keys(got) == [expected]
    assert got[0].astimezone(tz).strftime("%H:%M") == "03:30"
    # The days around it fire at their usual wall time.
    week = ticks_between(s, start_of_day - timedelta(days=3), start_of_day + timedelta(days=3))
    assert len(week) == 6
    assert [t.astimezone(tz).strftime("%H:%M") for t in week] == ["02:30"] * 3 + ["03:30"] + [
        "02:30"
    ] * 2
    assert_strictly_increasing_utc(week)


@pytest.mark.parametrize(
    ("zone", "cron", "day", "expected"),
    [
        # Berlin falls back 2026-10-25 03:00 CEST -> 02:00 CET: 02:30 happens twice; the first
        # (CEST, 00:30 UTC) fires, the second (CET, 01:30 UTC) does not.
        ("Europe/Berlin", "30 2 * * *", (2026, 10, 25), "2026-10-25T00:30:00Z"),
        # New York falls back 2026-11-01 02:00 EDT -> 01:00 EST: 01:30 EDT is 05:30 UTC.
        ("America/New_York", "30 1 * * *", (2026, 11, 1), "2026-11-01T05:30:00Z"),
    ],
)
def test_daily_in_the_autumn_overlap_fires_once_at_the_first_occurrence(
    zone: str, cron: str, day: tuple[int, int, int], expected: str
) -> None:
    s = Schedule("w", cron, timezone=zone)
    tz = ZoneInfo(zone)
    start_of_day = datetime(*day, tzinfo=tz)
    got = ticks_between(s, start_of_day, start_of_day + timedelta(hours=25))  # a 25-hour day
    assert keys(got) == [expected]
    assert got[0].astimezone(tz).fold == 0
    week = ticks_between(s, start_of_day - timedelta(days=3), start_of_day + timedelta(days=3))
    assert len(week) == 6
    assert_strictly_increasing_utc(week)


@pytest.mark.parametrize(
    ("zone", "change"),
    [
        ("Europe/Berlin", utc(2026, 3, 29, 1)),
        ("Europe/Berlin", utc(2026, 10, 25, 1)),
        ("America/New_York", utc(2026, 3, 8, 7)),
        ("America/New_York", utc(2026, 11, 1, 6)),
    ],
)
def test_hourly_keeps_real_time_rhythm_across_both_changes(zone: str, change: datetime) -> None:
    s = Schedule("w", "0 * * * *", timezone=zone)
    got = ticks_between(s, change - 6 * H, change + 6 * H)
    assert_strictly_increasing_utc(got)
    # One tick every real hour: the repeated hour fires twice, the missing hour not at all.
    assert got == [change - 5 * H + i * H for i in range(12)]


@pytest.mark.parametrize("zone", ["Europe/Berlin", "America/New_York"])
def test_quarter_hourly_near_the_overlap(zone: str) -> None:
    s = Schedule("w", "*/15 * * * *", timezone=zone)
    change = utc(2026, 10, 25, 1) if zone == "Europe/Berlin" else utc(2026, 11, 1, 6)
    got = ticks_between(s, change - 2 * H, change + 2 * H)
    assert_strictly_increasing_utc(got)
    assert got == [change - 2 * H + i * 15 * M for i in range(1, 17)]
    # Both occurrences of the repeated wall hour are there, as distinct instants.
    walls = [t.astimezone(ZoneInfo(zone)).strftime("%H:%M") for t in got]
    assert len(walls) == len(set(keys(got)))
    assert len(set(walls)) < len(walls)


def test_half_hour_clock_changes_on_lord_howe_island() -> None:
    # 2026-10-04 02:00 (+10:30) -> 02:30 (+11:00). An hourly schedule skips the missing 02:00
    # (the wall clock never shows it); a daily 02:00 fires once, at 02:30 (+11:00).
    zone = "Australia/Lord_Howe"
    hourly = Schedule("w", "0 * * * *", timezone=zone)
    got = ticks_between(hourly, utc(2026, 10, 3, 14), utc(2026, 10, 3, 17))
    assert keys(got) == ["2026-10-03T14:30:00Z", "2026-10-03T16:00:00Z", "2026-10-03T17:00:00Z"]
    daily = Schedule("w", "0 2 * * *", timezone=zone)
    got = ticks_between(daily, utc(2026, 10, 3), utc(2026, 10, 4))
    assert keys(got) == ["2026-10-03T15:30:00Z"]
    # 2026-04-05 02:00 (+11:00) -> 01:30 (+10:30): 01:30-01:59 happens twice.
    quarterly = Schedule("w", "*/15 1 * * *", timezone=zone)
    got = ticks_between(quarterly, utc(2026, 4, 4), utc(2026, 4, 5))
    assert keys(got) == [
        "2026-04-04T14:00:00Z",
        "2026-04-04T14:15:00Z",
        "2026-04-04T14:30:00Z",
        "2026-04-04T14:45:00Z",
    ]
    every = Schedule("w", "*/15 * * * *", timezone=zone)
    got = ticks_between(every, utc(2026, 4, 4, 14), utc(2026, 4, 4, 16))
    assert got == [utc(2026, 4, 4, 14) + i * 15 * M for i in range(1, 9)]


def test_fixed_hours_across_the_gap_collapse_onto_one_instant() -> None:
    # 02:00 does not exist on 2026-03-29 in Berlin; shifted forward it is 03:00 CEST, which is
    # also a tick of its own: the two fire once.
    s = Schedule("w", "0 1-3 * * *", timezone="Europe/Berlin")
    got = ticks_between(s, utc(2026, 3, 28, 22), utc(2026, 3, 29, 22))
    assert keys(got) == ["2026-03-29T00:00:00Z", "2026-03-29T01:00:00Z"]
    # In the overlap, the fixed-hour 02:00 fires at its first occurrence only.
    got = ticks_between(s, utc(2026, 10, 24, 22), utc(2026, 10, 25, 22))
    assert keys(got) == ["2026-10-24T23:00:00Z", "2026-10-25T00:00:00Z", "2026-10-25T02:00:00Z"]


def test_windows_that_start_or_end_inside_a_clock_change() -> None:
    s = Schedule("w", "30 2 * * *", timezone="Europe/Berlin")
    # The missing 02:30 fires at 01:30 UTC, when the wall clock shows 03:30, not 02:30.
    got = ticks_between(s, utc(2026, 3, 29, 1, 20), utc(2026, 3, 29, 1, 40))
    assert keys(got) == ["2026-03-29T01:30:00Z"]
    assert ticks_between(s, utc(2026, 3, 29, 1, 30), utc(2026, 3, 29, 1, 40)) == []
    assert next_tick(s, utc(2026, 3, 29, 1, 20)) == utc(2026, 3, 29, 1, 30)
    # The second 02:00 of the autumn day (CET, 01:00 UTC), seen from inside the overlap.
    hourly = Schedule("w", "0 * * * *", timezone="Europe/Berlin")
    got = ticks_between(hourly, utc(2026, 10, 25, 0, 30), utc(2026, 10, 25, 1, 30))
    assert keys(got) == ["2026-10-25T01:00:00Z"]


def test_croniter_alone_gets_these_days_wrong() -> None:
    """Why Klaw iterates wall times itself: croniter on aware datetimes fires a daily schedule
    twice on the autumn day and at 03:00 instead of 03:30 on the spring day."""
    from croniter import croniter

    it = croniter("30 2 * * *", datetime(2026, 10, 24, 12, tzinfo=BERLIN))
    assert it.get_next(datetime).date() == it.get_next(datetime).date()  # fired twice
    s = Schedule("w", "30 2 * * *", timezone="Europe/Berlin")
    assert len(ticks_between(s, utc(2026, 10, 24, 12), utc(2026, 10, 25, 12))) == 1


# --- due: catch-up after downtime -----------------------------------------------------------

HOURLY = "0 * * * *"
LAST = utc(2026, 5, 1, 10)  # the last tick that fired
BACK = utc(2026, 5, 1, 15, 0, 30)  # the service comes back 30 s after the 15:00 tick
MISSED = [utc(2026, 5, 1, h) for h in range(11, 16)]


def test_due_on_time_fires_the_current_tick_under_every_policy() -> None:
    for policy in CatchUp:
        s = Schedule("w", HOURLY, catchup=policy)
        assert due(s, utc(2026, 5, 1, 14), BACK) == [utc(2026, 5, 1, 15)]
        assert due(s, utc(2026, 5, 1, 15), BACK) == []  # already fired: idempotent
        assert due(s, utc(2026, 5, 1, 15), utc(2026, 5, 1, 15, 59)) == []


def test_due_none_drops_missed_ticks_and_keeps_one_within_grace() -> None:
    s = Schedule("w", HOURLY, catchup="none")  # type: ignore[arg-type]
    assert s.catchup is CatchUp.NONE
    assert due(s, LAST, BACK) == [utc(2026, 5, 1, 15)]
    # Back 5 minutes after the tick: outside the 60 s grace, nothing fires.
    assert due(s, LAST, utc(2026, 5, 1, 15, 5)) == []
    # Exactly at the edge of the grace window it still fires.
    assert due(s, LAST, utc(2026, 5, 1, 15, 1)) == [utc(2026, 5, 1, 15)]
    wide = Schedule("w", HOURLY, grace=timedelta(minutes=10))
    assert due(wide, LAST, utc(2026, 5, 1, 15, 5)) == [utc(2026, 5, 1, 15)]


def test_due_latest_fires_only_the_most_recent_missed_tick() -> None:
    s = Schedule("w", HOURLY, catchup=CatchUp.LATEST)
    assert due(s, LAST, BACK) == [utc(2026, 5, 1, 15)]
    assert due(s, LAST, utc(2026, 5, 1, 15, 40)) == [utc(2026, 5, 1, 15)]
    # After a long outage it still looks back far enough.
    daily = Schedule("w", "0 3 * * *", catchup=CatchUp.LATEST)
    assert due(daily, utc(2026, 1, 1, 3), utc(2026, 4, 1, 12)) == [utc(2026, 4, 1, 3)]


def test_due_all_fires_every_missed_tick_oldest_first() -> None:
    s = Schedule("w", HOURLY, catchup=CatchUp.ALL)
    assert due(s, LAST, BACK) == MISSED
    assert due(s, LAST, utc(2026, 5, 1, 15, 40)) == MISSED


def test_due_all_is_capped_to_the_most_recent_max_catchup_ticks() -> None:
    s = Schedule("w", HOURLY, catchup=CatchUp.ALL, max_catchup=3)
    assert due(s, LAST, BACK) == MISSED[-3:]
    # The default cap is 100: a minutely schedule down for a week fires the last 100 minutes.
    minutely = Schedule("w", "* * * * *", catchup=CatchUp.ALL)
    got = due(minutely, utc(2026, 5, 1), utc(2026, 5, 8))
    assert len(got) == 100
    assert got[0] == utc(2026, 5, 7, 22, 21)
    assert got[-1] == utc(2026, 5, 8)


def test_due_for_a_schedule_that_never_fired() -> None:
    for policy in CatchUp:
        s = Schedule("w", HOURLY, catchup=policy)
        assert due(s, None, BACK) == [utc(2026, 5, 1, 15)]
        assert due(s, None, utc(2026, 5, 1, 15, 5)) == []
    # With a start, catch-up begins there.
    s = Schedule("w", HOURLY, catchup=CatchUp.ALL, start=utc(2026, 5, 1, 11))
    assert due(s, None, BACK) == MISSED
    s = Schedule("w", HOURLY, catchup=CatchUp.LATEST, start=utc(2026, 5, 1, 11))
    assert due(s, None, BACK) == MISSED[-1:]
    # A start in the future holds everything back.
    s = Schedule("w", HOURLY, catchup=CatchUp.ALL, start=utc(2026, 6, 1))
    assert due(s, None, BACK) == []
    assert due(s, LAST, BACK) == []


def test_due_with_a_clock_behind_the_last_tick_fires_nothing() -> None:
    s = Schedule("w", HOURLY, catchup=CatchUp.ALL)
    assert due(s, utc(2026, 5, 1, 16), BACK) == []


def test_due_across_the_autumn_overlap_in_berlin() -> None:
    s = Schedule("w", "30 2 * * *", timezone="Europe/Berlin", catchup=CatchUp.ALL)
    got = due(s, utc(2026, 10, 23, 0, 30), utc(2026, 10, 27, 12))
    assert keys(got) == [
        "2026-10-24T00:30:00Z",
        "2026-10-25T00:30:00Z",
        "2026-10-26T01:30:00Z",
        "2026-10-27T01:30:00Z",
    ]


# --- tick keys ------------------------------------------------------------------------------


def test_tick_keys_are_utc_and_round_trip() -> None:
    tick = datetime(2026, 3, 29, 3, 0, tzinfo=BERLIN)
    assert tick_key(tick) == "2026-03-29T01:00:00Z"
    assert parse_tick_key("2026-03-29T01:00:00Z") == utc(2026, 3, 29, 1)
    assert parse_tick_key(tick_key(tick)) == tick
    with pytest.raises(ValueError, match="not a tick key"):
        parse_tick_key("2026-03-29 01:00")


def test_naive_datetimes_are_refused() -> None:
    s = Schedule("w", HOURLY)
    with pytest.raises(ValueError, match="after=.* has no time zone"):
        ticks_between(s, datetime(2026, 1, 1), utc(2026, 1, 2))
    with pytest.raises(ValueError, match="now="):
        due(s, None, datetime(2026, 1, 1))
    with pytest.raises(ValueError, match="last_tick="):
        due(s, datetime(2026, 1, 1), utc(2026, 1, 1))
    with pytest.raises(ValueError, match="tick="):
        tick_key(datetime(2026, 1, 1))


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("cron", "shown"),
    [
        ("61 * * * *", "out of range"),
        ("* * * * 8", "out of range"),
        ("0 0 * * mon-fry", "'0 0 * * mon-fry'"),
        ("* * * *", "has 4 field(s)"),
        ("* * * * * *", "has 6 field(s)"),
        ("", "has 0 field(s)"),
        ("@reboot", "unknown cron macro '@reboot'"),
        ("0 0 30 2 *", "matches no date"),
    ],
)
def test_invalid_cron_expressions_name_the_workflow_and_expression(cron: str, shown: str) -> None:
    with pytest.raises(ConfigError) as err:
        Schedule("revenue", cron)
    message = str(err.value)
    assert "workflow 'revenue'" in message
    assert shown in message
    assert err.value.hint


def test_invalid_cron_shows_croniters_reason() -> None:
    with pytest.raises(ConfigError) as err:
        Schedule("revenue", "61 * * * *")
    assert err.value.message == (
        "schedule for workflow 'revenue': invalid cron expression '61 * * * *': "
        "[61 * * * *] is not acceptable, out of range"
    )


@pytest.mark.parametrize(
    ("zone", "suggestion"),
    [
        ("Berlin", "did you mean 'Europe/Berlin'"),
        ("europe/berlin", "did you mean 'Europe/Berlin'"),
        ("America/New York", "did you mean 'America/New_York'"),
        ("Mars/Olympus_Mons", "'Europe/Berlin'"),
        ("", "'Europe/Berlin'"),
    ],
)
def test_unknown_time_zones_are_named_with_a_suggestion(zone: str, suggestion: str) -> None:
    with pytest.raises(ConfigError) as err:
        Schedule("revenue", "0 3 * * *", timezone=zone)
    assert "workflow 'revenue'" in err.value.message
    assert repr(zone) in err.value.message
    assert err.value.hint is not None
    assert suggestion in err.value.hint


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"catchup": "sometimes"}, "catch-up policy 'sometimes'"),
        ({"grace": timedelta(seconds=-1)}, "'grace'"),
        ({"grace": 60}, "'grace'"),
        ({"max_catchup": 0}, "'max_catchup'"),
        ({"max_catchup": True}, "'max_catchup'"),
        ({"start": "2026-01-01"}, "'start'"),
        ({"paused": "yes"}, "'paused'"),
    ],
)
def test_other_bad_fields_are_named(kwargs: dict[str, object], field: str) -> None:
    with pytest.raises(ConfigError) as err:
        Schedule("revenue", "0 3 * * *", **kwargs)  # type: ignore[arg-type]
    assert "workflow 'revenue'" in err.value.message
    assert field in err.value.message


def test_empty_workflow_name_is_refused() -> None:
    with pytest.raises(ConfigError, match="empty workflow name"):
        Schedule(" ", "0 3 * * *")


def test_schedules_are_frozen_values() -> None:
    a = Schedule("w", "0  3 * * *", timezone="Europe/Berlin")
    b = Schedule("w", "0 3 * * *", timezone="Europe/Berlin")
    assert a == b  # whitespace is normalised
    assert hash(a) == hash(b)
    assert a.cron == "0 3 * * *"
    assert not a.every_hour
    assert Schedule("w", "*/5 0-23 * * *").every_hour
    with pytest.raises(AttributeError):
        a.cron = "* * * * *"  # type: ignore[misc]
    # replace() re-validates, and schedules survive pickling (to a worker process, say).
    paused = dataclasses.replace(a, paused=True)
    assert paused.paused
    assert paused.zone == a.zone
    with pytest.raises(ConfigError):
        dataclasses.replace(a, timezone="Nowhere/Land")
    assert pickle.loads(pickle.dumps(a)) == a
    assert pickle.loads(pickle.dumps(a)).zone is BERLIN


# --- properties: random expressions and windows, checked against a brute-force oracle ------


@dataclass(frozen=True)
class Cron:
    """A cron expression from a small grammar, with the sets each field matches."""

    text: str
    minutes: frozenset[int]
    hours: frozenset[int]
    days: frozenset[int] | None  # None: '*'
    months: frozenset[int]
    weekdays: frozenset[int] | None  # cron numbering, Sunday = 0; None: '*'

    def matches(self, wall: datetime) -> bool:
        if wall.minute not in self.minutes or wall.hour not in self.hours:
            return False
        if wall.month not in self.months:
            return False
        day_ok = self.days is None or wall.day in self.days
        weekday_ok = self.weekdays is None or (wall.weekday() + 1) % 7 in self.weekdays
        if self.days is not None and self.weekdays is not None:
            return day_ok or weekday_ok  # cron's rule when both are restricted
        return day_ok and weekday_ok


def _f(text: str, values: range | list[int]) -> tuple[str, frozenset[int]]:
    return text, frozenset(values)


MINUTES = [
    _f("*", range(60)),
    _f("*/15", range(0, 60, 15)),
    _f("*/7", range(0, 60, 7)),
    _f("0", [0]),
    _f("30", [30]),
    _f("0,30", [0, 30]),
    _f("10-20", range(10, 21)),
    _f("45", [45]),
]
HOURS = [
    _f("*", range(24)),
    _f("*/2", range(0, 24, 2)),
    _f("*/3", range(0, 24, 3)),
    _f("0", [0]),
    _f("1", [1]),
    _f("2", [2]),
    _f("23", [23]),
    _f("1-3", range(1, 4)),
    _f("0,12", [0, 12]),
    _f("2,3", [2, 3]),
]
# Days and months chosen to include the days of the clock changes below (and miss them).
DAYS: list[tuple[str, frozenset[int] | None]] = [
    ("*", None),
    _f("1-8", range(1, 9)),
    _f("4,25", [4, 25]),
    _f("20-29", range(20, 30)),
    _f("3-6", range(3, 7)),
    _f("15", [15]),
]
MONTHS = [
    _f("*", range(1, 13)),
    _f("3-4", [3, 4]),
    _f("9-11", range(9, 12)),
    _f("10,11", [10, 11]),
    _f("6", [6]),
]
WEEKDAYS: list[tuple[str, frozenset[int] | None]] = [
    ("*", None),
    _f("0", [0]),
    _f("1-5", range(1, 6)),
    _f("6,0", [6, 0]),
]


_T = TypeVar("_T")


@st.composite
def crons(draw: st.DrawFn) -> Cron:
    """Each field is often its first option ('*'), so that random expressions usually match
    near the clock changes the windows are drawn around."""

    def field(options: list[tuple[str, _T]], star_weight: int) -> tuple[str, _T]:
        return draw(st.sampled_from([options[0]] * star_weight + options[1:]))

    m, h = field(MINUTES, 2), field(HOURS, 6)
    d, mo, w = field(DAYS, 15), field(MONTHS, 12), field(WEEKDAYS, 9)
    return Cron(
        text=" ".join(f[0] for f in (m, h, d, mo, w)),
        minutes=m[1],
        hours=h[1],
        days=d[1],
        months=mo[1],
        weekdays=w[1],
    )


# Each zone with instants near which its clocks change in 2026 (quiet zones: an ordinary day).
ZONE_ANCHORS = {
    "UTC": [utc(2026, 6, 15, 12)],
    "Asia/Kolkata": [utc(2026, 6, 15, 12)],
    "Europe/Berlin": [utc(2026, 3, 29, 1), utc(2026, 10, 25, 1)],
    "America/New_York": [utc(2026, 3, 8, 7), utc(2026, 11, 1, 6)],
    # Half-hour DST: 02:00 -> 01:30 in April, 02:00 -> 02:30 in October.
    "Australia/Lord_Howe": [utc(2026, 4, 4, 15), utc(2026, 10, 3, 15, 30)],
    # Changes at midnight: 00:00 -> 23:00 (previous day) in April, 00:00 -> 01:00 in September.
    "America/Santiago": [utc(2026, 4, 5, 3), utc(2026, 9, 6, 4)],
}


@st.composite
def windows(draw: st.DrawFn) -> tuple[str, datetime, datetime]:
    """A zone and a window that usually holds, or ends near, one of its clock changes."""
    zone = draw(st.sampled_from(sorted(ZONE_ANCHORS)))
    anchor = draw(st.sampled_from(ZONE_ANCHORS[zone]))
    shift = draw(st.sampled_from([-240, -120, -60, -30, 0, 30, 60, 90])) + draw(st.integers(0, 59))
    length = draw(st.sampled_from([0, 1, 15, 60, 90, 120, 180, 360, 1440]))
    length += draw(st.integers(0, 59))
    seconds = draw(st.sampled_from([0, 17]))
    after = anchor + shift * M + timedelta(seconds=seconds)
    return zone, after, after + length * M


def _is_gap(wall: datetime, zone: ZoneInfo) -> bool:
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    return first > second


def oracle(cron: Cron, zone: ZoneInfo, after: datetime, until: datetime) -> list[datetime]:
    """Every UTC minute in the window, checked one by one against the documented rules."""
    every_hour = cron.hours == frozenset(range(24))
    out: list[datetime] = []
    u = after.replace(second=0, microsecond=0) + M
    while u <= until:
        local = u.astimezone(zone)
        hit = cron.matches(local.replace(tzinfo=None)) and (every_hour or local.fold == 0)
        if not hit and not every_hour:
            # Does a missing wall time, read with the offset from before the gap, land here?
            before = (u - 3 * H).astimezone(zone).utcoffset()
            assert before is not None
            gap_wall = (u + before).replace(tzinfo=None)
            hit = (
                _is_gap(gap_wall, zone)
                and cron.matches(gap_wall)
                and gap_wall.replace(tzinfo=zone).astimezone(UTC) == u
            )
        if hit:
            out.append(u)
        u += M
    return out


@pytest.mark.slow
@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    cron=crons(),
    window=windows(),
    cut=st.floats(0, 1),
    cap=st.integers(1, 6),
    policy=st.sampled_from(list(CatchUp)),
)
def test_ticks_match_the_oracle_and_due_respects_its_bounds(
    cron: Cron,
    window: tuple[str, datetime, datetime],
    cut: float,
    cap: int,
    policy: CatchUp,
) -> None:
    zone_name, after, until = window
    zone = ZoneInfo(zone_name)
    s = Schedule("w", cron.text, timezone=zone_name, catchup=policy, max_catchup=cap)

    ticks = ticks_between(s, after, until)
    assert ticks == oracle(cron, zone, after, until)
    assert_strictly_increasing_utc(ticks)
    assert all(after < t <= until for t in ticks)
    assert len(set(keys(ticks))) == len(ticks)

    # Any split of the window gives the same ticks.
    middle = after + (until - after) * cut
    assert ticks_between(s, after, middle) + ticks_between(s, middle, until) == ticks

    # next_tick agrees with the window.
    nxt = next_tick(s, after)
    if ticks:
        assert nxt == ticks[0]
    else:
        assert nxt is None or nxt > until

    # due never returns more than max_catchup, nor a tick at or before last_tick.
    fired = due(s, after, until)
    assert len(fired) <= cap
    assert all(t > after for t in fired)
    if policy is CatchUp.ALL:
        assert fired == ticks[-cap:]
    elif policy is CatchUp.LATEST:
        assert fired == ticks[-1:]
    else:
        assert fired == [t for t in ticks[-1:] if until - t <= s.grace]
