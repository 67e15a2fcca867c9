"""PostgresMetadataStore: the shared contract plus what only Postgres has (partitions, prune,
advisory locks, NUL escaping). Every test gets a schema of its own, dropped afterwards.

Set ``KLAW_TEST_POSTGRES_URL`` to test another server; the tests skip only when the server
cannot be reached.
"""

from __future__ import annotations

import math
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

import klaw
from klaw.errors import MetadataError
from klaw.metadata import migrations
from klaw.metadata.postgres import PostgresMetadataStore
from klaw.metadata.postgres_schema import DAY, partition_name
from klaw.metadata.records import AttemptRecord, Batch, LogRecord, MetricRecord
from klaw.states import RunState, StageState

from .contract import MetadataStoreContract, event, make_run

URL = os.environ.get("KLAW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture(scope="session")
def server_url() -> str:
    try:
        psycopg.connect(URL, connect_timeout=3).close()
    except psycopg.OperationalError as exc:
        pytest.skip(f"Postgres is not reachable at {URL} (set KLAW_TEST_POSTGRES_URL): {exc}")
    return URL


def _with_schema(url: str, schema: str) -> str:
    return f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"


@pytest.fixture
def url(server_url: str) -> Iterator[str]:
    """The URL of a fresh, empty schema (dropped with everything in it afterwards)."""
    schema = f"klaw_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    yield _with_schema(server_url, schema)
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
def store(url: str) -> Iterator[PostgresMetadataStore]:
    store = PostgresMetadataStore(url)
    store.migrate()
    yield store
    store.close()


class TestPostgresMetadataStore(MetadataStoreContract):
    """The contract suite on the ``store`` fixture above: migrated, empty, a schema of its own."""


def _sql(url: str, query: str, *args: object) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(query, args or None)
        return cur.fetchall() if cur.description else []


def _partitions(url: str) -> set[str]:
    rows = _sql(
        url,
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "WHERE i.inhparent IN ('events'::regclass, 'metrics'::regclass)",
    )
    return {str(row[0]) for row in rows}


# -- opening and schema ----------------------------------------------------------------------


def test_constructor_never_connects_and_errors_hide_the_password() -> None:
    store = PostgresMetadataStore("postgresql://klaw:s3cret@127.0.0.1:1/nowhere")
    assert "s3cret" not in repr(store)
    with pytest.raises(MetadataError) as info:
        store.get_run("r1")
    message = str(info.value)
    assert "postgresql://klaw:***@127.0.0.1:1/nowhere" in message
    assert "s3cret" not in message
    assert "KLAW_METADATA__URL" in message


@pytest.mark.parametrize(
    "call",
    [
        lambda s: s.get_run("r1"),
        lambda s: s.commit(Batch(events=[event("r1", "x")])),
        lambda s: s.create_run(make_run()),
        lambda s: s.prune(0.0),
    ],
)
def test_unmigrated_schema_is_refused(url: str, call: object) -> None:
    store = PostgresMetadataStore(url)
    with pytest.raises(MetadataError, match="klaw db upgrade") as info:
        call(store)  # type: ignore[operator]
    assert "has no Klaw schema" in str(info.value)
    store.migrate()
    store.create_run(make_run("r1"))
    assert store.get_run("r1").run_id == "r1"
    store.close()


def test_migrate_is_idempotent(url: str) -> None:
    with PostgresMetadataStore(url) as store:
        store.migrate()
        store.migrate()
        store.create_run(make_run("r1"))
    with PostgresMetadataStore(url) as store:
        store.migrate()
        assert store.get_run("r1").run_id == "r1"
    versions = _sql(url, "SELECT version FROM schema_version ORDER BY version")
    assert [v[0] for v in versions] == [m.version for m in migrations.MIGRATIONS]


def test_ordered_text_columns_sort_bytewise_whatever_the_locale(url: str) -> None:
    with PostgresMetadataStore(url) as store:
        store.migrate()
    collations = _sql(
        url,
        "SELECT table_name, column_name, collation_name FROM information_schema.columns "
        "WHERE table_schema = current_schema() AND collation_name IS NOT NULL",
    )
    assert {(t, c) for t, c, name in collations if name == "C"} == {
        ("runs", "run_id"),
        ("attempts", "stage"),
        ("logs", "stage"),
        ("metrics", "name"),
    }


def test_concurrent_migrations_serialize(url: str) -> None:
    errors: list[BaseException] = []

    def migrate() -> None:
        try:
            with PostgresMetadataStore(url) as store:
                store.migrate()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=migrate) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert len(_sql(url, "SELECT version FROM schema_version")) == len(migrations.MIGRATIONS)


