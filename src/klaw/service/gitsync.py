"""Git sync: a project follows a git repository of folder workflows (dulwich: no git binary).

``[lifecycle.git]`` in ``klaw.toml`` names the repository (``url``: a path or a URL dulwich
can fetch), the ``branch`` (default ``main``) and the folder in it that holds the workflow
folders (``path``, default the repository's root). A sync reads the branch's newest commit;
each ``<path>/<name>/config.yaml`` folder whose files differ from every version of workflow
``name`` becomes a new dev version, after loading and checking like ``klaw validate``. A folder
that does not load (bad YAML, a cycle) is reported with the commit and the file, makes no
version, and the workflow's deployed versions stay as they were.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, cast

from klaw.errors import ConfigError, GitSyncError, KlawError
from klaw.protocol import GitSyncReply
from klaw.protocol.lifecycle import GitChange
from klaw.service.lifecycle import Caller
from klaw.service.versions import MAX_FILE_BYTES, Content

if TYPE_CHECKING:
    from dulwich.objects import Blob, Commit, Tree
    from dulwich.repo import Repo

    from klaw.service.releases import Releases

CONFIG = "config.yaml"


def settings(lifecycle: dict[str, Any], where: str) -> tuple[str, str, str]:
    """``url``, ``branch`` and ``path`` of ``[lifecycle.git]``."""
    table = lifecycle.get("git")
    if not isinstance(table, dict) or not isinstance(table.get("url"), str):
        raise ConfigError(
            f"{where} has no [lifecycle.git] url: the project follows no git repository.",
            hint='Add [lifecycle.git] url = "https://.../repo.git" (or a path), branch = "main".',
        )
    unknown = set(table) - {"url", "branch", "path", "poll_interval"}
    if unknown:
        raise ConfigError(
            f"{where} [lifecycle.git]: unknown key(s) {', '.join(sorted(unknown))}.",
            hint="Known keys: url, branch, path, poll_interval.",
        )
    return table["url"], str(table.get("branch", "main")), str(table.get("path", "")).strip("/")


def sync(releases: Releases, caller: Caller, *, dry_run: bool) -> GitSyncReply:
    """Sync the project's git repository: what it did (or, with ``dry_run``, would do)."""
    project = releases.dispatcher.orchestrator.project
    url, branch, base = settings(project.lifecycle, str(project.file))
    with _opened(url, project.root) as repo:
        commit_id = _head(repo, url, branch)
        commit = cast("Commit", repo[commit_id])
        label = commit_id.decode()[:12]
        summary = commit.message.decode("utf-8", "replace").strip().splitlines()
        tree = _subtree(repo, cast("Tree", repo[commit.tree]), base, url, label)
        changes = []
        for name, child in _folders(repo, tree):
            where = f"{base}/{name}" if base else name
            try:
                files = _files(repo, child, "", where)
            except GitSyncError as exc:
                error = f"commit {label}, {exc.message}"
                changes.append(GitChange(workflow=name, action="error", path=where, error=error))
                continue
            changes.append(_apply(releases, caller, name, files, where, label, summary, dry_run))
    return GitSyncReply(
        repository=url,
        branch=branch,
        commit=commit_id.decode(),
        dry_run=dry_run,
        changes=changes,
    )


def _apply(
    releases: Releases,
    caller: Caller,
    name: str,
    files: dict[str, str],
    where: str,
    label: str,
    summary: list[str],
    dry_run: bool,
) -> GitChange:
    held = releases.store.version_by_hash(
        name, Content(workflow=name, kind="folder", files=files).hash
    )
    if held is not None:
        return GitChange(workflow=name, action="unchanged", version=held.version, path=where)
    try:
        graph = releases.check_files(name, files)
    except KlawError as exc:
        return GitChange(
            workflow=name,
            action="error",
            path=where,
            error=f"commit {label}, {where}: {exc.message}",
        )
    if dry_run:
        return GitChange(workflow=name, action="create", path=where)
    content = Content(workflow=name, kind="folder", files=files, graph=graph)
    message = f"git {label}: {summary[0]}" if summary else f"git {label}"
    record, created = releases.lifecycle.create(content, caller, message)
    return GitChange(
        workflow=name,
        action="created" if created else "unchanged",
        version=record.version,
        path=where,
    )


