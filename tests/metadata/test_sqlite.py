from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest

import klaw
from klaw.errors import MetadataError
from klaw.metadata import migrations
from klaw.metadata.records import AttemptRecord, Batch, LogRecord, RunFilter
from klaw.metadata.sqlite import SQLiteMetadataStore
from klaw.states import RunState, StageState

from .contract import MetadataStoreContract, event, make_run


class TestSQLiteMetadataStore(MetadataStoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> Iterator[SQLiteMetadataStore]:
        store = SQLiteMetadataStore(tmp_path / "klaw.db")
        store.migrate()
        yield store
        store.close()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "klaw.db"


@pytest.fixture
def store(db: Path) -> Iterator[SQLiteMetadataStore]:
    store = SQLiteMetadataStore(db)
    store.migrate()
    yield store
    store.close()


# -- opening and schema ----------------------------------------------------------------------


def test_constructor_neither_connects_nor_creates(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "klaw.db"
    SQLiteMetadataStore(path)
    assert not path.parent.exists()


def test_migrate_creates_missing_folders(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "klaw.db"
    with SQLiteMetadataStore(path) as store:
        store.migrate()
    assert path.exists()


def test_wal_mode_is_on(store: SQLiteMetadataStore, db: Path) -> None:
    store.create_run(make_run())
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.get_run("r1"),
        lambda s: s.commit(Batch(events=[event("r1", "x")])),
        lambda s: s.create_run(make_run()),
        lambda s: s.list_events("r1"),
    ],
)
def test_unmigrated_database_is_refused(db: Path, call: object) -> None:
    store = SQLiteMetadataStore(db)
    with pytest.raises(MetadataError, match="klaw db upgrade") as info:
        call(store)  # type: ignore[operator]
    assert str(db) in str(info.value)
    store.migrate()
    store.create_run(make_run("r1"))
    assert store.get_run("r1").run_id == "r1"
    store.close()


def test_migrations_are_ordered_from_one() -> None:
    versions = [m.version for m in migrations.MIGRATIONS]
    assert versions == list(range(1, len(versions) + 1))
    assert versions[-1] == migrations.LATEST_VERSION


def test_migrate_is_idempotent(db: Path) -> None:
    with SQLiteMetadataStore(db) as store:
        store.migrate()
        store.migrate()
    with SQLiteMetadataStore(db) as store:
        store.migrate()
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        assert migrations.current_version(conn) == migrations.LATEST_VERSION
        rows = conn.execute("SELECT version FROM schema_version ORDER BY version").fetchall()
        assert [r[0] for r in rows] == [m.version for m in migrations.MIGRATIONS]
        assert migrations.migrate(conn, str(db)) == []
    finally:
        conn.close()


def test_current_version_of_empty_database_is_zero(db: Path) -> None:
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        assert migrations.current_version(conn) == 0
        assert migrations.migrate(conn, str(db)) == [m.version for m in migrations.MIGRATIONS]
    finally:
        conn.close()


def test_newer_schema_is_refused(db: Path) -> None:
    with SQLiteMetadataStore(db) as store:
        store.migrate()
        store.create_run(make_run("r1"))
    newer = migrations.LATEST_VERSION + 1
    with sqlite3.connect(db) as conn:
        conn.execute(
            "INSERT INTO schema_version (version, description, applied_at) VALUES (?, 'x', 0)",
            (newer,),
        )
    conn.close()
    store = SQLiteMetadataStore(db)
    for call in (store.migrate, lambda: store.get_run("r1")):
        with pytest.raises(MetadataError) as info:
            call()
        message = str(info.value)
        assert f"schema version {newer}" in message
        assert f"up to {migrations.LATEST_VERSION}" in message
    store.close()


def test_not_a_database_is_named(db: Path) -> None:
    db.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(MetadataError, match=str(db)):
        SQLiteMetadataStore(db).migrate()


def test_close_twice_and_reopen_lazily(store: SQLiteMetadataStore) -> None:
    run = make_run()
    store.create_run(run)
    store.close()
    store.close()
    assert store.get_run(run.run_id) == run


# -- sequences -------------------------------------------------------------------------------


def test_commit_assigns_seq_to_records(store: SQLiteMetadataStore) -> None:
    run = make_run()
    store.create_run(run)
    events = [event(run.run_id, "a"), event(run.run_id, "b")]
    logs = [
        LogRecord(run_id=run.run_id, stage="s", attempt=1, stream="stdout", ts=1.0, line="x"),
        LogRecord(run_id=run.run_id, stage="s", attempt=1, stream="stdout", ts=1.0, line="y"),
    ]
    store.commit(Batch(events=events, logs=logs))
    assert [e.seq for e in events] == [2, 3]
    assert [g.seq for g in logs] == [1, 2]


def test_commit_runs_no_select_once_counters_are_known(store: SQLiteMetadataStore) -> None:
    run = make_run()
    store.create_run(run)
    log = LogRecord(run_id=run.run_id, stage="s", attempt=1, stream="stdout", ts=1.0, line="x")
    store.commit(Batch(logs=[log]))  # the first log of a run seeds the log counter
    statements: list[str] = []
    store._conn.set_trace_callback(statements.append)  # type: ignore[union-attr]
    for i in range(3):
        store.commit(
            Batch(
                events=[event(run.run_id, f"e{i}")],
                attempts=[
                    AttemptRecord(run_id=run.run_id, stage="s", attempt=1, state=StageState.RUNNING)
                ],
                logs=[msgspec.structs.replace(log, line=f"l{i}")],
                runs=[run],
            )
        )
    assert statements
    assert not [s for s in statements if s.lstrip().upper().startswith("SELECT")]
    assert [e.seq for e in store.list_events(run.run_id)] == [1, 2, 3, 4]


def test_new_store_continues_sequences(db: Path) -> None:
    run = make_run()
    log = LogRecord(run_id=run.run_id, stage="s", attempt=1, stream="stdout", ts=1.0, line="x")
    with SQLiteMetadataStore(db) as first:
        first.migrate()
        first.create_run(run)
        first.commit(Batch(events=[event(run.run_id, "a")], logs=[log]))
    with SQLiteMetadataStore(db) as second:
        second.commit(
            Batch(
                events=[event(run.run_id, "b")],
                logs=[msgspec.structs.replace(log, line="y")],
            )
        )
        assert [e.seq for e in second.list_events(run.run_id)] == [1, 2, 3]
        assert [(g.seq, g.line) for g in second.read_logs(run.run_id)] == [(1, "x"), (2, "y")]


def test_cancel_from_another_connection_does_not_break_the_owner(db: Path) -> None:
    owner = SQLiteMetadataStore(db)
    owner.migrate()
    other = SQLiteMetadataStore(db)
    run = make_run(state=RunState.RUNNING)
    owner.create_run(run)
    owner.commit(Batch(events=[event(run.run_id, "stage_started")]))
    other.request_cancel(run.run_id)  # moves the sequence on behind the owner's back
    owner.commit(Batch(events=[event(run.run_id, "stage_cancelled"), event(run.run_id, "end")]))
    assert [(e.seq, e.kind) for e in owner.list_events(run.run_id)] == [
        (1, "run_created"),
        (2, "stage_started"),
        (3, "cancel_requested"),
        (4, "stage_cancelled"),
        (5, "end"),
    ]
    owner.close()
    other.close()


def test_readers_on_other_threads_while_committing(store: SQLiteMetadataStore) -> None:
    run = make_run()
    store.create_run(run)
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        try:
            while not done.is_set():
                seqs = [e.seq for e in store.list_events(run.run_id)]
                assert seqs == list(range(1, len(seqs) + 1))
                store.list_attempts(run.run_id)
        except BaseException as exc:
            errors.append(exc)

    readers = [threading.Thread(target=read) for _ in range(3)]
    for thread in readers:
        thread.start()
    for i in range(200):
        store.commit(
            Batch(
                events=[event(run.run_id, f"e{i}")],
                attempts=[
                    AttemptRecord(
                        run_id=run.run_id, stage=f"s{i}", attempt=1, state=StageState.RUNNING
                    )
                ],
            )
        )
    done.set()
    for thread in readers:
        thread.join()
    assert errors == []
    assert len(store.list_events(run.run_id)) == 201


# -- processes -------------------------------------------------------------------------------

_ENV = {**os.environ, "PYTHONPATH": str(Path(klaw.__file__).parents[1])}

_PRELUDE = """
import os, signal, sys, time
from pathlib import Path
from klaw.metadata.records import AttemptRecord, Batch, EventRecord, RunRecord
from klaw.metadata.sqlite import SQLiteMetadataStore
from klaw.states import RunState, StageState
"""

_KILLED_WRITER = (
    _PRELUDE
    + """
store = SQLiteMetadataStore(sys.argv[1])
store.migrate()
run = RunRecord(run_id="killed", workflow="wf", state=RunState.RUNNING, created_at=1.0,
                owner_pid=os.getpid())
store.create_run(run)
store.commit(Batch(
    events=[EventRecord(run_id="killed", kind="stage_succeeded", ts=2.0, stage="s", attempt=1)],
    attempts=[AttemptRecord(run_id="killed", stage="s", attempt=1, state=StageState.SUCCEEDED,
                            snapshot_id=7)],
))
if sys.argv[2] == "sigkill":
    os.kill(os.getpid(), signal.SIGKILL)
os._exit(3)
"""
)


@pytest.mark.parametrize("how", ["sigkill", "os_exit"])
def test_committed_batch_survives_the_process_dying(db: Path, how: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(db), how],
        env=_ENV,
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == (-signal.SIGKILL if how == "sigkill" else 3), proc.stderr
    with SQLiteMetadataStore(db) as store:
        assert [(e.seq, e.kind) for e in store.list_events("killed")] == [
            (1, "run_created"),
            (2, "stage_succeeded"),
        ]
        [attempt] = store.list_attempts("killed")
        assert (attempt.state, attempt.snapshot_id) == (StageState.SUCCEEDED, 7)
        assert store.get_run("killed").state is RunState.RUNNING


_CONCURRENT_WRITER = (
    _PRELUDE
    + """
db, run_id, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
store = SQLiteMetadataStore(db)
Path(go.parent / (run_id + ".ready")).touch()
while not go.exists():
    time.sleep(0.001)
store.migrate()
store.create_run(RunRecord(run_id=run_id, workflow="wf", state=RunState.RUNNING,
                           created_at=time.time(), owner_pid=os.getpid()), max_active=5)
for i in range(n):
    store.commit(Batch(
        events=[EventRecord(run_id=run_id, kind=f"e{i}", ts=time.time())],
        attempts=[AttemptRecord(run_id=run_id, stage=f"s{i % 7}", attempt=1,
                                state=StageState.RUNNING)],
    ))
store.close()
print("ok")
"""
)


def test_two_processes_write_concurrently(tmp_path: Path, db: Path) -> None:
    n = 300
    go = tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _CONCURRENT_WRITER, str(db), run_id, str(n), str(go)],
            env=_ENV,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for run_id in ("writer-a", "writer-b")
    ]
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"{r}.ready").exists() for r in ("writer-a", "writer-b")):
        assert time.monotonic() < deadline, "writers did not start"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.005)
    go.touch()
    for proc in procs:
        out, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        assert out.strip() == "ok"
    with SQLiteMetadataStore(db) as store:
        for run_id in ("writer-a", "writer-b"):
            events = store.list_events(run_id)
            assert [e.seq for e in events] == list(range(1, n + 2))
            assert [e.kind for e in events[1:]] == [f"e{i}" for i in range(n)]
            assert len(store.list_attempts(run_id)) == 7


