"""Tick arithmetic for cron schedules: which instants a schedule fires at, and which are due.

Everything here is pure: the current time is an argument, nothing reads a clock or does I/O.
Every datetime taken must be timezone-aware; every datetime returned is an aware UTC instant.

How ticks are found. croniter iterates *naive local wall times* (where it has no daylight
saving quirks: iterating aware datetimes it fires a daily ``30 2 * * *`` twice on the autumn
day and at 03:00 instead of 03:30 on the spring day). Each wall time is then turned into UTC
instants with zoneinfo, following the rules in :class:`~klaw.authoring.schedule.Schedule`:
fold=0 (the first occurrence of a repeated time; a missing time shifted forward by the gap),
except that every-hour schedules take both occurrences and skip missing times. The ticks of a
window are the sorted set of those instants, so any window gives the same ticks as the union
of its parts.

A tick is identified by its UTC instant, written as :func:`tick_key`
(``2026-03-29T01:00:00Z``), so a database can hold one run per (schedule, tick).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from croniter import croniter

from klaw.authoring.schedule import CatchUp, Schedule

_TICK_KEY_FORMAT = "%Y-%m-%dT%H:%M:%SZ"
_ONE_US = timedelta(microseconds=1)
#: Far enough either side of a window's ends to see any UTC-offset change that matters there
#: (offset changes are at most a day, the largest ever being Samoa's in 2011).
_OFFSET_PROBE = timedelta(hours=36)
#: Windows searched for the next or previous tick start at this size and double.
_FIRST_SPAN = timedelta(minutes=2)
#: Searching gives up after this long: a valid five-field expression matches at least every
#: eight years (29 February around 2100), so only the ends of the calendar get here.
_HORIZON = timedelta(days=366 * 50)
#: Any naive datetime: croniter wants a start time when it parses; ``_walls`` moves it.
_PARSE_ANCHOR = datetime(2000, 1, 1)


def tick_key(tick: datetime) -> str:
    """The stable key of a tick: its UTC instant as ``YYYY-MM-DDTHH:MM:SSZ``."""
    _require_aware(tick, "tick")
    return tick.astimezone(UTC).strftime(_TICK_KEY_FORMAT)


def parse_tick_key(key: str) -> datetime:
    """The tick (an aware UTC datetime) that :func:`tick_key` wrote as ``key``."""
    try:
        return datetime.strptime(key, _TICK_KEY_FORMAT).replace(tzinfo=UTC)
    except (TypeError, ValueError):
        raise ValueError(
            f"{key!r} is not a tick key; tick keys look like '2026-03-29T01:00:00Z'"
        ) from None


def ticks_between(schedule: Schedule, after: datetime, until: datetime) -> list[datetime]:
    """Every tick of ``schedule`` in the window ``(after, until]``, in order, as UTC instants.

    Ticks before the schedule's ``start`` are left out; a paused schedule has none.
    """
    _require_aware(after, "after")
    _require_aware(until, "until")
    if schedule.paused:
        return []
    after = _clip_to_start(schedule, after)
    if until <= after:
        return []
    return _window(schedule, _parse(schedule), after.astimezone(UTC), until.astimezone(UTC))


def next_tick(schedule: Schedule, after: datetime) -> datetime | None:
    """The first tick strictly after ``after``, or ``None`` if paused (or none for 50 years)."""
    _require_aware(after, "after")
    if schedule.paused:
        return None
    lo = _clip_to_start(schedule, after).astimezone(UTC)
    parsed = _parse(schedule)
    span = _FIRST_SPAN
    searched = timedelta(0)
    while searched < _HORIZON:
        try:
            hi = lo + span
        except OverflowError:
            return None
        found = _window(schedule, parsed, lo, hi)
        if found:
            return found[0]
        searched += span
        lo, span = hi, span * 2
    return None


def due(schedule: Schedule, last_tick: datetime | None, now: datetime) -> list[datetime]:
    """The ticks to fire now, oldest first, given the last tick that fired (``None``: never).

    Only ticks after ``last_tick`` and at or before ``now`` are candidates (never
    ``last_tick`` itself, so firing the result and recording its last element is idempotent).
    Which of them fire depends on ``schedule.catchup``:

    - ``none``: the most recent candidate, if it is no more than ``grace`` before ``now``.
    - ``latest``: the most recent candidate.
    - ``all``: every candidate, capped at ``max_catchup``: when more were missed, only the
      ``max_catchup`` most recent fire and the older ones are dropped for good.

    A schedule that never fired catches up from its ``start`` if it has one; without a
    ``start`` only a tick within ``grace`` of ``now`` fires, whatever the policy. A paused
    schedule fires nothing (when it resumes, its policy decides what the pause missed).
    """
    _require_aware(now, "now")
    if last_tick is not None:
        _require_aware(last_tick, "last_tick")
    if schedule.paused:
        return []
    now = now.astimezone(UTC)
    start = schedule.start_utc
    # Candidates are the ticks in (floor, now].
    if last_tick is not None:
        floor = last_tick.astimezone(UTC)
    elif start is None:
        floor = now - schedule.grace - _ONE_US
    else:
        floor = start - _ONE_US
    floor = _clip_to_start(schedule, floor)
    if floor >= now:
        return []
    if schedule.catchup is CatchUp.NONE:
        recent = _window(
            schedule, _parse(schedule), max(floor, now - schedule.grace - _ONE_US), now
        )
        return recent[-1:]
    limit = 1 if schedule.catchup is CatchUp.LATEST else schedule.max_catchup
    return _latest(schedule, floor, now, limit)


def _latest(schedule: Schedule, floor: datetime, until: datetime, limit: int) -> list[datetime]:
    """The last ``limit`` ticks in ``(floor, until]``, found in doubling windows backwards."""
    parsed = _parse(schedule)
    chunks: list[list[datetime]] = []
    count = 0
    hi, span = until, _FIRST_SPAN
    while hi > floor and count < limit:
        try:
            lo = max(floor, hi - span)
        except OverflowError:
            lo = floor
        chunk = _window(schedule, parsed, lo, hi)
        chunks.append(chunk)
        count += len(chunk)
        hi, span = lo, span * 2
    ticks = [tick for chunk in reversed(chunks) for tick in chunk]
    return ticks[-limit:]


def _parse(schedule: Schedule) -> croniter[datetime]:
    """A croniter for the schedule's expression, reused across the windows of one call."""
    return croniter(schedule.cron, _PARSE_ANCHOR, ret_type=datetime)


