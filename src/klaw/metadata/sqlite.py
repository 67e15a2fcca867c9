"""``SQLiteMetadataStore``: the embedded metadata store (one SQLite file in WAL mode).

The store's methods are written once in :mod:`klaw.metadata.sql`; this module is the SQLite
dialect: ``?`` statements, the connection, ``BEGIN IMMEDIATE`` transactions, error hints, the
batch write and row-deleting ``prune``.

Writes are explicit ``BEGIN IMMEDIATE`` transactions on an autocommit connection, so a writer
takes the write lock up front and waits (busy timeout) instead of failing half-way; that also
serializes the active-run limit of ``create_run`` across processes. ``commit`` is the hot path:
one transaction per scheduling round, ``executemany`` per record list, SQL kept as module
constants so the statement cache reuses prepared statements, no ``SELECT`` once a run's
sequence counters are known.

Event and log ``seq`` numbers are assigned per run, from 1, by counters kept in memory and
seeded from ``MAX(seq)`` the first time a run is touched. A writer in another process (a cancel
request) can move a run's event sequence on; the next commit then hits the primary key, and is
retried once with counters reseeded from the database.

A follower waits for a run's next write with ``wait_run``: commits of this process wake it at
once (:mod:`klaw.metadata.wakeups`), those of other processes are found by a poll every
``poll`` seconds.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import ClassVar

from klaw.failpoints import failpoint
from klaw.metadata import connections, migrations, wakeups
from klaw.metadata.records import Batch, EventRecord, LogRecord
from klaw.metadata.rows import (
    INSERT_LOG,
    INSERT_METRIC,
    SELECT_MAX_EVENT_SEQ,
    SELECT_MAX_LOG_SEQ,
    UPSERT_RUN,
    attempt_upserts,
    event_inserts,
    run_row,
)
from klaw.metadata.sql import Fault, SqlMetadataStore, Statements

BUSY_TIMEOUT_S = 10.0

BEGIN = "BEGIN IMMEDIATE"
_NO_COUNTERS: dict[str, int] = {}
PRUNE_EVENTS = (
    "DELETE FROM events WHERE ts < ? AND seq < "
    "(SELECT MAX(seq) FROM events AS last WHERE last.run_id = events.run_id)"
)
PRUNE_METRICS = "DELETE FROM metrics WHERE ts < ?"
COMMIT = "COMMIT"
ROLLBACK = "ROLLBACK"


@contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """A write transaction: ``BEGIN IMMEDIATE`` takes the write lock up front (waiting up to the
    busy timeout), so a writer never fails half-way on a lock upgrade."""
    conn.execute(BEGIN)
    try:
        yield
        conn.execute(COMMIT)
    except BaseException:
        if conn.in_transaction:
            conn.execute(ROLLBACK)
        raise


def _enable_wal(conn: sqlite3.Connection) -> None:
    """Switch to WAL. The switch can report "locked" at once, without the busy handler, while
    another process opens the same new file; retry it until the busy timeout."""
    deadline = time.monotonic() + BUSY_TIMEOUT_S
    while True:
        try:
            conn.execute("PRAGMA journal_mode = WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


class SQLiteMetadataStore(SqlMetadataStore):
    """Runs, attempts, events, logs, metrics, schedules, tokens and keys in one SQLite file.

    Safe to share between threads (one connection, guarded by a lock); several processes may
    write the same file at once.
    """

    q: ClassVar = Statements("?")
    DB_ERROR: ClassVar[type[Exception]] = sqlite3.Error
    UNIQUE_ERROR: ClassVar[type[Exception]] = sqlite3.IntegrityError
    HINTS: ClassVar[dict[Fault, str]] = {
        Fault.LOCKED: f"another process held the write lock for over {BUSY_TIMEOUT_S:g} s; "
        "find it (`fuser` on the file) or retry",
        Fault.OTHER: "check that the file is a Klaw metadata database, that its folder is "
        "writable and that the disk is not full",
    }

    def __init__(self, path: Path | str, *, poll: float = wakeups.SQLITE_POLL) -> None:
        self.path = path if str(path) == ":memory:" else Path(path)
        super().__init__(str(self.path))
        self.poll = poll  # seconds between checks while waiting for another process's write
        self._wakeups = wakeups.for_file(self.path)

    # -- connection ------------------------------------------------------------------------

    def _connect(self) -> sqlite3.Connection:
        if isinstance(self.path, Path):
            kept = connections.take(self.path)  # a closed store's, already set up
            if kept is not None:
                self._conn = kept
                return kept
            self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=BUSY_TIMEOUT_S,
                isolation_level=None,
                check_same_thread=False,
            )
            conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
            _enable_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            raise self._error("open", exc) from exc
        self._conn = conn
        return conn

    def _close_connection(self, conn: sqlite3.Connection) -> None:
        if isinstance(self.path, Path):
            connections.park(self.path, conn)  # for the next store of this file
        else:
            conn.close()

    def _check_schema(self, conn: sqlite3.Connection) -> None:
        migrations.check_version(conn, self.location)

    def _transaction(self, conn: sqlite3.Connection) -> AbstractContextManager[None]:
        return _transaction(conn)

    def _fault(self, exc: Exception) -> Fault:
        if isinstance(exc, sqlite3.IntegrityError):
            return Fault.INTEGRITY
        return Fault.LOCKED if "locked" in str(exc) else Fault.OTHER

    def migrate(self) -> None:
        with self._lock:
            conn = self._conn if self._conn is not None else self._connect()
            try:
                if migrations.current_version(conn) == migrations.LATEST_VERSION:
                    self._ready = True  # current: no write transaction needed
                    return
                migrations.migrate(conn, self.location)
            except sqlite3.Error as exc:
                raise self._error("migrate", exc) from exc
            self._ready = True

    def _prune(self, conn: sqlite3.Connection, cutoff: float) -> int:
        gone = conn.execute(PRUNE_EVENTS, (cutoff,)).rowcount
        return int(gone + conn.execute(PRUNE_METRICS, (cutoff,)).rowcount)

    # -- writes ----------------------------------------------------------------------------

    def commit(self, batch: Batch) -> None:
        if batch:
            failpoint("sqlite_commit")
        super().commit(batch)

    def _retriable(self, exc: Exception) -> bool:
        return isinstance(exc, sqlite3.IntegrityError)

    def _write(self, conn: sqlite3.Connection, batch: Batch) -> None:
        event_seq = log_seq = _NO_COUNTERS
        with _transaction(conn):
            if batch.runs:
                conn.executemany(UPSERT_RUN, [run_row(run) for run in batch.runs])
            if batch.attempts:
                for upsert, values in attempt_upserts(batch.attempts):
                    conn.executemany(upsert, values)
            if batch.events:
                event_seq = self._number(conn, batch.events, self._event_seq, SELECT_MAX_EVENT_SEQ)
                for insert, rows in event_inserts(batch.events):
                    conn.executemany(insert, rows)
            if batch.logs:
                log_seq = self._number(conn, batch.logs, self._log_seq, SELECT_MAX_LOG_SEQ)
                conn.executemany(
                    INSERT_LOG,
                    [
                        (g.run_id, g.stage, g.attempt, g.stream, g.seq, g.ts, g.level, g.line)
                        for g in batch.logs
                    ],
                )
            if batch.metrics:
                conn.executemany(
                    INSERT_METRIC,
                    [(m.run_id, m.stage, m.attempt, m.name, m.value, m.ts) for m in batch.metrics],
                )
        # Counters move only once the batch is durable, so a failed batch leaves no gap.
        self._event_seq.update(event_seq)
        self._log_seq.update(log_seq)

    @staticmethod
    def _number(
        conn: sqlite3.Connection,
        records: Sequence[EventRecord] | Sequence[LogRecord],
        known: dict[str, int],
        select_max: str,
    ) -> dict[str, int]:
        """Give each record the next ``seq`` of its run; return the runs' new counters."""
        counters: dict[str, int] = {}
        for record in records:
            run_id = record.run_id
            seq = counters.get(run_id)
            if seq is None:
                seq = known.get(run_id)
                if seq is None:  # first touch of this run by this store
                    seq = conn.execute(select_max, (run_id,)).fetchone()[0]
            counters[run_id] = record.seq = seq + 1
        return counters

    def _next_event_seq(self, conn: sqlite3.Connection, run_id: str) -> int:
        return int(conn.execute(SELECT_MAX_EVENT_SEQ, (run_id,)).fetchone()[0]) + 1

    # -- waiting ---------------------------------------------------------------------------

    def _wake(self, run_ids: Iterable[str]) -> None:
        self._wakeups.notify(run_ids)

    def wait_run(self, run_id: str, ready: Callable[[], bool], timeout: float) -> bool:
        return self._wakeups.wait(run_id, ready, timeout, self._poll)

    def _poll(self) -> float:
        return self.poll
