"""Records as rows and back, and the SQL both metadata stores share (``?`` placeholders;
the Postgres store swaps them for ``%s``). Column lists follow the record's field order, so a
record becomes a row with ``astuple`` and a row a record by zipping with the field names."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import msgspec

from klaw.errors import MetadataError, RunConflictError, ScheduleNotFoundError
from klaw.metadata.records import (
    AttemptRecord,
    EventRecord,
    IdempotencyRecord,
    RunRecord,
    ScheduleDefinition,
    ScheduleRecord,
    TokenRecord,
)
from klaw.states import EventKind, RunState, StageState

# Column lists. Runs and attempts list their columns in the record's field order, so a record
# becomes a row with ``astuple`` and a row a record by zipping with the field names.
RUN_FIELDS: tuple[str, ...] = RunRecord.__struct_fields__
ATTEMPT_FIELDS: tuple[str, ...] = AttemptRecord.__struct_fields__
RUN_COLUMNS = ", ".join(RUN_FIELDS)
ENDED = tuple(s.value for s in StageState if s.terminal)
RENAMED = {"rows": "row_count", "bytes": "byte_count"}  # ``rows`` is an SQL keyword
ATTEMPT_COLUMNS = ", ".join(RENAMED.get(field, field) for field in ATTEMPT_FIELDS)
EVENT_FIELDS = ("run_id", "seq", "ts", "kind", "stage", "attempt", "state", "data")
LOG_FIELDS = ("run_id", "stage", "attempt", "stream", "seq", "ts", "level", "line")
METRIC_FIELDS = ("run_id", "stage", "attempt", "name", "value", "ts")


def _insert(table: str, columns: tuple[str, ...]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def _updates(columns: str, key_length: int) -> str:
    return ", ".join(f"{c} = excluded.{c}" for c in columns.split(", ")[key_length:])


INSERT_RUN = f"INSERT INTO runs ({RUN_COLUMNS}) VALUES ({', '.join('?' * len(RUN_FIELDS))})"
UPSERT_RUN = f"{INSERT_RUN} ON CONFLICT (run_id) DO UPDATE SET {_updates(RUN_COLUMNS, 1)}"
SELECT_RUN = f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = ?"
SELECT_RUNS = f"SELECT {RUN_COLUMNS} FROM runs WHERE 1 = 1"
SELECT_RUN_CREATED = "SELECT created_at FROM runs WHERE run_id = ?"
SELECT_LAST_RUNS = (
    f"SELECT {RUN_COLUMNS} FROM runs WHERE workflow = ? ORDER BY created_at DESC, run_id DESC"
    " LIMIT ?"
)
SELECT_RUN_IDS_IN_RANGE = "SELECT run_id FROM runs WHERE run_id >= ? AND run_id < ? LIMIT 3"
SELECT_ACTIVE_RUNS = (
    "SELECT run_id, owner_host, owner_pid FROM runs "
    "WHERE workflow = ? AND state IN (?, ?) ORDER BY created_at, run_id"
)
MARK_ABANDONED = "UPDATE runs SET state = ?, error = ?, ended_at = ? WHERE run_id = ?"

# An attempt that has ended is never written again: a late write from a stale coordinator (or
# one racing a lease expiry) is dropped by the database itself.
UPSERT_ATTEMPT = (
    f"INSERT INTO attempts ({ATTEMPT_COLUMNS}) VALUES ({', '.join('?' * len(ATTEMPT_FIELDS))}) "
    f"ON CONFLICT (run_id, stage, attempt) DO UPDATE SET {_updates(ATTEMPT_COLUMNS, 3)} "
    f"WHERE attempts.state NOT IN ({', '.join(repr(s) for s in ENDED)})"
)
CHUNK = 5_000  # rows made at a time for one statement of a large batch
_ATTEMPT_NAMES = tuple(RENAMED.get(field, field) for field in ATTEMPT_FIELDS)
_ATTEMPT_UPSERTS: dict[tuple[bool, ...], str] = {}  # by which columns a row sets


def _attempt_upsert(present: tuple[bool, ...]) -> str:
    columns = [c for c, here in zip(_ATTEMPT_NAMES, present, strict=True) if here]
    updates = ", ".join(f"{c} = excluded.{c}" for c in columns[3:])
    return (
        f"INSERT INTO attempts ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))}) "
        f"ON CONFLICT (run_id, stage, attempt) DO UPDATE SET {updates} "
        f"WHERE attempts.state NOT IN ({', '.join(repr(s) for s in ENDED)})"
    )


def attempt_upserts(
    attempts: Sequence[AttemptRecord],
) -> Iterator[tuple[str, list[list[Any]]]]:
    """``UPSERT_ATTEMPT`` for each attempt, with only the columns it sets (not None): binding
    a parameter is most of what a row costs SQLite, and an attempt sets a few of its sixteen
    columns at a time. Rows are grouped by the columns they set, one statement per group;
    within a group the last record of an attempt wins. Leaving a column out keeps what the
    row holds; a runner's attempt record only gains values (a field it has set is never set
    back to None), so nothing it wrote is lost. Made ``CHUNK`` attempts at a time, in order,
    so a large batch never holds all its rows at once."""
    for begin in range(0, len(attempts), CHUNK):
        groups: dict[tuple[bool, ...], list[list[Any]]] = {}
        chunk = attempts[begin : begin + CHUNK]
        last = {(a.run_id, a.stage, a.attempt): a for a in chunk}  # groups do not keep order
        for attempt in last.values():
            row = _astuple(attempt)
            present = tuple([v is not None for v in row])
            values = [v for v in row if v is not None]
            values[3] = values[3]._value_  # the state: never None
            group = groups.get(present)
            if group is None:
                group = groups[present] = []
            group.append(values)
        for present, rows in groups.items():
            sql = _ATTEMPT_UPSERTS.get(present)
            if sql is None:
                sql = _ATTEMPT_UPSERTS[present] = _attempt_upsert(present)
            yield sql, rows


SELECT_ATTEMPTS = f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE run_id = ? ORDER BY stage, attempt"

# Activity in a window of runs (by created_at: runs_by_created), never the whole history.
SELECT_RUN_STATES_SINCE = "SELECT created_at, state FROM runs WHERE created_at >= ?"
SELECT_FAILED_ATTEMPTS_SINCE = (
    "SELECT r.workflow, a.stage, a.run_id, a.ended_at, a.error FROM runs r "
    "JOIN attempts a ON a.run_id = r.run_id "
    "WHERE r.created_at >= ? AND a.state IN ('failed', 'timed_out')"
)
SELECT_LONGEST_ATTEMPTS_SINCE = (
    "SELECT r.workflow, a.stage, a.run_id, a.attempt, a.ended_at - a.started_at AS duration "
    "FROM runs r JOIN attempts a ON a.run_id = r.run_id "
    "WHERE r.created_at >= ? AND a.started_at IS NOT NULL AND a.ended_at IS NOT NULL "
    "ORDER BY duration DESC LIMIT ?"
)

# Leases. A renewal touches only the attempt that is still running under the same token.
_ENDED_LIST = ", ".join(repr(s) for s in ENDED)
RENEW_LEASE = (
    "UPDATE attempts SET lease_expires_at = ? "
    "WHERE run_id = ? AND stage = ? AND attempt = ? AND token = ? AND state = 'running'"
)
SELECT_FENCE = "SELECT state, token FROM attempts WHERE run_id = ? AND stage = ? AND attempt = ?"
EXPIRE_LEASES = (
    "UPDATE attempts SET state = 'failed', error = ?, ended_at = ?, lease_expires_at = NULL "
    "WHERE run_id = ? AND state = 'running' AND lease_expires_at < ? "
    f"RETURNING {ATTEMPT_COLUMNS}"
)
ADOPT_RUN = (
    "UPDATE runs SET owner_host = ?, owner_pid = ? "
    "WHERE run_id = ? AND owner_host = ? AND owner_pid = ? AND state IN (?, ?)"
)
FENCE_RUN = (
    "UPDATE attempts SET state = 'failed', error = ?, ended_at = ?, lease_expires_at = NULL "
    f"WHERE run_id = ? AND state NOT IN ({_ENDED_LIST}) RETURNING {ATTEMPT_COLUMNS}"
)


def fenced(row: tuple[Any, ...] | None, token: str) -> bool:
    """Whether an attempt row (state, token) tells its holder to stop. No row yet, or a row not
    yet marked running, is not a fence: the coordinator's write may still be on its way."""
    if row is None:
        return False
    state, held = row
    return state in ENDED or (bool(held) and held != token)


