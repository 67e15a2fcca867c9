"""The orchestrator: every action Klaw offers, on one object. The CLI (and later the HTTP API,
Flight and cron) call these methods; none of them has logic of its own."""

from __future__ import annotations

import difflib
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from klaw.authoring.params import dump_params, resolve_params
from klaw.authoring.stage import StageKind
from klaw.authoring.workflow import Workflow
from klaw.errors import (
    AssetNotFoundError,
    DefinitionError,
    GraphError,
    KlawError,
    MetadataError,
    SelectionError,
    StaleAttemptError,
)
from klaw.failpoints import failpoint
from klaw.graph.build import WorkflowGraph, build_graph
from klaw.graph.plan import Plan, make_plan
from klaw.ids import AssetRef, new_run_id
from klaw.metadata.records import (
    AttemptRecord,
    Batch,
    EventRecord,
    Lease,
    LogRecord,
    MetricRecord,
    RunFilter,
    RunRecord,
)
from klaw.metadata.rows import owner_alive
from klaw.observability import configure_logging, get_logger
from klaw.service.project import Project, find_project, load_workflows
from klaw.service.wiring import (
    LakeFactory,
    MetadataFactory,
    check_lake,
    make_executor,
    object_store,
    open_metadata,
)
from klaw.settings import KlawSettings, load_settings
from klaw.states import RunState, StageState

if TYPE_CHECKING:
    import pyarrow as pa

    from klaw.authoring.sql import SqlChecks
    from klaw.execution.lease import LeaseKeeper
    from klaw.execution.runner import Runner
    from klaw.execution.task import Outcome
    from klaw.metadata.store import MetadataStore
    from klaw.service.definitions import DefinitionsHost
    from klaw.service.runworker import RunWorkers
    from klaw.service.secrets import SecretResolver
    from klaw.storage.store import AssetInfo, SnapshotInfo


_log = get_logger(__name__)


@dataclass(frozen=True, slots=True)
class RunRequest:
    workflow: str
    selection: str | None = None
    params: Mapping[str, Any] | None = None
    executor: str | None = None
    max_workers: int | None = None
    fail_fast: bool = False
    resume: str | None = None


