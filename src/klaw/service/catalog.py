"""The definitions catalog: a project's workflows, their graphs, validation (graph, params and
SQL), plans and which stage produces which asset. In a serving process the workflows live in a
definitions process (:mod:`klaw.service.definitions`) and the catalog answers only what needs
no import (names, load errors); everything else is asked of that process."""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any

from klaw.authoring.stage import StageKind
from klaw.authoring.workflow import Workflow
from klaw.errors import AssetNotFoundError, DefinitionError, GraphError, KlawError
from klaw.graph.build import WorkflowGraph, build_graph
from klaw.graph.plan import Plan, make_plan
from klaw.service.project import Project, load_workflows

if TYPE_CHECKING:
    import pyarrow as pa

    from klaw.authoring.sql import SqlChecks
    from klaw.service.definitions import DefinitionsHost
    from klaw.service.wiring import LakeFactory


class Catalog:
    """The workflows of ``project``: imported on first use, or given (tests, notebooks)."""

    def __init__(
        self,
        project: Project,
        lake: LakeFactory,
        lake_stored: Callable[[], bool],
        workflows: Iterable[Workflow] | None = None,
    ) -> None:
        self.project = project
        self.lake = lake
        self._lake_stored = lake_stored
        self._graphs: dict[str, WorkflowGraph] = {}
        self._sql_checks: dict[str, SqlChecks] = {}
        self.definitions: DefinitionsHost | None = None  # set in a serving process
        self._load_errors: dict[str, KlawError] = {}
        self._workflows: dict[str, Workflow] | None = None
        if workflows is not None:
            self._workflows = {wf.name: wf for wf in workflows}

    @property
    def workflows(self) -> dict[str, Workflow]:
        """The project's workflows by name (imported on first use)."""
        if self._workflows is None:
            if self.definitions is not None:
                raise RuntimeError(
                    "This process serves people and imports no workflow module; ask "
                    "Catalog.definitions (klaw.service.definitions) instead."
                )
            self._workflows = load_workflows(self.project)
        return self._workflows

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

    def reload(self) -> list[str]:
        """Load the workflow definitions afresh in a new definitions process; the names.
        When a module no longer loads its error is raised and the old definitions stay."""
        assert self.definitions is not None, "only in a serving process"
        names = self.definitions.reload()
        self._graphs, self._sql_checks = {}, {}
        return list(names)

    def replace_workflows(self, workflows: dict[str, Workflow]) -> None:
        """Use these definitions from now on (``klaw dev`` reloading changed files). Graphs
        built from the old ones are dropped; runs in progress keep the plan they started with."""
        self._workflows = dict(workflows)
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

    def plan_of(
        self, workflow: Workflow, selection: str | None = None
    ) -> tuple[WorkflowGraph, Plan]:
        """The graph and plan of a workflow object that is not the project's own definition
        of its name (a saved version, a draft of the pipeline builder), checked like one."""
        others = {k: wf for k, (wf, _) in self.producers().items() if wf != workflow.name}
        graph = build_graph(workflow, others)
        checks = self._check_sql(graph, frozenset(), keep=False)
        if checks.problems:
            raise GraphError.of(checks.problems, hint="Fix the SQL, then check it again.")
        return graph, make_plan(graph, selection)

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

    def _check_sql(
        self, graph: WorkflowGraph, visiting: frozenset[str], *, keep: bool = True
    ) -> SqlChecks:
        """``keep``: the graph is the project's definition of its name (checks are kept)."""
        from klaw.authoring.sql import SqlChecks, SqlQuery, check_sql_workflow

        found = self._sql_checks.get(graph.name) if keep else None
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
        if keep and not visiting and not checks.unchecked:
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
        if not self._lake_stored():  # nothing stored yet: no lake to open
            return schemas
        for name, key in keys.items():
            if key is None or (name in graph.stages and _is_sql(graph.stages[name])):
                continue
            try:
                schemas[name] = self.lake().read(key, limit=0).schema
            except AssetNotFoundError:
                continue
        return schemas

    def asset_inputs(self) -> dict[str, tuple[str, ...]]:
        """Every asset the project defines -> the assets it is computed from: those of its
        upstream stages, through stages that are not assets (workflows whose graph is broken
        are left out: validation names their problems)."""
        from klaw.graph.lineage import asset_inputs

        graphs = []
        for name in sorted(self.workflows):
            try:
                graphs.append(self.graph(name))
            except KlawError:
                continue
        return asset_inputs(graphs)

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