INSERT_EVENT = _insert("events", EVENT_FIELDS)
SELECT_EVENTS = (
    f"SELECT {', '.join(EVENT_FIELDS)} FROM events WHERE run_id = ? AND seq > ? ORDER BY seq"
)
SELECT_MAX_EVENT_SEQ = "SELECT COALESCE(MAX(seq), 0) FROM events WHERE run_id = ?"

INSERT_LOG = _insert("logs", LOG_FIELDS)
SELECT_LOGS = f"SELECT {', '.join(LOG_FIELDS)} FROM logs WHERE run_id = ?"
LOGS_ORDER = " ORDER BY stage, attempt, seq"
SELECT_MAX_LOG_SEQ = "SELECT COALESCE(MAX(seq), 0) FROM logs WHERE run_id = ?"

INSERT_METRIC = _insert("metrics", METRIC_FIELDS)
SELECT_METRICS = (
    f"SELECT {', '.join(METRIC_FIELDS)} FROM metrics WHERE run_id = ? ORDER BY name, ts"
)


ACTIVE = (RunState.QUEUED.value, RunState.RUNNING.value)
EMPTY_JSON = "{}"
_encode = msgspec.json.encode
_decode = msgspec.json.decode
_astuple = msgspec.structs.astuple


def json_text(value: dict[str, Any]) -> str:
    return _encode(value).decode() if value else EMPTY_JSON


