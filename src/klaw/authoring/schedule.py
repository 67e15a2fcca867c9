"""A workflow's cron schedule: the validated value that the tick arithmetic in ``cron.py`` reads.

A :class:`Schedule` is checked once, when it is built, and every problem is a
:class:`~klaw.errors.ConfigError` that names the workflow and the bad field. Building one parses
the cron expression and looks up the time zone; nothing else happens (no clock, no I/O).

The same checks back ``klaw.workflow(..., schedule=, timezone=, catch_up=)`` and the
``schedule`` / ``timezone`` / ``catch_up`` keys of a folder's ``config.yaml``
(:func:`check_cron`, :func:`check_timezone`, :func:`check_catch_up`), so a bad definition is
refused where it is written. The schedule lives here, below the service layer, because the
service reports next ticks and the trigger service (above it) fires them.
"""

from __future__ import annotations

import contextlib
import difflib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import CroniterBadDateError, CroniterError, croniter

from klaw.errors import ConfigError

#: Time zones named in hints when a name is not recognised.
_TZ_EXAMPLES = "'UTC', 'Europe/Berlin' or 'America/New_York'"
_CRON_HINT = (
    "use five fields 'minute hour day-of-month month day-of-week', "
    "for example '0 3 * * *' (every day at 03:00) or '*/15 * * * *' (every 15 minutes)"
)
#: The macros croniter expands; anything else starting with '@' is rejected.
_MACROS = frozenset(
    {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}
)


class CatchUp(StrEnum):
    """What a schedule does with the ticks it missed while the trigger service was down.

    - ``none``: fire only a tick that fell within the schedule's ``grace`` of now; anything
      older is dropped.
    - ``latest``: fire at most one tick, the most recent one missed.
    - ``all``: fire every missed tick, oldest first, but at most ``max_catchup`` of them (the
      most recent ones; older ticks beyond the cap are dropped).
    """

    NONE = "none"
    LATEST = "latest"
    ALL = "all"


@dataclass(frozen=True, slots=True)
class Schedule:
    """When a workflow runs: a five-field cron expression read in an IANA time zone.

    ``start``, if given, is the earliest instant a tick may have: no tick before it is ever
    produced (and, for a schedule that never ran, catch-up starts there). A naive ``start`` is
    read as wall time in the schedule's time zone. ``paused`` schedules produce no ticks.

    Daylight saving time, in the schedule's zone. Every tick is a local wall time that the cron
    expression matches, turned into a UTC instant:

    - A wall time that happens twice (the autumn overlap) fires once, at its first occurrence.
    - A wall time that does not exist (the spring gap) fires once, shifted forward by the length
      of the gap: a daily ``30 2 * * *`` in Europe/Berlin fires at 03:30 CEST (01:30 UTC) on
      the day the clocks go forward.
    - Schedules whose hour field matches every hour (``0 * * * *``, ``*/15 * * * *``, ...)
      follow elapsed time instead: they fire at both occurrences of a repeated wall time and
      skip wall times that do not exist, so they keep their rhythm in real time.
    - Two wall times that land on the same instant fire once.

    So the ticks of every schedule are strictly increasing, unique UTC instants.
    """

    workflow: str
    cron: str
    timezone: str = "UTC"
    catchup: CatchUp = CatchUp.NONE
    start: datetime | None = None
    paused: bool = False
    #: How late a tick may be noticed and still fire under ``catchup='none'`` (and, for a
    #: schedule that never ran and has no ``start``, under every policy).
    grace: timedelta = timedelta(seconds=60)
    #: The most ticks one ``due`` call returns under ``catchup='all'``; older ones are dropped.
    max_catchup: int = 100

    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _every_hour: bool = field(init=False, repr=False, compare=False)
    _start_utc: datetime | None = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        where = _where(self.workflow)
        if not isinstance(self.workflow, str) or not self.workflow.strip():
            raise ConfigError(
                f"a schedule has an empty workflow name ({self.workflow!r})",
                hint="give the name of the workflow the schedule triggers",
            )
        object.__setattr__(self, "cron", _normalise_cron(where, self.cron))
        object.__setattr__(self, "_every_hour", _check_cron(where, self.cron))
        zone = _zone(where, self.timezone)
        object.__setattr__(self, "_zone", zone)
        object.__setattr__(self, "catchup", _catchup(where, self.catchup))
        object.__setattr__(self, "_start_utc", _start_utc(where, self.start, zone))
        if not isinstance(self.paused, bool):
            raise ConfigError(f"{where}: 'paused' must be true or false, got {self.paused!r}")
        if not isinstance(self.grace, timedelta) or self.grace < timedelta(0):
            raise ConfigError(
                f"{where}: 'grace' must be a non-negative duration, got {self.grace!r}",
                hint="for example timedelta(seconds=60)",
            )
        if (
            isinstance(self.max_catchup, bool)
            or not isinstance(self.max_catchup, int)
            or self.max_catchup < 1
        ):
            raise ConfigError(
                f"{where}: 'max_catchup' must be a whole number of at least 1, "
                f"got {self.max_catchup!r}",
                hint="it caps how many missed ticks catchup='all' fires after downtime",
            )

    @property
    def zone(self) -> ZoneInfo:
        """The schedule's time zone."""
        return self._zone

    @property
    def every_hour(self) -> bool:
        """Whether the hour field matches every hour (such schedules follow elapsed time)."""
        return self._every_hour

    @property
    def start_utc(self) -> datetime | None:
        """``start`` as an aware UTC datetime, or ``None``."""
        return self._start_utc