class Orchestrator:
    """A project with its settings and stores. Stores open lazily, on first use."""

    def __init__(
        self,
        project: Project,
        settings: KlawSettings,
        workflows: Iterable[Workflow] | None = None,
    ) -> None:
        self.project = project
        self.settings = settings.resolve(project.root)
        self.lake = LakeFactory(
            self.settings.catalog, self.settings.data_path, object_store(self.settings)
        )
        self._lake_checked = False
        self._graphs: dict[str, WorkflowGraph] = {}
        self._sql_checks: dict[str, SqlChecks] = {}
        self._active: dict[str, Any] = {}  # run id -> Runner of runs owned by this process
        self._threads: dict[str, threading.Thread] = {}  # runs started with start()
        # set by isolate_user_code() (the serving commands): runs and definitions elsewhere
        self.workers: RunWorkers | None = None
        self.definitions: DefinitionsHost | None = None
        self._load_errors: dict[str, KlawError] = {}
        if workflows is not None:  # given directly (tests, notebooks) instead of imported
            self.__dict__["workflows"] = {wf.name: wf for wf in workflows}
        configure_logging(self.settings.log_level, self.settings.log_format)

    @classmethod
    def open(cls, project_dir: Path | None = None, **flags: Any) -> Orchestrator:
        project = find_project(project_dir)
        return cls(project, load_settings(project.settings, **flags))

    @cached_property
    def metadata(self) -> MetadataStore:
        return open_metadata(self.settings)

    @cached_property
    def leases(self) -> LeaseKeeper:
        """Renews the leases of the attempts this process runs (its workers get a copy)."""
        from klaw.execution.lease import LeaseKeeper

        return LeaseKeeper(MetadataFactory(self.settings, self.metadata), self.settings.lease_ttl)

    @cached_property
    def secrets(self) -> SecretResolver:
        """Looks up the values of the ``klaw.Secret`` params of each run as it is prepared."""
        from klaw.service.secrets import SecretResolver

        return SecretResolver(self.settings, self.project.root)

    def isolate_user_code(self) -> None:
        """Keep user code out of this process, unless ``run_isolation`` is ``thread``: each run
        started here (:meth:`start`, schedules, recovery) runs in a worker process of its own
        (:mod:`klaw.service.runworker`), and the workflow definitions are loaded and served by
        a child process (:mod:`klaw.service.definitions`). The serving commands call this;
        ``klaw run`` and notebooks run in-process."""
        if self.workers is None and self.settings.run_isolation == "process":
            from klaw.service.definitions import DefinitionsHost
            from klaw.service.runworker import RunWorkers

            self.definitions = DefinitionsHost(self.project, self.settings).start()
            self.workers = RunWorkers(self)

    def check_lake(self) -> None:
        """Once, before the first run or serving: a lake in object storage is reachable with
        the configured credentials, or a ConfigError names what is missing (a lake on a file
        system costs nothing here)."""
        if not self._lake_checked:
            check_lake(self.settings)
            self._lake_checked = True

    def close(self) -> None:
        if self.definitions is not None:
            self.definitions.close()
        if "leases" in self.__dict__:
            self.leases.close()
        if "metadata" in self.__dict__:
            self.metadata.close()
        self.lake.close()

    # -- definitions ---------------------------------------------------------------------------
    @cached_property
    def workflows(self) -> dict[str, Workflow]:
        if self.definitions is not None:
            raise RuntimeError(
                "This process serves people and imports no workflow module; ask "
                "Orchestrator.definitions (klaw.service.definitions) instead."
            )
        return load_workflows(self.project)

    @property
    def load_errors(self) -> dict[str, KlawError]:
        """The workflow modules that could not be loaded, and why (serving commands only)."""
        return self.definitions.load_errors if self.definitions is not None else self._load_errors

    @load_errors.setter
    def load_errors(self, errors: dict[str, KlawError]) -> None:
        self._load_errors = dict(errors)

    def workflow_names(self) -> list[str]:
        """The names of the project's workflows, sorted (without importing anything here
        when the definitions live in a child process)."""
        if self.definitions is not None:
            return list(self.definitions.names)
        return sorted(self.workflows)

    def reload_definitions(self) -> list[str]:
        """Load the workflow definitions afresh in a new definitions process; the names.
        When a module no longer loads its error is raised and the old definitions stay."""
        assert self.definitions is not None, "only with isolate_user_code()"
        names = self.definitions.reload()
        self._graphs, self._sql_checks = {}, {}
        return list(names)

    def replace_workflows(self, workflows: dict[str, Workflow]) -> None:
        """Use these definitions from now on (``klaw dev`` reloading changed files). Graphs
        built from the old ones are dropped; runs in progress keep the plan they started with."""
        self.__dict__["workflows"] = dict(workflows)
        self._graphs = {}
        self._sql_checks = {}

    def workflow(self, name: str) -> Workflow:
        found = self.workflows.get(name)
        if found is None:
            close = difflib.get_close_matches(name, list(self.workflows), n=3)
            known = ", ".join(sorted(self.workflows)) or "none"
            raise DefinitionError(
                f"No workflow named {name!r} in project {self.project.name!r}"
                + (f"; did you mean {', '.join(close)}?" if close else f" (workflows: {known})."),
                hint="`klaw workflows list` shows them.",
            )
        return found

    def graph(self, name: str) -> WorkflowGraph:
        if name not in self._graphs:
            workflow = self.workflow(name)
            others = {k: wf for k, (wf, _) in self.producers().items() if wf != name}
            self._graphs[name] = _built_graph(workflow, others)
        return self._graphs[name]

    def validate(self, names: Iterable[str] | None = None) -> dict[str, KlawError | None]:
        """Every named workflow (all by default) and what is wrong with it, if anything."""
        from klaw.authoring.params import params_schema

        result: dict[str, KlawError | None] = {}
        if names is None:  # the modules that did not load, by their own names
            self.workflows  # noqa: B018  (loads them, filling load_errors)
            result.update(self.load_errors)
        for name in names or sorted(self.workflows):
            try:
                params_schema(self.workflow(name))
                self.check_sql(self.graph(name))
                result[name] = None
            except KlawError as exc:
                result[name] = exc
        return result

    def plan(self, name: str, selection: str | None = None) -> Plan:
        """Validate (graph and SQL) and plan the selected stages."""
        graph = self.graph(name)
        self.check_sql(graph)
        return make_plan(graph, selection)

    def check_sql(self, graph: WorkflowGraph) -> None:
        """Parse and plan every SQL stage against its upstream schemas, before anything runs.
        An upstream SQL stage's schema comes from planning it (also in another workflow);
        any other upstream asset's from its latest snapshot, when there is one. A statement
        whose upstream schema is not known is left unchecked (see :meth:`unchecked_sql`)."""
        checks = self._check_sql(graph, frozenset())
        if checks.problems:
            raise GraphError.of(checks.problems, hint="Fix the SQL, then run `klaw validate`.")

    def unchecked_sql(self, name: str) -> tuple[str, ...]:
        """The SQL statements of workflow ``name`` that could not be checked, and why."""
        return tuple(self._check_sql(self.graph(name), frozenset()).unchecked)

    def _check_sql(self, graph: WorkflowGraph, visiting: frozenset[str]) -> SqlChecks:
        from klaw.authoring.sql import SqlChecks, SqlQuery, check_sql_workflow

        found = self._sql_checks.get(graph.name)
        if found is not None:
            return found
        stages = list(graph.stages.values())
        sql = [s for s in stages if isinstance(s.fn, SqlQuery)]
        if not sql:
            checks = SqlChecks([], [], {})
        else:
            read = {i.upstream for s in sql for i in s.inputs}
            known = self._stored_schemas(read, graph)
            owners = self.producers()
            made: dict[str, str] = {}
            for name in read & set(graph.foreign):
                owner = owners.get(graph.foreign[name])
                if owner is None:
                    continue
                made[name] = f"stage {owner[1]!r} of workflow {owner[0]!r}"
                derived = self._produced_schema(owner, visiting | {graph.name})
                known[name] = derived if derived is not None else known.get(name)
            checks = check_sql_workflow(stages, known, made)
        # kept, unless found inside a cycle of workflows (partial) or waiting for a snapshot
        if not visiting and not checks.unchecked:
            self._sql_checks[graph.name] = checks
        return checks

    def _produced_schema(
        self, owner: tuple[str, str], visiting: frozenset[str]
    ) -> pa.Schema | None:
        """The result schema of an SQL stage of another workflow, derived by checking it (None
        when it is not an SQL stage or its schema cannot be derived)."""
        workflow, stage = owner
        if workflow in visiting:
            return None
        graph = self.graph(workflow)
        if not _is_sql(graph.stages[stage]):
            return None
        return self._check_sql(graph, visiting).schemas.get(stage)

    def _stored_schemas(self, names: set[str], graph: WorkflowGraph) -> dict[str, Any]:
        """The schema of each named asset's latest snapshot (None: not stored yet)."""
        keys = {
            n: graph.foreign.get(n) or getattr(graph.stages.get(n), "asset_key", None)
            for n in names
        }
        schemas: dict[str, Any] = dict.fromkeys(graph.foreign)
        if not self.lake_stored:  # nothing stored yet: no lake to open
            return schemas
        for name, key in keys.items():
            if key is None or (name in graph.stages and _is_sql(graph.stages[name])):
                continue
            try:
                schemas[name] = self.lake().read(key, limit=0).schema
            except AssetNotFoundError:
                continue
        return schemas

    # -- runs ----------------------------------------------------------------------------------
    def run(
        self,
        request: RunRequest,
        *,
        on_events: Callable[[list[EventRecord]], None] | None = None,
        on_start: Callable[[RunRecord, Plan], None] | None = None,
    ) -> RunRecord:
        """Validate, plan and run a workflow to the end in this process (in a run worker, with
        :meth:`isolate_user_code`: ``on_events`` and ``on_start`` are then not called)."""
        if self.workers is not None:
            created = self.workers.start(request)
            self.workers.wait(created.run_id)
            return self.get_run(created.run_id)
        runner = self.prepare(request, on_events)
        run = runner.run
        self._active[run.run_id] = runner
        try:
            if on_start is not None:
                on_start(run, runner.plan)
            return runner.execute()
        finally:
            del self._active[run.run_id]

    def start(self, request: RunRequest) -> RunRecord:
        """Validate, plan and record a run, then run it on a background thread of this process.
        Returns the run as created (``queued``); bad input is refused before anything is
        recorded, as with :meth:`run`. With run workers (:meth:`isolate_user_code`) the run
        is prepared and run in a worker process instead."""
        if self.workers is not None:
            return self.workers.start(request)
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
        if self.workers is not None and run_id in self.workers:
            return self.workers.wait(run_id, timeout)
        thread = self._threads.get(run_id)
        if thread is not None:
            thread.join(timeout)
            return not thread.is_alive()
        return True

    def shutdown(self, *, wait: float = 30.0) -> None:
        """Cancel the runs this process drives in the background and wait for them to stop."""
        for runner in list(self._active.values()):
            runner.cancel()
        if self.workers is not None:
            self.workers.shutdown(wait)
        deadline = time.monotonic() + wait
        for thread in list(self._threads.values()):
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def prepare(
        self,
        request: RunRequest,
        on_events: Callable[[list[EventRecord]], None] | None = None,
    ) -> Runner:
        """Everything before a run starts: params, plan, executor, the run record."""
        from klaw.execution.runner import Reused, Runner, RunOptions

        workflow = self.workflow(request.workflow)
        self.check_lake()  # an object-storage lake is reachable before a run is recorded
        values = dict(request.params or {})
        selection = request.selection
        reused: dict[str, Reused] = {}
        parent: RunRecord | None = None
        if request.resume is not None:
            parent = self.metadata.get_run(request.resume)
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
        params = self.secrets.resolve(workflow, resolve_params(workflow, values))
        plan = self.plan(workflow.name, selection)
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
        )
        executor = make_executor(  # a bad executor name is refused before a run is recorded
            self.settings,
            self.lake,
            kind=request.executor or workflow.executor,
            max_workers=request.max_workers,
            leases=self.leases,
        )
        self.metadata.create_run(run, max_active=workflow.max_active_runs)
        failpoint("after_create_run")
        options = RunOptions(
            fail_fast=request.fail_fast,
            stop_grace=self.settings.stop_grace,
            io_timeout=self.settings.stage_io_timeout,
            params=params,
            reused=reused,
            external=external,
            on_events=on_events,
            lease_ttl=self.settings.lease_ttl,
            metadata_queue=self.settings.metadata_queue,
        )
        return Runner(plan, run, executor=executor, metadata=self.metadata, options=options)

    # -- crash recovery --------------------------------------------------------------------------
    def recover(self) -> list[RunRecord]:
        """Take over every active run whose owner process on this host has died and continue
        it in the background (see :mod:`klaw.service.recovery`). Returns the runs taken."""
        from klaw.service.recovery import recover

        return recover(self)

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
        for attempt in self.metadata.list_attempts(parent.run_id):
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
                    snaps = self.lake().snapshots(key, limit=1)
                except AssetNotFoundError:
                    snaps = []
                if not snaps:
                    owner = self.producers().get(key, ("?", "?"))[0]
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

    def cancel(self, run_id: str, *, wait: float = 30.0) -> RunRecord:
        """Ask a run to stop and wait until it has: running stages are stopped and the run is
        recorded ``cancelled``. A run whose owner process is gone is marked cancelled here."""
        run = self.metadata.request_cancel(run_id)
        if run.state.terminal:
            return run
        same_host = run.owner_host == socket.gethostname()
        if same_host and owner_alive(run.owner_host, run.owner_pid):
            active = self._active.get(run_id)
            if active is not None:  # owned by this process: no signal needed
                active.cancel()
            else:  # its owner (a `klaw run`, a run worker) cancels it on SIGTERM
                os.kill(run.owner_pid, signal.SIGTERM)
            if wait <= 0:
                return run
            seen = [run]

            def stopped() -> bool:
                seen[0] = self.metadata.get_run(run_id)
                return seen[0].state.terminal

            if self.metadata.wait_run(run_id, stopped, wait):  # woken as the run is written
                return seen[0]
            raise MetadataError(
                f"Run {run_id} did not stop within {wait:g} s (owner pid {run.owner_pid}).",
                hint="Try again, or stop the owner process.",
            )
        if same_host:  # the owner died: nothing runs, record the end
            now = time.time()
            run.state, run.ended_at, run.error = RunState.CANCELLED, now, "cancelled; owner gone"
            event = EventRecord(run_id=run_id, kind="run_finished", ts=now, state="cancelled")
            self.metadata.commit(Batch(runs=[run], events=[event]))
            return run
        raise MetadataError(
            f"Run {run_id} is owned by {run.owner_host}; cancel it there.",
        )

    # -- reports from workers -------------------------------------------------------------------
    def heartbeat(self, lease: Lease) -> float:
        """Renew an attempt's lease; the new expiry. ``StaleAttemptError`` once it is fenced."""
        until = time.time() + self.settings.lease_ttl
        if self.metadata.renew_leases([lease], until):
            raise StaleAttemptError(
                f"Stage {lease.stage!r} attempt {lease.attempt} of run {lease.run_id} lost its "
                "lease; stop it and send nothing more.",
                hint="Another attempt has the stage (or the run ended).",
            )
        return until

    def report(self, outcome: Outcome, run_id: str) -> None:
        """Hand a worker's outcome to the runner that drives ``run_id`` in this process (or
        in one of its run workers)."""
        if self.workers is not None and self.workers.report(run_id, outcome):
            return
        runner = self._active.get(run_id)
        if runner is None:
            raise StaleAttemptError(
                f"Run {run_id} is not being driven by this Klaw process; the report is refused.",
                hint="Send it to the server that runs the run (or the run has ended).",
            )
        runner.report(outcome)

    def runs(self, filter: RunFilter | None = None) -> list[RunRecord]:
        return self.metadata.list_runs(filter or RunFilter())

    def get_run(self, run_id: str) -> RunRecord:
        return self.metadata.get_run(run_id)

    def attempts(self, run_id: str) -> list[AttemptRecord]:
        self.metadata.get_run(run_id)
        return self.metadata.list_attempts(run_id)

    def metrics(self, run_id: str) -> list[MetricRecord]:
        return self.metadata.list_metrics(run_id)

    def events(self, run_id: str, *, after_seq: int = 0) -> list[EventRecord]:
        return self.metadata.list_events(run_id, after_seq=after_seq)

    def wait_run(self, run_id: str, ready: Callable[[], bool], timeout: float) -> bool:
        """Wait until ``ready()`` is true, looking again each time the run is written (see
        :meth:`klaw.metadata.store.RunWaiter.wait_run`); False after ``timeout`` seconds."""
        return self.metadata.wait_run(run_id, ready, timeout)

    def logs(self, run_id: str, stage: str | None = None, *, after_seq: int = 0) -> list[LogRecord]:
        run = self.metadata.get_run(run_id)
        if stage is not None:
            stages = {a.stage for a in self.metadata.list_attempts(run_id)}
            if stage not in stages:
                close = difflib.get_close_matches(stage, list(stages), n=3)
                raise SelectionError(
                    f"Run {run.run_id} has no stage {stage!r}"
                    + (f"; did you mean {', '.join(close)}?" if close else "."),
                    hint=f"Its stages: {', '.join(sorted(stages)) or 'none'}.",
                )
        return self.metadata.read_logs(run_id, stage=stage, after_seq=after_seq)

    # -- assets --------------------------------------------------------------------------------
    @property
    def lake_stored(self) -> bool:
        """Whether a lake may hold something: a SQLite catalog file exists, or the catalog is
        a Postgres database (always opened)."""
        catalog = self.settings.catalog
        if catalog.startswith(("postgres:", "postgresql:")):
            return True
        return Path(catalog.removeprefix("sqlite:")).exists()

    def assets(self) -> list[AssetInfo]:
        return self.lake().assets()

    def snapshots(self, key: str, limit: int | None = None) -> list[SnapshotInfo]:
        return self.lake().snapshots(key, limit)

    def asset(self, key: str) -> AssetInfo | None:
        return self.lake().asset(key)

    def snapshot(self, key: str, snapshot: int) -> SnapshotInfo:
        return self.lake().snapshot(key, snapshot)

    def read_asset(
        self, key: str, snapshot: int | None = None, limit: int | None = None
    ) -> pa.Table:
        return self.lake().read(key, snapshot, limit)

    def producers(self) -> dict[str, tuple[str, str]]:
        """asset key -> (workflow, stage) for every asset the project defines."""
        found: dict[str, tuple[str, str]] = {}
        for wf in self.workflows.values():
            for stage in wf.stages:
                if stage.kind is StageKind.ASSET and stage.asset_key:
                    found[stage.asset_key] = (wf.name, stage.name)
        return found


# Graphs of recently planned workflow objects, shared by the orchestrators of this process:
# ``klaw.run(wf)`` in a loop opens one per call, and a workflow (frozen) makes the same graph.
_GRAPHS: dict[int, tuple[Workflow, dict[str, str], WorkflowGraph]] = {}
_GRAPHS_KEPT = 16


def _built_graph(workflow: Workflow, others: dict[str, str]) -> WorkflowGraph:
    found = _GRAPHS.get(id(workflow))
    if found is not None and found[0] is workflow and found[1] == others:
        return found[2]
    graph = build_graph(workflow, others)
    if len(_GRAPHS) >= _GRAPHS_KEPT:
        _GRAPHS.pop(next(iter(_GRAPHS), 0), None)  # the oldest
    _GRAPHS[id(workflow)] = (workflow, others, graph)
    return graph


def _is_sql(stage: Any) -> bool:
    from klaw.authoring.sql import SqlQuery

    return isinstance(stage.fn, SqlQuery)
