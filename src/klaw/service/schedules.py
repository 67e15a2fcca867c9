"""Cron schedules as commands see them: the project's definitions, their state in the metadata
store, and their next and last ticks.

A schedule is named after its workflow: a workflow with ``schedule=`` (or ``schedule:`` in its
``config.yaml``) has one. Listing only reads. Pausing and resuming first sync the project's
definitions into the store (so a schedule can be paused before any trigger service ran) and
then set the flag there, where every trigger service checks it when it claims a tick.

The tick arithmetic (and croniter) is imported on first use, so importing the dispatcher stays
cheap for commands that have nothing to do with schedules.
"""

from __future__ import annotations

import difflib
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from klaw.authoring.workflow import Workflow
from klaw.errors import RunNotFoundError, ScheduleNotFoundError
from klaw.metadata.records import ScheduleDefinition, ScheduleRecord
from klaw.protocol import ScheduleInfo

if TYPE_CHECKING:
    from klaw.authoring.schedule import Schedule
    from klaw.service.orchestrator import Orchestrator


def definitions(workflows: Mapping[str, Workflow]) -> list[ScheduleDefinition]:
    """The schedule of every workflow that has one, by name."""
    return [
        ScheduleDefinition(
            name=wf.name,
            workflow=wf.name,
            cron=wf.schedule,
            timezone=wf.timezone,
            catch_up=wf.catch_up,
        )
        for _, wf in sorted(workflows.items())
        if wf.schedule is not None
    ]


def schedule_definitions(orchestrator: Orchestrator) -> list[ScheduleDefinition]:
    """The project's schedules (asked of the definitions process in a serving process)."""
    if orchestrator.definitions is not None:
        found: list[ScheduleDefinition] = orchestrator.definitions.ask("schedules")
        return found
    return definitions(orchestrator.workflows)


def schedule_of(definition: ScheduleDefinition, *, paused: bool = False) -> Schedule:
    """The tick arithmetic's value for a definition (already validated with its workflow)."""
    from klaw.authoring.schedule import CatchUp, Schedule

    return Schedule(
        definition.workflow,
        definition.cron,
        timezone=definition.timezone,
        catchup=CatchUp(definition.catch_up),
        paused=paused,
    )


def list_schedules(orchestrator: Orchestrator, *, now: float | None = None) -> list[ScheduleInfo]:
    """Every schedule the project defines, with its state in the metadata store."""
    stored = {r.name: r for r in orchestrator.metadata.list_schedules()}
    at = time.time() if now is None else now
    return [
        _info(orchestrator, d, stored.get(d.name), at) for d in schedule_definitions(orchestrator)
    ]


def set_paused(
    orchestrator: Orchestrator, name: str, paused: bool, *, now: float | None = None
) -> ScheduleInfo:
    """Pause or resume the schedule of workflow ``name``; the schedule as it now stands.

    Resuming does not catch up the ticks of the pause: the schedule fires from its next tick."""
    at = time.time() if now is None else now
    every = schedule_definitions(orchestrator)
    definition = _find(orchestrator, every, name)
    store = orchestrator.metadata
    store.sync_schedules(every, now=at)
    record = store.set_paused(name, paused, now=at)
    return _info(orchestrator, definition, record, at)


def _find(
    orchestrator: Orchestrator, every: list[ScheduleDefinition], name: str
) -> ScheduleDefinition:
    for definition in every:
        if definition.name == name:
            return definition
    project = orchestrator.project.name
    if name in orchestrator.workflow_names():
        raise ScheduleNotFoundError(
            f"Workflow {name!r} of project {project!r} has no schedule.",
            hint="Give it one: klaw.workflow(..., schedule='0 3 * * *'), or `schedule:` in its "
            "config.yaml.",
        )
    names = [d.name for d in every]
    close = difflib.get_close_matches(name, names, n=3)
    if close:
        found = f"; did you mean {' or '.join(repr(c) for c in close)}?"
    else:
        found = f" (schedules: {', '.join(names) or 'none'})."
    raise ScheduleNotFoundError(
        f"No schedule named {name!r} in project {project!r}{found}",
        hint="A schedule is named after its workflow; `klaw schedules list` shows them.",
    )


def _info(
    orchestrator: Orchestrator,
    definition: ScheduleDefinition,
    record: ScheduleRecord | None,
    now: float,
) -> ScheduleInfo:
    from klaw.authoring.cron import next_tick, tick_key

    paused = record is not None and record.paused
    upcoming = next_tick(schedule_of(definition, paused=paused), datetime.fromtimestamp(now, UTC))
    last_state = None
    if record is not None and record.last_run_id is not None:
        try:
            last_state = orchestrator.get_run(record.last_run_id).state
        except RunNotFoundError:
            last_state = None
    return ScheduleInfo(
        name=definition.name,
        workflow=definition.workflow,
        cron=definition.cron,
        timezone=definition.timezone,
        catch_up=definition.catch_up,
        paused=paused,
        paused_at=record.paused_at if paused and record is not None else None,
        next_tick=None if upcoming is None else tick_key(upcoming),
        last_tick=None if record is None else record.last_tick,
        last_run_id=None if record is None else record.last_run_id,
        last_run_state=last_state,
        last_error=None if record is None else record.last_error,
    )