def test_newer_schema_is_refused(url: str) -> None:
    with PostgresMetadataStore(url) as store:
        store.migrate()
        store.create_run(make_run("r1"))
    newer = migrations.LATEST_VERSION + 1
    _sql(url, "INSERT INTO schema_version VALUES (%s, 'from the future', 0)", newer)
    store = PostgresMetadataStore(url)
    for call in (store.migrate, lambda: store.get_run("r1")):
        with pytest.raises(MetadataError) as info:
            call()
        message = str(info.value)
        assert f"schema version {newer}" in message
        assert f"up to {migrations.LATEST_VERSION}" in message
    store.close()


def test_close_twice_and_reopen_lazily(store: PostgresMetadataStore) -> None:
    run = make_run()
    store.create_run(run)
    store.close()
    store.close()
    assert store.get_run(run.run_id) == run


# -- partitions and prune --------------------------------------------------------------------


def test_partitions_follow_the_timestamps(store: PostgresMetadataStore, url: str) -> None:
    day = 19_800  # 2024-03-18
    run = make_run(created_at=day * DAY + 10)
    store.create_run(run)
    store.commit(
        Batch(
            events=[
                event(run.run_id, "a", ts=day * DAY + 20),
                event(run.run_id, "b", ts=day * DAY + DAY + 5),
            ],
            metrics=[
                MetricRecord(run_id=run.run_id, name="rows", value=1.0, ts=day * DAY + DAY + 9)
            ],
        )
    )
    assert _partitions(url) == {"events_p20240318", "events_p20240319", "metrics_p20240319"}
    assert partition_name("events", day) == "events_p20240318"
    assert [e.kind for e in store.list_events(run.run_id)] == ["run_created", "a", "b"]
    rows = _sql(url, "SELECT tableoid::regclass::text, seq FROM events ORDER BY seq")
    assert rows == [("events_p20240318", 1), ("events_p20240318", 2), ("events_p20240319", 3)]
    # The same days again need no new partition; a store that never saw them checks idempotently.
    with PostgresMetadataStore(url) as other:
        other.commit(Batch(events=[event(run.run_id, "c", ts=day * DAY + 30)]))
    assert len(_partitions(url)) == 3


def test_prune_drops_old_partitions_and_keeps_recent_rows(
    store: PostgresMetadataStore, url: str
) -> None:
    now = time.time()
    old = now - 10 * DAY
    run = make_run(created_at=now)
    store.create_run(run)
    other = PostgresMetadataStore(url)  # another process that wrote the old day too
    other.commit(Batch(events=[event(run.run_id, "old-other", ts=old)]))
    store.commit(
        Batch(
            events=[event(run.run_id, "old", ts=old), event(run.run_id, "new", ts=now)],
            metrics=[
                MetricRecord(run_id=run.run_id, name="m", value=1.0, ts=old),
                MetricRecord(run_id=run.run_id, name="m", value=2.0, ts=now),
            ],
        )
    )
    assert store.prune(30 * DAY) == 0
    assert store.prune(5 * DAY) == 2
    assert partition_name("events", math.floor(old / DAY)) not in _partitions(url)
    assert [e.kind for e in store.list_events(run.run_id)] == ["run_created", "new"]
    assert [m.value for m in store.list_metrics(run.run_id)] == [2.0]
    assert store.get_run(run.run_id) == run
    # Writing an old day again recreates its partition, also in a store that saw it before.
    other.commit(Batch(events=[event(run.run_id, "late", ts=old)]))
    store.commit(Batch(events=[event(run.run_id, "later", ts=old + 1)]))
    assert [(e.seq, e.kind) for e in store.list_events(run.run_id)] == [
        (1, "run_created"),
        (4, "new"),
        (5, "late"),
        (6, "later"),
    ]
    other.close()


