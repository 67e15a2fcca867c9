"""Projects: ``klaw.toml`` (or ``[tool.klaw]`` in ``pyproject.toml``) names the modules that
hold workflows; loading a project imports them and collects their workflows."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
import traceback
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from klaw.authoring.workflow import Workflow
from klaw.errors import ConfigError, ProjectImportError

PROJECT_FILE = "klaw.toml"


@dataclass(frozen=True, slots=True)
class Project:
    root: Path
    file: Path
    name: str
    modules: tuple[str, ...]
    settings: dict[str, Any] = field(default_factory=dict)
    workflow_dirs: tuple[str, ...] = ()  # folders of folder workflows (<dir>/<name>/config.yaml)
    lifecycle: dict[str, Any] = field(default_factory=dict)  # [lifecycle]: policies, keys, git


def find_project(start: Path | None = None) -> Project:
    """The project whose ``klaw.toml`` (or ``pyproject.toml`` with ``[tool.klaw]``) is in
    ``start`` or the nearest parent."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        candidate = folder / PROJECT_FILE
        if candidate.exists():
            return _read(candidate, _load_toml(candidate))
        pyproject = folder / "pyproject.toml"
        if pyproject.exists():
            data = _load_toml(pyproject)
            table = data.get("tool", {}).get("klaw")
            if table is not None:
                found = {"project": table, "settings": table.get("settings", {})}
                return _read(pyproject, {**found, "lifecycle": table.get("lifecycle", {})})
    raise ConfigError(
        f"No {PROJECT_FILE} found in {here} or any folder above it.",
        hint="Run `klaw init` to create a project, or pass --project DIR.",
    )


def _load_toml(path: Path) -> dict[str, Any]:
    import tomllib  # only when there is a project file (``klaw.run`` of objects reads none)

    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(
            f"Cannot read {path}: {exc.strerror or exc}.",
            hint="Check the file exists and is readable.",
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(
            f"{path} is not valid TOML: {exc}.", hint="Fix the TOML syntax where it says."
        ) from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path} is not UTF-8 text (byte {exc.start} cannot be decoded).",
            hint="Save the file as UTF-8.",
        ) from None


def _read(path: Path, data: dict[str, Any]) -> Project:
    table = data.get("project", {})
    settings = data.get("settings", {})
    where = f"{path} [project]" if path.name == PROJECT_FILE else f"{path} [tool.klaw]"
    if not isinstance(table, dict) or not isinstance(settings, dict):
        raise ConfigError(f"{where} must be a table.")
    modules = table.get("modules", [])
    if isinstance(modules, str):
        modules = [modules]
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise ConfigError(
            f"{where}: 'modules' must be a list of module names or .py paths.",
            hint='For example: modules = ["workflows.revenue"].',
        )
    dirs = table.get("workflow_dirs")
    if dirs is None:
        dirs = ["workflows"] if (path.parent / "workflows").is_dir() else []
    if isinstance(dirs, str):
        dirs = [dirs]
    if not isinstance(dirs, list) or not all(isinstance(d, str) for d in dirs):
        raise ConfigError(f"{where}: 'workflow_dirs' must be a list of folder names.")
    if not modules and not dirs:
        raise ConfigError(
            f"{where} names no workflow modules and no workflow folders.",
            hint='Add for example: modules = ["workflows.revenue"], or workflow_dirs = '
            '["workflows"] with one folder per workflow holding config.yaml.',
        )
    known = {"name", "modules", "settings", "workflow_dirs", "lifecycle"}
    unknown = set(table) - known
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(sorted(unknown))}.",
            hint=f"Known keys: {', '.join(sorted(known))}; settings go under [settings].",
        )
    name = table.get("name", path.parent.name)
    lifecycle = data.get("lifecycle", {})
    if not isinstance(lifecycle, dict):
        raise ConfigError(f"{path} [lifecycle] must be a table.")
    return Project(
        path.parent, path, str(name), tuple(modules), dict(settings), tuple(dirs), lifecycle
    )


def load_workflows(project: Project, skip: Collection[str] = ()) -> dict[str, Workflow]:
    """Import the project's modules (but those named in ``skip``) and collect every
    ``Workflow`` they define."""
    root = str(project.root)
    if root not in sys.path:
        sys.path.insert(0, root)
    found: dict[str, Workflow] = {}
    for name in project.modules:
        if name in skip:
            continue
        module = import_module(project, name)
        for value in vars(module).values():
            if isinstance(value, Workflow):
                other = found.get(value.name)
                if other is not None and other is not value:
                    raise ConfigError(
                        f"Two workflows are named {value.name!r} ({other.source} and {name}).",
                        hint="Rename one of them.",
                    )
                found[value.name] = dataclasses.replace(value, source=name)
    if project.workflow_dirs:
        from klaw.service.folders import find_folders, load_folder

        for folder in find_folders(project.root, project.workflow_dirs):
            wf = load_folder(folder)
            other = found.get(wf.name)
            if other is not None:
                raise ConfigError(
                    f"Two workflows are named {wf.name!r} ({other.source} and {folder}).",
                    hint="Rename one of them.",
                )
            found[wf.name] = wf
    names = set(found)
    for wf in found.values():
        missing = [d for d in wf.depends_on if d not in names]
        if missing:
            raise ConfigError(
                f"Workflow {wf.name!r} ({wf.source}) depends_on {', '.join(missing)}, which the "
                "project does not define.",
                hint=f"Workflows: {', '.join(sorted(names))}.",
            )
    return found


def import_module(project: Project, name: str) -> Any:
    """Import workflow module ``name`` (a dotted name, or a path ending in .py) of ``project``;
    a ProjectImportError naming the file and line when it fails."""
    try:
        if name.endswith(".py"):
            path = (project.root / name).resolve()
            if not path.exists():
                raise ConfigError(f"{project.file} names {name}, which does not exist.")
            module_name = path.stem
            loaded = sys.modules.get(module_name)
            if loaded is not None and getattr(loaded, "__file__", None) == str(path):
                return loaded  # the same file: a module of the same name elsewhere is replaced
            spec = importlib.util.spec_from_file_location(module_name, path)
            assert spec is not None and spec.loader is not None
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
            return module
        return importlib.import_module(name)
    except ConfigError:
        raise
    except SyntaxError as exc:
        raise ProjectImportError(
            f"Workflow module {name!r} has a syntax error at {exc.filename}:{exc.lineno}: "
            f"{exc.msg}.",
            hint="Fix the line named above.",
        ) from exc
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            raise ProjectImportError(
                f"Workflow module {name!r} (named in {project.file}) was not found under "
                f"{project.root}.",
                hint="Check the module name, or give a path ending in .py.",
            ) from exc
        raise _failed(project, name, exc) from exc
    except Exception as exc:
        raise _failed(project, name, exc) from exc


def _failed(project: Project, name: str, exc: BaseException) -> ProjectImportError:
    frames = traceback.extract_tb(exc.__traceback__)
    root = str(project.root)
    inside = [f for f in frames if f.filename.startswith(root)] or frames
    where = f"{inside[-1].filename}:{inside[-1].lineno}" if inside else name
    error = ProjectImportError(
        f"Workflow module {name!r} failed to import at {where}: {type(exc).__name__}: {exc}",
        hint="Fix the error above; run with --debug for the full traceback.",
    )
    error.__cause__ = exc
    return error
