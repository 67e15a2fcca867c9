"""``SQLiteMetadataStore``: the embedded metadata store (one SQLite file in WAL mode).

Writes are explicit ``BEGIN IMMEDIATE`` transactions on an autocommit connection, so a writer
takes the write lock up front and waits (busy timeout) instead of failing half-way. ``commit``
is the hot path: one transaction per scheduling round, ``executemany`` per record list, SQL kept
as module constants so the statement cache reuses prepared statements, no ``SELECT`` once a
run's sequence counters are known.

Event and log ``seq`` numbers are assigned here, per run, from 1, by counters kept in memory and
seeded from ``MAX(seq)`` the first time a run is touched. A writer in another process (a cancel
request) can move a run's event sequence on; the next commit then hits the primary key, and is
retried once with counters reseeded from the database.

A follower waits for a run's next write with ``wait_run``: commits of this process wake it at
once (:mod:`klaw.metadata.wakeups`), those of other processes are found by a poll every
``poll`` seconds.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import TracebackType
from typing import Any

from klaw.errors import MetadataError, RunConflictError, RunNotFoundError
from klaw.failpoints import failpoint
from klaw.metadata import connections, migrations, wakeups
from klaw.metadata import rows as sql_rows
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
from klaw.metadata.rows import (
    ACTIVE,
    ADOPT_RUN,
    EMPTY_JSON,
    EXPIRE_LEASES,
    FENCE_RUN,
    INSERT_EVENT,
    INSERT_LOG,
    INSERT_METRIC,
    INSERT_RUN,
    LOG_FIELDS,
    LOGS_ORDER,
    MARK_ABANDONED,
    METRIC_FIELDS,
    RENEW_LEASE,
    SELECT_ACTIVE_RUNS,
    SELECT_ATTEMPTS,
    SELECT_EVENTS,
    SELECT_FENCE,
    SELECT_LOGS,
    SELECT_MAX_EVENT_SEQ,
    SELECT_MAX_LOG_SEQ,
    SELECT_METRICS,
    SELECT_RUN,
    SELECT_RUN_CREATED,
    SELECT_RUN_IDS_IN_RANGE,
    SELECT_RUNS,
    UPSERT_RUN,
    abandoned,
    attempt_from_row,
    attempt_upserts,
    created_event,
    duplicate_run,
    event_from_row,
    event_inserts,
    fenced,
    owner_alive,
    run_conflict,
    run_from_row,
    run_row,
)
from klaw.states import RunState

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


class SQLiteMetadataStore:
    """Runs, attempts, events, logs and metrics in one SQLite database file.

    The constructor only records the path: the connection opens on first use, and the schema
    is created or upgraded only by ``migrate()``. Every other method refuses a database that is
    not at the current schema version. Safe to share between threads (one connection, guarded
    by a lock); several processes may write the same file at once.
    """

    def __init__(self, path: Path | str, *, poll: float = wakeups.SQLITE_POLL) -> None:
        self.path = path if str(path) == ":memory:" else Path(path)
        self.poll = poll  # seconds between checks while waiting for another process's write
        self._wakeups = wakeups.for_file(self.path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._ready = False
        self._event_seq: dict[str, int] = {}
        self._log_seq: dict[str, int] = {}
        self._abandoned: list[str] = []  # runs create_run marked failed (to wake followers)

    def __repr__(self) -> str:
        return f"SQLiteMetadataStore({str(self.path)!r})"

    def __enter__(self) -> SQLiteMetadataStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

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

    def _ready_connection(self) -> sqlite3.Connection:
        """The connection, checked once to be on the current schema. Call with the lock held."""
        conn = self._conn if self._conn is not None else self._connect()
        if not self._ready:
            try:
                migrations.check_version(conn, str(self.path))
            except sqlite3.Error as exc:
                raise self._error("read the schema version of", exc) from exc
            self._ready = True
        return conn

    def _error(self, action: str, exc: sqlite3.Error) -> MetadataError:
        if isinstance(exc, sqlite3.IntegrityError):
            hint = "a record breaks a constraint (a required field is missing?); none was written"
        elif "locked" in str(exc):
            hint = (
                f"another process held the write lock for over {BUSY_TIMEOUT_S:g} s; "
                "find it (`fuser` on the file) or retry"
            )
        else:
            hint = (
                "check that the file is a Klaw metadata database, that its folder is writable "
                "and that the disk is not full"
            )
        return MetadataError(f"could not {action} metadata database {self.path}: {exc}", hint=hint)

    def migrate(self) -> None:
        with self._lock:
            conn = self._conn if self._conn is not None else self._connect()
            try:
                if migrations.current_version(conn) == migrations.LATEST_VERSION:
                    self._ready = True  # current: no write transaction needed
                    return
                migrations.migrate(conn, str(self.path))
            except sqlite3.Error as exc:
                raise self._error("migrate", exc) from exc
            self._ready = True

    def prune(self, older_than_seconds: float) -> int:
        """Delete events and metrics older than the cutoff; return how many rows went. Each
        run keeps its last event, so its event numbering carries on. Runs, attempts and logs
        stay."""
        if older_than_seconds < 0:
            raise MetadataError(f"prune needs a positive age, got {older_than_seconds!r}.")
        cutoff = time.time() - older_than_seconds
        with self._lock:
            conn = self._ready_connection()
            try:
                conn.execute(BEGIN)
                try:
                    gone = conn.execute(PRUNE_EVENTS, (cutoff,)).rowcount
                    gone += conn.execute(PRUNE_METRICS, (cutoff,)).rowcount
                    conn.execute(COMMIT)
                except BaseException:
                    conn.execute(ROLLBACK)
                    raise
            except sqlite3.Error as exc:
                raise self._error("prune", exc) from exc
        return int(gone)

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            self._ready = False
            self._event_seq.clear()
            self._log_seq.clear()
            if conn is not None:
                if isinstance(self.path, Path):
                    connections.park(self.path, conn)  # for the next store of this file
                else:
                    conn.close()

    # -- writes ----------------------------------------------------------------------------

    def commit(self, batch: Batch) -> None:
        if not batch:
            return
        with self._lock:
            failpoint("sqlite_commit")
            conn = self._ready_connection()
            try:
                try:
                    self._write(conn, batch)
                except sqlite3.IntegrityError:
                    # Another process appended events to one of these runs (a cancel request):
                    # forget the counters of the batch's runs and try once more.
                    for run_id in {event.run_id for event in batch.events}:
                        self._event_seq.pop(run_id, None)
                    for run_id in {log.run_id for log in batch.logs}:
                        self._log_seq.pop(run_id, None)
                    self._write(conn, batch)
            except sqlite3.Error as exc:
                raise self._error("commit a batch to", exc) from exc
            for run in batch.runs:
                if run.state.terminal:  # a finished run's counters reseed if it is ever touched
                    self._event_seq.pop(run.run_id, None)
                    self._log_seq.pop(run.run_id, None)
        self._wakeups.notify(wakeups.written(batch))

    def _write(self, conn: sqlite3.Connection, batch: Batch) -> None:
        conn.execute(BEGIN)
        try:
            if batch.runs:
                conn.executemany(UPSERT_RUN, [run_row(run) for run in batch.runs])
            if batch.attempts:
                for upsert, values in attempt_upserts(batch.attempts):
                    conn.executemany(upsert, values)
            event_seq = log_seq = _NO_COUNTERS
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
            conn.execute(COMMIT)
        except BaseException:
            if conn.in_transaction:
                conn.execute(ROLLBACK)
            raise
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

    def create_run(self, run: RunRecord, *, max_active: int | None = None) -> None:
        with self._lock:
            self._abandoned = []
            conn = self._ready_connection()
            try:
                with _transaction(conn):
                    # Dead owners' runs are marked failed even when the new run is refused.
                    conflict = None
                    if max_active is not None:
                        conflict = self._check_limit(conn, run.workflow, max_active)
                    if conflict is None:
                        conn.execute(INSERT_RUN, run_row(run))
                        conn.execute(INSERT_EVENT, created_event(run))
            except sqlite3.IntegrityError as exc:
                if conn.execute(SELECT_RUN_CREATED, (run.run_id,)).fetchone() is None:
                    raise self._error("create a run in", exc) from exc
                raise duplicate_run(run.run_id, str(self.path)) from exc
            except sqlite3.Error as exc:
                raise self._error("create a run in", exc) from exc
            abandoned, self._abandoned = self._abandoned, []
            self._wakeups.notify(abandoned)
            if conflict is not None:
                raise conflict
            self._event_seq[run.run_id] = 1
            self._log_seq[run.run_id] = 0

    def _check_limit(
        self, conn: sqlite3.Connection, workflow: str, max_active: int
    ) -> RunConflictError | None:
        """Mark active runs with a dead owner failed; the error to raise if ``max_active`` live
        ones remain. Runs inside the caller's write transaction."""
        live: list[tuple[str, str, int]] = []
        now = time.time()
        for run_id, host, pid in conn.execute(SELECT_ACTIVE_RUNS, (workflow, *ACTIVE)):
            if owner_alive(host, pid):
                live.append((run_id, host, pid))
                continue
            seq = conn.execute(SELECT_MAX_EVENT_SEQ, (run_id,)).fetchone()[0] + 1
            error, event = abandoned(run_id, seq, host, pid, now)
            conn.execute(MARK_ABANDONED, (RunState.FAILED.value, error, now, run_id))
            conn.execute(INSERT_EVENT, event)
            self._event_seq.pop(run_id, None)
            self._abandoned.append(run_id)  # its followers are woken once this commits
        return run_conflict(workflow, live, max_active)

    def request_cancel(self, run_id: str) -> RunRecord:
        with self._lock:
            conn = self._ready_connection()
            try:
                with _transaction(conn):
                    row = conn.execute(SELECT_RUN, (run_id,)).fetchone()
                    if row is None:
                        raise self._not_found(conn, run_id)
                    seq = conn.execute(SELECT_MAX_EVENT_SEQ, (run_id,)).fetchone()[0] + 1
                    cancel = (run_id, seq, time.time(), "cancel_requested", None, None, None)
                    conn.execute(INSERT_EVENT, (*cancel, EMPTY_JSON))
            except sqlite3.Error as exc:
                raise self._error("record a cancel request in", exc) from exc
            if run_id in self._event_seq:
                self._event_seq[run_id] = seq
        self._wakeups.notify((run_id,))
        return run_from_row(row)

    # -- waiting ---------------------------------------------------------------------------

    def wait_run(self, run_id: str, ready: Callable[[], bool], timeout: float) -> bool:
        return self._wakeups.wait(run_id, ready, timeout, self._poll)

    def _poll(self) -> float:
        return self.poll

    # -- leases ----------------------------------------------------------------------------

    def renew_leases(self, leases: Sequence[Lease], until: float) -> list[Lease]:
        if not leases:
            return []
        lost: list[Lease] = []
        with self._lock:
            conn = self._ready_connection()
            try:
                with _transaction(conn):
                    for lease in leases:
                        key = (lease.run_id, lease.stage, lease.attempt)
                        if conn.execute(RENEW_LEASE, (until, *key, lease.token)).rowcount:
                            continue
                        if fenced(conn.execute(SELECT_FENCE, key).fetchone(), lease.token):
                            lost.append(lease)
            except sqlite3.Error as exc:
                raise self._error("renew leases in", exc) from exc
        return lost

    def expire_leases(self, run_id: str, now: float, reason: str) -> list[AttemptRecord]:
        with self._lock:
            conn = self._ready_connection()
            try:
                with _transaction(conn):
                    found = conn.execute(EXPIRE_LEASES, (reason, now, run_id, now)).fetchall()
            except sqlite3.Error as exc:
                raise self._error("expire leases in", exc) from exc
        return [attempt_from_row(row) for row in found]

    def adopt_run(
        self, run_id: str, owner: tuple[str, int], new_owner: tuple[str, int], reason: str
    ) -> list[AttemptRecord] | None:
        with self._lock:
            conn = self._ready_connection()
            try:
                with _transaction(conn):
                    took = conn.execute(ADOPT_RUN, (*new_owner, run_id, *owner, *ACTIVE))
                    if not took.rowcount:
                        return None
                    found = conn.execute(FENCE_RUN, (reason, time.time(), run_id)).fetchall()
            except sqlite3.Error as exc:
                raise self._error("take over a run in", exc) from exc
        return [attempt_from_row(row) for row in found]

    # -- reads -----------------------------------------------------------------------------

    def _query(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._lock:
            conn = self._ready_connection()
            try:
                return conn.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise self._error("read", exc) from exc

    def get_run(self, run_id: str) -> RunRecord:
        with self._lock:
            conn = self._ready_connection()
            try:
                row = conn.execute(SELECT_RUN, (run_id,)).fetchone()
                if row is None:
                    raise self._not_found(conn, run_id)
            except sqlite3.Error as exc:
                raise self._error("read", exc) from exc
        return run_from_row(row)

    def _not_found(self, conn: sqlite3.Connection, run_id: str) -> RunNotFoundError:
        """The error for an unknown id, naming up to 3 ids sharing its longest prefix (>= 4)."""
        close: list[str] = []
        for length in range(len(run_id), 3, -1):
            prefix = run_id[:length]
            upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
            close = [r[0] for r in conn.execute(SELECT_RUN_IDS_IN_RANGE, (prefix, upper))]
            if close:
                break
        message = f"no run with id {run_id!r} in metadata database {self.path}"
        if close:
            message += f" (did you mean {', '.join(repr(c) for c in close)}?)"
        return RunNotFoundError(message, hint="check the run id; list recent runs to find it")

    def list_runs(self, filter: RunFilter) -> list[RunRecord]:
        sql = SELECT_RUNS
        args: list[Any] = []
        if filter.workflow is not None:
            sql += " AND workflow = ?"
            args.append(filter.workflow)
        if filter.states:
            sql += f" AND state IN ({', '.join('?' * len(filter.states))})"
            args.extend(state.value for state in filter.states)
        with self._lock:
            conn = self._ready_connection()
            try:
                if filter.before is not None:
                    cursor = conn.execute(SELECT_RUN_CREATED, (filter.before,)).fetchone()
                    if cursor is None:  # run ids sort by time: compare the ids
                        sql += " AND run_id < ?"
                        args.append(filter.before)
                    else:
                        sql += " AND (created_at < ? OR (created_at = ? AND run_id < ?))"
                        args.extend((cursor[0], cursor[0], filter.before))
                sql += " ORDER BY created_at DESC, run_id DESC LIMIT ?"
                args.append(filter.limit)
                rows = conn.execute(sql, args).fetchall()
            except sqlite3.Error as exc:
                raise self._error("read", exc) from exc
        return [run_from_row(row) for row in rows]

    def list_attempts(self, run_id: str) -> list[AttemptRecord]:
        return [attempt_from_row(row) for row in self._query(SELECT_ATTEMPTS, (run_id,))]

    def list_events(self, run_id: str, *, after_seq: int = 0) -> list[EventRecord]:
        return [event_from_row(row) for row in self._query(SELECT_EVENTS, (run_id, after_seq))]

    def read_logs(
        self,
        run_id: str,
        *,
        stage: str | None = None,
        attempt: int | None = None,
        after_seq: int = 0,
    ) -> list[LogRecord]:
        sql = SELECT_LOGS
        args: tuple[Any, ...] = (run_id,)
        if after_seq:
            sql += " AND seq > ?"
            args += (after_seq,)
        if stage is not None:
            sql += " AND stage = ?"
            args += (stage,)
        if attempt is not None:
            sql += " AND attempt = ?"
            args += (attempt,)
        rows = self._query(sql + LOGS_ORDER, args)
        return [LogRecord(**dict(zip(LOG_FIELDS, row, strict=True))) for row in rows]

    def list_metrics(self, run_id: str) -> list[MetricRecord]:
        rows = self._query(SELECT_METRICS, (run_id,))
        return [MetricRecord(**dict(zip(METRIC_FIELDS, row, strict=True))) for row in rows]

    # -- schedules -------------------------------------------------------------------------

    def sync_schedules(self, definitions: Sequence[ScheduleDefinition], *, now: float) -> None:
        if not definitions:
            return
        values = [sql_rows.schedule_row(d, now) for d in definitions]
        with self._lock:
            conn = self._ready_connection()
            try:
                with _transaction(conn):
                    conn.executemany(sql_rows.UPSERT_SCHEDULE, values)
            except sqlite3.Error as exc:
                raise self._error("sync schedules in", exc) from exc

    def list_schedules(self) -> list[ScheduleRecord]:
        found = self._query(sql_rows.SELECT_SCHEDULES, ())
        return sorted((sql_rows.schedule_from_row(r) for r in found), key=lambda s: s.name)

    def set_paused(self, name: str, paused: bool, *, now: float) -> ScheduleRecord:
        change = sql_rows.PAUSE_SCHEDULE if paused else sql_rows.RESUME_SCHEDULE
        with self._lock:
            conn = self._ready_connection()
            try:
                with _transaction(conn):
                    conn.execute(change, (now, name))
                    row = conn.execute(sql_rows.SELECT_SCHEDULE, (name,)).fetchone()
                if row is None:
                    known = [r[0] for r in conn.execute(sql_rows.SELECT_SCHEDULE_NAMES)]
                    raise sql_rows.schedule_not_found(name, known, str(self.path))
            except sqlite3.Error as exc:
                raise self._error("pause or resume a schedule in", exc) from exc
        return sql_rows.schedule_from_row(row)

    def claim_tick(self, schedule: str, tick: str, *, now: float, owner: str = "") -> bool:
        with self._lock:
            conn = self._ready_connection()
            try:
                with _transaction(conn):
                    claimed = conn.execute(
                        sql_rows.CLAIM_TICK, (schedule, tick, now, owner, schedule)
                    ).rowcount
            except sqlite3.Error as exc:
                raise self._error("claim a schedule tick in", exc) from exc
        return claimed == 1

    def finish_tick(
        self, schedule: str, tick: str, *, run_id: str | None = None, error: str | None = None
    ) -> None:
        with self._lock:
            conn = self._ready_connection()
            try:
                with _transaction(conn):
                    conn.execute(sql_rows.FINISH_TICK, (run_id, error, schedule, tick))
            except sqlite3.Error as exc:
                raise self._error("record a schedule tick in", exc) from exc

    # -- API tokens ------------------------------------------------------------------------

    def create_token(self, token: TokenRecord) -> None:
        with self._lock:
            conn = self._ready_connection()
            try:
                with _transaction(conn):
                    conn.execute(sql_rows.INSERT_TOKEN, sql_rows.token_row(token))
            except sqlite3.Error as exc:
                raise self._error(f"store API token {token.token_id!r} in", exc) from exc

    def find_token(self, token_id: str) -> TokenRecord | None:
        found = self._query(sql_rows.SELECT_TOKEN, (token_id,))
        return sql_rows.token_from_row(found[0]) if found else None

    def list_tokens(self) -> list[TokenRecord]:
        found = [sql_rows.token_from_row(r) for r in self._query(sql_rows.SELECT_TOKENS, ())]
        return sorted(found, key=lambda t: (t.created_at, t.token_id))

    def revoke_token(self, token_id: str, *, now: float) -> TokenRecord | None:
        with self._lock:
            conn = self._ready_connection()
            try:
                with _transaction(conn):
                    conn.execute(sql_rows.REVOKE_TOKEN, (float(now), token_id))
                    row = conn.execute(sql_rows.SELECT_TOKEN, (token_id,)).fetchone()
            except sqlite3.Error as exc:
                raise self._error("revoke an API token in", exc) from exc
        return None if row is None else sql_rows.token_from_row(row)

    def touch_token(self, token_id: str, *, now: float) -> None:
        since = float(now) - sql_rows.TOUCH_EVERY
        with self._lock:
            conn = self._ready_connection()
            try:
                with _transaction(conn):
                    conn.execute(sql_rows.TOUCH_TOKEN, (float(now), token_id, since))
            except sqlite3.Error as exc:
                raise self._error("record the use of an API token in", exc) from exc

    # -- Idempotency-Keys ------------------------------------------------------------------

    def begin_key(self, claim: IdempotencyRecord) -> IdempotencyRecord | None:
        with self._lock:
            conn = self._ready_connection()
            try:
                with _transaction(conn):
                    conn.execute(sql_rows.PRUNE_KEYS, (float(claim.created_at),))
                    if conn.execute(sql_rows.BEGIN_KEY, sql_rows.key_row(claim)).fetchall():
                        return None
                    row = conn.execute(sql_rows.SELECT_KEY, (claim.subject, claim.key)).fetchone()
            except sqlite3.Error as exc:
                raise self._error("claim an Idempotency-Key in", exc) from exc
        return sql_rows.key_from_row(row)

    def finish_key(self, claim: IdempotencyRecord, run_id: str) -> bool:
        args = (run_id, claim.subject, claim.key, claim.claim)
        with self._lock:
            conn = self._ready_connection()
            try:
                with _transaction(conn):
                    done = conn.execute(sql_rows.FINISH_KEY, args).rowcount
            except sqlite3.Error as exc:
                raise self._error("record the run of an Idempotency-Key in", exc) from exc
        return done == 1

    def abandon_key(self, claim: IdempotencyRecord) -> None:
        with self._lock:
            conn = self._ready_connection()
            try:
                with _transaction(conn):
                    conn.execute(sql_rows.ABANDON_KEY, (claim.subject, claim.key, claim.claim))
            except sqlite3.Error as exc:
                raise self._error("give up an Idempotency-Key in", exc) from exc

    def prune_keys(self, now: float) -> int:
        with self._lock:
            conn = self._ready_connection()
            try:
                with _transaction(conn):
                    gone = conn.execute(sql_rows.PRUNE_KEYS, (float(now),)).rowcount
            except sqlite3.Error as exc:
                raise self._error("prune Idempotency-Keys in", exc) from exc
        return int(gone)
