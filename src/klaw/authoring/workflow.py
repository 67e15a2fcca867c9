"""Workflows: a named set of stages, with a schedule and run limits."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from klaw.authoring.stage import StageDef
from klaw.errors import DefinitionError

_WORKFLOW_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]{0,62}$")


@dataclass(frozen=True, slots=True)
class Workflow:
    """A named DAG of stages. Build one with :func:`klaw.workflow`."""

    name: str
    stages: tuple[StageDef, ...]
    schedule: str | None = None
    description: str = ""
    max_active_runs: int = 1
    tags: frozenset[str] = frozenset()
    source: str = ""  # module or folder the workflow came from, for messages
    depends_on: tuple[str, ...] = ()  # workflows whose assets this one reads (folder form)
    executor: str | None = None  # the executor its runs use unless a flag says other
    params_models: tuple[type[Any], ...] = field(default=(), repr=False)

    def stage(self, name: str) -> StageDef:
        for s in self.stages:
            if s.name == name:
                return s
        raise KeyError(name)


def workflow(
    name: str,
    stages: Iterable[StageDef],
    *,
    schedule: str | None = None,
    description: str = "",
    max_active_runs: int = 1,
    tags: Iterable[str] = (),
) -> Workflow:
    """Group stages into a workflow. Validation (cycles, unknown names) happens when the
    workflow is planned, so that ``klaw validate`` can report every problem at once."""
    if not isinstance(name, str) or not _WORKFLOW_NAME.match(name):
        raise DefinitionError(
            f"Workflow name {name!r} is not valid: use letters, digits, '_' and '-', starting "
            "with a letter or underscore, at most 63 characters."
        )
    stage_list = tuple(stages)
    for item in stage_list:
        if not isinstance(item, StageDef):
            raise DefinitionError(
                f"Workflow {name!r} was given {item!r}, which is not a stage; decorate the "
                "function with @klaw.asset or @klaw.stage."
            )
    if max_active_runs < 1:
        raise DefinitionError(f"Workflow {name!r}: max_active_runs must be at least 1.")
    models = tuple(dict.fromkeys(s.params_model for s in stage_list if s.params_model))
    return Workflow(
        name=name,
        stages=stage_list,
        schedule=schedule,
        description=description,
        max_active_runs=max_active_runs,
        tags=frozenset(tags),
        params_models=models,
    )
