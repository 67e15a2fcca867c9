"""L1: the pipeline lifecycle. Version creation and diff of a 1,000-stage folder workflow,
promotion latency, listing versions and the audit log as history grows (10 and 10,000
versions), and a git sync of 200 folder workflows.

Floors, measured in the same run: for creation, reading the folder's files and hashing them
(what any content-addressed store must do) plus one SQLite insert by hand; for a diff,
``difflib`` over the two versions' files; for a promotion, the same three statements in one
SQLite transaction by hand; for a listing, the same indexed query with ``sqlite3``; for git sync,
walking the commit's tree and reading every blob with dulwich by hand.
"""

from __future__ import annotations

import difflib
import hashlib
import sqlite3
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.report import Basis, Row, Target, Unit
from bench.timing import Case, interleaved
from klaw.protocol import (
    CreateVersion,
    DiffVersions,
    ListAudit,
    ListVersions,
    PromoteVersion,
    SyncGit,
)
from klaw.service.dispatcher import Dispatcher
from klaw.service.lifecycle import Caller
from klaw.service.orchestrator import Orchestrator

if TYPE_CHECKING:
    from bench.workloads import Settings

STAGES = 1_000
HISTORY = (10, 10_000)
FOLDERS = 200
ALICE = Caller("token:a (alice)", "operator")


def _sql(stages: int, salt: int = 0) -> str:
    lines = [f"-- version {salt}", "-- name: s0", "SELECT 0 AS x;"]
    for i in range(1, stages):
        lines += [f"-- name: s{i}", f"SELECT x + 1 AS x FROM s{(i - 1) // 2};"]
    return "\n".join(lines) + "\n"


def _project(root: Path, stages: int, git: str = "") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "klaw.toml").write_text(f'[project]\nname = "l1"\nworkflow_dirs = ["workflows"]\n{git}')
    folder = root / "workflows" / "big"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text("engine: duckdb\n")
    (folder / "workflow.sql").write_text(_sql(stages))
    return root


def lifecycle(settings: Settings) -> list[Row]:
    home = settings.home()
    rows = _big_workflow(home / "big", settings.times(5))
    rows += _history(home / "history", settings.times(30))
    rows += _git_sync(home / "git", settings.times(3))
    return rows


def _big_workflow(root: Path, repeat: int) -> list[Row]:
    orch = Orchestrator.open(_project(root, STAGES))
    d = Dispatcher(orch)
    sql_file = root / "workflows" / "big" / "workflow.sql"
    salt = [0]

    def touch() -> None:  # new content each sample (outside the timing)
        salt[0] += 1
        sql_file.write_text(_sql(STAGES, salt[0]))

    def create() -> None:
        made = d.execute(CreateVersion(workflow="big", message="bench"), caller=ALICE)
        assert made.created  # type: ignore[union-attr]

    floor_db = sqlite3.connect(root / "floor.db", isolation_level=None)
    floor_db.execute("CREATE TABLE v (n INTEGER PRIMARY KEY, hash TEXT UNIQUE, content TEXT)")

    def create_floor() -> None:
        folder = sql_file.parent
        files = {p.name: p.read_text() for p in sorted(folder.iterdir())}
        digest = hashlib.sha256(repr(sorted(files.items())).encode()).hexdigest()
        floor_db.execute("INSERT INTO v (hash, content) VALUES (?, ?)", (digest, repr(files)))

    found = interleaved(
        {"create": Case(create, touch), "create floor": Case(create_floor, touch)}, repeat
    )
    old, new = d.releases.content("big", 1)[1], d.releases.content("big", 2)[1]

    def diff() -> None:
        d.execute(DiffVersions(workflow="big", a=1, b=2), caller=ALICE)

    def diff_floor() -> None:
        for name in sorted(set(old.files) | set(new.files)):
            a, b = old.files.get(name, ""), new.files.get(name, "")
            "".join(difflib.unified_diff(a.splitlines(True), b.splitlines(True)))

    diffs = interleaved({"diff": Case(diff), "diff floor": Case(diff_floor)}, repeat)
    numbers = iter(range(3, 10_000))

    def promote() -> None:
        d.execute(PromoteVersion(workflow="big", number=next(numbers), to="qa"), caller=ALICE)

    def promote_floor() -> None:
        floor_db.execute("BEGIN IMMEDIATE")
        floor_db.execute("SELECT hash FROM v WHERE n = 1").fetchall()
        floor_db.execute("UPDATE v SET content = content WHERE n = 1")
        floor_db.execute("INSERT INTO v (hash, content) VALUES (?, '')", (str(time.time()),))
        floor_db.execute("COMMIT")

    for _ in range(repeat + 2):  # versions to promote, one per sample
        touch()
        create()
    promotions = interleaved(
        {"promote": Case(promote), "promote floor": Case(promote_floor)}, repeat
    )
    floor_db.close()
    orch.close()
    return [
        Row(
            "V1",
            f"version create, {STAGES:,}-stage folder workflow (validated)",
            Unit.SECONDS,
            found["create"].median,
            found["create floor"].median,
            "read + sha256 + sqlite insert",
        ),
        Row(
            "V1",
            f"version diff, {STAGES:,}-stage workflow",
            Unit.SECONDS,
            diffs["diff"].median,
            diffs["diff floor"].median,
            "difflib by hand",
        ),
        Row(
            "V1",
            "promotion to qa (one transaction, audited)",
            Unit.SECONDS,
            promotions["promote"].median,
            promotions["promote floor"].median,
            "3 statements, sqlite3 by hand",
        ),
    ]


