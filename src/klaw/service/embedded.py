"""Klaw from Python, without a project file: plan or run workflow objects directly (tests,
notebooks, scripts). Everything goes through the same orchestrator as the CLI."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from klaw.authoring.workflow import Workflow

if TYPE_CHECKING:  # the orchestrator loads only when something runs: `import klaw` stays light
    from klaw.graph.plan import Plan
    from klaw.metadata.records import RunRecord
    from klaw.service.orchestrator import Orchestrator


def plan(workflow: Workflow, select: str | None = None) -> Plan:
    """Validate ``workflow`` and plan the selected stages (raises on any problem)."""
    from klaw.graph.build import build_graph
    from klaw.graph.plan import make_plan

    return make_plan(build_graph(workflow), select)


def open_project(directory: str | Path | None = None, **settings: Any) -> Orchestrator:
    """The project whose ``klaw.toml`` is in ``directory`` (or above it), as the CLI sees it."""
    from klaw.service.orchestrator import Orchestrator

    return Orchestrator.open(Path(directory) if directory is not None else None, **settings)


def open_orchestrator(
    *workflows: Workflow, home: str | Path = ".klaw", **settings: Any
) -> Orchestrator:
    """An orchestrator over the given workflows, keeping its state under ``home``."""
    from klaw.service.orchestrator import Orchestrator
    from klaw.service.project import Project
    from klaw.settings import load_settings

    root = Path.cwd()
    project = Project(root=root, file=root / "<python>", name="python", modules=())
    return Orchestrator(project, load_settings({}, home=Path(home), **settings), workflows)


def run(
    workflow: Workflow,
    *,
    select: str | None = None,
    params: Mapping[str, Any] | None = None,
    home: str | Path = ".klaw",
    executor: str | None = None,
    max_workers: int | None = None,
    fail_fast: bool = False,
    resume: str | None = None,
) -> RunRecord:
    """Run ``workflow`` in this process to the end and return the run's record."""
    from klaw.service.orchestrator import RunRequest

    orch = open_orchestrator(workflow, home=home)
    try:
        return orch.run(
            RunRequest(
                workflow=workflow.name,
                selection=select,
                params=dict(params or {}),
                executor=executor,
                max_workers=max_workers,
                fail_fast=fail_fast,
                resume=resume,
            )
        )
    finally:
        orch.close()