def test_bad_timestamps_are_refused_by_name(store: PostgresMetadataStore) -> None:
    run = make_run()
    store.create_run(run)
    for ts in (math.nan, math.inf, 1e300):
        with pytest.raises(MetadataError, match="timestamp"):
            store.commit(Batch(events=[event(run.run_id, "x", ts=ts)]))
    assert [e.seq for e in store.list_events(run.run_id)] == [1]


# -- sequences and text ----------------------------------------------------------------------


def test_cancel_from_another_store_does_not_break_the_owner(url: str) -> None:
    owner = PostgresMetadataStore(url)
    owner.migrate()
    other = PostgresMetadataStore(url)
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


def test_commit_runs_no_select_once_counters_are_known(
    store: PostgresMetadataStore, tmp_path: Path
) -> None:
    run = make_run()
    store.create_run(run)
    log = LogRecord(run_id=run.run_id, stage="s", attempt=1, stream="stdout", ts=1.0, line="x")
    metric = MetricRecord(run_id=run.run_id, name="n", value=0.0, ts=1.0)
    # The first log of a run seeds the log counter; the first metric creates a partition.
    store.commit(Batch(logs=[log], metrics=[metric]))
    trace = tmp_path / "libpq.trace"
    conn = store._conn
    assert conn is not None
    with trace.open("w") as out:
        conn.pgconn.trace(out.fileno())
        for i in range(3):
            store.commit(
                Batch(
                    events=[event(run.run_id, f"e{i}")],
                    attempts=[
                        AttemptRecord(
                            run_id=run.run_id, stage="s", attempt=1, state=StageState.RUNNING
                        )
                    ],
                    logs=[LogRecord(**{**_fields(log), "line": f"l{i}"})],
                    runs=[run],
                    metrics=[MetricRecord(run_id=run.run_id, name="n", value=i, ts=1.0)],
                )
            )
        conn.pgconn.untrace()
    sent = [line for line in trace.read_text().splitlines() if "\tF\t" in line]
    assert any("INSERT INTO events" in line for line in sent)
    reads = [line for line in sent if '"SELECT' in line.upper()]
    # the one SELECT is the followers' notification (pg_notify), which reads nothing
    assert [line for line in reads if "pg_notify" not in line] == []
    assert len(reads) == 3
    assert [e.seq for e in store.list_events(run.run_id)] == [1, 2, 3, 4]


def _fields(record: LogRecord) -> dict[str, object]:
    return {name: getattr(record, name) for name in record.__struct_fields__}


def test_nul_and_escape_characters_round_trip(store: PostgresMetadataStore, url: str) -> None:
    odd = ["a\x00b", "\uffff", "\uffff0", "x\uffff1\x00\x00\uffff", "\x00"]
    run = make_run(f"run-{odd[0]}", workflow="wf\x00", error=odd[3])
    store.create_run(run)
    assert store.get_run(run.run_id) == run
    store.commit(
        Batch(
            events=[event(run.run_id, kind, stage=kind, data={kind: kind}) for kind in odd],
            logs=[
                LogRecord(run_id=run.run_id, stage="s", attempt=1, stream="stdout", ts=1.0, line=t)
                for t in odd
            ],
        )
    )
    got = store.list_events(run.run_id)[1:]
    assert [(e.kind, e.stage, e.data) for e in got] == [(k, k, {k: k}) for k in odd]
    assert [g.line for g in store.read_logs(run.run_id)] == odd
    # Ordinary text is stored as written.
    assert _sql(url, "SELECT kind FROM events WHERE seq = 1") == [("run_created",)]


