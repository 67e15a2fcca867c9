"""Pipeline versions as content: what a version of a workflow holds, its hash, how two differ,
and where a version's files are put so that a run can load them.

A version's content is its files (a folder workflow's every file; a Python workflow's module
source) and its resolved graph (the stages and edges ``GetWorkflow`` answers). The hash is the
SHA-256 of the canonical JSON of the format, the workflow's name, its kind and its files: the
graph follows from the files, so the same files are the same version whatever Klaw resolved.
"""

from __future__ import annotations

import difflib
import hashlib
import os
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import msgspec

from klaw.errors import ConfigError, DefinitionError
from klaw.protocol.lifecycle import Diff, FileDiff, StageChange
from klaw.service.project import Project

FORMAT: Final = 1  # the version/bundle format this Klaw writes
FORMATS: Final = frozenset({1})  # the formats it reads
MAX_FILE_BYTES: Final = 1_000_000  # a version holds source, not data
_SKIPPED_DIRS: Final = frozenset({"__pycache__", ".git", ".klaw", ".ipynb_checkpoints"})
# The fields of a stage that a diff compares (``StageNode`` as GetWorkflow answers it).
STAGE_FIELDS: Final = ("kind", "asset", "description", "retries", "timeout", "tags", "inputs")


class Content(msgspec.Struct, kw_only=True, frozen=True):
    """What a version holds: ``files`` by path (relative to the workflow's folder, or to the
    project for a Python module) and ``graph`` (stages with their ``deps``, params schema)."""

    workflow: str
    kind: str  # "folder" or "python"
    files: dict[str, str]
    graph: dict[str, Any] = msgspec.field(default_factory=dict)
    format: int = FORMAT

    @property
    def hash(self) -> str:
        return content_hash(self.workflow, self.kind, self.files, self.format)


def content_hash(workflow: str, kind: str, files: Mapping[str, str], format: int = FORMAT) -> str:
    """The SHA-256 (hex) of a version's canonical content: the same files, the same hash."""
    canonical = {"format": format, "workflow": workflow, "kind": kind, "files": dict(files)}
    return hashlib.sha256(msgspec.json.encode(canonical, order="sorted")).hexdigest()


def graph_of(reply: Any) -> dict[str, Any]:
    """A version's graph from a ``WorkflowReply``: each stage with the stages it depends on."""
    deps: dict[str, list[str]] = {s.name: [] for s in reply.stages}
    for up, down in reply.edges:
        deps[down].append(up)
    stages = [{**msgspec.to_builtins(s), "deps": sorted(deps[s.name])} for s in reply.stages]
    graph = {"stages": stages, "params_schema": reply.params_schema}
    decoded: dict[str, Any] = msgspec.json.decode(msgspec.json.encode(graph))  # as stored
    return decoded


def source_files(project: Project, workflow: str, source: str) -> tuple[str, dict[str, str]]:
    """The kind and files of ``workflow`` as they are on disk: a folder workflow's folder
    (``source`` is its path) or a Python workflow's module (``source`` is its module name or
    ``.py`` path). Refuses binary files and files over :data:`MAX_FILE_BYTES`."""
    path = Path(source)
    if path.is_absolute() and path.is_dir():
        return "folder", _folder_files(path)
    module = _module_path(project, source)
    if module is None:
        raise DefinitionError(
            f"Workflow {workflow!r}: cannot find the source of module {source!r} under "
            f"{project.root}.",
            hint="A version holds a workflow's files: keep its module inside the project.",
        )
    return "python", {module.relative_to(project.root).as_posix(): _text(module)}


def _module_path(project: Project, source: str) -> Path | None:
    if source.endswith(".py"):
        found = (project.root / source).resolve()
        return found if found.is_file() else None
    base = project.root.joinpath(*source.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _folder_files(folder: Path) -> dict[str, str]:
    files: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d not in _SKIPPED_DIRS and d[0] != ".")
        for name in sorted(filenames):
            if name.startswith(".") or name.endswith((".pyc", ".pyo")):
                continue
            path = Path(dirpath, name)
            files[path.relative_to(folder).as_posix()] = _text(path)
    return files