def run_row(run: RunRecord) -> tuple[Any, ...]:
    return (
        run.run_id,
        run.workflow,
        run.state.value,
        run.created_at,
        run.started_at,
        run.ended_at,
        json_text(run.params),
        run.selection,
        run.parent_run_id,
        run.owner_host,
        run.owner_pid,
        run.error,
        json_text(run.stage_counts),
        run.version,
        run.environment,
        run.trace_id,
    )


def run_from_row(row: tuple[Any, ...]) -> RunRecord:
    fields = dict(zip(RUN_FIELDS, row, strict=True))
    fields["params"] = _decode(row[6])
    fields["stage_counts"] = _decode(row[12])
    return msgspec.convert(fields, RunRecord)


def attempt_row(attempt: AttemptRecord) -> list[Any]:
    row = list(_astuple(attempt))  # the fields are in column order
    row[3] = row[3]._value_
    return row


# A stage transition without data (most events): the constant columns are written as
# literals, so a row binds six parameters instead of eight.
INSERT_STAGE_EVENT = (
    f"INSERT INTO events ({', '.join(EVENT_FIELDS)}) VALUES (?, ?, ?, 'stage', ?, ?, ?, '{{}}')"
)


def event_inserts(events: Sequence[EventRecord]) -> Iterator[tuple[str, list[tuple[Any, ...]]]]:
    """The inserts of ``events`` (numbered already): stage transitions without data through
    ``INSERT_STAGE_EVENT``, every other event through ``INSERT_EVENT``; ``CHUNK`` events at
    a time (their order does not matter: each carries its ``seq``)."""
    for begin in range(0, len(events), CHUNK):
        plain: list[tuple[Any, ...]] = []
        other: list[tuple[Any, ...]] = []
        for e in events[begin : begin + CHUNK]:
            if e.kind == "stage" and not e.data:
                plain.append((e.run_id, e.seq, e.ts, e.stage, e.attempt, e.state))
            else:
                other.append(event_row(e))
        if plain:
            yield INSERT_STAGE_EVENT, plain
        if other:
            yield INSERT_EVENT, other


def event_row(e: EventRecord) -> tuple[Any, ...]:
    data = _encode(e.data).decode() if e.data else EMPTY_JSON
    return (e.run_id, e.seq, e.ts, e.kind, e.stage, e.attempt, e.state, data)


def attempt_from_row(row: tuple[Any, ...]) -> AttemptRecord:
    return msgspec.convert(dict(zip(ATTEMPT_FIELDS, row, strict=True)), AttemptRecord)


def event_from_row(row: tuple[Any, ...]) -> EventRecord:
    fields = dict(zip(EVENT_FIELDS, row, strict=True))
    fields["data"] = _decode(row[7])
    return EventRecord(**fields)


def owner_alive(host: str, pid: int) -> bool:
    """Whether a run's owner process may still be alive. Only a process on this host can be
    proven gone; an unknown owner (pid 0) or another host's process counts as alive."""
    if pid <= 0 or host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # EPERM: it exists, under another user
        return True
    return not _zombie(pid)


