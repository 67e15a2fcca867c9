"""Triggers that wake the orchestrator: the pure core of cron schedules.

``Schedule`` is a validated cron schedule; ``ticks_between``, ``next_tick`` and ``due`` compute
its ticks (aware UTC instants) from times passed in, and ``tick_key`` names a tick stably.
"""

from klaw.triggers.cron import due as due
from klaw.triggers.cron import next_tick as next_tick
from klaw.triggers.cron import parse_tick_key as parse_tick_key
from klaw.triggers.cron import tick_key as tick_key
from klaw.triggers.cron import ticks_between as ticks_between
from klaw.triggers.schedule import CatchUp as CatchUp
from klaw.triggers.schedule import Schedule as Schedule

__all__ = [
    "CatchUp",
    "Schedule",
    "due",
    "next_tick",
    "parse_tick_key",
    "tick_key",
    "ticks_between",
]
