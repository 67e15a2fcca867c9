"""Workflows: a named set of stages, with a schedule and run limits."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from klaw.authoring.stage import StageDef
from klaw.errors import ConfigError, DefinitionError

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
    timezone: str = "UTC"  # the IANA time zone ``schedule`` is read in
    catch_up: str = "latest"  # none | latest | all: which ticks missed in downtime fire
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
    timezone: str = "UTC",
    catch_up: str = "latest",
) -> Workflow:
    """Group stages into a workflow. Validation (cycles, unknown names) happens when the
    workflow is planned, so that ``klaw validate`` can report every problem at once.

    ``schedule`` is a five-field cron expression read in ``timezone`` (an IANA name);
    ``catch_up`` (``none``, ``latest`` or ``all``) says which ticks missed while no trigger
    service ran fire when one starts again. These are checked here, naming the workflow."""
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
    schedule, timezone, catch_up = _checked_schedule(name, schedule, timezone, catch_up)
    return Workflow(
        name=name,
        stages=stage_list,
        schedule=schedule,
        timezone=timezone,
        catch_up=catch_up,
        description=description,
        max_active_runs=max_active_runs,
        tags=frozenset(tags),
        params_models=models,
    )


def _checked_schedule(
    name: str, schedule: object, timezone: object, catch_up: object
) -> tuple[str | None, str, str]:
    """The schedule fields, validated (cron, time zone, catch-up policy) and normalised."""
    if schedule is None:
        options = (("timezone", timezone, "UTC"), ("catch_up", catch_up, "latest"))
        extra = [f"{key}={value!r}" for key, value, default in options if value != default]
        if extra:
            raise DefinitionError(
                f"Workflow {name!r} sets {' and '.join(extra)} but has no schedule; add "
                "schedule='<cron expression>' (for example '0 3 * * *') or drop them."
            )
        return None, "UTC", "latest"
    from klaw.authoring.schedule import check_catch_up, check_cron, check_timezone

    try:
        cron = check_cron(name, schedule)
        zone = check_timezone(name, timezone)
        policy = check_catch_up(name, catch_up)
    except ConfigError as exc:  # a definition error, so the import names the file and line
        raise DefinitionError(exc.message, hint=exc.hint) from None
    return cron, zone, policy.value