def _zombie(pid: int) -> bool:
    """Whether ``pid`` has died and waits to be reaped (an orphan's reaper may be slow to);
    False where ``/proc`` cannot say."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rpartition(")")[2].split()[:1] in (["Z"], ["X"])


# -- what both stores write when a run is created or found abandoned -------------------------


def created_event(run: RunRecord) -> tuple[Any, ...]:
    """The ``run_created`` event row (seq 1) of a new run."""
    data: dict[str, Any] = {"workflow": run.workflow}
    if run.parent_run_id is not None:
        data["parent_run_id"] = run.parent_run_id
    if run.selection is not None:
        data["selection"] = run.selection
    state = run.state.value
    kind = EventKind.RUN_CREATED.value
    return (run.run_id, 1, run.created_at, kind, None, None, state, json_text(data))


def abandoned(
    run_id: str, seq: int, host: str, pid: int, now: float
) -> tuple[str, tuple[Any, ...]]:
    """The error of a run whose owner process is gone, and its ``run_abandoned`` event row."""
    error = f"abandoned: owner process {pid} on {host} is gone"
    data = json_text({"error": error, "owner_host": host, "owner_pid": pid})
    failed = RunState.FAILED.value
    return error, (run_id, seq, now, EventKind.RUN_ABANDONED.value, None, None, failed, data)


def run_conflict(
    workflow: str, live: list[tuple[str, str, int]], max_active: int
) -> RunConflictError | None:
    """The error to raise when ``live`` runs (id, host, pid) fill the workflow's limit."""
    if len(live) < max_active:
        return None
    blockers = ", ".join(f"{rid} (owner pid {pid} on {host})" for rid, host, pid in live)
    return RunConflictError(
        f"workflow {workflow!r} already has {len(live)} active run(s), the limit is "
        f"{max_active}: {blockers}",
        hint=f"wait for it to finish, cancel it with `klaw cancel {live[0][0]}`, or raise "
        "the workflow's concurrency limit",
    )


def duplicate_run(run_id: str, location: str) -> MetadataError:
    return MetadataError(
        f"run {run_id!r} already exists in metadata database {location}",
        hint="give the new run a fresh id (klaw.ids.new_run_id())",
    )


# -- schedules (migration 3) -----------------------------------------------------------------

# A re-sync keeps the pause state; ``updated_at`` moves only when what decides the ticks (the
# workflow, cron or time zone) changed, so an unchanged definition keeps its catch-up floor.
UPSERT_SCHEDULE = (
    "INSERT INTO schedules (name, workflow, cron, timezone, catch_up, paused, created_at, "
    "updated_at) VALUES (?, ?, ?, ?, ?, 0, ?, ?) ON CONFLICT (name) DO UPDATE SET "
    "workflow = excluded.workflow, cron = excluded.cron, timezone = excluded.timezone, "
    "catch_up = excluded.catch_up, updated_at = CASE WHEN schedules.workflow = excluded.workflow "
    "AND schedules.cron = excluded.cron AND schedules.timezone = excluded.timezone "
    "THEN schedules.updated_at ELSE excluded.updated_at END "
    "WHERE schedules.workflow <> excluded.workflow OR schedules.cron <> excluded.cron "
    "OR schedules.timezone <> excluded.timezone OR schedules.catch_up <> excluded.catch_up"
)
# Each schedule with its newest claimed tick (tick keys sort as the instants they name).
SELECT_SCHEDULES = (
    "SELECT s.name, s.workflow, s.cron, s.timezone, s.catch_up, s.paused, s.created_at, "
    "s.updated_at, s.paused_at, s.resumed_at, t.tick, t.created_at, t.run_id, t.error "
    "FROM schedules s LEFT JOIN schedule_ticks t ON t.schedule = s.name AND t.tick = "
    "(SELECT MAX(m.tick) FROM schedule_ticks m WHERE m.schedule = s.name)"
)
SELECT_SCHEDULE = SELECT_SCHEDULES + " WHERE s.name = ?"
SELECT_SCHEDULE_NAMES = "SELECT name FROM schedules"
PAUSE_SCHEDULE = "UPDATE schedules SET paused = 1, paused_at = ? WHERE name = ? AND paused = 0"
RESUME_SCHEDULE = "UPDATE schedules SET paused = 0, resumed_at = ? WHERE name = ? AND paused = 1"
# The claim: inserting the tick's row. A second claim of the tick, or a claim while the
# schedule is paused (or unknown), inserts nothing.
CLAIM_TICK = (
    "INSERT INTO schedule_ticks (schedule, tick, created_at, owner) SELECT ?, ?, ?, ? "
    "WHERE EXISTS (SELECT 1 FROM schedules WHERE name = ? AND paused = 0) "
    "ON CONFLICT (schedule, tick) DO NOTHING"
)
FINISH_TICK = "UPDATE schedule_ticks SET run_id = ?, error = ? WHERE schedule = ? AND tick = ?"
_SCHEDULE_COLUMNS: tuple[str, ...] = ScheduleRecord.__struct_fields__  # SELECT_SCHEDULES' order


def schedule_row(definition: ScheduleDefinition, now: float) -> tuple[Any, ...]:
    """The values of ``UPSERT_SCHEDULE`` for a definition synced at ``now``."""
    d = definition
    return (d.name, d.workflow, d.cron, d.timezone, d.catch_up, now, now)