def check_cron(workflow: str, cron: object) -> str:
    """``cron`` with its whitespace normalised, or a ``ConfigError`` naming the workflow."""
    where = _where(workflow)
    text = _normalise_cron(where, cron)
    _check_cron(where, text)
    return text


def check_timezone(workflow: str, timezone: object) -> str:
    """``timezone`` if it is a known IANA zone, or a ``ConfigError`` suggesting close names."""
    _zone(_where(workflow), timezone)
    assert isinstance(timezone, str)
    return timezone


def check_catch_up(workflow: str, catch_up: object) -> CatchUp:
    """The catch-up policy ``catch_up`` names, or a ``ConfigError`` listing the policies."""
    return _catchup(_where(workflow), catch_up)


def _where(workflow: object) -> str:
    return f"schedule for workflow {workflow!r}"


def _normalise_cron(where: str, cron: object) -> str:
    if not isinstance(cron, str):
        raise ConfigError(
            f"{where}: the cron expression must be text, got {cron!r}", hint=_CRON_HINT
        )
    text = " ".join(cron.split())
    if text.startswith("@"):
        if text.lower() not in _MACROS:
            raise ConfigError(
                f"{where}: unknown cron macro {cron!r}",
                hint=f"use one of {', '.join(sorted(_MACROS))}, or {_CRON_HINT}",
            )
        return text.lower()
    fields = len(text.split())
    if fields != 5:
        raise ConfigError(
            f"{where}: cron expression {cron!r} has {fields} field(s); Klaw schedules use five "
            "(no seconds or years) and fire at most once a minute",
            hint=_CRON_HINT,
        )
    return text


def _check_cron(where: str, cron: str) -> bool:
    """Parse ``cron``; return whether its hour field matches every hour."""
    try:
        expanded, _ = croniter.expand(cron)
        # A valid expression can still match no date at all ('0 0 30 2 *'); croniter finds out
        # only by searching, so search once from a fixed wall time.
        croniter(cron, datetime(2000, 1, 1)).get_next(datetime)
    except CroniterBadDateError:
        raise ConfigError(
            f"{where}: cron expression {cron!r} matches no date",
            hint="check the day-of-month and month fields (for example, February has no 30th)",
        ) from None
    except (CroniterError, ValueError, TypeError) as exc:
        raise ConfigError(
            f"{where}: invalid cron expression {cron!r}: {_reason(exc)}", hint=_CRON_HINT
        ) from None
    return list(expanded[1]) == ["*"]


def _reason(exc: Exception) -> str:
    text = str(exc).strip()
    # croniter sometimes wraps a whole traceback; its last line is the reason.
    return text.splitlines()[-1] if text else type(exc).__name__


def _zone(where: str, name: object) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise ConfigError(
            f"{where}: the time zone must be an IANA name, got {name!r}",
            hint=f"use an IANA name such as {_TZ_EXAMPLES}",
        )
    with contextlib.suppress(ZoneInfoNotFoundError, ValueError):
        return ZoneInfo(name)
    hint = f"use an IANA name such as {_TZ_EXAMPLES}"
    close = _close_zones(name)
    if close:
        hint += f"; did you mean {' or '.join(repr(c) for c in close)}?"
    raise ConfigError(f"{where}: unknown time zone {name!r}", hint=hint)


def _close_zones(name: str) -> list[str]:
    """Known zone names that look like ``name`` (only computed on the error path)."""
    zones = available_timezones()
    by_lower = {z.lower(): z for z in zones}
    if name.lower() in by_lower:
        return [by_lower[name.lower()]]
    # 'Berlin' -> 'Europe/Berlin': compare against the city part too.
    by_city: dict[str, str] = {}
    for z in sorted(zones):
        by_city.setdefault(z.rsplit("/", 1)[-1].lower(), z)
    wanted = name.replace(" ", "_").lower()
    cities = difflib.get_close_matches(wanted, list(by_city), n=2, cutoff=0.8)
    if cities:
        return [by_city[c] for c in cities]
    full = difflib.get_close_matches(name.lower(), list(by_lower), n=2, cutoff=0.75)
    return [by_lower[c] for c in full]


def _catchup(where: str, value: object) -> CatchUp:
    if isinstance(value, CatchUp):
        return value
    if isinstance(value, str):
        with contextlib.suppress(ValueError):
            return CatchUp(value.lower())
    raise ConfigError(
        f"{where}: unknown catch-up policy {value!r}",
        hint=f"use one of {', '.join(c.value for c in CatchUp)}",
    )


def _start_utc(where: str, start: object, zone: ZoneInfo) -> datetime | None:
    if start is None:
        return None
    if not isinstance(start, datetime):
        raise ConfigError(
            f"{where}: 'start' must be a date and time, got {start!r}",
            hint="for example datetime(2026, 4, 1, tzinfo=ZoneInfo('Europe/Berlin'))",
        )
    if start.tzinfo is None or start.utcoffset() is None:
        start = start.replace(tzinfo=zone)
    return start.astimezone(UTC)
