"""Triggers that wake the orchestrator: cron schedules and the trigger service that fires them.

``Schedule`` is a validated cron schedule; ``ticks_between``, ``next_tick`` and ``due`` compute
its ticks (aware UTC instants) from times passed in, and ``tick_key`` names a tick stably. They
are pure and live in ``klaw.authoring`` (the service layer reports next ticks too); this package
is where interfaces find them. :class:`TriggerService` fires each due tick of the project's
schedules exactly once, claiming it in the metadata database first.
"""

from klaw.authoring.cron import due as due
from klaw.authoring.cron import next_tick as next_tick
from klaw.authoring.cron import parse_tick_key as parse_tick_key
from klaw.authoring.cron import tick_key as tick_key
from klaw.authoring.cron import ticks_between as ticks_between
from klaw.authoring.schedule import CatchUp as CatchUp
from klaw.authoring.schedule import Schedule as Schedule
from klaw.triggers.service import FiredTick as FiredTick
from klaw.triggers.service import TriggerService as TriggerService

__all__ = [
    "CatchUp",
    "FiredTick",
    "Schedule",
    "TriggerService",
    "due",
    "next_tick",
    "parse_tick_key",
    "tick_key",
    "ticks_between",
]
