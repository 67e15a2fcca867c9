"""Run workers: under ``klaw server``, ``klaw api`` and ``klaw dev`` every run executes in a
process of its own, so user code never runs in a process that serves people.

The serving process asks :class:`RunWorkers` to start (or recover) a run. A worker is forked
from a fork server that has Klaw imported already; it imports the project's workflows afresh,
prepares the run (params, plan, the run record) exactly as ``klaw run`` does, and answers with
the run it created or the error that refused it. It then runs the run to the end on the
configured executor, owning the run (``owner_pid`` is the worker's) and its leases, and writing
to the metadata store as any run does.

The serving process keeps a pipe to each worker: the outcomes remote agents report travel
down it; a cancel is a SIGTERM to the worker, as for any run's owner. It watches each worker
too: a worker that exits while its run is unfinished (a stage called ``os._exit``, segfaulted,
or was killed for memory) has its run ended ``failed`` with what happened, and the server goes
on serving. With ``run_memory_limit`` set, a worker whose resident memory (with its
children's) goes over it is killed.

A worker whose server went away (killed, say) stops at once, with all it runs, as if it had
been killed with the server: nothing runs without a server watching it, and the next server
to start recovers the run (its finished stages are kept, the rest run again).
"""

from __future__ import annotations

import itertools
import os
import signal
import socket
import threading
import time
from contextlib import suppress
from dataclasses import dataclass, field
from multiprocessing import forkserver
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from klaw import metrics, telemetry
from klaw.errors import DefinitionError, KlawError, MetadataError
from klaw.observability import get_logger
from klaw.protocol.errors import error_reply, from_reply, internal_reply
from klaw.protocol.replies import ErrorReply
from klaw.service import forks

if TYPE_CHECKING:
    from klaw.execution.runner import Runner
    from klaw.execution.task import Outcome
    from klaw.metadata.records import RunRecord
    from klaw.service.orchestrator import Orchestrator, RunRequest
    from klaw.service.project import Project
    from klaw.settings import KlawSettings

_log = get_logger(__name__)

WATCH_EVERY: Final = 0.25  # seconds between looks at a worker's memory
REPLY_WAIT: Final = 30.0  # seconds a forwarded report may wait for the worker's answer
PREPARE_MARGIN: Final = 30.0  # seconds a worker may take to prepare beyond importing


@dataclass(frozen=True, slots=True)
class _Job:
    """What a worker is asked: start ``request``, or continue abandoned run ``recover``."""

    request: RunRequest | None = None
    recover: str | None = None
    skip: frozenset[str] = frozenset()  # workflow modules that failed their import check
    trace: dict[str, str] = field(default_factory=dict)  # W3C context the run is a child of


@dataclass(slots=True)
class _Worker:
    process: BaseProcess
    conn: Connection
    run_id: str
    lock: threading.Lock = field(default_factory=threading.Lock)
    over_memory: int | None = None  # the resident bytes it was killed at, if it was
    done: threading.Event = field(default_factory=threading.Event)


