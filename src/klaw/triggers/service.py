"""The trigger service: fires each due tick of the project's cron schedules exactly once.

A tick is fired by whoever claims it first in the metadata database (a row keyed
``(schedule, tick)``), so any number of trigger services may share one Postgres: each tick
starts one run. Only the service that won the claim calls ``Orchestrator.start``; the run's id
(or, when the start is refused — the workflow's run limit, a definition error — the error) is
recorded on the tick, and the service carries on.

Which ticks are due at ``now`` (``due`` in ``klaw.authoring.cron``, under the schedule's
catch-up policy) counts from the schedule's *floor*: the newest of its last claimed tick, the
last change of its definition (workflow, cron or time zone) and its last resume. So after
downtime ``none`` fires nothing old, ``latest`` fires the most recent missed tick and ``all``
fires every missed tick (at most 100, oldest first); a new or changed schedule never fires ticks
from before it existed; and a resumed schedule does not catch up the ticks of its pause.
A paused schedule fires nothing (its claim is refused by the database too).

``run_due(now)`` is one deterministic step, for tests and for callers with their own loop.
``start()`` syncs the definitions to the store and runs the loop on a thread: it sleeps exactly
until the next tick of any defined schedule (paused ones included, so a resume made by another
process takes effect at that schedule's next tick), on an ``Event`` that ``stop()`` and
``wake()`` set; there is no polling. A failing step (the database away) is logged and retried
after ``RETRY_DELAY_S``.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Final

from klaw import metrics
from klaw.authoring.cron import due, next_tick, parse_tick_key, tick_key
from klaw.errors import KlawError
from klaw.observability import get_logger
from klaw.service.schedules import schedule_definitions, schedule_of

if TYPE_CHECKING:
    from klaw.metadata.records import ScheduleDefinition, ScheduleRecord
    from klaw.service.orchestrator import Orchestrator

#: Seconds the loop waits before trying again after a step failed (the database away, say).
RETRY_DELAY_S: Final = 5.0

_log: Final = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class FiredTick:
    """A tick this service claimed: the run it started, or why none started."""

    schedule: str
    tick: datetime  # an aware UTC instant
    run_id: str | None = None
    error: str | None = None

    @property
    def key(self) -> str:
        """The tick's key, as stored (``2026-03-29T01:00:00Z``)."""
        return tick_key(self.tick)