def test_list_runs_cursor_unknown_falls_back_to_id_order(store: SQLiteMetadataStore) -> None:
    for run_id, created in (("r-01", 1.0), ("r-02", 2.0), ("r-03", 3.0)):
        store.create_run(make_run(run_id, created_at=created, workflow="cursor"))
    page = store.list_runs(RunFilter(workflow="cursor", before="r-025"))
    assert [r.run_id for r in page] == ["r-02", "r-01"]


def test_prune_drops_old_events_and_metrics_but_keeps_each_runs_last_event(
    tmp_path: Path,
) -> None:
    import time as _time

    from klaw.metadata.records import Batch, EventRecord, MetricRecord, RunRecord
    from klaw.states import RunState

    store = SQLiteMetadataStore(tmp_path / "prune.db")
    store.migrate()
    old, now = _time.time() - 10 * 86400, _time.time()
    run = RunRecord(run_id="r1", workflow="w", state=RunState.RUNNING, created_at=old)
    store.create_run(run)
    store.commit(
        Batch(
            events=[EventRecord(run_id="r1", kind="stage", ts=old) for _ in range(5)],
            metrics=[MetricRecord(run_id="r1", name="m", value=1.0, ts=old)],
        )
    )
    store.commit(Batch(events=[EventRecord(run_id="r1", kind="late", ts=now)]))
    assert store.prune(86400) == 7  # run_created + 5 old events + 1 metric; the last one stays
    assert [e.kind for e in store.list_events("r1")] == ["late"]
    store.commit(Batch(events=[EventRecord(run_id="r1", kind="after", ts=now)]))
    assert [e.seq for e in store.list_events("r1")] == [7, 8]  # numbering carries on
    store.close()


