"""A closed SQLite store's connection is kept for the next store of the same file in this
process (``klaw.run`` in a loop skips the checkpoint, WAL removal and set-up of each open),
and never handed out for another file, after a fork, or to a file deleted and made again."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

import klaw
from klaw.metadata import connections
from klaw.metadata.sqlite import SQLiteMetadataStore
from klaw.states import RunState

from .contract import make_run


def _open(path: Path) -> SQLiteMetadataStore:
    store = SQLiteMetadataStore(path)
    store.migrate()
    return store


def test_the_next_store_of_a_file_gets_the_closed_ones_connection(tmp_path: Path) -> None:
    first = _open(tmp_path / "klaw.db")
    conn = first._conn
    run = make_run()
    first.create_run(run)
    first.close()
    second = _open(tmp_path / "klaw.db")
    try:
        assert second._conn is conn  # no new connection, no checkpoint in between
        assert second.get_run(run.run_id).run_id == run.run_id
    finally:
        second.close()


def test_what_was_written_is_committed_for_other_processes(tmp_path: Path) -> None:
    db = tmp_path / "klaw.db"
    store = _open(db)
    run = make_run()
    store.create_run(run)
    store.close()  # parked, not closed: the WAL stays, its commits are in it
    code = (
        "import sqlite3, sys\n"
        "conn = sqlite3.connect(sys.argv[1])\n"
        "print(conn.execute('SELECT run_id FROM runs').fetchall())\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(db)], capture_output=True, text=True, check=True
    )
    assert run.run_id in out.stdout


def test_a_file_made_again_gets_a_new_connection(tmp_path: Path) -> None:
    db = tmp_path / "klaw.db"
    store = _open(db)
    old = store._conn
    store.create_run(make_run())
    store.close()
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    again = _open(db)
    try:
        assert again._conn is not old
        assert again._conn is not None
        assert again._conn.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0
    finally:
        again.close()


def test_another_file_never_gets_it(tmp_path: Path) -> None:
    one = _open(tmp_path / "one.db")
    conn = one._conn
    one.close()
    two = _open(tmp_path / "two.db")
    try:
        assert two._conn is not conn
    finally:
        two.close()


def test_a_forked_child_opens_its_own(tmp_path: Path) -> None:
    db = tmp_path / "klaw.db"
    store = _open(db)
    store.close()
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: the parent's parked connection is not for it
        ok = connections.take(db) is None
        os.write(write, b"1" if ok else b"0")
        os._exit(0)
    os.waitpid(pid, 0)
    assert os.read(read, 1) == b"1"
    assert connections.take(db) is not None  # still the parent's


def test_at_most_a_few_files_are_kept(tmp_path: Path) -> None:
    connections.close_all()
    kept: list[sqlite3.Connection | None] = []
    for i in range(connections.KEPT + 2):
        store = _open(tmp_path / f"{i}.db")
        kept.append(store._conn)
        store.close()
    oldest = kept[0]
    assert oldest is not None
    with pytest.raises(sqlite3.ProgrammingError):  # it was closed to keep the newer ones
        oldest.execute("SELECT 1")
    connections.close_all()


def test_klaw_run_in_a_loop_reuses_the_connection(tmp_path: Path) -> None:
    @klaw.stage
    def one() -> int:
        return 1

    wf = klaw.workflow("one", [one])
    home = tmp_path / "home"
    first = klaw.run(wf, home=home)
    parked = connections._parked.get(str(home / "klaw.db"))
    assert parked is not None
    second = klaw.run(wf, home=home)
    again = connections._parked.get(str(home / "klaw.db"))
    assert again is not None and again[0] is parked[0]
    assert first.state is RunState.SUCCEEDED and second.state is RunState.SUCCEEDED