class RunWorkers:
    """Starts, watches and stops the run workers of one serving process."""

    def __init__(self, orch: Orchestrator) -> None:
        self._orch = orch
        self._ctx = forks.context()
        forkserver.ensure_running()
        # one empty worker, so the fork server has Klaw imported before the first run asks
        warm = self._ctx.Process(target=_noop, name="klaw-run-worker-warmup", daemon=True)
        warm.start()
        threading.Thread(target=warm.join, name="klaw-run-worker-warmup", daemon=True).start()
        self._workers: dict[str, _Worker] = {}
        self._lock = threading.Lock()
        self._ids = itertools.count(1)

    # -- starting ------------------------------------------------------------------------------
    def start(self, request: RunRequest) -> RunRecord:
        """Start ``request`` in a new worker; the run it created (``queued``). Bad input is
        refused with the error the worker raised, before anything is recorded."""
        run = self._spawn(_Job(request=request, skip=self._skip(), trace=telemetry.carrier()))
        assert run is not None
        return run

    def recover(self, run_id: str) -> RunRecord | None:
        """Continue abandoned run ``run_id`` in a new worker; the run, or None when another
        process took it first or it could not be continued (it is then ended failed)."""
        return self._spawn(_Job(recover=run_id, skip=self._skip()))

    def _skip(self) -> frozenset[str]:
        return frozenset(self._orch.load_errors)

    def _spawn(self, job: _Job) -> RunRecord | None:
        orch = self._orch
        settings = orch.settings
        mine, theirs = self._ctx.Pipe()
        process = self._ctx.Process(
            target=_worker_main,
            args=(theirs, orch.project, settings, job),
            name=f"klaw-run-worker-{next(self._ids)}",
        )
        process.start()
        theirs.close()
        wait = settings.executor.definition_load_timeout + PREPARE_MARGIN
        try:
            if not mine.poll(wait):
                raise DefinitionError(
                    f"The run's worker process did not finish loading the project and preparing "
                    f"the run within {wait:g} s.",
                    hint="A workflow module may hang at import; `klaw validate` names it. "
                    "KLAW_EXECUTOR__DEFINITION_LOAD_TIMEOUT sets how long a module may take.",
                )
            kind, value = mine.recv()
        except EOFError:
            process.join(5.0)
            raise MetadataError(
                f"The run's worker process ended ({_ending(process.exitcode)}) before it "
                "prepared the run; nothing was recorded.",
                hint="Run `klaw validate`, or the same run with `klaw run` to see the error.",
            ) from None
        except BaseException:
            _kill(process)
            mine.close()
            raise
        if kind == "refused":
            process.join(5.0)
            mine.close()
            raise from_reply(value)
        if kind == "skipped":
            process.join(5.0)
            mine.close()
            return None
        run: RunRecord = value
        worker = _Worker(process, mine, run.run_id)
        with self._lock:
            self._workers[run.run_id] = worker
        threading.Thread(
            target=self._watch, args=(worker,), name=f"klaw-watch-{run.run_id}", daemon=True
        ).start()
        return run

    # -- while it runs -------------------------------------------------------------------------
    def __contains__(self, run_id: str) -> bool:
        with self._lock:
            return run_id in self._workers

    def cancel(self, run_id: str) -> bool:
        """Ask the worker of ``run_id`` to cancel its run (SIGTERM, as ``klaw cancel`` does: it
        also stops a stage running on the runner's own thread); False when no worker here has
        it."""
        worker = self._get(run_id)
        if worker is None or worker.process.pid is None:
            return False
        with suppress(ProcessLookupError):  # already ending: its watcher records how
            os.kill(worker.process.pid, signal.SIGTERM)
        return True

    def report(self, run_id: str, outcome: Outcome) -> bool:
        """Hand a remote agent's outcome to the worker of ``run_id`` and wait for its answer;
        False when no worker here has the run. The worker's refusal is raised here."""
        worker = self._get(run_id)
        if worker is None:
            return False
        with worker.lock:
            try:
                worker.conn.send(("report", outcome))
                if not worker.conn.poll(REPLY_WAIT):
                    raise MetadataError(
                        f"The worker of run {run_id} did not answer a report within "
                        f"{REPLY_WAIT:g} s.",
                        hint="Send it again; the run may be ending.",
                    )
                kind, value = worker.conn.recv()
            except (OSError, EOFError):
                raise _gone(run_id) from None
        if kind == "refused":
            raise from_reply(value)
        return True

    def wait(self, run_id: str, timeout: float | None = None) -> bool:
        """Wait for the worker of ``run_id`` to end and its end to be recorded; True once it
        has (or when no worker here has the run)."""
        worker = self._get(run_id)
        return worker is None or worker.done.wait(timeout)

    def shutdown(self, wait: float) -> None:
        """Cancel every worker's run and wait up to ``wait`` seconds (plus the time a stopped
        stage has to end) for them to stop; a worker still running then is killed."""
        with self._lock:
            workers = list(self._workers.values())
        for worker in workers:
            self.cancel(worker.run_id)
        deadline = time.monotonic() + wait + self._orch.settings.executor.stop_grace
        for worker in workers:
            if not worker.done.wait(max(0.0, deadline - time.monotonic())):
                _kill(worker.process)
                worker.done.wait(10.0)

    def _get(self, run_id: str) -> _Worker | None:
        with self._lock:
            return self._workers.get(run_id)

    def _watch(self, worker: _Worker) -> None:
        """Wait for the worker to end, killing it if it goes over the memory limit; then end
        its run ``failed`` if the worker could not."""
        limit = self._orch.settings.executor.run_memory_limit
        process = worker.process
        try:
            while process.is_alive():
                process.join(WATCH_EVERY if limit else None)
                if limit and process.is_alive() and process.pid is not None:
                    used = tree_rss(process.pid)
                    if used > limit:
                        worker.over_memory = used
                        _kill(process)
            process.join()
            self._settle(worker)
            metrics.sweep()  # what the worker counted joins the archive
        except Exception as exc:  # never lose the watcher silently: the run would stay open
            _log.error("run worker watch failed", run_id=worker.run_id, error=repr(exc))
        finally:
            with self._lock:
                self._workers.pop(worker.run_id, None)
            worker.conn.close()
            worker.done.set()

    def _settle(self, worker: _Worker) -> None:
        from klaw.service.recovery import end_lost

        orch = self._orch
        run = orch.metadata.get_run(worker.run_id)
        if run.state.terminal:
            return
        reason = self._reason(worker)
        if end_lost(orch, run, (socket.gethostname(), worker.process.pid or 0), reason):
            _log.error("run worker died", run_id=run.run_id, reason=reason)

    def _reason(self, worker: _Worker) -> str:
        code = worker.process.exitcode
        limit = self._orch.settings.executor.run_memory_limit
        if worker.over_memory is not None and limit:
            return (
                f"the run's worker process was stopped: it used {_mib(worker.over_memory)} of "
                f"memory, over run_memory_limit ({_mib(limit)})"
            )
        return f"the run's worker process {_ending(code)}"


