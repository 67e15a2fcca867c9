"""The orchestrator: every action Klaw offers, on one object. The CLI (and later the HTTP API,
Flight and cron) call these methods; none of them has logic of its own."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from klaw import metrics, telemetry
from klaw.authoring.workflow import Workflow
from klaw.errors import (
    KlawError,
    SelectionError,
)
from klaw.graph.build import WorkflowGraph
from klaw.graph.plan import Plan
from klaw.ids import AssetRef
from klaw.metadata.records import (
    AttemptRecord,
    EventRecord,
    Lease,
    LogRecord,
    MetricRecord,
    RunFilter,
    RunRecord,
)
from klaw.observability import configure_logging, get_logger
from klaw.protocol import SubmitRun
from klaw.service.catalog import Catalog
from klaw.service.control import RunControl
from klaw.service.launcher import Launcher
from klaw.service.project import Project, find_project
from klaw.service.wiring import (
    LakeFactory,
    MetadataFactory,
    check_lake,
    object_store,
    open_metadata,
)
from klaw.settings import KlawSettings, load_settings

if TYPE_CHECKING:
    import pyarrow as pa

    from klaw.execution.lease import LeaseKeeper
    from klaw.execution.runner import Runner
    from klaw.execution.task import Outcome
    from klaw.metadata.store import MetadataStore
    from klaw.service.definitions import DefinitionsHost
    from klaw.service.runworker import RunWorkers
    from klaw.service.secrets import SecretResolver
    from klaw.storage.store import AssetInfo, SnapshotInfo


_log = get_logger(__name__)


# The run request is the protocol's command: one type from the client to the run worker.
RunRequest = SubmitRun


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
        # workflows given directly (tests, notebooks) are used instead of imported ones
        self.catalog = Catalog(project, self.lake, lambda: self.lake_stored, workflows)
        self.launcher = Launcher(self)
        self.control = RunControl(self)
        self.workers: RunWorkers | None = None  # set by isolate_user_code() (serving commands)
        configure_logging(self.settings.log.level, self.settings.log.format)
        telemetry.configure(self.settings.telemetry)
        metrics.configure(self.settings.telemetry)

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

        return LeaseKeeper(
            MetadataFactory(self.settings, self.metadata), self.settings.executor.lease_ttl
        )

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
        if self.workers is None and self.settings.executor.run_isolation == "process":
            from klaw.service.definitions import DefinitionsHost
            from klaw.service.runworker import RunWorkers

            self.catalog.definitions = DefinitionsHost(self.project, self.settings).start()
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
    @property
    def workflows(self) -> dict[str, Workflow]:
        return self.catalog.workflows

    @property
    def definitions(self) -> DefinitionsHost | None:
        return self.catalog.definitions

    @property
    def load_errors(self) -> dict[str, KlawError]:
        return self.catalog.load_errors

    @load_errors.setter
    def load_errors(self, errors: dict[str, KlawError]) -> None:
        self.catalog.load_errors = errors

    def workflow_names(self) -> list[str]:
        return self.catalog.workflow_names()

    def reload_definitions(self) -> list[str]:
        return self.catalog.reload()

    def replace_workflows(self, workflows: dict[str, Workflow]) -> None:
        self.catalog.replace_workflows(workflows)

    def workflow(self, name: str) -> Workflow:
        return self.catalog.workflow(name)

    def graph(self, name: str) -> WorkflowGraph:
        return self.catalog.graph(name)

    def validate(self, names: Iterable[str] | None = None) -> dict[str, KlawError | None]:
        return self.catalog.validate(names)

    def plan(self, name: str, selection: str | None = None) -> Plan:
        return self.catalog.plan(name, selection)

    def check_sql(self, graph: WorkflowGraph) -> None:
        self.catalog.check_sql(graph)

    def unchecked_sql(self, name: str) -> tuple[str, ...]:
        return self.catalog.unchecked_sql(name)

    def producers(self) -> dict[str, tuple[str, str]]:
        return self.catalog.producers()

    # -- runs ----------------------------------------------------------------------------------
    def run(
        self,
        request: RunRequest,
        *,
        on_events: Callable[[list[EventRecord]], None] | None = None,
        on_start: Callable[[RunRecord, Plan], None] | None = None,
    ) -> RunRecord:
        """Validate, plan and run a workflow to the end (see :meth:`Launcher.run`)."""
        return self.launcher.run(request, on_events=on_events, on_start=on_start)

    def start(self, request: RunRequest) -> RunRecord:
        """Validate, plan and record a run, then run it in the background; the run as created
        (see :meth:`Launcher.start`)."""
        return self.launcher.start(request)

    def wait(self, run_id: str, *, timeout: float | None = None) -> bool:
        return self.launcher.wait(run_id, timeout=timeout)

    def shutdown(self, *, wait: float = 30.0) -> None:
        self.launcher.shutdown(wait=wait)

    def prepare(
        self,
        request: RunRequest,
        on_events: Callable[[list[EventRecord]], None] | None = None,
    ) -> Runner:
        return self.launcher.prepare(request, on_events)

    def recover(self) -> list[RunRecord]:
        return self.launcher.recover()

    def launch(self, runner: Runner) -> None:
        self.launcher.launch(runner)

    def external_refs(self, plan: Plan) -> dict[str, AssetRef]:
        return self.launcher.external_refs(plan)

    def cancel(self, run_id: str, *, wait: float = 30.0) -> RunRecord:
        return self.control.cancel(run_id, wait=wait)

    def heartbeat(self, lease: Lease) -> float:
        return self.control.heartbeat(lease)

    def report(self, outcome: Outcome, run_id: str) -> None:
        self.control.report(outcome, run_id)

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

    def logs(
        self,
        run_id: str,
        stage: str | None = None,
        *,
        after_seq: int = 0,
        limit: int | None = None,
        tail: bool = False,
    ) -> list[LogRecord]:
        """The run's log lines (see :meth:`klaw.metadata.store.LogStore.read_logs`); an unknown
        stage is refused with the run's stages."""
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
        return self.metadata.read_logs(
            run_id, stage=stage, after_seq=after_seq, limit=limit, tail=tail
        )

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