class _opened:
    """The repository at ``url``: opened in place for a local path, else fetched into a
    scratch bare clone (removed afterwards)."""

    def __init__(self, url: str, root: Path) -> None:
        self.url = url
        self.root = root
        self._scratch: str | None = None

    def __enter__(self) -> Repo:
        from dulwich import porcelain
        from dulwich.errors import NotGitRepository
        from dulwich.repo import Repo

        local = Path(self.url) if "://" not in self.url else None
        if local is not None:
            local = local if local.is_absolute() else self.root / local
            try:
                return Repo(str(local))
            except (NotGitRepository, FileNotFoundError, OSError):
                raise GitSyncError(
                    f"{local} is not a git repository.",
                    hint="Point [lifecycle.git] url at a repository (a path or a URL).",
                ) from None
        self._scratch = tempfile.mkdtemp(prefix="klaw-git-")
        try:
            quiet = cast(Any, _Quiet())
            return porcelain.clone(self.url, self._scratch, bare=True, errstream=quiet)
        except Exception as exc:
            raise GitSyncError(
                f"Could not fetch {self.url}: {type(exc).__name__}: {exc}.",
                hint="Check the URL, the network and the credentials.",
            ) from None

    def __exit__(self, *exc_info: object) -> None:
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)


class _Quiet:
    def write(self, data: bytes) -> int:
        return len(data)

    def flush(self) -> None:
        return None


def _head(repo: Repo, url: str, branch: str) -> bytes:
    for ref in (f"refs/heads/{branch}", f"refs/remotes/origin/{branch}"):
        try:
            return repo.refs[cast(Any, ref.encode())]
        except KeyError:
            continue
    raise GitSyncError(
        f"{url} has no branch {branch!r}.",
        hint="Set [lifecycle.git] branch to one the repository has.",
    )


def _subtree(repo: Repo, tree: Tree, base: str, url: str, label: str) -> Tree:
    for part in PurePosixPath(base).parts if base else ():
        try:
            _, sha = tree[part.encode()]
        except KeyError:
            raise GitSyncError(
                f"Commit {label} of {url} has no folder {base!r}.",
                hint="Set [lifecycle.git] path to the folder holding the workflow folders.",
            ) from None
        tree = cast("Tree", repo[sha])
    return tree


def _folders(repo: Repo, tree: Tree) -> list[tuple[str, Tree]]:
    """Each workflow folder of ``tree``: a child folder holding config.yaml."""
    found = []
    for entry in sorted(tree.items(), key=lambda e: e.path):
        if not _is_dir(entry.mode) or entry.path.startswith(b"."):
            continue
        child = cast("Tree", repo[entry.sha])
        if any(e.path == CONFIG.encode() for e in child.items()):
            found.append((entry.path.decode(), child))
    return found


def _files(repo: Repo, tree: Tree, prefix: str, base: str) -> dict[str, str]:
    files: dict[str, str] = {}
    for entry in tree.items():
        name = entry.path.decode()
        if name.startswith(".") or name == "__pycache__" or name.endswith(".pyc"):
            continue
        path = f"{prefix}{name}"
        if _is_dir(entry.mode):
            files.update(_files(repo, cast("Tree", repo[entry.sha]), f"{path}/", base))
            continue
        data = cast("Blob", repo[entry.sha]).data
        if len(data) > MAX_FILE_BYTES:
            raise GitSyncError(
                f"{base}/{path} is {len(data):,} bytes; a version holds source files only.",
                hint="Keep data out of the workflow folders.",
            )
        try:
            files[path] = data.decode("utf-8")
        except UnicodeDecodeError:
            raise GitSyncError(
                f"{base}/{path} is not UTF-8 text; a version holds text files only.",
                hint="Move binary files out of the workflow folders.",
            ) from None
    return dict(sorted(files.items()))


def _is_dir(mode: int) -> bool:
    return mode & 0o170000 == 0o040000
