"""``SqlMetadataStore``: every store method written once, against a small SQL dialect.

The store holds one connection per database behind one lock, shared by every role it plays
(runs, leases, schedules, API tokens, Idempotency-Keys, maintenance): whoever holds the store
holds that one connection. What differs between databases is the dialect a subclass supplies:

- ``q``: the statements in the dialect's placeholder style (``Statements``);
- ``DB_ERROR`` / ``UNIQUE_ERROR``: the driver's base error and its unique-violation error;
- ``_connect``, ``_check_schema``, ``_transaction``: opening, checking and writing;
- ``_fault``, ``HINTS``, ``RETRIABLE``: classifying a driver error (integrity, locked,
  unreachable), which ``_error`` turns into a Klaw error with a hint in one place;
- ``_write`` and ``_retriable``: the batch write path and which of its errors a retry cures;
- ``_next_event_seq``, ``_lock_workflow``, ``_new_head``, ``_before_events``: sequence numbers,
  cross-process locks and partitions;
- ``_notify`` (inside a transaction) and ``_wake`` (after it): waking followers of a run;
- ``_states_clause``, ``_executemany``, ``_prune``: the remaining spelling differences.

So a fix to locking, to error mapping, to cancel or to the active-run limit lands once.
"""

from __future__ import annotations

import enum
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from contextlib import AbstractContextManager
from types import TracebackType
from typing import Any, ClassVar, Self, TypeVar

from klaw import metrics
from klaw.errors import (
    MetadataError,
    MetadataUnavailableError,
    RunConflictError,
    RunNotFoundError,
)
from klaw.metadata import rows, wakeups
from klaw.metadata.lifecycle import LifecycleReads, LifecycleTx
from klaw.metadata.records import (
    Activity,
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
    StageDuration,
    StageFailures,
    StateCount,
    TokenRecord,
)
from klaw.states import RunState

Conn = Any  # the driver's connection (sqlite3.Connection, psycopg.Connection)
T = TypeVar("T")


INTEGRITY_HINT = "a record breaks a constraint (a required field is missing?); none was written"


class Fault(enum.Enum):
    """The kinds of driver error the store tells apart (each dialect classifies its own)."""

    INTEGRITY = "integrity"  # a constraint refused a record
    LOCKED = "locked"  # another writer held a lock too long
    UNREACHABLE = "unreachable"  # the database cannot be reached
    OTHER = "other"  # anything else: a broken file or schema, a full disk, a refused user


class Statements:
    """The store's statements (:mod:`klaw.metadata.rows`, written with ``?``) in one dialect's
    placeholder style, each translated on first use."""

    def __init__(self, param: str) -> None:
        self.PARAM = param

    def __getattr__(self, name: str) -> str:
        statement = getattr(rows, name)
        if not isinstance(statement, str):
            raise AttributeError(name)
        translated = statement.replace("?", self.PARAM)
        setattr(self, name, translated)  # found as a plain attribute from now on
        return translated


