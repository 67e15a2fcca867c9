"""The run launcher: preparing a run (params, secrets, plan, executor, the run record) and
running it, in this process or on a background thread, or in a run worker of its own when the
orchestrator keeps user code out of the process. Every run goes through :meth:`prepare`, or
:meth:`continuing` for one taken over by recovery; both build the runner the same way."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from klaw import telemetry
from klaw.authoring.params import dump_params, resolve_params
from klaw.errors import (
    AssetNotFoundError,
    DefinitionError,
    KlawError,
    MetadataError,
    PromotionError,
    SelectionError,
)
from klaw.execution.signals import cancel_on_signals
from klaw.failpoints import failpoint
from klaw.graph.plan import Plan
from klaw.ids import AssetRef, new_run_id
from klaw.metadata.records import AttemptRecord, EventRecord, RunRecord
from klaw.observability import get_logger
from klaw.service.wiring import make_executor
from klaw.states import RunState, StageState

if TYPE_CHECKING:
    from klaw.authoring.workflow import Workflow
    from klaw.execution.runner import Runner
    from klaw.service.orchestrator import Orchestrator, RunRequest

_log = get_logger(__name__)


class Launcher:
    """Starts the runs of one orchestrator and keeps the runners it drives in this process."""

    def __init__(self, orch: Orchestrator) -> None:
        self._orch = orch
        self._active: dict[str, Runner] = {}  # run id -> runner driven by this process
        self._threads: dict[str, threading.Thread] = {}  # runs started with start()

    def active(self, run_id: str) -> Runner | None:
        """The runner of ``run_id`` if this process drives it."""
        return self._active.get(run_id)

    def run(
        self,
        request: RunRequest,
        *,
        on_events: Callable[[list[EventRecord]], None] | None = None,
        on_start: Callable[[RunRecord, Plan], None] | None = None,
    ) -> RunRecord:
        """Validate, plan and run a workflow to the end in this process (in a run worker, with
        :meth:`isolate_user_code`: ``on_events`` and ``on_start`` are then not called)."""
        if self._orch.workers is not None:
            created = self._orch.workers.start(request)
            self._orch.workers.wait(created.run_id)
            return self._orch.metadata.get_run(created.run_id)
        runner = self.prepare(request, on_events)
        run = runner.run
        self._active[run.run_id] = runner
        try:
            if on_start is not None:
                on_start(run, runner.plan)
            with cancel_on_signals(runner):  # Ctrl-C and SIGTERM cancel the run
                return runner.execute()
        finally:
            del self._active[run.run_id]

    def start(self, request: RunRequest) -> RunRecord:
        """Validate, plan and record a run, then run it on a background thread of this process.
        Returns the run as created (``queued``); bad input is refused before anything is
        recorded, as with :meth:`run`. With run workers (:meth:`isolate_user_code`) the run
        is prepared and run in a worker process instead."""
        if self._orch.workers is not None:
            return self._orch.workers.start(request)
        runner = self.prepare(request)
        created = msgspec.structs.replace(runner.run)
        self.launch(runner)
        return created

    def _background(self, runner: Runner) -> None:
        run_id = runner.run.run_id
        try:
            runner.execute()
        except Exception as exc:  # recorded by the runner where it could be; never lost silently
            _log.error("background run failed", run_id=run_id, error=repr(exc), exc_info=True)
        finally:
            self._active.pop(run_id, None)
            self._threads.pop(run_id, None)

    def wait(self, run_id: str, *, timeout: float | None = None) -> bool:
        """Wait for a run started here with :meth:`start` to end; True once it has."""
        if self._orch.workers is not None and run_id in self._orch.workers:
            return self._orch.workers.wait(run_id, timeout)
        thread = self._threads.get(run_id)
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def shutdown(self, *, wait: float = 30.0) -> None:
        """Cancel the runs this process drives in the background and wait for them to stop."""
        for runner in list(self._active.values()):
            runner.cancel()
        if self._orch.workers is not None:
            self._orch.workers.shutdown(wait)
        deadline = time.monotonic() + wait
        for thread in list(self._threads.values()):
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def prepare(
        self,
        request: RunRequest,
        on_events: Callable[[list[EventRecord]], None] | None = None,
    ) -> Runner:
        """Everything before a run starts: params, plan, executor, the run record."""
        from klaw.execution.runner import Reused

        workflow, plan_of, pinned = self._definition(request.workflow, request.environment)
        self._orch.check_lake()  # an object-storage lake is reachable before a run is recorded
        values = dict(request.params or {})
        selection = request.selection
        reused: dict[str, Reused] = {}
        parent: RunRecord | None = None
        if request.resume is not None:
            parent = self._orch.metadata.get_run(request.resume)
            if parent.workflow != workflow.name:
                raise SelectionError(
                    f"Run {parent.run_id} is of workflow {parent.workflow!r}, not "
                    f"{workflow.name!r}.",
                    hint=f"Use `klaw run {parent.workflow} --resume {parent.run_id}`.",
                )
            if not parent.state.terminal or parent.state is RunState.SUCCEEDED:
                raise MetadataError(
                    f"Run {parent.run_id} is {parent.state.value}; only a failed or cancelled "
                    "run can be resumed.",
                )
            values = {**parent.params, **values}
            selection = selection if selection is not None else parent.selection
        params = self._orch.secrets.resolve(workflow, resolve_params(workflow, values))
        plan = plan_of(selection)
        if parent is not None:
            reused = self._reusable(parent, plan)
        external = self.external_refs(plan)
        run = RunRecord(
            run_id=new_run_id(),
            workflow=workflow.name,
            state=RunState.QUEUED,
            created_at=time.time(),
            params=dump_params(params),
            selection=selection,
            parent_run_id=parent.run_id if parent else None,
            owner_host=socket.gethostname(),
            owner_pid=os.getpid(),
            version=pinned,
            environment=request.environment,
        )
        executor = self._executor(request.executor or workflow.executor, request.max_workers)
        self._orch.metadata.create_run(run, max_active=workflow.max_active_runs)
        failpoint("after_create_run")
        return self._runner(
            plan,
            run,
            executor,
            fail_fast=request.fail_fast,
            params=params,
            reused=reused,
            external=external,
            on_events=on_events,
        )

    def _definition(
        self, name: str, environment: str | None
    ) -> tuple[Workflow, Callable[[str | None], Plan], int | None]:
        """The workflow a run runs, how to plan it, and the version it is: the project's
        files (the version holding them, if one does) or, with ``environment``, the version
        deployed there (loaded from its own files when the project's differ)."""
        from klaw.service import versions

        orch = self._orch
        store = orch.metadata
        if environment is None:
            workflow = orch.workflow(name)
            held = _held_version(orch, workflow)
            return workflow, lambda selection: orch.plan(name, selection), held
        deployed = {d.environment: d for d in store.list_deployments(name)}.get(environment)
        if deployed is None:
            raise PromotionError(
                f"Workflow {name!r} has no version deployed in {environment}.",
                hint=f"`klaw versions list {name}` shows its deployments; promote one first.",
            )
        text = store.version_content(name, deployed.version)
        assert text is not None  # a deployed version is never deleted
        content = msgspec.json.decode(text, type=versions.Content)
        try:
            current = orch.workflow(name)
        except DefinitionError:
            current = None
        if current is not None and _held_hash(orch, current) == content.hash:
            return current, lambda selection: orch.plan(name, selection), deployed.version
        workflow = versions.load(orch.settings.home / "versions", content)
        return (
            workflow,
            lambda selection: orch.catalog.plan_of(workflow, selection)[1],
            deployed.version,
        )

    def continuing(self, run: RunRecord) -> Runner:
        """A runner that continues ``run`` (taken over by recovery) from its recorded
        attempts: succeeded asset stages are reused, attempt numbers continue."""
        from klaw.execution.runner import Reused

        workflow = self._orch.workflow(run.workflow)
        params = self._orch.secrets.resolve(workflow, resolve_params(workflow, run.params))
        plan = self._orch.plan(workflow.name, run.selection)
        before: dict[str, int] = {}
        succeeded: dict[str, AttemptRecord] = {}
        for attempt in self._orch.metadata.list_attempts(run.run_id):
            before[attempt.stage] = max(before.get(attempt.stage, 0), attempt.attempt)
            if attempt.state is StageState.SUCCEEDED:
                succeeded[attempt.stage] = attempt
        reused: dict[str, Reused] = {}
        for name, record in succeeded.items():
            if name in plan.upstream and record.asset_key and record.snapshot_id is not None:
                ref = AssetRef(record.asset_key, record.snapshot_id)
                reused[name] = Reused(ref, record.reused_from or run.run_id)
        # A stage whose value lived only in memory is done when everything that reads it is.
        done = set(reused)
        for name in reversed(plan.stages):
            readers = [d for d in plan.stages if name in plan.upstream[d]]
            if name in succeeded and all(d in done for d in readers):
                done.add(name)
        return self._runner(
            plan,
            run,
            self._executor(workflow.executor, None),
            params=params,
            reused=reused,
            done=frozenset(done - set(reused)),
            external=self.external_refs(plan),
            attempts_before=before,
            recovered=True,
        )

    def _executor(self, kind: str | None, max_workers: int | None) -> Any:
        """The executor of a run (a bad kind is refused before a run is recorded)."""
        orch = self._orch
        return make_executor(
            orch.settings, orch.lake, kind=kind, max_workers=max_workers, leases=orch.leases
        )

    def _runner(self, plan: Plan, run: RunRecord, executor: Any, **options: Any) -> Runner:
        """The runner of ``run``, with the settings every run shares and ``options``."""
        from klaw.execution.runner import Runner, RunOptions

        settings = self._orch.settings
        shared = RunOptions(
            stop_grace=settings.executor.stop_grace,
            io_timeout=settings.executor.stage_io_timeout,
            lease_ttl=settings.executor.lease_ttl,
            metadata_queue=settings.metadata.queue,
            trace=telemetry.carrier(),  # a run launched inside a traced request is its child
            **options,
        )
        return Runner(plan, run, executor=executor, metadata=self._orch.metadata, options=shared)

    # -- crash recovery --------------------------------------------------------------------------
    def recover(self) -> list[RunRecord]:
        """Take over every active run whose owner process on this host has died and continue
        it in the background (see :mod:`klaw.service.recovery`). Returns the runs taken."""
        from klaw.service.recovery import recover

        return recover(self._orch)

    def launch(self, runner: Runner) -> None:
        """Run ``runner`` on a background thread of this process (``start``, recovery)."""
        run_id = runner.run.run_id
        self._active[run_id] = runner
        thread = threading.Thread(
            target=self._background, args=(runner,), name=f"klaw-run-{run_id}", daemon=True
        )
        self._threads[run_id] = thread
        thread.start()

    def _reusable(self, parent: RunRecord, plan: Plan) -> dict[str, Any]:
        """Stages of ``parent`` whose snapshots can stand in for running them again."""
        from klaw.execution.runner import Reused

        best: dict[str, AttemptRecord] = {}
        for attempt in self._orch.metadata.list_attempts(parent.run_id):
            if attempt.state is StageState.SUCCEEDED and attempt.snapshot_id is not None:
                best[attempt.stage] = attempt
        reused: dict[str, Reused] = {}
        for name in plan.stages:
            record = best.get(name)
            if record is not None and record.asset_key is not None:
                assert record.snapshot_id is not None
                origin = record.reused_from or parent.run_id
                reused[name] = Reused(AssetRef(record.asset_key, record.snapshot_id), origin)
        return reused

    def external_refs(self, plan: Plan) -> dict[str, AssetRef]:
        """The latest snapshot of every unselected upstream asset the plan reads."""
        refs: dict[str, AssetRef] = {}
        for stage, ups in plan.external.items():
            for up in ups:
                key = plan.graph.foreign.get(up) or plan.graph.stages[up].asset_key
                assert key is not None
                if up in refs:
                    continue
                try:
                    snaps = self._orch.lake().snapshots(key, limit=1)
                except AssetNotFoundError:
                    snaps = []
                if not snaps:
                    owner = self._orch.producers().get(key, ("?", "?"))[0]
                    if up in plan.graph.foreign:
                        raise SelectionError(
                            f"Stage {stage!r} reads asset {key!r} of workflow {owner!r}, which "
                            "has no snapshot yet.",
                            hint=f"Run that workflow first: klaw run {owner}.",
                        )
                    raise SelectionError(
                        f"Stage {stage!r} reads asset {key!r}, which is not selected and has no "
                        "snapshot yet.",
                        hint=f"Run it first, or select it too: --select +{stage}.",
                    )
                refs[up] = AssetRef(key, snaps[-1].snapshot)
        return refs


def _held_hash(orch: Orchestrator, workflow: Workflow) -> str | None:
    """The content hash of ``workflow``'s files as they are (None: they cannot be read)."""
    from klaw.service.versions import content_hash, source_files

    try:
        kind, files = source_files(orch.project, workflow.name, workflow.source)
    except KlawError:
        return None
    return content_hash(workflow.name, kind, files)


def _held_version(orch: Orchestrator, workflow: Workflow) -> int | None:
    """The version whose content is ``workflow``'s files as they are, if one is."""
    if not workflow.source:
        return None  # defined in a notebook or test: no files
    digest = _held_hash(orch, workflow)
    found = orch.metadata.version_by_hash(workflow.name, digest) if digest else None
    return found.version if found is not None else None
