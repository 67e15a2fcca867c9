"""``config.yaml`` of a folder workflow: the published schema and its validation.

```
workflows/<name>/config.yaml   # engine, schedule, retries, timeout, resources, params, ...
workflows/<name>/workflow.py   # Polars / Python stages
workflows/<name>/workflow.sql  # DuckDB or DataFusion SQL, one or more named statements
```
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from klaw.errors import ConfigError


class ResourcesConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    cpus: float = Field(1.0, ge=0, description="CPUs each stage needs.")
    gpus: float = Field(0.0, ge=0, description="GPUs each stage needs.")
    memory: int | None = Field(None, gt=0, description="Bytes of memory each stage needs.")
    custom: dict[str, float] = Field(default_factory=dict, description="Named resources.")


class FolderConfig(BaseModel):
    """What ``config.yaml`` may hold. Unknown keys are errors."""

    model_config = ConfigDict(extra="forbid", title="Klaw folder workflow config")

    description: str = Field("", description="What the workflow is for.")
    engine: Literal["duckdb", "datafusion", "polars", "python"] = Field(
        "duckdb",
        description="Engine of workflow.sql (duckdb, datafusion); polars or python for "
        "workflow.py.",
    )
    schedule: str | None = Field(
        None,
        description="Cron expression (five fields: minute hour day-of-month month day-of-week), "
        "e.g. '0 3 * * *'; read in `timezone`. The trigger service of `klaw server` fires it.",
    )
    timezone: str = Field(
        "UTC", description="IANA time zone the schedule is read in, e.g. 'Europe/Paris'."
    )
    catch_up: Literal["none", "latest", "all"] = Field(
        "latest",
        description="Ticks missed while no trigger service ran: none (drop them), latest (run "
        "the most recent one), all (run each, at most 100).",
    )
    retries: int = Field(0, ge=0, description="Retries of each stage that sets none itself.")
    retry_delay: float = Field(1.0, ge=0, description="Seconds before the first retry.")
    timeout: float | None = Field(None, gt=0, description="Seconds each stage may run.")
    resources: ResourcesConfig = Field(default_factory=ResourcesConfig)
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Params and their defaults; the type is the default's type. SQL reads "
        "them as $name.",
    )
    executor: Literal["thread", "process", "ray"] | None = Field(
        None, description="Executor used for runs of this workflow unless a flag says other."
    )
    depends_on: list[str] = Field(
        default_factory=list, description="Workflows whose assets this one reads."
    )
    tags: list[str] = Field(default_factory=list, description="Tags of every stage.")
    max_active_runs: int = Field(1, ge=1, description="Runs of this workflow at once.")
    kind: Literal["asset", "stage"] = Field(
        "asset", description="Whether SQL statements are stored as assets or handed on."
    )

    @field_validator("schedule")
    @classmethod
    def _check_schedule(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return None
        from klaw.authoring.schedule import check_cron

        return _schedule_check(check_cron, info, value)

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str, info: ValidationInfo) -> str:
        from klaw.authoring.schedule import check_timezone

        return _schedule_check(check_timezone, info, value)


def _schedule_check(check: Any, info: ValidationInfo, value: str) -> str:
    """Run a schedule check of ``klaw.authoring.schedule``; its error as a pydantic error, so
    the message gets the file and line of the key."""
    workflow = (info.context or {}).get("workflow", "?")
    try:
        checked: str = check(workflow, value)
    except ConfigError as exc:
        detail = f"{exc.message} ({exc.hint})" if exc.hint else exc.message
        raise PydanticCustomError("schedule", detail) from None
    return checked


def config_schema() -> dict[str, Any]:
    """The published JSON Schema of ``config.yaml`` (``klaw schema --config``)."""
    schema = FolderConfig.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    return schema


def load_config(path: Path) -> FolderConfig:
    """Read and validate ``config.yaml``; errors give the file, line, key and what is allowed."""
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"Cannot read {path}: {exc}.") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError(
            f"{where} is not valid YAML: {problem}.", hint="Fix the YAML at that line."
        ) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path} must hold a mapping of keys (engine, schedule, ...), not "
            f"{type(data).__name__}.",
            hint="See `klaw schema --config` for what config.yaml may hold.",
        )
    try:
        return FolderConfig.model_validate(data, context={"workflow": path.parent.name})
    except ValidationError as exc:
        raise ConfigError(_describe(path, text, exc), hint=_hint(exc)) from None


def _describe(path: Path, text: str, exc: ValidationError) -> str:
    lines = []
    for err in exc.errors():
        loc = [str(p) for p in err["loc"]]
        key = ".".join(loc) or "(top)"
        line = _line_of(text, loc)
        where = f"{path}:{line}" if line else str(path)
        if err["type"] == "extra_forbidden":
            allowed = _allowed(loc[:-1])
            lines.append(f"{where}: unknown key {key!r}; allowed: {', '.join(allowed)}")
        elif err["type"] == "literal_error":
            lines.append(f"{where}: {key} is {err['input']!r}; {err['msg'].lower()}")
        else:
            lines.append(f"{where}: {key}: {err['msg']} (got {err['input']!r})")
    return "\n".join(lines)


def _hint(exc: ValidationError) -> str:
    return "See `klaw schema --config` for every key, its type and what is allowed."


def _allowed(parent: list[str]) -> list[str]:
    model: type[BaseModel] = ResourcesConfig if parent == ["resources"] else FolderConfig
    return list(model.model_fields)


def _line_of(text: str, loc: list[str]) -> int | None:
    """The line of a key path in the YAML text (1-based), when it can be found."""
    import yaml

    try:
        node: Any = yaml.compose(text)
    except yaml.YAMLError:
        return None
    line = None
    for part in loc:
        if not isinstance(node, yaml.MappingNode):
            break
        for key, value in node.value:
            if key.value == part:
                line = key.start_mark.line + 1
                node = value
                break
        else:
            break
    return line