class SqlMetadataStore(LifecycleReads, ABC):
    """The metadata store over one SQL connection; a dialect subclass supplies the hooks.

    The constructor only records where the database is: the connection opens on first use,
    and the schema changes only in ``migrate()``. Every other method refuses a database that
    is not at the current schema version. Safe to share between threads.
    """

    q: ClassVar[Statements]
    DB_ERROR: ClassVar[type[Exception]]
    UNIQUE_ERROR: ClassVar[type[Exception]]
    HINTS: ClassVar[dict[Fault, str]]  # the hint of each fault but INTEGRITY
    RETRIABLE: ClassVar[frozenset[Fault]] = frozenset()

    def __init__(self, location: str) -> None:
        self.location = location  # how messages name the database (no password)
        self._lock = threading.Lock()
        self._conn: Conn | None = None
        self._ready = False
        self._event_seq: dict[str, int] = {}
        self._log_seq: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.location!r})"

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- dialect hooks ---------------------------------------------------------------------

    @abstractmethod
    def _connect(self) -> Conn:
        """Open the connection and keep it in ``self._conn``."""

    @abstractmethod
    def _check_schema(self, conn: Conn) -> None:
        """Refuse (``MetadataError``) a database not at the current schema version."""

    @abstractmethod
    def _transaction(self, conn: Conn) -> AbstractContextManager[Any]:
        """A write transaction: committed on exit, rolled back on an error."""

    @abstractmethod
    def _fault(self, exc: Exception) -> Fault:
        """What kind of failure a driver error is."""

    @abstractmethod
    def _write(self, conn: Conn, batch: Batch) -> None:
        """Write a batch in one transaction, numbering its events and logs."""

    @abstractmethod
    def _retriable(self, exc: Exception) -> bool:
        """Whether reseeded counters can cure this error of ``_write``."""

    @abstractmethod
    def _next_event_seq(self, conn: Conn, run_id: str) -> int:
        """Reserve the run's next event ``seq`` (inside a write transaction)."""

    @abstractmethod
    def _prune(self, conn: Conn, cutoff: float) -> int:
        """Delete what ``prune`` drops, older than ``cutoff``; return how much went."""

    def _lock_workflow(self, conn: Conn, workflow: str) -> None:
        """Serialize active-run limits of one workflow across processes (inside a write
        transaction). A database whose write transactions are serial needs nothing."""
        return  # nothing to do unless the dialect says otherwise

    def _new_head(self, conn: Conn, run_id: str) -> None:
        """Start the event sequence of a new run, if the dialect keeps one apart."""
        return  # nothing to do unless the dialect says otherwise

    def _before_events(self, conn: Conn, timestamps: Iterable[float]) -> None:
        """Prepare to write events at these times (before the write transaction)."""
        return  # nothing to do unless the dialect says otherwise

    def _notify(self, conn: Conn, run_ids: Sequence[str]) -> None:
        """Inside a write transaction: tell followers of these runs once it commits."""
        return  # nothing to do unless the dialect says otherwise

    def _wake(self, run_ids: Iterable[str]) -> None:
        """After a committed write: wake this process's followers of these runs."""
        return  # nothing to do unless the dialect says otherwise

    def _states_clause(self, states: Sequence[str]) -> tuple[str, list[Any]]:
        """``AND state IN …`` for ``list_runs``."""
        return f" AND state IN ({', '.join([self.q.PARAM] * len(states))})", list(states)

    def _executemany(self, conn: Conn, statement: str, values: Sequence[Any]) -> None:
        conn.executemany(statement, values)

    def _forget(self) -> None:
        """Drop what the dialect remembers about the database (on close)."""
        return  # nothing to do unless the dialect says otherwise

    # -- errors ----------------------------------------------------------------------------

    def _error(self, action: str, exc: Exception) -> MetadataError:
        """The Klaw error for a driver error: its fault's hint, and ``MetadataUnavailableError``
        for a fault that waiting and retrying can cure on this database."""
        fault = self._fault(exc)
        kind = MetadataUnavailableError if fault in self.RETRIABLE else MetadataError
        message = f"could not {action} metadata database {self.location}: {exc}"
        return kind(message, hint=self.HINTS.get(fault, INTEGRITY_HINT))

    # -- connection ------------------------------------------------------------------------

    def _ready_connection(self) -> Conn:
        """The connection, checked once to be on the current schema. Call with the lock held."""
        conn = self._conn if self._conn is not None else self._connect()
        if not self._ready:
            try:
                self._check_schema(conn)
            except self.DB_ERROR as exc:
                raise self._error("read the schema version of", exc) from exc
            self._ready = True
        return conn

    def _close_connection(self, conn: Conn) -> None:
        conn.close()

    def close(self) -> None:
        with self._lock:
            conn, self._conn = self._conn, None
            self._ready = False
            self._event_seq.clear()
            self._log_seq.clear()
            self._forget()
            if conn is not None:
                self._close_connection(conn)

    def _in_transaction(self, action: str, work: Callable[[Conn], T]) -> T:
        """Run ``work`` in one write transaction; driver errors become ``MetadataError``."""
        with self._lock:
            conn = self._ready_connection()
            try:
                with self._transaction(conn):
                    return work(conn)
            except self.DB_ERROR as exc:
                raise self._error(action, exc) from exc

    def _query(self, statement: str, args: Sequence[Any]) -> list[tuple[Any, ...]]:
        with self._lock:
            conn = self._ready_connection()
            try:
                found: list[tuple[Any, ...]] = conn.execute(statement, args).fetchall()
                return found
            except self.DB_ERROR as exc:
                raise self._error("read", exc) from exc

    @staticmethod
    def _one(conn: Any, statement: str, args: Any = None) -> Any:
        cursor = conn.execute(statement) if args is None else conn.execute(statement, args)
        row = cursor.fetchone()
        return None if row is None else row[0]

    # -- maintenance -----------------------------------------------------------------------

    def prune(self, older_than_seconds: float) -> int:
        """Drop events and metrics older than ``older_than_seconds`` ago; return how many rows
        (SQLite) or partitions (Postgres) went. Each run keeps its last event, so its event
        numbering carries on; runs, attempts and logs stay."""
        if not older_than_seconds >= 0:
            raise MetadataError(
                f"cannot prune metadata older than {older_than_seconds!r} seconds",
                hint="give a number of seconds of zero or more",
            )
        cutoff = time.time() - older_than_seconds
        return self._in_transaction("prune", lambda conn: self._prune(conn, cutoff))

    # -- writes ----------------------------------------------------------------------------

    def commit(self, batch: Batch) -> None:
        if not batch:
            return
        start = time.perf_counter()
        with self._lock:
            conn = self._ready_connection()
            try:
                try:
                    self._write(conn, batch)
                except self.DB_ERROR as exc:
                    if not self._retriable(exc):
                        raise
                    # Another process appended to one of these runs (a cancel request) or
                    # pruned a partition: forget what may be stale and try once more.
                    for run_id in {event.run_id for event in batch.events}:
                        self._event_seq.pop(run_id, None)
                    for run_id in {log.run_id for log in batch.logs}:
                        self._log_seq.pop(run_id, None)
                    self._write(conn, batch)
            except self.DB_ERROR as exc:
                raise self._error("commit a batch to", exc) from exc
            for run in batch.runs:
                if run.state.terminal:  # a finished run's counters reseed if it is ever touched
                    self._event_seq.pop(run.run_id, None)
                    self._log_seq.pop(run.run_id, None)
        if metrics.ACTIVE.sinks:
            metrics.store_write(time.perf_counter() - start)
        self._wake(wakeups.written(batch))

    def create_run(self, run: RunRecord, *, max_active: int | None = None) -> None:
        now = time.time()
        abandoned: list[str] = []
        conflict: RunConflictError | None = None
        with self._lock:
            conn = self._ready_connection()
            try:
                self._before_events(
                    conn, [run.created_at, now] if max_active is not None else [run.created_at]
                )
                with self._transaction(conn):
                    # Dead owners' runs are marked failed even when the new run is refused.
                    if max_active is not None:
                        self._lock_workflow(conn, run.workflow)
                        conflict = self._check_limit(conn, run, max_active, now, abandoned)
                    if conflict is None:
                        conn.execute(self.q.INSERT_RUN, rows.run_row(run))
                        self._new_head(conn, run.run_id)
                        conn.execute(self.q.INSERT_EVENT, rows.created_event(run))
            except self.UNIQUE_ERROR as exc:
                if self._one(conn, self.q.SELECT_RUN_CREATED, (run.run_id,)) is None:
                    raise self._error("create a run in", exc) from exc
                raise rows.duplicate_run(run.run_id, self.location) from exc
            except self.DB_ERROR as exc:
                raise self._error("create a run in", exc) from exc
            if conflict is None:
                self._event_seq[run.run_id] = 1
                self._log_seq[run.run_id] = 0
        self._wake(abandoned)
        if conflict is not None:
            raise conflict

    def _check_limit(
        self, conn: Conn, run: RunRecord, max_active: int, now: float, abandoned: list[str]
    ) -> RunConflictError | None:
        """Mark active runs with a dead owner failed (their ids go to ``abandoned``); the
        error to raise if ``max_active`` live ones remain. Inside the caller's transaction."""
        live: list[tuple[str, str, int]] = []
        found = conn.execute(self.q.SELECT_ACTIVE_RUNS, (run.workflow, *rows.ACTIVE)).fetchall()
        for run_id, host, pid in found:
            if rows.owner_alive(host, pid):
                live.append((run_id, host, pid))
                continue
            seq = self._next_event_seq(conn, run_id)
            error, event = rows.abandoned(run_id, seq, host, pid, now)
            conn.execute(self.q.MARK_ABANDONED, (RunState.FAILED.value, error, now, run_id))
            conn.execute(self.q.INSERT_EVENT, event)
            self._event_seq.pop(run_id, None)
            abandoned.append(run_id)
        if abandoned:
            self._notify(conn, abandoned)
        return rows.run_conflict(run.workflow, live, max_active)

    def request_cancel(self, run_id: str) -> RunRecord:
        now = time.time()
        with self._lock:
            conn = self._ready_connection()
            try:
                self._before_events(conn, [now])
                with self._transaction(conn):
                    row = conn.execute(self.q.SELECT_RUN, (run_id,)).fetchone()
                    if row is None:
                        raise self._not_found(conn, run_id)
                    seq = self._next_event_seq(conn, run_id)
                    cancel = (run_id, seq, now, "cancel_requested", None, None, None)
                    conn.execute(self.q.INSERT_EVENT, (*cancel, rows.EMPTY_JSON))
                    self._notify(conn, [run_id])
            except self.DB_ERROR as exc:
                raise self._error("record a cancel request in", exc) from exc
            if run_id in self._event_seq:
                self._event_seq[run_id] = seq
        self._wake([run_id])
        return rows.run_from_row(row)

    # -- leases ----------------------------------------------------------------------------

    def renew_leases(self, leases: Sequence[Lease], until: float) -> list[Lease]:
        if not leases:
            return []

        def renew(conn: Any) -> list[Lease]:
            lost: list[Lease] = []
            for lease in leases:
                key = (lease.run_id, lease.stage, lease.attempt)
                if conn.execute(self.q.RENEW_LEASE, (until, *key, lease.token)).rowcount:
                    continue
                if rows.fenced(conn.execute(self.q.SELECT_FENCE, key).fetchone(), lease.token):
                    lost.append(lease)
            return lost

        return self._in_transaction("renew leases in", renew)

    def expire_leases(self, run_id: str, now: float, reason: str) -> list[AttemptRecord]:
        args = (reason, now, run_id, now)
        found = self._in_transaction(
            "expire leases in", lambda conn: conn.execute(self.q.EXPIRE_LEASES, args).fetchall()
        )
        return [rows.attempt_from_row(row) for row in found]

    def adopt_run(
        self, run_id: str, owner: tuple[str, int], new_owner: tuple[str, int], reason: str
    ) -> list[AttemptRecord] | None:
        def adopt(conn: Any) -> list[tuple[Any, ...]] | None:
            took = conn.execute(self.q.ADOPT_RUN, (*new_owner, run_id, *owner, *rows.ACTIVE))
            if not took.rowcount:
                return None
            fenced: list[tuple[Any, ...]] = conn.execute(
                self.q.FENCE_RUN, (reason, time.time(), run_id)
            ).fetchall()
            return fenced

        found = self._in_transaction("take over a run in", adopt)
        return None if found is None else [rows.attempt_from_row(row) for row in found]

    # -- reads -----------------------------------------------------------------------------

    def get_run(self, run_id: str) -> RunRecord:
        with self._lock:
            conn = self._ready_connection()
            try:
                row = conn.execute(self.q.SELECT_RUN, (run_id,)).fetchone()
                if row is None:
                    raise self._not_found(conn, run_id)
            except self.DB_ERROR as exc:
                raise self._error("read", exc) from exc
        return rows.run_from_row(row)

    def _not_found(self, conn: Conn, run_id: str) -> RunNotFoundError:
        """The error for an unknown id, naming up to 3 ids sharing its longest prefix (>= 4)."""
        close: list[str] = []
        for length in range(len(run_id), 3, -1):
            prefix = run_id[:length]
            upper = prefix[:-1] + chr(ord(prefix[-1]) + 1)
            found = conn.execute(self.q.SELECT_RUN_IDS_IN_RANGE, (prefix, upper)).fetchall()
            close = [r[0] for r in found]
            if close:
                break
        message = f"no run with id {run_id!r} in metadata database {self.location}"
        if close:
            message += f" (did you mean {', '.join(repr(c) for c in close)}?)"
        return RunNotFoundError(message, hint="check the run id; list recent runs to find it")

    def list_runs(self, filter: RunFilter) -> list[RunRecord]:
        p = self.q.PARAM
        query: str = self.q.SELECT_RUNS
        args: list[Any] = []
        if filter.workflow is not None:
            query += f" AND workflow = {p}"
            args.append(filter.workflow)
        if filter.since is not None:
            query += f" AND created_at >= {p}"
            args.append(filter.since)
        if filter.until is not None:
            query += f" AND created_at < {p}"
            args.append(filter.until)
        if filter.states:
            clause, values = self._states_clause([state.value for state in filter.states])
            query += clause
            args.extend(values)
        with self._lock:
            conn = self._ready_connection()
            try:
                if filter.before is not None:
                    created = conn.execute(self.q.SELECT_RUN_CREATED, (filter.before,)).fetchone()
                    if created is None:  # run ids sort by time: compare the ids
                        query += f" AND run_id < {p}"
                        args.append(filter.before)
                    else:
                        query += f" AND (created_at < {p} OR (created_at = {p} AND run_id < {p}))"
                        args.extend((created[0], created[0], filter.before))
                query += f" ORDER BY created_at DESC, run_id DESC LIMIT {p}"
                args.append(filter.limit)
                found = conn.execute(query, args).fetchall()
            except self.DB_ERROR as exc:
                raise self._error("read", exc) from exc
        return [rows.run_from_row(row) for row in found]

    def last_runs(self, workflows: Sequence[str], limit: int) -> list[RunRecord]:
        found: list[RunRecord] = []
        with self._lock:
            conn = self._ready_connection()
            try:
                for workflow in dict.fromkeys(workflows):
                    rows_ = conn.execute(self.q.SELECT_LAST_RUNS, (workflow, limit)).fetchall()
                    found += [rows.run_from_row(row) for row in rows_]
            except self.DB_ERROR as exc:
                raise self._error("read", exc) from exc
        return found

    def list_attempts(self, run_id: str) -> list[AttemptRecord]:
        return [rows.attempt_from_row(r) for r in self._query(self.q.SELECT_ATTEMPTS, (run_id,))]

    def list_events(self, run_id: str, *, after_seq: int = 0) -> list[EventRecord]:
        found = self._query(self.q.SELECT_EVENTS, (run_id, after_seq))
        return [rows.event_from_row(row) for row in found]

    def read_logs(
        self,
        run_id: str,
        *,
        stage: str | None = None,
        attempt: int | None = None,
        after_seq: int = 0,
        limit: int | None = None,
        tail: bool = False,
    ) -> list[LogRecord]:
        p = self.q.PARAM
        query: str = self.q.SELECT_LOGS
        args: tuple[Any, ...] = (run_id,)
        if after_seq:
            query += f" AND seq > {p}"
            args += (after_seq,)
        if stage is not None:
            query += f" AND stage = {p}"
            args += (stage,)
        if attempt is not None:
            query += f" AND attempt = {p}"
            args += (attempt,)
        if limit is None:
            found = self._query(query + self.q.LOGS_ORDER, args)
        else:
            order = " ORDER BY seq DESC" if tail else " ORDER BY seq"
            found = self._query(f"{query}{order} LIMIT {int(limit)}", args)
            if tail:
                found = found[::-1]
        return [LogRecord(**dict(zip(rows.LOG_FIELDS, row, strict=True))) for row in found]

    def activity(self, since: float, *, bucket_s: float, limit: int = 10) -> Activity:
        if not bucket_s > 0:
            raise MetadataError(f"An activity bucket must be positive seconds, not {bucket_s}.")
        counts: dict[tuple[float, str], int] = {}
        for created, state in self._query(self.q.SELECT_RUN_STATES_SINCE, (since,)):
            start = since + ((created - since) // bucket_s) * bucket_s
            counts[start, state] = counts.get((start, state), 0) + 1
        failing: dict[tuple[str, str], list[Any]] = {}
        for workflow, stage, run_id, ended, error in self._query(
            self.q.SELECT_FAILED_ATTEMPTS_SINCE, (since,)
        ):
            found = failing.setdefault((workflow, stage), [0, -1.0, run_id, error])
            found[0] += 1
            if (ended or 0.0) >= found[1]:
                found[1:] = [ended or 0.0, run_id, error]
        worst = sorted(failing.items(), key=lambda item: (-item[1][0], -item[1][1]))[:limit]
        longest = self._query(self.q.SELECT_LONGEST_ATTEMPTS_SINCE, (since, limit))
        return Activity(
            since=since,
            bucket_s=bucket_s,
            counts=[
                StateCount(start=start, state=RunState(state), count=n)
                for (start, state), n in sorted(counts.items())
            ],
            failing=[
                StageFailures(workflow=w, stage=s, failures=n, last_run_id=run_id, last_error=error)
                for (w, s), (n, _, run_id, error) in worst
            ],
            longest=[
                StageDuration(workflow=w, stage=s, run_id=r, attempt=a, duration_s=float(d))
                for w, s, r, a, d in longest
            ],
        )

    def list_metrics(self, run_id: str) -> list[MetricRecord]:
        found = self._query(self.q.SELECT_METRICS, (run_id,))
        return [MetricRecord(**dict(zip(rows.METRIC_FIELDS, row, strict=True))) for row in found]

    # -- schedules -------------------------------------------------------------------------

    def sync_schedules(self, definitions: Sequence[ScheduleDefinition], *, now: float) -> None:
        if not definitions:
            return
        values = [rows.schedule_row(d, now) for d in definitions]
        self._in_transaction(
            "sync schedules in",
            lambda conn: self._executemany(conn, self.q.UPSERT_SCHEDULE, values),
        )

    def list_schedules(self) -> list[ScheduleRecord]:
        found = self._query(self.q.SELECT_SCHEDULES, ())
        return sorted((rows.schedule_from_row(r) for r in found), key=lambda s: s.name)

    def set_paused(self, name: str, paused: bool, *, now: float) -> ScheduleRecord:
        change = self.q.PAUSE_SCHEDULE if paused else self.q.RESUME_SCHEDULE

        def pause(conn: Any) -> tuple[Any, ...]:
            conn.execute(change, (now, name))
            row: tuple[Any, ...] | None = conn.execute(self.q.SELECT_SCHEDULE, (name,)).fetchone()
            if row is None:
                known = [r[0] for r in conn.execute(self.q.SELECT_SCHEDULE_NAMES).fetchall()]
                raise rows.schedule_not_found(name, known, self.location)
            return row

        return rows.schedule_from_row(self._in_transaction("pause or resume a schedule in", pause))

    def claim_tick(self, schedule: str, tick: str, *, now: float, owner: str = "") -> bool:
        args = (schedule, tick, float(now), owner, schedule)
        claimed = self._in_transaction(
            "claim a schedule tick in", lambda conn: conn.execute(self.q.CLAIM_TICK, args).rowcount
        )
        return bool(claimed == 1)

    def finish_tick(
        self, schedule: str, tick: str, *, run_id: str | None = None, error: str | None = None
    ) -> None:
        args = (run_id, error, schedule, tick)
        self._in_transaction(
            "record a schedule tick in", lambda conn: conn.execute(self.q.FINISH_TICK, args)
        )

    # -- API tokens ------------------------------------------------------------------------

    def create_token(self, token: TokenRecord) -> None:
        values = rows.token_row(token)
        self._in_transaction(
            f"store API token {token.token_id!r} in",
            lambda conn: conn.execute(self.q.INSERT_TOKEN, values),
        )

    def find_token(self, token_id: str) -> TokenRecord | None:
        found = self._query(self.q.SELECT_TOKEN, (token_id,))
        return rows.token_from_row(found[0]) if found else None

    def list_tokens(self) -> list[TokenRecord]:
        found = [rows.token_from_row(r) for r in self._query(self.q.SELECT_TOKENS, ())]
        return sorted(found, key=lambda t: (t.created_at, t.token_id))

    def revoke_token(self, token_id: str, *, now: float) -> TokenRecord | None:
        def revoke(conn: Any) -> tuple[Any, ...] | None:
            conn.execute(self.q.REVOKE_TOKEN, (float(now), token_id))
            row: tuple[Any, ...] | None = conn.execute(self.q.SELECT_TOKEN, (token_id,)).fetchone()
            return row

        row = self._in_transaction("revoke an API token in", revoke)
        return None if row is None else rows.token_from_row(row)

    def touch_token(self, token_id: str, *, now: float) -> None:
        args = (float(now), token_id, float(now) - rows.TOUCH_EVERY)
        self._in_transaction(
            "record the use of an API token in",
            lambda conn: conn.execute(self.q.TOUCH_TOKEN, args),
        )

    # -- pipeline lifecycle ----------------------------------------------------------------

    def _sql(self, statement: str) -> str:
        return statement.replace("?", self.q.PARAM) if self.q.PARAM != "?" else statement

    def change(self, workflow: str, action: str, work: Callable[[LifecycleTx], T]) -> T:
        """Run ``work`` in one write transaction on ``workflow``'s versions, deployments,
        approval requests and audit log, serialised with every other change of the workflow
        (whichever process makes it)."""

        def apply(conn: Any) -> T:
            self._lock_workflow(conn, f"lifecycle:{workflow}")
            return work(LifecycleTx(conn, self._sql, workflow))

        return self._in_transaction(action, apply)

    # -- Idempotency-Keys ------------------------------------------------------------------

    def begin_key(self, claim: IdempotencyRecord) -> IdempotencyRecord | None:
        def begin(conn: Any) -> tuple[Any, ...] | None:
            conn.execute(self.q.PRUNE_KEYS, (float(claim.created_at),))
            if conn.execute(self.q.BEGIN_KEY, rows.key_row(claim)).fetchall():
                return None
            # the conflicting row is locked by BEGIN_KEY: it cannot go before this read
            row: tuple[Any, ...] | None
            row = conn.execute(self.q.SELECT_KEY, (claim.subject, claim.key)).fetchone()
            return row

        row = self._in_transaction("claim an Idempotency-Key in", begin)
        return None if row is None else rows.key_from_row(row)

    def finish_key(self, claim: IdempotencyRecord, run_id: str) -> bool:
        args = (run_id, claim.subject, claim.key, claim.claim)
        done = self._in_transaction(
            "record the run of an Idempotency-Key in",
            lambda conn: conn.execute(self.q.FINISH_KEY, args).rowcount,
        )
        return bool(done == 1)

    def abandon_key(self, claim: IdempotencyRecord) -> None:
        args = (claim.subject, claim.key, claim.claim)
        self._in_transaction(
            "give up an Idempotency-Key in", lambda conn: conn.execute(self.q.ABANDON_KEY, args)
        )

    def prune_keys(self, now: float) -> int:
        gone = self._in_transaction(
            "prune Idempotency-Keys in",
            lambda conn: conn.execute(self.q.PRUNE_KEYS, (float(now),)).rowcount,
        )
        return int(gone)