def test_a_batch_larger_than_a_chunk_keeps_each_attempts_last_record(
    store: SQLiteMetadataStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    from klaw.metadata import rows

    monkeypatch.setattr(rows, "CHUNK", 2)
    run = make_run()
    store.create_run(run)

    def attempt(stage: str, state: StageState, **fields: object) -> AttemptRecord:
        return AttemptRecord(run_id=run.run_id, stage=stage, attempt=1, state=state, **fields)  # type: ignore[arg-type]

    store.commit(
        Batch(
            attempts=[
                attempt("a", StageState.READY, queued_at=1.0),
                attempt("b", StageState.READY, queued_at=1.0),
                attempt("a", StageState.RUNNING, queued_at=1.0, token="t", started_at=2.0),
                attempt("c", StageState.READY, queued_at=1.0),
                attempt(
                    "a",
                    StageState.SUCCEEDED,
                    queued_at=1.0,
                    token="t",
                    started_at=2.0,
                    ended_at=3.0,
                ),
            ],
            events=[event(run.run_id, "stage", stage=s, attempt=1, state="ready") for s in "abcde"],
        )
    )
    assert [(a.stage, a.state, a.ended_at) for a in store.list_attempts(run.run_id)] == [
        ("a", StageState.SUCCEEDED, 3.0),
        ("b", StageState.READY, None),
        ("c", StageState.READY, None),
    ]
    assert [e.seq for e in store.list_events(run.run_id)][-5:] == [2, 3, 4, 5, 6]


def test_a_write_lock_held_too_long_is_named_as_such(
    db: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from klaw.metadata import sqlite as sqlite_store

    migrated = SQLiteMetadataStore(db)  # left open, so its connection is not handed on
    migrated.migrate()
    monkeypatch.setattr(sqlite_store, "BUSY_TIMEOUT_S", 0.05)
    impatient = SQLiteMetadataStore(db)
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    with pytest.raises(MetadataError) as caught:
        impatient.create_run(make_run())
    holder.execute("ROLLBACK")
    holder.close()
    assert "write lock" in (caught.value.hint or "")
    impatient.create_run(make_run())  # the store carries on once the lock is gone
    impatient.close()
    migrated.close()