def _window(
    schedule: Schedule, parsed: croniter[datetime], after: datetime, until: datetime
) -> list[datetime]:
    """The ticks in ``(after, until]`` (both aware UTC), ignoring ``paused`` and ``start``."""
    zone = schedule.zone
    margin = max(_offset_change_near(zone, after), _offset_change_near(zone, until))
    first_wall = _wall(after, zone) - margin
    last_wall = _wall(until, zone) + margin
    found: set[datetime] = set()
    for wall in _walls(parsed, first_wall, last_wall):
        for tick in _instants(wall, zone, every_hour=schedule.every_hour):
            if after < tick <= until:
                found.add(tick)
    return sorted(found)


def _walls(parsed: croniter[datetime], first: datetime, last: datetime) -> Iterator[datetime]:
    """The naive wall times in ``[first, last]`` that the expression matches, in order."""
    parsed.set_current(first - _ONE_US, force=True)
    while True:
        wall = parsed.get_next()
        if wall > last:
            return
        yield wall


def _instants(wall: datetime, zone: ZoneInfo, *, every_hour: bool) -> tuple[datetime, ...]:
    """The UTC instants a matched local wall time fires at (see ``Schedule`` for the rules)."""
    first = wall.replace(tzinfo=zone, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=zone, fold=1).astimezone(UTC)
    if first == second:  # an ordinary wall time
        return (first,)
    if first < second:  # the wall time happens twice (clocks went back)
        return (first, second) if every_hour else (first,)
    # The wall time never happens (clocks went forward); fold=0 reads it with the offset from
    # before the change, which is the wall time shifted forward by the length of the gap.
    return () if every_hour else (first,)


def _wall(instant: datetime, zone: ZoneInfo) -> datetime:
    return instant.astimezone(zone).replace(tzinfo=None)


def _offset_change_near(zone: ZoneInfo, instant: datetime) -> timedelta:
    """The largest change of ``zone``'s UTC offset within ``_OFFSET_PROBE`` of ``instant``."""
    here = instant.astimezone(zone).utcoffset()
    change = timedelta(0)
    for step in (-_OFFSET_PROBE, _OFFSET_PROBE):
        try:
            there = (instant + step).astimezone(zone).utcoffset()
        except OverflowError:
            continue
        if here is not None and there is not None:
            change = max(change, abs(there - here))
    return change


def _clip_to_start(schedule: Schedule, after: datetime) -> datetime:
    """``after``, raised so that the window ``(after, ...]`` cannot hold a tick before start."""
    start = schedule.start_utc
    if start is None or after >= start:
        return after
    return start - _ONE_US


def _require_aware(value: datetime, name: str) -> None:
    if not isinstance(value, datetime):
        raise TypeError(f"{name} must be a datetime, got {value!r}")
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(
            f"{name}={value.isoformat()} has no time zone; pass an aware datetime "
            "(for example datetime.now(UTC))"
        )
