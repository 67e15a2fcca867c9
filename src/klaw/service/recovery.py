"""Crash recovery: taking over runs whose owner process died, and finishing them.

``klaw server`` calls :func:`recover` when it starts. A run that is queued or running and
whose owner process on this host is gone is taken over in one conditional update (so two
processes never both take it); every attempt that had not ended is ended ``failed`` (fenced:
nothing it sends later is kept); then the run continues from what was recorded: asset stages
that succeeded are not run again, and the fenced attempts run again as new attempts.
"""

from __future__ import annotations

import os
import socket
import time
from typing import TYPE_CHECKING

import msgspec

from klaw.errors import KlawError
from klaw.metadata import journal
from klaw.metadata.records import Batch, RunFilter, RunRecord
from klaw.metadata.rows import owner_alive
from klaw.observability import get_logger
from klaw.states import EventKind, RunState

if TYPE_CHECKING:
    from klaw.execution.runner import Runner
    from klaw.service.orchestrator import Orchestrator

_log = get_logger(__name__)


def recover(orch: Orchestrator) -> list[RunRecord]:
    """Take over every active run whose owner on this host died; continue each in the
    background (in a run worker of its own when the orchestrator has them). Returns the runs
    taken over."""
    taken: list[RunRecord] = []
    for run in abandoned(orch):
        if orch.workers is not None:
            found = orch.workers.recover(run.run_id)
            if found is not None:
                taken.append(found)
            continue
        runner = take(orch, run)
        if runner is not None:
            taken.append(msgspec.structs.replace(runner.run))
            orch.launch(runner)
    return taken


def abandoned(orch: Orchestrator) -> list[RunRecord]:
    """The queued or running runs whose owner process on this host is gone."""
    active = RunFilter(states=(RunState.QUEUED, RunState.RUNNING), limit=10_000)
    return [
        run
        for run in orch.metadata.list_runs(active)
        if run.owner_pid != os.getpid() and not owner_alive(run.owner_host, run.owner_pid)
    ]


def take(orch: Orchestrator, run: RunRecord) -> Runner | None:
    """Make this process the owner of abandoned ``run`` and a runner that continues it; None
    when another process took it first, or when it could not be continued (then it is ended
    ``failed`` with the reason)."""
    me = (socket.gethostname(), os.getpid())
    owner = (run.owner_host, run.owner_pid)
    reason = f"lost: the process that ran it (pid {run.owner_pid}) died"
    fenced = orch.metadata.adopt_run(run.run_id, owner, me, reason)
    if fenced is None:  # another process took it first
        return None
    run.owner_host, run.owner_pid = me
    now = time.time()
    events = [journal.event(run.run_id, EventKind.RUN_RECOVERING, ts=now)]
    orch.metadata.commit(Batch(events=events + journal.lost(run.run_id, fenced, reason, ts=now)))
    try:  # after the fence, so attempt numbers continue past the fenced ones
        runner = continuing(orch, run)
    except KlawError as exc:  # the definition changed or vanished: end the run
        _end(orch, run, f"could not be recovered: {exc.message}")
        return None
    _log.warning("recovering run", run_id=run.run_id, workflow=run.workflow)
    return runner


def end_lost(orch: Orchestrator, run: RunRecord, owner: tuple[str, int], reason: str) -> bool:
    """End ``run``, whose owner process ``owner`` died, ``failed`` with ``reason``: the
    attempts it ran are fenced and ended with the reason too. False when the run had already
    ended or another process has taken it."""
    me = (socket.gethostname(), os.getpid())
    fenced = orch.metadata.adopt_run(run.run_id, owner, me, reason)
    if fenced is None:
        return False
    orch.metadata.commit(Batch(events=journal.lost(run.run_id, fenced, reason)))
    run.owner_host, run.owner_pid = me
    running = sorted({a.stage for a in fenced})
    _end(orch, run, reason + (f", while {_names(running)} ran" if running else ""))
    return True


def _names(stages: list[str]) -> str:
    quoted = ", ".join(repr(s) for s in stages)
    return f"stage {quoted}" if len(stages) == 1 else f"stages {quoted}"


def continuing(orch: Orchestrator, run: RunRecord) -> Runner:
    """A runner that continues ``run`` from its recorded attempts."""
    return orch.launcher.continuing(run)


def _end(orch: Orchestrator, run: RunRecord, error: str) -> None:
    orch.metadata.commit(journal.ended(run, RunState.FAILED, error))
