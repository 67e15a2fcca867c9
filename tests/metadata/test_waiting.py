"""Waiting for a run's next write (``RunWaiter.wait_run``): on Postgres woken by NOTIFY of a
write from another process or connection, with the fallback re-check set far beyond the test's
own bound (so a poll could not pass it); no wake-up lost between a read and the wait; the
listener reconnects after its connection is killed; on SQLite the bounded poll (other
processes) and the in-process wake-up (this process's commits).

A wait that must be woken is given ``timeout=NEVER`` and must return True within ``BOUND``
seconds (:func:`woken`): a correctness bound (a poll or the final look at the deadline could
only pass it after ``NEVER``), never a measurement.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from klaw.metadata import postgres_listener
from klaw.metadata.postgres import PostgresMetadataStore
from klaw.metadata.records import Batch, RunRecord
from klaw.metadata.sqlite import SQLiteMetadataStore
from klaw.states import RunState

from . import test_postgres
from .contract import event, make_run

server_url = test_postgres.server_url  # the Postgres fixtures: a fresh schema per test
url = test_postgres.url
_with_schema = test_postgres._with_schema

BOUND = 30.0  # seconds: the longest any wait here may take before the test fails
NEVER = 60.0  # a fallback poll interval longer than BOUND: a poll cannot pass a test

WRITER = textwrap.dedent(
    """
    import sys
    from klaw.metadata.records import Batch, EventRecord
    from klaw.metadata.{module} import {store}

    store = {store}(sys.argv[1])
    sys.stdin.readline()  # the waiter is waiting: write now
    store.commit(Batch(events=[EventRecord(run_id=sys.argv[2], kind="from_another_process",
                                           ts=0.0, state="running")]))
    store.close()
    """
)


def _running(run_id: str) -> RunRecord:
    run = make_run(run_id)
    run.state = RunState.RUNNING
    return run


def _head(store: PostgresMetadataStore | SQLiteMetadataStore, run_id: str) -> int:
    events = store.list_events(run_id)
    return events[-1].seq if events else 0


class Writer:
    """Another process that commits one event to a run when told to (and not before)."""

    def __init__(self, module: str, store: str, where: str, run_id: str) -> None:
        source = WRITER.format(module=module, store=store)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", source, where, run_id],
            stdin=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.told = 0

    def go(self) -> None:
        if not self.told:
            assert self.proc.stdin is not None
            self.proc.stdin.write("go\n")
            self.proc.stdin.flush()
        self.told += 1

    def finish(self) -> None:
        _, err = self.proc.communicate(timeout=BOUND)
        assert self.proc.returncode == 0, err


def woken(
    store: PostgresMetadataStore | SQLiteMetadataStore, run_id: str, ready: Callable[[], bool]
) -> bool:
    """Whether ``wait_run`` returned True within ``BOUND`` seconds, though told to wait up to
    ``NEVER`` and to poll no more often than that."""
    started = time.monotonic()
    found = store.wait_run(run_id, ready, NEVER)
    return found and time.monotonic() - started < BOUND


def _after_first_look(
    after: int, look: Callable[[], int], act: Callable[[], None]
) -> Callable[[], bool]:
    """A ``ready`` that is False on its first call, which then runs ``act`` (a write that must
    wake the waiter); True once ``look()`` has moved past ``after``."""
    calls = 0

    def ready() -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            assert look() == after
            act()
            return False
        return look() > after

    return ready


# -- Postgres --------------------------------------------------------------------------------


@pytest.fixture
def pg(url: str) -> Iterator[PostgresMetadataStore]:
    store = PostgresMetadataStore(url, recheck=NEVER)
    store.migrate()
    yield store
    store.close()


def _listening(store: PostgresMetadataStore) -> postgres_listener.PostgresListener:
    listener = store._listening()
    assert listener.wait_listening(BOUND), "the listener did not connect"
    return listener


def test_postgres_waiter_is_woken_by_a_commit_of_another_process(
    pg: PostgresMetadataStore,
    url: str,
) -> None:
    pg.create_run(_running("r1"))
    _listening(pg)
    writer = Writer("postgres", "PostgresMetadataStore", url, "r1")
    try:
        ready = _after_first_look(1, lambda: _head(pg, "r1"), writer.go)
        assert woken(pg, "r1", ready), "not woken: no notification reached the waiter"
    finally:
        writer.go()
        writer.finish()
    assert pg.list_events("r1")[-1].kind == "from_another_process"


def test_postgres_write_between_the_read_and_the_wait_is_not_missed(
    pg: PostgresMetadataStore,
    url: str,
) -> None:
    pg.create_run(_running("r1"))
    _listening(pg)
    seen = _head(pg, "r1")  # the follower's read...
    with PostgresMetadataStore(url) as other:  # ...another connection writes...
        other.commit(Batch(events=[event("r1", "late")]))
    time.sleep(0.2)  # ...and its notification has come and gone before the wait
    assert woken(pg, "r1", lambda: _head(pg, "r1") > seen)


def test_postgres_waiters_hear_only_their_schema(
    pg: PostgresMetadataStore,
    url: str,
    server_url: str,
) -> None:
    pg.create_run(_running("r1"))
    pg.create_run(_running("r2"))
    listener = _listening(pg)
    told: list[str] = []
    original = listener.wakeups.notify

    def spy(run_ids: Iterable[str]) -> None:
        ids = list(run_ids)
        told.extend(ids)
        original(ids)

    listener.wakeups.notify = spy  # type: ignore[method-assign]
    schema = f"klaw_test_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        elsewhere = PostgresMetadataStore(_with_schema(server_url, schema))
        elsewhere.migrate()
        elsewhere.create_run(_running("elsewhere"))
        elsewhere.commit(Batch(events=[event("elsewhere", "x")]))
        elsewhere.close()
        with PostgresMetadataStore(url) as other:
            other.commit(Batch(events=[event("r2", "x")]))
            ready = _after_first_look(
                1, lambda: _head(pg, "r1"), lambda: other.commit(Batch(events=[event("r1", "y")]))
            )
            assert woken(pg, "r1", ready)
    finally:
        with psycopg.connect(server_url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
    # notifications arrive in commit order: by r1's, the earlier ones have all been heard
    assert "r2" in told and "elsewhere" not in told


def test_postgres_listener_reconnects_after_its_connection_is_killed(
    pg: PostgresMetadataStore,
    url: str,
    server_url: str,
) -> None:
    pg.create_run(_running("r1"))
    listener = _listening(pg)
    killed = listener.backend_pid
    assert killed is not None
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (killed,))
    with PostgresMetadataStore(url) as other:
        other.commit(Batch(events=[event("r1", "while_reconnecting")]))  # must not be missed
        assert woken(pg, "r1", lambda: _head(pg, "r1") >= 2)
        deadline = time.monotonic() + BOUND
        while listener.backend_pid in (None, killed) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert listener.backend_pid not in (None, killed), "the listener did not reconnect"
        assert listener.wait_listening(BOUND)
        ready = _after_first_look(
            2, lambda: _head(pg, "r1"), lambda: other.commit(Batch(events=[event("r1", "z")]))
        )
        assert woken(pg, "r1", ready), "not woken after reconnecting"


def test_postgres_write_while_the_listener_is_down_is_found_once_it_is_back(
    pg: PostgresMetadataStore,
    url: str,
    server_url: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(postgres_listener, "DISCONNECTED_POLL", NEVER)  # no poll meanwhile
    pg.create_run(_running("r1"))
    listener = _listening(pg)
    killed = listener.backend_pid
    looks: list[int] = []
    result: list[bool] = []

    def ready() -> bool:
        head = _head(pg, "r1")
        looks.append(head)
        if len(looks) == 2:  # woken by the lost connection: write while nobody listens
            with PostgresMetadataStore(url) as other:
                other.commit(Batch(events=[event("r1", "unheard")]))
        return head > 1

    thread = threading.Thread(target=lambda: result.append(woken(pg, "r1", ready)))
    thread.start()
    deadline = time.monotonic() + BOUND
    while not looks and time.monotonic() < deadline:
        time.sleep(0.01)
    with psycopg.connect(server_url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (killed,))
    thread.join(BOUND)
    assert result == [True], looks
    assert listener.backend_pid not in (None, killed)


def test_postgres_cancel_request_wakes_a_waiter(
    pg: PostgresMetadataStore,
    url: str,
) -> None:
    pg.create_run(_running("r1"))
    _listening(pg)
    with PostgresMetadataStore(url) as other:
        ready = _after_first_look(1, lambda: _head(pg, "r1"), lambda: other.request_cancel("r1"))
        assert woken(pg, "r1", ready)
    assert pg.list_events("r1")[-1].kind == "cancel_requested"


def test_postgres_stores_of_one_url_share_one_listener(url: str) -> None:
    first, second = PostgresMetadataStore(url), PostgresMetadataStore(url)
    first.migrate()
    try:
        assert first._listening() is second._listening()
        listener = first._listener
        assert listener is not None
    finally:
        first.close()
    assert second._listening() is listener and listener.wait_listening(BOUND)
    second.close()
    assert not listener.listening  # the last user stopped it


def test_postgres_wait_times_out_false_and_errors_propagate(
    pg: PostgresMetadataStore,
) -> None:
    pg.create_run(_running("r1"))
    assert pg.wait_run("r1", lambda: False, 0.05) is False

    def broken() -> bool:
        raise RuntimeError("reading failed")

    with pytest.raises(RuntimeError, match="reading failed"):
        pg.wait_run("r1", broken, BOUND)
    assert pg._listening().wakeups.waiting == 0


# -- SQLite ----------------------------------------------------------------------------------


@pytest.fixture
def db(tmp_path: Path) -> Path:
    path = tmp_path / "klaw.db"
    with SQLiteMetadataStore(path) as store:
        store.migrate()
        store.create_run(_running("r1"))
    return path


def test_sqlite_waiter_finds_another_process_commit_by_its_bounded_poll(db: Path) -> None:
    store = SQLiteMetadataStore(db, poll=0.05)
    writer = Writer("sqlite", "SQLiteMetadataStore", str(db), "r1")
    try:
        ready = _after_first_look(1, lambda: _head(store, "r1"), writer.go)
        assert woken(store, "r1", ready)
    finally:
        writer.go()
        writer.finish()
        store.close()


def test_sqlite_commit_of_this_process_wakes_a_waiter_at_once(db: Path) -> None:
    waiter = SQLiteMetadataStore(db, poll=NEVER)  # no poll could pass this test
    writer = SQLiteMetadataStore(db)  # another store (connection) of the same file
    started = threading.Event()
    result: list[bool] = []

    def ready() -> bool:
        started.set()
        return _head(waiter, "r1") > 1

    thread = threading.Thread(target=lambda: result.append(woken(waiter, "r1", ready)))
    thread.start()
    assert started.wait(BOUND)
    writer.commit(Batch(events=[event("r1", "here")]))
    thread.join(BOUND)
    assert result == [True]
    ready_cancel = _after_first_look(2, lambda: _head(waiter, "r1"), lambda: None)
    assert not waiter.wait_run("r1", ready_cancel, 0.05)  # nothing new: times out, False
    writer.close()
    waiter.close()


def test_sqlite_write_between_the_read_and_the_wait_is_not_missed(db: Path) -> None:
    store = SQLiteMetadataStore(db, poll=NEVER)
    seen = _head(store, "r1")
    store.commit(Batch(events=[event("r1", "late")]))
    assert woken(store, "r1", lambda: _head(store, "r1") > seen)
    store.close()