def _text(path: Path) -> str:
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise ConfigError(
            f"{path} is {size:,} bytes; a pipeline version holds source files of at most "
            f"{MAX_FILE_BYTES:,} bytes.",
            hint="Keep data out of the workflow's folder (put it in the lake or elsewhere).",
        )
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise ConfigError(
            f"{path} is not UTF-8 text; a pipeline version holds text files only.",
            hint="Move binary files out of the workflow's folder.",
        ) from None


def check_files(workflow: str, files: Mapping[str, str]) -> None:
    """Refuse paths that would leave the workflow's folder (absolute, ``..``) or are empty."""
    for name in files:
        parts = Path(name).parts
        if (
            not name
            or Path(name).is_absolute()
            or ".." in parts
            or name.endswith("/")
            or "\x00" in name
            or "\\" in name
        ):
            raise ConfigError(
                f"Workflow {workflow!r}: the file path {name!r} leaves the workflow's folder.",
                hint="Give paths relative to the folder, like config.yaml or sql/a.sql.",
            )


def materialize(root: Path, content: Content) -> Path:
    """Write a version's files under ``root`` (once; a version never changes) and return the
    folder to load it from: ``<root>/<workflow>-<hash12>/<workflow>`` for a folder workflow,
    ``<root>/<workflow>-<hash12>`` for a Python module."""
    check_files(content.workflow, content.files)
    base = root / f"{content.workflow}-{content.hash[:12]}"
    target = base / content.workflow if content.kind == "folder" else base
    if base.is_dir():
        return target
    staging = root / f".{base.name}.{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    inner = staging / content.workflow if content.kind == "folder" else staging
    for name, text in content.files.items():
        path = inner / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    try:
        staging.rename(base)  # whole or not at all; another process may have won
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def diff(a: Content, b: Content, a_label: str, b_label: str) -> Diff:
    """How ``b`` differs from ``a``: each changed file as a unified diff, and the stages
    added, removed and changed (with the fields that changed)."""
    files: list[FileDiff] = []
    for path in sorted(set(a.files) | set(b.files)):
        old, new = a.files.get(path), b.files.get(path)
        if old == new:
            continue
        change = "added" if old is None else "removed" if new is None else "changed"
        lines = difflib.unified_diff(
            (old or "").splitlines(keepends=True),
            (new or "").splitlines(keepends=True),
            f"{a_label}/{path}" if old is not None else "/dev/null",
            f"{b_label}/{path}" if new is not None else "/dev/null",
        )
        files.append(FileDiff(path=path, change=change, diff="".join(lines)))
    old_stages = {s["name"]: s for s in a.graph.get("stages", ())}
    new_stages = {s["name"]: s for s in b.graph.get("stages", ())}
    changed = []
    for name in sorted(set(old_stages) & set(new_stages)):
        fields = tuple(
            f for f in (*STAGE_FIELDS, "deps") if old_stages[name].get(f) != new_stages[name].get(f)
        )
        if fields:
            changed.append(StageChange(name=name, fields=fields))
    return Diff(
        files=files,
        stages_added=tuple(sorted(set(new_stages) - set(old_stages))),
        stages_removed=tuple(sorted(set(old_stages) - set(new_stages))),
        stages_changed=changed,
    )


def load(root: Path, content: Content) -> Any:
    """The workflow a version's files define, loaded from where :func:`materialize` put them
    under ``root``: a folder workflow as any folder, a Python workflow by importing its module
    file under a name of its own (its sibling imports resolve in the project as now)."""
    import dataclasses
    import importlib.util
    import sys

    from klaw.authoring.workflow import Workflow
    from klaw.service.folders import load_folder

    place = materialize(root, content)
    if content.kind == "folder":
        return load_folder(place)
    [name] = list(content.files)
    module_name = f"klaw_version_{content.workflow}_{content.hash[:12]}"
    module = sys.modules.get(module_name)
    if module is None:
        spec = importlib.util.spec_from_file_location(module_name, place / name)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module
        spec.loader.exec_module(module)
    for value in vars(module).values():
        if isinstance(value, Workflow) and value.name == content.workflow:
            return dataclasses.replace(value, source=module_name)
    raise DefinitionError(
        f"The saved version of {content.workflow!r} defines no workflow of that name.",
        hint="Make a new version from a module that defines it.",
    )
