"""Run control: cancelling a run wherever its owner is, and the reports of workers (lease
heartbeats, outcomes) handed to the runner that drives the run."""

from __future__ import annotations

import os
import signal
import socket
import time
from typing import TYPE_CHECKING

from klaw.errors import MetadataError, StaleAttemptError
from klaw.metadata import journal
from klaw.metadata.records import Lease, RunRecord
from klaw.metadata.rows import owner_alive
from klaw.states import RunState

if TYPE_CHECKING:
    from klaw.execution.task import Outcome
    from klaw.service.orchestrator import Orchestrator


class RunControl:
    """Cancel, heartbeat and report, for the runs of one orchestrator."""

    def __init__(self, orch: Orchestrator) -> None:
        self._orch = orch

    def cancel(self, run_id: str, *, wait: float = 30.0) -> RunRecord:
        """Ask a run to stop and wait until it has: running stages are stopped and the run is
        recorded ``cancelled``. A run whose owner process is gone is marked cancelled here."""
        run = self._orch.metadata.request_cancel(run_id)
        if run.state.terminal:
            return run
        same_host = run.owner_host == socket.gethostname()
        if same_host and owner_alive(run.owner_host, run.owner_pid):
            active = self._orch.launcher.active(run_id)
            if active is not None:  # owned by this process: no signal needed
                active.cancel()
            else:  # its owner (a `klaw run`, a run worker) cancels it on SIGTERM
                os.kill(run.owner_pid, signal.SIGTERM)
            if wait <= 0:
                return run
            seen = [run]

            def stopped() -> bool:
                seen[0] = self._orch.metadata.get_run(run_id)
                return seen[0].state.terminal

            if self._orch.metadata.wait_run(run_id, stopped, wait):  # woken as the run is written
                return seen[0]
            raise MetadataError(
                f"Run {run_id} did not stop within {wait:g} s (owner pid {run.owner_pid}).",
                hint="Try again, or stop the owner process.",
            )
        if same_host:  # the owner died: nothing runs, record the end
            batch = journal.ended(run, RunState.CANCELLED, "cancelled; owner gone")
            self._orch.metadata.commit(batch)
            return run
        raise MetadataError(
            f"Run {run_id} is owned by {run.owner_host}; cancel it there.",
        )

    def heartbeat(self, lease: Lease) -> float:
        """Renew an attempt's lease; the new expiry. ``StaleAttemptError`` once it is fenced."""
        until = time.time() + self._orch.settings.executor.lease_ttl
        if self._orch.metadata.renew_leases([lease], until):
            raise StaleAttemptError(
                f"Stage {lease.stage!r} attempt {lease.attempt} of run {lease.run_id} lost its "
                "lease; stop it and send nothing more.",
                hint="Another attempt has the stage (or the run ended).",
            )
        return until

    def report(self, outcome: Outcome, run_id: str) -> None:
        """Hand a worker's outcome to the runner that drives ``run_id`` in this process (or
        in one of its run workers)."""
        if self._orch.workers is not None and self._orch.workers.report(run_id, outcome):
            return
        runner = self._orch.launcher.active(run_id)
        if runner is None:
            raise StaleAttemptError(
                f"Run {run_id} is not being driven by this Klaw process; the report is refused.",
                hint="Send it to the server that runs the run (or the run has ended).",
            )
        runner.report(outcome)