def _history(root: Path, repeat: int) -> list[Row]:
    rows: list[Row] = []
    for size in HISTORY:
        rows += _history_at(root / str(size), size, repeat)
    return rows


_VERSIONS_SQL = (
    "SELECT * FROM versions WHERE workflow = ? AND version < ? ORDER BY version DESC LIMIT 50"
)
_AUDIT_SQL = "SELECT * FROM audit WHERE seq < ? AND workflow = ? ORDER BY seq DESC LIMIT 100"


def _history_at(root: Path, size: int, repeat: int) -> list[Row]:
    orch = Orchestrator.open(_project(root, 2))
    _fill(orch.metadata, size)
    d = Dispatcher(orch)
    conn = sqlite3.connect(orch.settings.metadata_path)
    cases = {
        "versions": Case(lambda: d.execute(ListVersions(workflow="big"), caller=ALICE)),
        "versions floor": Case(lambda: conn.execute(_VERSIONS_SQL, ("big", 2**62)).fetchall()),
        "audit": Case(lambda: d.execute(ListAudit(workflow="big"), caller=ALICE)),
        "audit floor": Case(lambda: conn.execute(_AUDIT_SQL, (2**62, "big")).fetchall()),
    }
    found = interleaved(cases, repeat)
    conn.close()
    orch.close()
    return [
        Row(
            "V1",
            f"{label}, {size:,} versions",
            Unit.SECONDS,
            found[name].median,
            found[f"{name} floor"].median,
            "sqlite3 by hand",
            Target(3.0, Basis.RATIO),
        )
        for name, label in (("versions", "versions list (50)"), ("audit", "audit page (100)"))
    ]


def _fill(store: Any, size: int) -> None:
    """``size`` versions of workflow ``big``, each with its audit entry, in one transaction."""
    from klaw.metadata.records import AuditRecord, VersionRecord

    def work(tx: Any) -> None:
        for n in range(1, size + 1):
            record = VersionRecord(
                workflow="big",
                version=n,
                hash=f"{n:064x}",
                format=1,
                kind="folder",
                author="a",
                message="m",
                created_at=float(n),
                stage="dev",
                stages=2,
            )
            tx.add_version(record, '{"workflow":"big","kind":"folder","files":{}}')
            tx.audit(
                AuditRecord(
                    at=float(n), actor="a", action="version.created", workflow="big", version=n
                )
            )

    store.change("big", "fill", work)


def _git_sync(root: Path, repeat: int) -> list[Row]:
    from dulwich import porcelain
    from dulwich.repo import Repo

    repo_dir = root / "repo"
    root.mkdir(parents=True, exist_ok=True)
    repo = Repo.init(str(repo_dir), mkdir=True)
    paths = []
    for i in range(FOLDERS):
        folder = repo_dir / "flows" / f"wf{i:03d}"
        folder.mkdir(parents=True)
        (folder / "config.yaml").write_text("engine: duckdb\n")
        (folder / "workflow.sql").write_text(
            f"-- name: a\nSELECT {i} AS x;\n-- name: b\nSELECT x FROM a;\n"
        )
        paths += [str(folder / "config.yaml"), str(folder / "workflow.sql")]
    porcelain.add(repo, paths)
    porcelain.commit(repo, b"200 workflows", author=b"Ann <ann@example.com>")
    git = f'\n[lifecycle.git]\nurl = "{repo_dir}"\nbranch = "master"\npath = "flows"\n'
    homes = iter(range(10_000))
    state: dict[str, Any] = {}

    def fresh() -> None:  # a project that has none of the versions yet
        if "orch" in state:
            state["orch"].close()
        orch = Orchestrator.open(_project(root / f"p{next(homes)}", 2, git))
        state["orch"], state["d"] = orch, Dispatcher(orch)

    def sync() -> None:
        reply = state["d"].execute(SyncGit(), caller=ALICE)
        assert sum(c.action == "created" for c in reply.changes) == FOLDERS

    def walk_floor() -> None:
        found = Repo(str(repo_dir))
        commit = found[found.refs[b"refs/heads/master"]]
        flows = found[found[commit.tree][b"flows"][1]]
        for entry in flows.items():
            for leaf in found[entry.sha].items():
                found[leaf.sha].data.decode()

    found = interleaved({"sync": Case(sync, fresh), "sync floor": Case(walk_floor)}, repeat)
    state["orch"].close()
    return [
        Row(
            "V1",
            f"git sync, {FOLDERS} folder workflows (each validated, a new version)",
            Unit.SECONDS,
            found["sync"].median,
            found["sync floor"].median,
            "dulwich tree walk by hand",
        )
    ]