def schedule_from_row(row: tuple[Any, ...]) -> ScheduleRecord:
    fields = dict(zip(_SCHEDULE_COLUMNS, row, strict=True))
    fields["paused"] = bool(fields["paused"])
    return msgspec.convert(fields, ScheduleRecord)


def schedule_not_found(name: str, known: list[str], location: str) -> ScheduleNotFoundError:
    """The error for an unknown schedule, naming the closest known names."""
    import difflib

    close = difflib.get_close_matches(name, known, n=3)
    message = f"no schedule named {name!r} in metadata database {location}"
    if close:
        message += f" (did you mean {', '.join(repr(c) for c in close)}?)"
    return ScheduleNotFoundError(
        message,
        hint="a schedule is named after its workflow; `klaw schedules list` shows them",
    )


# -- API tokens (migration 4) ----------------------------------------------------------------

_TOKEN_COLUMNS: tuple[str, ...] = TokenRecord.__struct_fields__
INSERT_TOKEN = _insert("api_tokens", _TOKEN_COLUMNS)
SELECT_TOKENS = f"SELECT {', '.join(_TOKEN_COLUMNS)} FROM api_tokens"
SELECT_TOKEN = SELECT_TOKENS + " WHERE token_id = ?"
REVOKE_TOKEN = "UPDATE api_tokens SET revoked_at = ? WHERE token_id = ? AND revoked_at IS NULL"
# Recording use writes at most once a minute per token, not on every request.
TOUCH_TOKEN = (
    "UPDATE api_tokens SET last_used_at = ? WHERE token_id = ? "
    "AND (last_used_at IS NULL OR last_used_at < ?)"
)
TOUCH_EVERY = 60.0


def token_row(token: TokenRecord) -> tuple[Any, ...]:
    return tuple(getattr(token, column) for column in _TOKEN_COLUMNS)


def token_from_row(row: tuple[Any, ...]) -> TokenRecord:
    return TokenRecord(**dict(zip(_TOKEN_COLUMNS, row, strict=True)))


# -- Idempotency-Keys (migration 5) ----------------------------------------------------------

_KEY_COLUMNS = (
    "subject, idempotency_key, fingerprint, claim, created_at, expires_at, pending_until, run_id"
)
# The claim, in one statement: a new key is inserted; a key that expired, or whose claim made
# no run in time (its request died), is taken over; any other key is left as it is (and,
# on Postgres, locked until the transaction ends). A row comes back only when this claim won.
BEGIN_KEY = (
    f"INSERT INTO idempotency_keys ({_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, NULL) "
    "ON CONFLICT (subject, idempotency_key) DO UPDATE SET fingerprint = excluded.fingerprint, "
    "claim = excluded.claim, created_at = excluded.created_at, "
    "expires_at = excluded.expires_at, pending_until = excluded.pending_until, run_id = NULL "
    "WHERE idempotency_keys.expires_at <= excluded.created_at OR "
    "(idempotency_keys.run_id IS NULL AND idempotency_keys.pending_until <= excluded.created_at) "
    "RETURNING claim"
)
SELECT_KEY = (
    f"SELECT {_KEY_COLUMNS} FROM idempotency_keys WHERE subject = ? AND idempotency_key = ?"
)
FINISH_KEY = (
    "UPDATE idempotency_keys SET run_id = ? "
    "WHERE subject = ? AND idempotency_key = ? AND claim = ? AND run_id IS NULL"
)
ABANDON_KEY = (
    "DELETE FROM idempotency_keys "
    "WHERE subject = ? AND idempotency_key = ? AND claim = ? AND run_id IS NULL"
)
PRUNE_KEYS = "DELETE FROM idempotency_keys WHERE expires_at <= ?"


def key_row(record: IdempotencyRecord) -> tuple[Any, ...]:
    """The values of ``BEGIN_KEY`` for a claim (its ``run_id`` is not one of them)."""
    r = record
    return (
        r.subject,
        r.key,
        r.fingerprint,
        r.claim,
        float(r.created_at),
        float(r.expires_at),
        float(r.pending_until),
    )


def key_from_row(row: tuple[Any, ...]) -> IdempotencyRecord:
    subject, key, fingerprint, claim, created_at, expires_at, pending_until, run_id = row
    return IdempotencyRecord(
        subject=subject,
        key=key,
        fingerprint=fingerprint,
        claim=claim,
        created_at=created_at,
        expires_at=expires_at,
        pending_until=pending_until,
        run_id=run_id,
    )
