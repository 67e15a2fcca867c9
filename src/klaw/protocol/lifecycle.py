"""Views of the pipeline lifecycle: versions as they are shown, and how two versions differ.
(Deployments, approval requests and audit entries are shown as their metadata records.)"""

from __future__ import annotations

import msgspec

from klaw.metadata.records import VersionRecord


class VersionView(VersionRecord, kw_only=True):
    """A version with where it is deployed now and whether it may still change (a version
    in uat, prod or retired is read-only)."""

    environments: tuple[str, ...] = ()
    read_only: bool = False


class VersionDetail(msgspec.Struct, kw_only=True, frozen=True):
    """A version with its files (path -> text) and graph (stages with their ``deps``)."""

    version: VersionView
    files: dict[str, str]
    graph: dict[str, object]


class FileDiff(msgspec.Struct, kw_only=True, frozen=True):
    path: str
    change: str  # added | removed | changed
    diff: str  # unified diff


class StageChange(msgspec.Struct, kw_only=True, frozen=True):
    name: str
    fields: tuple[str, ...]  # the stage's fields that differ


class Diff(msgspec.Struct, kw_only=True, frozen=True):
    files: list[FileDiff]
    stages_added: tuple[str, ...]
    stages_removed: tuple[str, ...]
    stages_changed: list[StageChange]


class GitChange(msgspec.Struct, kw_only=True, frozen=True):
    """What a git sync does to one workflow folder of the repository: ``created`` (a new dev
    version), ``unchanged``, or ``error`` (the folder does not load: ``error`` says why and
    where, and the workflow's deployed versions stay)."""

    workflow: str
    action: str
    version: int | None = None
    path: str = ""
    error: str | None = None
