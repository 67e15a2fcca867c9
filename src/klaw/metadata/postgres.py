"""``PostgresMetadataStore``: the server metadata store (Postgres through psycopg 3).

Same records and semantics as ``SQLiteMetadataStore``; the schema's Postgres dialect (time
partitions, event heads, NUL-safe text) is described in ``klaw.metadata.postgres_schema``.

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
import threading
import time
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from klaw.errors import (
    MetadataError,
    MetadataUnavailableError,
    RunConflictError,
    RunNotFoundError,
)
from klaw.metadata import migrations, rows, wakeups
from klaw.metadata import postgres_listener as listening
from klaw.metadata import postgres_schema as pg
from klaw.metadata.records import (
    AttemptRecord,
    Batch,
    EventRecord,
    IdempotencyRecord,
    Lease,
    LogRecord,
    MetricRecord,
    RunFilter,
    RunRecord,
    ScheduleDefinition,
    ScheduleRecord,
    TokenRecord,
)
from klaw.metadata.rows import owner_alive
from klaw.states import RunState

CONNECT_TIMEOUT_S = 10
_ACTIVE = (RunState.QUEUED.value, RunState.RUNNING.value)
_NO_COUNTERS: dict[str, int] = {}


def _redact(url: str) -> str:
    """The URL or conninfo string without its password."""
    text = re.sub(r"(password=)[^&\s]*", r"\1***", url)
    password = urlsplit(text).password if "://" in text else None
    return text.replace(f":{password}@", ":***@", 1) if password else text


def _retriable(exc: psycopg.Error) -> bool:
    """A write error that reseeded counters or recreated partitions can cure: a head moved on,
    a log seq taken by another writer, a partition another process pruned."""
    errors = psycopg.errors
    return pg.stale_head(exc) or isinstance(exc, errors.UniqueViolation | errors.CheckViolation)


class PostgresMetadataStore:
    """Runs, attempts, events, logs and metrics in a Postgres database.

    ``url`` is a libpq URL or conninfo string (``postgresql://user@host:5432/db``); choose the
    schema with ``?options=-csearch_path%3Dname``. The constructor only records it: the
    connection opens on first use and the schema changes only in ``migrate()``. Safe to share
    between threads (one connection behind a lock); any number of processes may write.
    """

    def __init__(self, url: str, *, recheck: float = listening.RECHECK) -> None:
        self.url = url
        self.location = _redact(url)
        self.recheck = recheck  # seconds a waiter goes without a look while notified
        self._listener: listening.PostgresListener | None = None
        self._channel = listening.channel(None)
        self._lock = threading.Lock()
        self._conn: psycopg.Connection[tuple[Any, ...]] | None = None
        self._ready = False
        self._native = True  # events and metrics are natively partitioned (not hypertables)
        self._partitions: set[tuple[str, int]] = set()
        self._event_seq: dict[str, int] = {}
        self._log_seq: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"PostgresMetadataStore({self.location!r})"

    def __enter__(self) -> PostgresMetadataStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- connection ------------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[tuple[Any, ...]]:
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

    def _ready_connection(self) -> psycopg.Connection[tuple[Any, ...]]:
        """The connection, checked once to be on the current schema. Call with the lock held."""
        conn = self._conn if self._conn is not None else self._connect()
        if not self._ready:
            try:
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
                self._native = bool(self._one(conn, pg.IS_PARTITIONED))
                self._channel = listening.channel(self._one(conn, "SELECT current_schema()"))
            except psycopg.Error as exc:
                raise self._error("read the schema version of", exc) from exc
            self._ready = True
        return conn

    @staticmethod
    def _one(conn: psycopg.Connection[tuple[Any, ...]], query: str, args: Any = None) -> Any:
        row = conn.execute(query, args).fetchone()
        return None if row is None else row[0]

    def _version(self, conn: psycopg.Connection[tuple[Any, ...]]) -> int:
        if not self._one(conn, pg.HAS_VERSION_TABLE):
            return 0
        return int(self._one(conn, migrations.SELECT_VERSION) or 0)

    def _error(self, action: str, exc: psycopg.Error) -> MetadataError:
        if self._conn is not None and self._conn.broken:  # reconnect on the next call
            self._conn, self._ready = None, False
        if isinstance(exc, psycopg.errors.CheckViolation):  # a partition pruned elsewhere
            self._partitions.clear()
        if isinstance(exc, psycopg.IntegrityError):
            hint = "a record breaks a constraint (a required field is missing?); none was written"
        elif isinstance(exc, psycopg.OperationalError):
            hint = (
                "check that Postgres is running and reachable, and that the metadata URL "
                "(KLAW_METADATA_URL) names the right host, database and user"
            )
        else:
            hint = "check that the database holds a Klaw metadata schema and the user may write"
        kind = MetadataError
        if isinstance(exc, psycopg.OperationalError) and not isinstance(
            exc, psycopg.errors.QueryCanceled
        ):
            kind = MetadataUnavailableError
        return kind(f"could not {action} metadata database {self.location}: {exc}", hint=hint)

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
                    self._native = bool(self._one(conn, pg.IS_PARTITIONED))
                    self._channel = listening.channel(self._one(conn, "SELECT current_schema()"))
            except psycopg.Error as exc:
                raise self._error("migrate", exc) from exc
            self._ready = True

    @staticmethod
    def _enable_timescale(conn: psycopg.Connection[tuple[Any, ...]]) -> bool:
        if conn.execute(pg.TIMESCALE_AVAILABLE).fetchone() is None:
            return False
        try:
            with conn.transaction():  # a savepoint: not preloaded or not allowed -> native
                conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        except psycopg.Error:
            return False
        return True

    def close(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conn, self._conn = self._conn, None
            self._ready = False
            self._partitions.clear()
            self._event_seq.clear()
            self._log_seq.clear()
            if conn is not None:
                conn.close()
        if listener is not None:
            listening.release(listener)

    # -- partitions ------------------------------------------------------------------------

    def _ensure_partitions(
        self, conn: psycopg.Connection[tuple[Any, ...]], needed: set[tuple[str, int]]
    ) -> None:
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

    def prune(self, older_than_seconds: float) -> int:
        """Drop the events and metrics partitions (or TimescaleDB chunks) that hold only
        timestamps older than ``older_than_seconds`` ago; return how many were dropped.
        Runs, attempts, logs and event sequence heads are kept."""
        if not older_than_seconds >= 0:
            raise MetadataError(
                f"cannot prune metadata older than {older_than_seconds!r} seconds",
                hint="give a number of seconds of zero or more",
            )
        cutoff = time.time() - older_than_seconds
        dropped: set[tuple[str, int]] = set()
        with self._lock:
            conn = self._ready_connection()
            try:
                with conn.transaction():
                    if not self._native:
                        us = math.floor(cutoff * 1e6)
                        chunks = [self._one(conn, pg.DROP_CHUNKS, (t, us)) for t in pg.PARTITIONED]
                        return sum(chunks)
                    conn.execute(pg.LOCK, (pg.LOCK_CLASS, "partitions"))
                    for schema, name, table in conn.execute(pg.SELECT_PARTITIONS).fetchall():
                        day = pg.partition_day(table, name)
                        if day is not None and (day + 1) * pg.DAY <= cutoff:
                            conn.execute(
                                sql.SQL("DROP TABLE {}").format(sql.Identifier(schema, name))
                            )
                            dropped.add((table, day))
            except psycopg.Error as exc:
                raise self._error("prune", exc) from exc
            finally:
                self._partitions -= dropped
        return len(dropped)

    # -- writes ----------------------------------------------------------------------------

    def commit(self, batch: Batch) -> None:
        if not batch:
            return
        with self._lock:
            conn = self._ready_connection()
            try:
                try:
                    self._write(conn, batch)
                except psycopg.Error as exc:
                    if not _retriable(exc):
                        raise
                    # Another process appended to one of these runs (a cancel request) or
                    # pruned a partition: forget what may be stale and try once more.
                    for run_id in {event.run_id for event in batch.events}:
                        self._event_seq.pop(run_id, None)
                    for run_id in {log.run_id for log in batch.logs}:
                        self._log_seq.pop(run_id, None)
                    self._partitions.clear()
                    self._write(conn, batch)
            except psycopg.Error as exc:
                raise self._error("commit a batch to", exc) from exc
            for run in batch.runs:
                if run.state.terminal:  # a finished run's counters reseed if it is ever touched
                    self._event_seq.pop(run.run_id, None)
                    self._log_seq.pop(run.run_id, None)

    def _write(self, conn: psycopg.Connection[tuple[Any, ...]], batch: Batch) -> None:
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

    def create_run(self, run: RunRecord, *, max_active: int | None = None) -> None:
        now = time.time()
        needed = pg.days(
            "events", [run.created_at, now] if max_active is not None else [run.created_at]
        )
        with self._lock:
            conn = self._ready_connection()
            try:
                self._ensure_partitions(conn, needed)
                with conn.transaction():
                    # Dead owners' runs are marked failed even when the new run is refused.
                    conflict = None
                    if max_active is not None:
                        conn.execute(pg.LOCK, (pg.LOCK_CLASS, run.workflow))
                        conflict = self._check_limit(conn, run.workflow, max_active, now)
                    if conflict is None:
                        conn.execute(pg.INSERT_RUN, rows.run_row(run))
                        conn.execute(pg.NEW_HEAD, (run.run_id,))
                        conn.execute(pg.INSERT_EVENT, rows.created_event(run))
            except psycopg.errors.UniqueViolation as exc:
                if self._one(conn, pg.SELECT_RUN_CREATED, (run.run_id,)) is None:
                    raise self._error("create a run in", exc) from exc
                raise rows.duplicate_run(run.run_id, self.location) from exc
            except psycopg.Error as exc:
                raise self._error("create a run in", exc) from exc
            if conflict is not None:
                raise conflict
            self._event_seq[run.run_id] = 1
            self._log_seq[run.run_id] = 0

    def _check_limit(
        self, conn: psycopg.Connection[tuple[Any, ...]], workflow: str, max_active: int, now: float
    ) -> RunConflictError | None:
        """Mark active runs with a dead owner failed; the error to raise if ``max_active`` live
        ones remain. Runs inside the caller's transaction, under the workflow's lock."""
        live: list[tuple[str, str, int]] = []
        for run_id, host, pid in conn.execute(
            pg.SELECT_ACTIVE_RUNS, (workflow, *_ACTIVE)
        ).fetchall():
            if owner_alive(host, pid):
                live.append((run_id, host, pid))
                continue
            seq = self._one(conn, pg.BUMP_HEAD, (run_id,))
            error, event = rows.abandoned(run_id, seq, host, pid, now)
            conn.execute(pg.MARK_ABANDONED, (RunState.FAILED.value, error, now, run_id))
            conn.execute(pg.INSERT_EVENT, event)
            self._event_seq.pop(run_id, None)
            conn.execute(listening.NOTIFY, (self._channel, [run_id]))
        return rows.run_conflict(workflow, live, max_active)

    def request_cancel(self, run_id: str) -> RunRecord:
        now = time.time()
        with self._lock:
            conn = self._ready_connection()
            try:
                self._ensure_partitions(conn, pg.days("events", [now]))
                with conn.transaction():
                    row = conn.execute(pg.SELECT_RUN, (run_id,)).fetchone()
                    if row is None:
                        raise self._not_found(conn, run_id)
                    seq = self._one(conn, pg.BUMP_HEAD, (run_id,))
                    cancel = (run_id, seq, now, "cancel_requested", None, None, None)
                    conn.execute(pg.INSERT_EVENT, (*cancel, rows.json_text({})))
                    conn.execute(listening.NOTIFY, (self._channel, [run_id]))
            except psycopg.Error as exc:
                raise self._error("record a cancel request in", exc) from exc
            if run_id in self._event_seq:
                self._event_seq[run_id] = seq
            return rows.run_from_row(row)

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

    # -- leases ----------------------------------------------------------------------------

    def renew_leases(self, leases: Sequence[Lease], until: float) -> list[Lease]:
        if not leases:
            return []
        lost: list[Lease] = []
        with self._lock:
            conn = self._ready_connection()
            try:
                with conn.transaction():
                    for lease in leases:
                        key = (lease.run_id, lease.stage, lease.attempt)
                        if conn.execute(pg.RENEW_LEASE, (until, *key, lease.token)).rowcount:
                            continue
                        row = conn.execute(pg.SELECT_FENCE, key).fetchone()
                        if rows.fenced(row, lease.token):
                            lost.append(lease)
            except psycopg.Error as exc:
                raise self._error("renew leases in", exc) from exc
        return lost

    def expire_leases(self, run_id: str, now: float, reason: str) -> list[AttemptRecord]:
        with self._lock:
            conn = self._ready_connection()
            try:
                with conn.transaction():
                    found = conn.execute(pg.EXPIRE_LEASES, (reason, now, run_id, now)).fetchall()
            except psycopg.Error as exc:
                raise self._error("expire leases in", exc) from exc
        return [rows.attempt_from_row(row) for row in found]

    def adopt_run(
        self, run_id: str, owner: tuple[str, int], new_owner: tuple[str, int], reason: str
    ) -> list[AttemptRecord] | None:
        with self._lock:
            conn = self._ready_connection()
            try:
                with conn.transaction():
                    took = conn.execute(pg.ADOPT_RUN, (*new_owner, run_id, *owner, *_ACTIVE))
                    if not took.rowcount:
                        return None
                    found = conn.execute(pg.FENCE_RUN, (reason, time.time(), run_id)).fetchall()
            except psycopg.Error as exc:
                raise self._error("take over a run in", exc) from exc
        return [rows.attempt_from_row(row) for row in found]

    # -- reads -----------------------------------------------------------------------------

    def _query(self, query: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            conn = self._ready_connection()
            try:
                return conn.execute(query, args).fetchall()
            except psycopg.Error as exc:
                raise self._error("read", exc) from exc

    def get_run(self, run_id: str) -> RunRecord:
        with self._lock:
            conn = self._ready_connection()
            try:
                row = conn.execute(pg.SELECT_RUN, (run_id,)).fetchone()
                if row is None:
                    raise self._not_found(conn, run_id)
            except psycopg.Error as exc:
                raise self._error("read", exc) from exc
        return rows.run_from_row(row)

    def _not_found(
        self, conn: psycopg.Connection[tuple[Any, ...]], run_id: str
    ) -> RunNotFoundError:
        """The error for an unknown id, naming up to 3 ids sharing its longest prefix (>= 4)."""
        close: list[str] = []
        for length in range(len(run_id), 3, -1):
            prefix = run_id[:length]
            upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
            close = [r[0] for r in conn.execute(pg.SELECT_RUN_IDS_IN_RANGE, (prefix, upper))]
            if close:
                break
        message = f"no run with id {run_id!r} in metadata database {self.location}"
        if close:
            message += f" (did you mean {', '.join(repr(c) for c in close)}?)"
        return RunNotFoundError(message, hint="check the run id; list recent runs to find it")

    def list_runs(self, filter: RunFilter) -> list[RunRecord]:
        query = pg.SELECT_RUNS
        args: list[Any] = []
        if filter.workflow is not None:
            query += " AND workflow = %s"
            args.append(filter.workflow)
        if filter.states:
            query += " AND state = ANY(%s)"
            args.append([state.value for state in filter.states])
        with self._lock:
            conn = self._ready_connection()
            try:
                if filter.before is not None:
                    created = conn.execute(pg.SELECT_RUN_CREATED, (filter.before,)).fetchone()
                    if created is None:  # run ids sort by time: compare the ids
                        query += " AND run_id < %s"
                        args.append(filter.before)
                    else:
                        query += " AND (created_at < %s OR (created_at = %s AND run_id < %s))"
                        args.extend((created[0], created[0], filter.before))
                query += " ORDER BY created_at DESC, run_id DESC LIMIT %s"
                args.append(filter.limit)
                found = conn.execute(query, args).fetchall()
            except psycopg.Error as exc:
                raise self._error("read", exc) from exc
        return [rows.run_from_row(row) for row in found]

    def list_attempts(self, run_id: str) -> list[AttemptRecord]:
        return [rows.attempt_from_row(row) for row in self._query(pg.SELECT_ATTEMPTS, (run_id,))]

    def list_events(self, run_id: str, *, after_seq: int = 0) -> list[EventRecord]:
        return [
            rows.event_from_row(row) for row in self._query(pg.SELECT_EVENTS, (run_id, after_seq))
        ]

    def read_logs(
        self,
        run_id: str,
        *,
        stage: str | None = None,
        attempt: int | None = None,
        after_seq: int = 0,
    ) -> list[LogRecord]:
        query = pg.SELECT_LOGS
        args: tuple[Any, ...] = (run_id,)
        if after_seq:
            query += " AND seq > %s"
            args += (after_seq,)
        if stage is not None:
            query += " AND stage = %s"
            args += (stage,)
        if attempt is not None:
            query += " AND attempt = %s"
            args += (attempt,)
        found = self._query(query + pg.LOGS_ORDER, args)
        return [LogRecord(**dict(zip(pg.LOG_FIELDS, row, strict=True))) for row in found]

    def list_metrics(self, run_id: str) -> list[MetricRecord]:
        found = self._query(pg.SELECT_METRICS, (run_id,))
        return [MetricRecord(**dict(zip(pg.METRIC_FIELDS, row, strict=True))) for row in found]

    # -- schedules -------------------------------------------------------------------------

    def sync_schedules(self, definitions: Sequence[ScheduleDefinition], *, now: float) -> None:
        if not definitions:
            return
        values = [rows.schedule_row(d, now) for d in definitions]
        with self._lock:
            conn = self._ready_connection()
            try:
                with conn.transaction():
                    conn.cursor().executemany(pg.UPSERT_SCHEDULE, values)
            except psycopg.Error as exc:
                raise self._error("sync schedules in", exc) from exc

    def list_schedules(self) -> list[ScheduleRecord]:
        found = self._query(pg.SELECT_SCHEDULES, ())
        return sorted((rows.schedule_from_row(r) for r in found), key=lambda s: s.name)

    def set_paused(self, name: str, paused: bool, *, now: float) -> ScheduleRecord:
        change = pg.PAUSE_SCHEDULE if paused else pg.RESUME_SCHEDULE
        with self._lock:
            conn = self._ready_connection()
            try:
                with conn.transaction():
                    conn.execute(change, (now, name))
                    row = conn.execute(pg.SELECT_SCHEDULE, (name,)).fetchone()
                if row is None:
                    known = [r[0] for r in conn.execute(pg.SELECT_SCHEDULE_NAMES).fetchall()]
                    raise rows.schedule_not_found(name, known, self.location)
            except psycopg.Error as exc:
                raise self._error("pause or resume a schedule in", exc) from exc
        return rows.schedule_from_row(row)

    def claim_tick(self, schedule: str, tick: str, *, now: float, owner: str = "") -> bool:
        with self._lock:
            conn = self._ready_connection()
            try:
                with conn.transaction():
                    claimed = conn.execute(
                        pg.CLAIM_TICK, (schedule, tick, float(now), owner, schedule)
                    ).rowcount
            except psycopg.Error as exc:
                raise self._error("claim a schedule tick in", exc) from exc
        return claimed == 1

    def finish_tick(
        self, schedule: str, tick: str, *, run_id: str | None = None, error: str | None = None
    ) -> None:
        with self._lock:
            conn = self._ready_connection()
            try:
                with conn.transaction():
                    conn.execute(pg.FINISH_TICK, (run_id, error, schedule, tick))
            except psycopg.Error as exc:
                raise self._error("record a schedule tick in", exc) from exc

    # -- API tokens ------------------------------------------------------------------------

    def create_token(self, token: TokenRecord) -> None:
        with self._lock:
            conn = self._ready_connection()
            try:
                with conn.transaction():
                    conn.execute(pg.INSERT_TOKEN, rows.token_row(token))
            except psycopg.Error as exc:
                raise self._error(f"store API token {token.token_id!r} in", exc) from exc

    def find_token(self, token_id: str) -> TokenRecord | None:
        found = self._query(pg.SELECT_TOKEN, (token_id,))
        return rows.token_from_row(found[0]) if found else None

    def list_tokens(self) -> list[TokenRecord]:
        found = [rows.token_from_row(r) for r in self._query(pg.SELECT_TOKENS, ())]
        return sorted(found, key=lambda t: (t.created_at, t.token_id))

    def revoke_token(self, token_id: str, *, now: float) -> TokenRecord | None:
        with self._lock:
            conn = self._ready_connection()
            try:
                with conn.transaction():
                    conn.execute(pg.REVOKE_TOKEN, (float(now), token_id))
                    row = conn.execute(pg.SELECT_TOKEN, (token_id,)).fetchone()
            except psycopg.Error as exc:
                raise self._error("revoke an API token in", exc) from exc
        return None if row is None else rows.token_from_row(row)

    def touch_token(self, token_id: str, *, now: float) -> None:
        since = float(now) - rows.TOUCH_EVERY
        with self._lock:
            conn = self._ready_connection()
            try:
                with conn.transaction():
                    conn.execute(pg.TOUCH_TOKEN, (float(now), token_id, since))
            except psycopg.Error as exc:
                raise self._error("record the use of an API token in", exc) from exc

    # -- Idempotency-Keys ------------------------------------------------------------------

    def begin_key(self, claim: IdempotencyRecord) -> IdempotencyRecord | None:
        with self._lock:
            conn = self._ready_connection()
            try:
                with conn.transaction():
                    conn.execute(pg.PRUNE_KEYS, (float(claim.created_at),))
                    if conn.execute(pg.BEGIN_KEY, rows.key_row(claim)).fetchall():
                        return None
                    # the conflicting row is locked by BEGIN_KEY: it cannot go before this read
                    row = conn.execute(pg.SELECT_KEY, (claim.subject, claim.key)).fetchone()
            except psycopg.Error as exc:
                raise self._error("claim an Idempotency-Key in", exc) from exc
        assert row is not None
        return rows.key_from_row(row)

    def finish_key(self, claim: IdempotencyRecord, run_id: str) -> bool:
        args = (run_id, claim.subject, claim.key, claim.claim)
        with self._lock:
            conn = self._ready_connection()
            try:
                with conn.transaction():
                    done = conn.execute(pg.FINISH_KEY, args).rowcount
            except psycopg.Error as exc:
                raise self._error("record the run of an Idempotency-Key in", exc) from exc
        return done == 1

    def abandon_key(self, claim: IdempotencyRecord) -> None:
        with self._lock:
            conn = self._ready_connection()
            try:
                with conn.transaction():
                    conn.execute(pg.ABANDON_KEY, (claim.subject, claim.key, claim.claim))
            except psycopg.Error as exc:
                raise self._error("give up an Idempotency-Key in", exc) from exc

    def prune_keys(self, now: float) -> int:
        with self._lock:
            conn = self._ready_connection()
            try:
                with conn.transaction():
                    gone = conn.execute(pg.PRUNE_KEYS, (float(now),)).rowcount
            except psycopg.Error as exc:
                raise self._error("prune Idempotency-Keys in", exc) from exc
        return int(gone)
