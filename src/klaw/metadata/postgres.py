"""``PostgresMetadataStore``: the server metadata store (Postgres through psycopg 3).

The store's methods are written once in :mod:`klaw.metadata.sql`; this module is the Postgres
dialect: ``%s`` statements, the connection, error mapping, the bulk batch write, event heads,
advisory locks, partitions, ``pg_notify`` and partition-dropping ``prune``. The schema's
Postgres side (time partitions, event heads, NUL-safe text) is described in
``klaw.metadata.postgres_schema``.

Writes are transactions on an autocommit connection. ``commit`` is the hot path: one statement
per record list (``INSERT ... SELECT * FROM unnest(arrays)``), no ``SELECT`` once a run's
sequence counters are known. ``seq`` numbers are assigned here, per run, from counters kept in
memory and seeded (one query for all new runs of a batch) the first time a run is touched. A
writer in another process (a cancel request) can move a run's events on; the batch's
compare-and-set on ``event_heads`` then fails and the batch is retried once, its counters
reseeded under ``FOR UPDATE`` so the retry cannot lose the race again.

Partitions a batch needs are created before its transaction, in a short one of their own under
an advisory lock (idempotent across processes; the write transaction never runs DDL), and
remembered in memory so that no record costs a query. ``create_run`` with ``max_active`` holds
``pg_advisory_xact_lock`` on the workflow name, so the limit check and the insert are atomic
across processes.

Every transaction that writes a run's events, attempts or logs also notifies the run's id on
the schema's channel (``pg_notify``, delivered only once it commits): a follower waiting in
``wait_run`` is woken by this process's listener (:mod:`klaw.metadata.postgres_listener`) as
soon as the rows are visible, whichever process wrote them.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar
from urllib.parse import urlsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from klaw.errors import MetadataError
from klaw.metadata import migrations, rows, wakeups
from klaw.metadata import postgres_listener as listening
from klaw.metadata import postgres_schema as pg
from klaw.metadata.records import Batch, EventRecord, LogRecord
from klaw.metadata.sql import Fault, SqlMetadataStore, Statements

CONNECT_TIMEOUT_S = 10
_NO_COUNTERS: dict[str, int] = {}
Connection = psycopg.Connection[tuple[Any, ...]]


def _redact(url: str) -> str:
    """The URL or conninfo string without its password."""
    text = re.sub(r"(password=)[^&\s]*", r"\1***", url)
    password = urlsplit(text).password if "://" in text else None
    return text.replace(f":{password}@", ":***@", 1) if password else text


class PostgresMetadataStore(SqlMetadataStore):
    """Runs, attempts, events, logs, metrics, schedules, tokens and keys in a Postgres database.

    ``url`` is a libpq URL or conninfo string (``postgresql://user@host:5432/db``); choose the
    schema with ``?options=-csearch_path%3Dname``. Safe to share between threads (one
    connection behind a lock); any number of processes may write.
    """

    q: ClassVar = Statements("%s")
    DB_ERROR: ClassVar[type[Exception]] = psycopg.Error
    UNIQUE_ERROR: ClassVar[type[Exception]] = psycopg.errors.UniqueViolation
    HINTS: ClassVar[dict[Fault, str]] = {
        Fault.LOCKED: "another session held a lock this write needed (see pg_locks, "
        "pg_stat_activity); retry",
        Fault.UNREACHABLE: "check that Postgres is running and reachable, and that the metadata "
        "URL (KLAW_METADATA__URL) names the right host, database and user",
        Fault.OTHER: "check that the database holds a Klaw metadata schema and the user may write",
    }
    RETRIABLE: ClassVar[frozenset[Fault]] = frozenset({Fault.LOCKED, Fault.UNREACHABLE})

    def __init__(self, url: str, *, recheck: float = listening.RECHECK) -> None:
        super().__init__(_redact(url))
        self.url = url
        self.recheck = recheck  # seconds a waiter goes without a look while notified
        self._listener: listening.PostgresListener | None = None
        self._channel = listening.channel(None)
        self._native = True  # events and metrics are natively partitioned (not hypertables)
        self._partitions: set[tuple[str, int]] = set()

    # -- connection ------------------------------------------------------------------------

    def _connect(self) -> Connection:
        options: dict[str, Any] = {"autocommit": True}
        try:
            if "connect_timeout" not in conninfo_to_dict(self.url):
                options["connect_timeout"] = CONNECT_TIMEOUT_S
            conn = psycopg.connect(self.url, **options)
        except psycopg.Error as exc:
            raise self._error("connect to", exc) from exc
        pg.register_text_adapters(conn)
        self._conn = conn
        return conn

    def _check_schema(self, conn: Connection) -> None:
        found = self._version(conn)
        if found > migrations.LATEST_VERSION:
            raise migrations.newer_schema_error(found, self.location)
        if found < migrations.LATEST_VERSION:
            state = "has no Klaw schema" if found == 0 else f"is at version {found}"
            raise MetadataError(
                f"metadata database {self.location} {state}; this Klaw needs schema "
                f"version {migrations.LATEST_VERSION}",
                hint=migrations.UPGRADE_HINT,
            )
        self._learn(conn)

    def _learn(self, conn: Connection) -> None:
        """Read how the schema stores events (partitions or hypertables) and its channel."""
        self._native = bool(self._one(conn, pg.IS_PARTITIONED))
        self._channel = listening.channel(self._one(conn, "SELECT current_schema()"))

    def _version(self, conn: Connection) -> int:
        if not self._one(conn, pg.HAS_VERSION_TABLE):
            return 0
        return int(self._one(conn, migrations.SELECT_VERSION) or 0)

    def _transaction(self, conn: Connection) -> AbstractContextManager[Any]:
        return conn.transaction()

    def _error(self, action: str, exc: Exception) -> MetadataError:
        if self._conn is not None and self._conn.broken:  # reconnect on the next call
            self._conn, self._ready = None, False
        if isinstance(exc, psycopg.errors.CheckViolation):  # a partition pruned elsewhere
            self._partitions.clear()
        return super()._error(action, exc)

    def _fault(self, exc: Exception) -> Fault:
        errors = psycopg.errors
        if isinstance(exc, psycopg.IntegrityError):
            return Fault.INTEGRITY
        if isinstance(exc, errors.LockNotAvailable | errors.TransactionRollback):
            return Fault.LOCKED  # lock_timeout, a deadlock or a serialization failure
        if isinstance(exc, psycopg.OperationalError) and not isinstance(exc, errors.QueryCanceled):
            return Fault.UNREACHABLE
        return Fault.OTHER

    def migrate(self) -> None:
        """Apply the missing migrations in one transaction (concurrent callers serialize)."""
        with self._lock:
            conn = self._conn if self._conn is not None else self._connect()
            try:
                with conn.transaction():
                    conn.execute(pg.LOCK, (pg.LOCK_CLASS, "migrate"))
                    conn.execute(migrations.CREATE_SCHEMA_VERSION)
                    found = self._version(conn)
                    if found > migrations.LATEST_VERSION:
                        raise migrations.newer_schema_error(found, self.location)
                    now = time.time()
                    timescale = found == 0 and self._enable_timescale(conn)
                    for migration in migrations.MIGRATIONS[found:]:
                        for statement in migration.statements:
                            conn.execute(statement)
                        for statement in pg.postgres_steps(migration.version, timescale=timescale):
                            conn.execute(statement)
                        conn.execute(
                            pg.INSERT_VERSION, (migration.version, migration.description, now)
                        )
                    self._learn(conn)
            except psycopg.Error as exc:
                raise self._error("migrate", exc) from exc
            self._ready = True

    @staticmethod
    def _enable_timescale(conn: Connection) -> bool:
        if conn.execute(pg.TIMESCALE_AVAILABLE).fetchone() is None:
            return False
        try:
            with conn.transaction():  # a savepoint: not preloaded or not allowed -> native
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        except psycopg.Error:
            return False
        return True

    def _forget(self) -> None:
        self._partitions.clear()

    def close(self) -> None:
        super().close()
        with self._lock:
            listener, self._listener = self._listener, None
        if listener is not None:
            listening.release(listener)

    # -- partitions ------------------------------------------------------------------------

    def _before_events(self, conn: Connection, timestamps: Iterable[float]) -> None:
        self._ensure_partitions(conn, pg.days("events", timestamps))

    def _ensure_partitions(self, conn: Connection, needed: set[tuple[str, int]]) -> None:
        """Create the partitions in ``needed`` this store has not seen, in their own
        transaction, so that the write transaction that follows runs no DDL."""
        missing = needed - self._partitions
        if not missing or not self._native:
            return
        with conn.transaction():
            conn.execute(pg.LOCK, (pg.LOCK_CLASS, "partitions"))
            for table, day in sorted(missing):
                conn.execute(pg.create_partition(table, day))
        self._partitions |= missing

    def _prune(self, conn: Connection, cutoff: float) -> int:
        """Drop the events and metrics partitions (or TimescaleDB chunks) that hold only
        timestamps before ``cutoff``; event sequence heads are kept."""
        if not self._native:
            us = math.floor(cutoff * 1e6)
            return sum(self._one(conn, pg.DROP_CHUNKS, (t, us)) for t in pg.PARTITIONED)
        conn.execute(pg.LOCK, (pg.LOCK_CLASS, "partitions"))
        dropped = 0
        for schema, name, table in conn.execute(pg.SELECT_PARTITIONS).fetchall():
            day = pg.partition_day(table, name)
            if day is not None and (day + 1) * pg.DAY <= cutoff:
                self._partitions.discard((table, day))  # recreated if ever needed again
                conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, name)))
                dropped += 1
        return dropped

    # -- writes ----------------------------------------------------------------------------

    def _retriable(self, exc: Exception) -> bool:
        """A write error that reseeded counters or recreated partitions can cure: a head moved
        on, a log seq taken by another writer, a partition another process pruned."""
        errors = psycopg.errors
        if not isinstance(exc, psycopg.Error):
            return False
        if pg.stale_head(exc) or isinstance(exc, errors.UniqueViolation | errors.CheckViolation):
            self._partitions.clear()
            return True
        return False

    def _write(self, conn: Connection, batch: Batch) -> None:
        needed = set()
        if batch.events:
            needed = pg.days("events", [e.ts for e in batch.events])
        if batch.metrics:
            needed |= pg.days("metrics", [m.ts for m in batch.metrics])
        self._ensure_partitions(conn, needed)
        event_seq = log_seq = _NO_COUNTERS
        with conn.transaction():
            cur = conn.cursor()
            if batch.runs:
                runs = {run.run_id: run for run in batch.runs}.values()  # the last one wins
                cur.execute(pg.BULK_RUNS.sql, pg.BULK_RUNS.args(map(rows.run_row, runs)))
            if batch.attempts:
                attempts = {(a.run_id, a.stage, a.attempt): a for a in batch.attempts}.values()
                cur.execute(
                    pg.BULK_ATTEMPTS.sql, pg.BULK_ATTEMPTS.args(map(rows.attempt_row, attempts))
                )
            if batch.events:
                start, event_seq = self._number(cur, batch.events, self._event_seq, pg.SELECT_HEADS)
                cur.execute(
                    pg.BULK_EVENTS.sql, pg.BULK_EVENTS.args(map(rows.event_row, batch.events))
                )
                heads = [(run_id, seq, start[run_id]) for run_id, seq in event_seq.items()]
                cur.execute(pg.ADVANCE_HEADS.sql, pg.ADVANCE_HEADS.args(heads))
            if batch.logs:
                log_seq = self._number(cur, batch.logs, self._log_seq, pg.SELECT_LOG_HEADS)[1]
                logs = [
                    (g.run_id, g.stage, g.attempt, g.stream, g.seq, g.ts, g.level, g.line)
                    for g in batch.logs
                ]
                cur.execute(pg.BULK_LOGS.sql, pg.BULK_LOGS.args(logs))
            if batch.metrics:
                metrics = [
                    (m.run_id, m.stage, m.attempt, m.name, m.value, m.ts) for m in batch.metrics
                ]
                cur.execute(pg.BULK_METRICS.sql, pg.BULK_METRICS.args(metrics))
            written = set(wakeups.written(batch))
            if written:  # delivered to followers only once this transaction commits
                cur.execute(listening.NOTIFY, (self._channel, list(written)))
        # Counters move only once the batch is durable, so a failed batch leaves no gap.
        self._event_seq.update(event_seq)
        self._log_seq.update(log_seq)

    @staticmethod
    def _number(
        cur: psycopg.Cursor[tuple[Any, ...]],
        records: Sequence[EventRecord] | Sequence[LogRecord],
        known: dict[str, int],
        select_heads: str,
    ) -> tuple[dict[str, int], dict[str, int]]:
        """Give each record the next ``seq`` of its run; return the runs' counters before and
        after. Runs this store has not touched are seeded by one query for all of them."""
        start = {}
        unknown = []
        for run_id in {record.run_id for record in records}:
            if run_id in known:
                start[run_id] = known[run_id]
            else:
                start[run_id] = 0
                unknown.append(run_id)
        if unknown:
            start.update(cur.execute(select_heads, (unknown,)).fetchall())
        counters = dict(start)
        for record in records:
            counters[record.run_id] = record.seq = counters[record.run_id] + 1
        return start, counters

    def _next_event_seq(self, conn: Connection, run_id: str) -> int:
        return int(self._one(conn, pg.BUMP_HEAD, (run_id,)))

    def _lock_workflow(self, conn: Connection, workflow: str) -> None:
        conn.execute(pg.LOCK, (pg.LOCK_CLASS, workflow))

    def _new_head(self, conn: Connection, run_id: str) -> None:
        conn.execute(pg.NEW_HEAD, (run_id,))

    def _notify(self, conn: Connection, run_ids: Sequence[str]) -> None:
        conn.execute(listening.NOTIFY, (self._channel, list(run_ids)))

    def _states_clause(self, states: Sequence[str]) -> tuple[str, list[Any]]:
        return " AND state = ANY(%s)", [list(states)]

    def _executemany(self, conn: Connection, statement: str, values: Sequence[Any]) -> None:
        conn.cursor().executemany(statement, values)

    # -- waiting ---------------------------------------------------------------------------

    def wait_run(self, run_id: str, ready: Callable[[], bool], timeout: float) -> bool:
        listener = self._listening()
        return listener.wakeups.wait(run_id, ready, timeout, self._poll)

    def _listening(self) -> listening.PostgresListener:
        """This process's listener of the store's database (started on first use)."""
        with self._lock:
            if self._listener is None:
                self._listener = listening.acquire(self.url)
            return self._listener

    def _poll(self) -> float:
        listener = self._listener
        if listener is None or not listener.listening:
            return listening.DISCONNECTED_POLL
        return self.recheck
