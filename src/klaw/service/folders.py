"""Folder workflows: ``<dir>/<name>/config.yaml`` with ``workflow.py`` or ``workflow.sql``.

The folder's name is the workflow's name. ``workflow.py`` holds ``@klaw.asset`` /
``@klaw.stage`` functions (every stage the module defines belongs to the workflow);
``workflow.sql`` holds one or more named statements. ``config.yaml`` gives the schedule and
the defaults of every stage (retries, timeout, resources, tags).
"""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path
from typing import Any

from klaw.authoring.resources import Resources, RetryPolicy
from klaw.authoring.stage import StageDef, StageKind
from klaw.authoring.workflow import Workflow, workflow
from klaw.errors import ConfigError, DefinitionError, KlawError, ProjectImportError

CONFIG = "config.yaml"


def find_folders(root: Path, dirs: tuple[str, ...]) -> list[Path]:
    """Every folder under the project's workflow dirs that holds a ``config.yaml``."""
    found = []
    for name in dirs:
        base = (root / name).resolve()
        if not base.is_dir():
            raise ConfigError(
                f"Workflow folder {base} (named in workflow_dirs) does not exist.",
                hint="Create it, or fix workflow_dirs in klaw.toml.",
            )
        found.extend(sorted(p.parent for p in base.glob(f"*/{CONFIG}")))
    return found


def load_folder(folder: Path) -> Workflow:
    """The workflow a folder describes."""
    from klaw.authoring.config import load_config

    config = load_config(folder / CONFIG)
    py, sql = folder / "workflow.py", folder / "workflow.sql"
    if py.exists() and sql.exists():
        raise ConfigError(
            f"{folder} has both workflow.py and workflow.sql; a folder workflow has one.",
            hint="Move one of them into a folder of its own.",
        )
    if not py.exists() and not sql.exists():
        raise ConfigError(
            f"{folder} has config.yaml but neither workflow.py nor workflow.sql.",
            hint="Add the workflow's code next to its config.yaml.",
        )
    if sql.exists() and config.engine not in ("duckdb", "datafusion"):
        raise ConfigError(
            f"{folder / CONFIG}: engine {config.engine!r} cannot run workflow.sql.",
            hint="Use engine: duckdb or engine: datafusion.",
        )
    stages = _sql_stages(sql, config) if sql.exists() else _python_stages(py, folder.name)
    defaults = [_with_defaults(s, config) for s in stages]
    wf = workflow(
        folder.name,
        defaults,
        schedule=config.schedule,
        timezone=config.timezone,
        catch_up=config.catch_up,
        description=config.description,
        max_active_runs=config.max_active_runs,
        tags=config.tags,
    )
    return dataclasses.replace(
        wf,
        source=str(folder),
        depends_on=tuple(config.depends_on),
        executor=config.executor,
    )


def _python_stages(path: Path, name: str) -> list[StageDef]:
    module_name = f"klaw_folder_{name}"
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    except KlawError:
        raise
    except SyntaxError as exc:
        raise ProjectImportError(
            f"{exc.filename}:{exc.lineno}: syntax error: {exc.msg}.",
            hint="Fix the line named above.",
        ) from exc
    except Exception as exc:
        import traceback

        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == str(path)]
        where = f"{path}:{frames[-1].lineno}" if frames else str(path)
        raise ProjectImportError(
            f"{where}: {type(exc).__name__}: {exc}", hint="Run with --debug for the traceback."
        ) from exc
    stages = [v for v in vars(module).values() if isinstance(v, StageDef)]
    if not stages:
        raise ConfigError(
            f"{path} defines no stage.", hint="Decorate functions with @klaw.asset or @klaw.stage."
        )
    return stages


def _sql_stages(path: Path, config: Any) -> list[StageDef]:
    from klaw.authoring.sql import klaw_sql, parse_sql_file

    text = path.read_text(encoding="utf-8")
    model = _params_model(path.parent, config.params)
    kind = StageKind.ASSET if config.kind == "asset" else StageKind.STAGE
    return [
        klaw_sql(
            query,
            name=name,
            engine=config.engine,
            kind=kind,
            params_model=model,
            source=str(path),
            line=line,
        )
        for name, query, line in parse_sql_file(text, str(path))
    ]


def _params_model(folder: Path, params: dict[str, Any]) -> type[Any] | None:
    if not params:
        return None
    import pydantic

    class FolderParams(pydantic.BaseModel):
        """Params declared in config.yaml. The class is made at load time and cannot be
        imported by name, so an instance travels to worker processes as a plain mapping
        (which SQL stages take as well)."""

        def __reduce__(self) -> tuple[Any, ...]:
            return (dict, (self.model_dump(),))

    fields: dict[str, Any] = {k: _param_field(folder, k, v) for k, v in params.items()}
    model: type[Any] = pydantic.create_model(
        f"{folder.name}_params", __base__=FolderParams, **fields
    )
    return model


def _param_field(folder: Path, name: str, default: Any) -> tuple[Any, Any]:
    """A config.yaml param's type and default: the default's type, or ``klaw.Secret`` for a
    ``{$secret: NAME}`` reference (resolved when a run is prepared, never stored)."""
    if isinstance(default, dict) and "$secret" in default:
        from klaw.authoring.secrets import Secret

        if set(default) != {"$secret"}:
            extra = ", ".join(sorted(k for k in default if k != "$secret"))
            raise ConfigError(
                f"{folder / 'config.yaml'}: param {name!r} mixes $secret with {extra}.",
                hint="A secret param is written `NAME: {$secret: SECRET_NAME}` and nothing else.",
            )
        try:
            return (Secret, Secret(default["$secret"]))
        except DefinitionError as exc:
            raise ConfigError(
                f"{folder / 'config.yaml'}: param {name!r}: {exc.message}", hint=exc.hint
            ) from None
    return (type(default), default)


def _with_defaults(stage: StageDef, config: Any) -> StageDef:
    changes: dict[str, Any] = {}
    if stage.retry.retries == 0 and config.retries:
        changes["retry"] = RetryPolicy(retries=config.retries, delay=config.retry_delay)
    if stage.timeout is None and config.timeout is not None:
        changes["timeout"] = config.timeout
    if stage.resources == Resources():
        r = config.resources
        changes["resources"] = Resources(
            cpus=r.cpus, gpus=r.gpus, memory=r.memory, custom=dict(r.custom)
        )
    if config.tags:
        changes["tags"] = stage.tags | frozenset(config.tags)
    return dataclasses.replace(stage, **changes) if changes else stage