# -- in the worker -------------------------------------------------------------------------------
def _worker_main(conn: Connection, project: Project, settings: KlawSettings, job: _Job) -> None:
    """The body of a run worker: prepare, answer, run to the end."""
    from klaw.execution.signals import cancel_on_signals
    from klaw.service.orchestrator import Orchestrator
    from klaw.service.project import load_workflows

    os.setpgrp()  # a Ctrl-C at the server's terminal is the server's to handle
    orch = Orchestrator(project, settings)
    try:
        orch.replace_workflows(load_workflows(project, skip=job.skip))
        with telemetry.attached(job.trace):
            runner = _prepare(orch, job)
    except KlawError as exc:
        conn.send(("refused", error_reply(exc)))
        orch.close()
        return
    except Exception as exc:
        conn.send(("refused", _internal(exc)))
        orch.close()
        raise
    if runner is None:
        conn.send(("skipped", None))
        orch.close()
        return
    import msgspec

    conn.send(("created", msgspec.structs.replace(runner.run)))
    listener = threading.Thread(target=_listen, args=(conn, runner), name="klaw-worker-pipe")
    listener.daemon = True
    listener.start()
    try:
        with cancel_on_signals(runner):  # SIGTERM (`klaw cancel`, the server) cancels the run
            runner.execute()
    finally:
        orch.close()
        telemetry.flush()  # the run's spans and metrics leave before the worker does
        metrics.flush()


def _prepare(orch: Orchestrator, job: _Job) -> Runner | None:
    if job.request is not None:
        return orch.prepare(job.request)
    from klaw.service.recovery import take

    assert job.recover is not None
    run = orch.metadata.get_run(job.recover)
    return None if run.state.terminal else take(orch, run)


def _noop() -> None:
    """The body of the warm-up worker."""


def _listen(conn: Connection, runner: Runner) -> None:
    """Reports from the server, until it goes away: then this worker stops with everything
    it runs (the next server recovers the run)."""
    while True:
        try:
            _, value = conn.recv()
        except (EOFError, OSError):
            _log.warning("serving process gone; stopping this run worker", run_id=runner.run.run_id)
            os.killpg(os.getpgrp(), signal.SIGKILL)
            return
        try:
            runner.report(value)
        except KlawError as exc:
            answer: tuple[str, Any] = ("refused", error_reply(exc))
        except Exception as exc:
            answer = ("refused", _internal(exc))
        else:
            answer = ("reported", None)
        with suppress(OSError):
            conn.send(answer)


def _internal(exc: BaseException) -> ErrorReply:
    return internal_reply(
        f"The run's worker failed: {type(exc).__name__}: {exc}",
        "This is a bug in Klaw; the server's log has the traceback.",
    )


# -- helpers -----------------------------------------------------------------------------------
def tree_rss(pid: int) -> int:
    """Resident bytes of process ``pid`` and all its descendants (Linux ``/proc``; 0 where
    that cannot be read)."""
    page = os.sysconf("SC_PAGE_SIZE")
    total = 0
    pending = [pid]
    seen: set[int] = set()
    while pending:
        current = pending.pop()
        if current in seen:
            continue
        seen.add(current)
        proc = Path("/proc") / str(current)
        with suppress(OSError, ValueError, IndexError):
            total += int((proc / "statm").read_text().split()[1]) * page
        with suppress(OSError):
            for task in (proc / "task").iterdir():
                with suppress(OSError, ValueError):
                    pending.extend(int(c) for c in (task / "children").read_text().split())
    return total


def _ending(code: int | None) -> str:
    """How a process ended, in words: "exited with code 3", "crashed (SIGSEGV: ...)"."""
    if code is None:
        return "did not end"
    if code >= 0:
        return f"exited with code {code} (a stage may have called os._exit or sys.exit)"
    try:
        sig = signal.Signals(-code)
    except ValueError:
        return f"was killed by signal {-code}"
    if sig is signal.SIGSEGV:
        return "crashed (SIGSEGV: a segmentation fault, e.g. in native code a stage called)"
    if sig is signal.SIGKILL:
        return "was killed (SIGKILL; the system may have run out of memory)"
    description = signal.strsignal(sig) or sig.name
    return f"was killed by {sig.name} ({description})"


def _mib(size: int) -> str:
    return f"{size / 2**20:.0f} MiB"


def _kill(process: BaseProcess) -> None:
    with suppress(OSError, AttributeError):
        process.kill()


def _gone(run_id: str) -> KlawError:
    from klaw.errors import StaleAttemptError

    return StaleAttemptError(
        f"The worker of run {run_id} has ended; the report is refused.",
        hint="The run has ended (its record says how).",
    )