# -- processes -------------------------------------------------------------------------------

_ENV = {**os.environ, "PYTHONPATH": str(Path(klaw.__file__).parents[1])}

_LIMITED_CREATOR = """
import os, socket, sys, time
from pathlib import Path
from klaw.errors import RunConflictError
from klaw.metadata.postgres import PostgresMetadataStore
from klaw.metadata.records import RunRecord
from klaw.states import RunState

url, me, workflows, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
store = PostgresMetadataStore(url)
(go.parent / f"{me}.ready").touch()
while not go.exists():
    time.sleep(0.001)
won = []
for i in range(workflows):
    run = RunRecord(run_id=f"{me}-{i}", workflow=f"wf-{i}", state=RunState.QUEUED,
                    created_at=time.time(), owner_host=socket.gethostname(), owner_pid=os.getpid())
    try:
        store.create_run(run, max_active=1)
        won.append(i)
    except RunConflictError:
        continue  # another process holds this workflow's one slot
print(" ".join(map(str, won)), flush=True)
while not (go.parent / "done").exists():  # stay alive: a dead owner's runs would not count
    time.sleep(0.01)
store.close()
"""


def _start(script: str, args: list[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        env=_ENV,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _release(tmp_path: Path, names: list[str], procs: list[subprocess.Popen[str]]) -> None:
    deadline = time.monotonic() + 60
    while not all((tmp_path / f"{name}.ready").exists() for name in names):
        assert time.monotonic() < deadline, "processes did not start"
        assert all(p.poll() is None for p in procs), [p.communicate() for p in procs]
        time.sleep(0.005)
    (tmp_path / "go").touch()


def test_processes_racing_for_max_active_one(
    store: PostgresMetadataStore, url: str, tmp_path: Path
) -> None:
    workflows, names = 40, [f"p{i}" for i in range(4)]
    procs = [
        _start(_LIMITED_CREATOR, [url, n, str(workflows), str(tmp_path / "go")]) for n in names
    ]
    _release(tmp_path, names, procs)
    won: list[int] = []
    try:
        for proc in procs:
            assert proc.stdout is not None
            won += [int(i) for i in proc.stdout.readline().split()]
    finally:
        (tmp_path / "done").touch()
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
    assert sorted(won) == list(range(workflows))  # exactly one winner per workflow
    counts = _sql(url, "SELECT workflow, count(*) FROM runs GROUP BY workflow")
    assert sorted(c for _, c in counts) == [1] * workflows


_WRITER = """
import os, sys, time
from pathlib import Path
from klaw.metadata.postgres import PostgresMetadataStore
from klaw.metadata.records import Batch, EventRecord, RunRecord
from klaw.states import RunState

url, run_id, n, go = sys.argv[1], sys.argv[2], int(sys.argv[3]), Path(sys.argv[4])
store = PostgresMetadataStore(url)
store.create_run(RunRecord(run_id=run_id, workflow="wf", state=RunState.RUNNING,
                           created_at=time.time(), owner_pid=os.getpid()))
(go.parent / f"{run_id}.ready").touch()
while not go.exists():
    time.sleep(0.001)
for i in range(n):
    store.commit(Batch(events=[EventRecord(run_id=run_id, kind=f"e{i}", ts=time.time())]))
store.close()
print("ok")
"""


def test_writer_and_cancels_from_another_process_never_share_a_seq(
    store: PostgresMetadataStore, url: str, tmp_path: Path
) -> None:
    n, cancels = 300, 40
    proc = _start(_WRITER, [url, "writer", str(n), str(tmp_path / "go")])
    _release(tmp_path, ["writer"], [proc])
    for _ in range(cancels):
        store.request_cancel("writer")
    _, err = proc.communicate(timeout=90)
    assert proc.returncode == 0, err
    events = store.list_events("writer")
    assert [e.seq for e in events] == list(range(1, n + cancels + 2))
    assert [e.kind for e in events if e.kind.startswith("e")] == [f"e{i}" for i in range(n)]
    assert sum(e.kind == "cancel_requested" for e in events) == cancels


# -- TimescaleDB -----------------------------------------------------------------------------


def test_timescale_hypertables_when_the_extension_exists(url: str) -> None:
    if not _sql(url, "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"):
        pytest.skip("the timescaledb extension is not installed on this server")
    with PostgresMetadataStore(url) as store:
        store.migrate()
        run = make_run(created_at=time.time() - 10 * DAY)
        store.create_run(run)
        store.commit(Batch(events=[event(run.run_id, "new", ts=time.time())]))
        assert store.prune(5 * DAY) >= 1
        assert [e.kind for e in store.list_events(run.run_id)] == ["new"]


# -- Idempotency-Keys ------------------------------------------------------------------------


def test_stores_racing_for_one_key_on_their_own_connections_make_one_claim(url: str) -> None:
    from .contract import claim

    stores = [PostgresMetadataStore(url) for _ in range(6)]
    stores[0].migrate()
    won: list[str] = []
    start = threading.Barrier(len(stores))

    def race(i: int) -> None:
        start.wait()
        if stores[i].begin_key(claim("race", claim=f"c{i}")) is None:
            won.append(f"c{i}")
            stores[i].finish_key(claim("race", claim=f"c{i}"), f"run-{i}")

    threads = [threading.Thread(target=race, args=(i,)) for i in range(len(stores))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(won) == 1
    found = stores[1].begin_key(claim("race", claim="late"))
    assert found is not None and (found.claim, found.run_id) == (won[0], f"run-{won[0][1:]}")
    assert _sql(url, "SELECT count(*) FROM idempotency_keys") == [(1,)]
    for store in stores:
        store.close()


def test_a_lock_held_too_long_is_named_as_such(store: PostgresMetadataStore, url: str) -> None:
    from klaw.errors import MetadataUnavailableError

    run = make_run()
    store.create_run(run)
    impatient = PostgresMetadataStore(url.replace("options=", "options=-c%20lock_timeout%3D50%20"))
    with psycopg.connect(url) as holder:
        holder.execute("LOCK TABLE runs IN ACCESS EXCLUSIVE MODE")
        with pytest.raises(MetadataUnavailableError) as caught:
            impatient.get_run(run.run_id)
        holder.rollback()
    assert "held a lock" in (caught.value.hint or "")
    assert impatient.get_run(run.run_id).run_id == run.run_id  # the store carries on
    impatient.close()


def test_two_promotions_at_once_on_two_connections_one_wins(url: str, tmp_path: Path) -> None:
    """Two API replicas promote the same version at once: the workflow's advisory lock makes
    one wait for the other, which then finds the version already promoted."""
    from klaw.errors import PromotionError
    from klaw.service.lifecycle import Caller, Lifecycle
    from klaw.service.project import Project
    from klaw.service.versions import Content

    project = Project(tmp_path, tmp_path / "klaw.toml", "p", ())
    stores = [PostgresMetadataStore(url) for _ in range(2)]
    stores[0].migrate()
    who = Caller("token:a (alice)", "operator")
    content = Content(workflow="wf", kind="folder", files={"config.yaml": "engine: duckdb\n"})
    Lifecycle(stores[0], project).create(content, who, "v1")
    outcomes: list[object] = []
    start = threading.Barrier(2)

    def promote(store: PostgresMetadataStore) -> None:
        start.wait()
        try:
            outcomes.append(Lifecycle(store, project).promote("wf", 1, "qa", who))
        except PromotionError as exc:
            outcomes.append(exc)

    threads = [threading.Thread(target=promote, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    errors = [o for o in outcomes if isinstance(o, PromotionError)]
    assert len(outcomes) == 2 and len(errors) == 1, outcomes
    assert "already in qa" in errors[0].message
    assert [e.action for e in stores[1].list_audit(workflow="wf")] == [
        "promoted",
        "version.created",
    ]
    for s in stores:
        s.close()