class TriggerService:
    """Fires the cron schedules of an orchestrator's project. ``clock`` gives the current time
    (epoch seconds); tests inject one to step through days of ticks without waiting."""

    def __init__(self, orchestrator: Orchestrator, *, clock: Callable[[], float] = time.time):
        self.orchestrator = orchestrator
        self._clock = clock
        self._owner = f"{socket.gethostname()}:{os.getpid()}"
        self._definitions: dict[str, ScheduleDefinition] | None = None
        self._step = threading.Lock()  # one step at a time
        self._wakeup = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._git_due: float | None = None  # when the project's git repository is synced next

    # -- one step --------------------------------------------------------------------------
    def sync(self, now: float | datetime | None = None) -> list[ScheduleDefinition]:
        """Write the project's schedule definitions to the metadata store; return them.
        A schedule's pause state and claimed ticks are kept."""
        found = schedule_definitions(self.orchestrator)
        at = self._now(now)
        self.orchestrator.metadata.sync_schedules(found, now=at.timestamp())
        self._definitions = {d.name: d for d in found}
        return found

    def run_due(self, now: float | datetime | None = None) -> list[FiredTick]:
        """Claim and fire every tick due at ``now`` (default: the clock); the ticks this service
        claimed, oldest first per schedule. Definitions are synced first if they never were."""
        at = self._now(now)
        with self._step:
            if self._definitions is None:
                self.sync(at)
            assert self._definitions is not None
            stored = {r.name: r for r in self.orchestrator.metadata.list_schedules()}
            fired: list[FiredTick] = []
            for name, definition in sorted(self._definitions.items()):
                record = stored.get(name)
                if record is None or record.paused:
                    continue
                for tick in due(schedule_of(definition), _floor(record), at):
                    outcome = self._fire(definition, tick, at)
                    if outcome is not None:
                        fired.append(outcome)
            return fired

    def next_wake(self, now: float | datetime | None = None) -> datetime | None:
        """The first tick after ``now`` of any defined schedule, paused or not (None: none)."""
        at = self._now(now)
        if self._definitions is None:
            return None
        upcoming = [next_tick(schedule_of(d), at) for d in self._definitions.values()]
        return min((t for t in upcoming if t is not None), default=None)

    def _fire(
        self, definition: ScheduleDefinition, tick: datetime, now: datetime
    ) -> FiredTick | None:
        from klaw.service.orchestrator import RunRequest

        began = time.perf_counter()
        store = self.orchestrator.metadata
        key = tick_key(tick)
        if not store.claim_tick(definition.name, key, now=now.timestamp(), owner=self._owner):
            return None  # another service fired it, or the schedule was paused meanwhile
        run_id = error = None
        try:
            # once the workflow has a version in prod, its schedule runs that version
            deployed = {d.environment for d in store.list_deployments(definition.workflow)}
            environment = "prod" if "prod" in deployed else None
            request = RunRequest(workflow=definition.workflow, environment=environment)
            run_id = self.orchestrator.start(request).run_id
            # from the tick to the run started: how late the service saw it, and the start
            lag = now.timestamp() - tick.timestamp() + time.perf_counter() - began
            metrics.trigger_lag(definition.name, lag)
        except KlawError as exc:
            error = f"{type(exc).__name__}: {exc.message}"
        except Exception as exc:  # a bug: record and log it, keep firing the other schedules
            error = f"{type(exc).__name__}: {exc}"
            _log.error("schedule tick crashed", schedule=definition.name, tick=key, exc_info=True)
        if error is None:
            _log.info("schedule fired", schedule=definition.name, tick=key, run_id=run_id)
        else:
            _log.warning(
                "schedule tick started no run", schedule=definition.name, tick=key, error=error
            )
        try:
            store.finish_tick(definition.name, key, run_id=run_id, error=error)
        except KlawError as exc:
            _log.error(
                "could not record a fired tick",
                schedule=definition.name,
                tick=key,
                run_id=run_id,
                error=exc.message,
            )
        return FiredTick(definition.name, tick, run_id, error)

    def _now(self, now: float | datetime | None) -> datetime:
        if now is None:
            now = self._clock()
        if isinstance(now, datetime):
            if now.tzinfo is None or now.utcoffset() is None:
                raise ValueError(
                    f"now={now.isoformat()} has no time zone; pass an aware datetime "
                    "(for example datetime.now(UTC)) or epoch seconds"
                )
            return now.astimezone(UTC)
        return datetime.fromtimestamp(now, UTC)

    # -- the loop --------------------------------------------------------------------------
    def start(self) -> None:
        """Sync the definitions, then fire due ticks on a background thread until ``stop()``."""
        if self._thread is not None:
            raise RuntimeError("this TriggerService is already started; stop() it first")
        self.sync()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="klaw-triggers", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Step now instead of at the next tick (after a pause or resume made elsewhere)."""
        self._wakeup.set()

    def stop(self, timeout: float | None = 30.0) -> None:
        """End the loop and wait (at most ``timeout`` seconds) for its thread. Runs already
        started go on: they belong to the orchestrator (``Orchestrator.shutdown`` stops them)."""
        self._stopping = True
        self._wakeup.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(timeout)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def poll_git(self, now: float | None = None) -> float | None:
        """Sync the project's git repository when ``[lifecycle.git] poll_interval`` (seconds,
        or ``5m``, ``1h``) says it is time; the seconds until the next sync (None: no
        polling). A broken commit is logged with the commit and file; nothing changes."""
        from klaw.durations import parse_duration
        from klaw.service.dispatcher import Dispatcher
        from klaw.service.gitsync import sync
        from klaw.service.lifecycle import Caller

        table = self.orchestrator.project.lifecycle.get("git")
        every = table.get("poll_interval") if isinstance(table, dict) else None
        if every is None:
            return None
        where = f"{self.orchestrator.project.file} [lifecycle.git] poll_interval"
        interval = (
            float(every)
            if isinstance(every, int | float) and every > 0
            else parse_duration(str(every), flag=where)
        )
        at = self._clock() if now is None else now
        if self._git_due is not None and at < self._git_due:
            return self._git_due - at
        self._git_due = at + interval
        releases = Dispatcher(self.orchestrator).releases
        reply = sync(releases, Caller("git:poll", "operator"), dry_run=False)
        for change in reply.changes:
            if change.action == "error":
                _log.warning("git sync: a folder does not load", error=change.error)
            elif change.action == "created":
                _log.info("git sync: new version", workflow=change.workflow, version=change.version)
        return interval

    def _loop(self) -> None:
        while not self._stopping:
            self._wakeup.clear()
            delay: float | None
            try:
                now = self._clock()
                self.run_due(now)
                wake = self.next_wake(now)
                delay = None if wake is None else max(0.0, wake.timestamp() - self._clock())
                git = self._poll_git_safely(now)
                if git is not None:
                    delay = git if delay is None else min(delay, git)
            except Exception as exc:  # never let the loop die: log, wait, try again
                _log.error(
                    "trigger service step failed",
                    error=f"{type(exc).__name__}: {exc}",
                    retry_in=RETRY_DELAY_S,
                    exc_info=not isinstance(exc, KlawError),
                )
                delay = RETRY_DELAY_S
            if not self._stopping:
                self._wakeup.wait(delay)

    def _poll_git_safely(self, now: float) -> float | None:
        try:
            return self.poll_git(now)
        except KlawError as exc:  # the repository cannot be read now: say so, try again later
            _log.warning("git sync failed", error=exc.message, hint=exc.hint)
            return RETRY_DELAY_S


def _floor(record: ScheduleRecord) -> datetime:
    """The instant after which a schedule's ticks may fire: the newest of its last claimed
    tick, the last change of its definition and its last resume."""
    floor = datetime.fromtimestamp(max(record.updated_at, record.resumed_at or 0.0), UTC)
    if record.last_tick is not None:
        floor = max(floor, parse_tick_key(record.last_tick))
    return floor
