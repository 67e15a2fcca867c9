"""The metadata schema, as an ordered list of versioned migrations.

Each migration is a version number and the SQL statements that take the schema from the
previous version to it. The statements stay portable (``TEXT``, ``INTEGER``, ``BIGINT``,
``DOUBLE PRECISION``, plain ``CREATE TABLE`` / ``CREATE INDEX``) so that a Postgres store can
apply the same list. Migrations are append-only: never edit one that has shipped, add the next.

A table keyed for its read path ends with the comment ``/*clustered*/``. Postgres runs it as
written (a comment); SQLite renders it ``WITHOUT ROWID``, so the table is stored as one b-tree
on its primary key and a row insert writes one b-tree instead of a table and an index (the
difference is ~20% of a hot-path ``commit``).

Postgres runs each migration's statements and then its dialect steps
(``klaw.metadata.postgres_schema.postgres_steps``): there ``events`` and ``metrics`` are
partitioned by ``ts`` and ``events`` has no primary key, so a later migration must work on a
partitioned table (no unique index or key without ``ts``).

The applied versions are rows of the ``schema_version`` table. ``migrate`` applies whatever is
missing in one transaction and refuses a database written by a newer Klaw.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass

from klaw.errors import MetadataError


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema: ``statements`` run in order, in the migrating transaction."""

    version: int
    description: str
    statements: tuple[str, ...]
    sqlite: tuple[str, ...] = ()  # what SQLite runs after them (Postgres: postgres_steps)


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        version=1,
        description="runs, attempts, events, logs and metrics",
        statements=(
            """CREATE TABLE runs (
                run_id TEXT PRIMARY KEY,
                workflow TEXT NOT NULL,
                state TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                started_at DOUBLE PRECISION,
                ended_at DOUBLE PRECISION,
                params TEXT NOT NULL,
                selection TEXT,
                parent_run_id TEXT,
                owner_host TEXT NOT NULL,
                owner_pid INTEGER NOT NULL,
                error TEXT,
                stage_counts TEXT NOT NULL
            ) /*clustered*/""",
            "CREATE INDEX runs_by_workflow ON runs (workflow, created_at)",
            "CREATE INDEX runs_by_state ON runs (state, created_at)",
            "CREATE INDEX runs_by_created ON runs (created_at)",
            """CREATE TABLE attempts (
                run_id TEXT NOT NULL,
                stage TEXT NOT NULL,
                attempt INTEGER NOT NULL,
                state TEXT NOT NULL,
                token TEXT NOT NULL,
                queued_at DOUBLE PRECISION,
                started_at DOUBLE PRECISION,
                ended_at DOUBLE PRECISION,
                error TEXT,
                traceback TEXT,
                asset_key TEXT,
                snapshot_id BIGINT,
                reused_from TEXT,
                row_count BIGINT,
                byte_count BIGINT,
                PRIMARY KEY (run_id, stage, attempt)
            ) /*clustered*/""",
            """CREATE TABLE events (
                run_id TEXT NOT NULL,
                seq BIGINT NOT NULL,
                ts DOUBLE PRECISION NOT NULL,
                kind TEXT NOT NULL,
                stage TEXT,
                attempt INTEGER,
                state TEXT,
                data TEXT NOT NULL,
                PRIMARY KEY (run_id, seq)
            ) /*clustered*/""",
            """CREATE TABLE logs (
                run_id TEXT NOT NULL,
                stage TEXT NOT NULL,
                attempt INTEGER NOT NULL,
                stream TEXT NOT NULL,
                seq BIGINT NOT NULL,
                ts DOUBLE PRECISION NOT NULL,
                level TEXT,
                line TEXT NOT NULL,
                PRIMARY KEY (run_id, stage, attempt, seq)
            ) /*clustered*/""",
            """CREATE TABLE metrics (
                run_id TEXT NOT NULL,
                stage TEXT,
                attempt INTEGER,
                name TEXT NOT NULL,
                value DOUBLE PRECISION NOT NULL,
                ts DOUBLE PRECISION NOT NULL
            )""",
            "CREATE INDEX metrics_by_run ON metrics (run_id, name)",
        ),
    ),
    Migration(
        version=2,
        description="stage attempt leases",
        statements=("ALTER TABLE attempts ADD COLUMN lease_expires_at DOUBLE PRECISION",),
    ),
    Migration(
        version=3,
        description="cron schedules and their claimed ticks",
        statements=(
            # One row per schedule (named after its workflow). `paused` is 0 or 1. Ticks before
            # `updated_at` (the definition's last change) or `resumed_at` never catch up.
            """CREATE TABLE schedules (
                name TEXT PRIMARY KEY,
                workflow TEXT NOT NULL,
                cron TEXT NOT NULL,
                timezone TEXT NOT NULL,
                catch_up TEXT NOT NULL,
                paused INTEGER NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                updated_at DOUBLE PRECISION NOT NULL,
                paused_at DOUBLE PRECISION,
                resumed_at DOUBLE PRECISION
            ) /*clustered*/""",
            # A tick (its UTC key, '2026-03-29T01:00:00Z') is claimed by inserting its row: the
            # primary key lets exactly one trigger service win it.
            """CREATE TABLE schedule_ticks (
                schedule TEXT NOT NULL,
                tick TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                owner TEXT NOT NULL,
                run_id TEXT,
                error TEXT,
                PRIMARY KEY (schedule, tick)
            ) /*clustered*/""",
        ),
    ),
    Migration(
        version=4,
        description="API tokens, stored hashed",
        statements=(
            # A token is `klaw_<token_id>_<secret>`; only the SHA-256 of the secret (hex) is
            # kept. The secret is 256 random bits, so a fast hash is enough: there is nothing to
            # guess, and a slow KDF (bcrypt, argon2) would only cost time on every request.
            # `role` is a role label (viewer, operator, approver, admin); times are epoch s.
            """CREATE TABLE api_tokens (
                token_id TEXT PRIMARY KEY,
                name TEXT NOT NULL,
                role TEXT NOT NULL,
                secret_hash TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                expires_at DOUBLE PRECISION,
                revoked_at DOUBLE PRECISION,
                last_used_at DOUBLE PRECISION
            ) /*clustered*/""",
        ),
    ),
    Migration(
        version=5,
        description="Idempotency-Keys of POST /runs",
        statements=(
            # One row per (subject, key): the primary key lets exactly one request claim a key,
            # whichever API process it reaches. `claim` is the claiming request's random value;
            # `run_id` is NULL until that request has made its run. Times are epoch seconds.
            """CREATE TABLE idempotency_keys (
                subject TEXT NOT NULL,
                idempotency_key TEXT NOT NULL,
                fingerprint TEXT NOT NULL,
                claim TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                expires_at DOUBLE PRECISION NOT NULL,
                pending_until DOUBLE PRECISION NOT NULL,
                run_id TEXT,
                PRIMARY KEY (subject, idempotency_key)
            ) /*clustered*/""",
            "CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at)",
        ),
    ),
    Migration(
        version=6,
        description="log pages by the run's seq",
        # A page of a run's log (after a seq, or its last lines) reads the index, not every
        # line of the run: the same cost at a million lines as at ten.
        statements=("CREATE INDEX logs_by_seq ON logs (run_id, seq)",),
    ),
    Migration(
        version=7,
        description="pipeline versions, deployments, approvals and the audit log",
        statements=(
            "ALTER TABLE runs ADD COLUMN version INTEGER",
            "ALTER TABLE runs ADD COLUMN environment TEXT",
            # `content` is the version's files and graph (JSON); `stage` the furthest
            # environment it reached. The same content is one version (versions_by_hash).
            """CREATE TABLE versions (
                workflow TEXT NOT NULL,
                version INTEGER NOT NULL,
                hash TEXT NOT NULL,
                format INTEGER NOT NULL,
                kind TEXT NOT NULL,
                author TEXT NOT NULL,
                message TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                stage TEXT NOT NULL,
                stages INTEGER NOT NULL,
                content TEXT NOT NULL,
                PRIMARY KEY (workflow, version)
            ) /*clustered*/""",
            "CREATE UNIQUE INDEX versions_by_hash ON versions (workflow, hash)",
            """CREATE TABLE deployments (
                workflow TEXT NOT NULL,
                environment TEXT NOT NULL,
                version INTEGER NOT NULL,
                deployed_at DOUBLE PRECISION NOT NULL,
                deployed_by TEXT NOT NULL,
                PRIMARY KEY (workflow, environment)
            ) /*clustered*/""",
            # `pending` is 1 while the request waits and NULL once decided: the unique index
            # lets one request at a time wait per workflow and environment (NULLs are
            # distinct).
            """CREATE TABLE approval_requests (
                request_id TEXT PRIMARY KEY,
                workflow TEXT NOT NULL,
                version INTEGER NOT NULL,
                environment TEXT NOT NULL,
                requester TEXT NOT NULL,
                state TEXT NOT NULL,
                created_at DOUBLE PRECISION NOT NULL,
                required INTEGER NOT NULL,
                decided_at DOUBLE PRECISION,
                pending INTEGER
            )""",
            "CREATE UNIQUE INDEX approvals_pending ON approval_requests "
            "(workflow, environment, pending)",
            "CREATE INDEX approvals_by_created ON approval_requests (created_at)",
            "CREATE INDEX approvals_by_version ON approval_requests (workflow, version)",
            """CREATE TABLE approval_decisions (
                request_id TEXT NOT NULL,
                approver TEXT NOT NULL,
                decision TEXT NOT NULL,
                comment TEXT NOT NULL,
                at DOUBLE PRECISION NOT NULL,
                PRIMARY KEY (request_id, approver)
            ) /*clustered*/""",
            # Append-only (triggers refuse UPDATE and DELETE); `seq` is given by the database.
            """CREATE TABLE audit (
                seq INTEGER PRIMARY KEY,
                at DOUBLE PRECISION NOT NULL,
                actor TEXT NOT NULL,
                action TEXT NOT NULL,
                workflow TEXT,
                version INTEGER,
                environment TEXT,
                request_id TEXT,
                detail TEXT NOT NULL
            )""",
            "CREATE INDEX audit_by_workflow ON audit (workflow, seq)",
        ),
        sqlite=(
            "CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit "
            "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
            "CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit "
            "BEGIN SELECT RAISE(ABORT, 'the audit log is append-only'); END",
        ),
    ),
    Migration(
        version=8,
        description="the trace of each run",
        # The OpenTelemetry trace id of the run's span (None: not traced), for links from the
        # UI to a tracing backend.
        statements=("ALTER TABLE runs ADD COLUMN trace_id TEXT",),
    ),
)

LATEST_VERSION: int = MIGRATIONS[-1].version

CREATE_SCHEMA_VERSION = (
    "CREATE TABLE IF NOT EXISTS schema_version ("
    "version INTEGER PRIMARY KEY, description TEXT NOT NULL, "
    "applied_at DOUBLE PRECISION NOT NULL)"
)
SELECT_VERSION = "SELECT MAX(version) FROM schema_version"
INSERT_VERSION = "INSERT INTO schema_version (version, description, applied_at) VALUES (?, ?, ?)"
_SQLITE_HAS_VERSION_TABLE = (
    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
)

CLUSTERED = "/*clustered*/"

UPGRADE_HINT = "run `klaw db upgrade` (or call migrate() on the metadata store) first"


def sqlite_statement(statement: str) -> str:
    """A migration statement as SQLite runs it."""
    return statement.replace(CLUSTERED, "WITHOUT ROWID")


def current_version(conn: sqlite3.Connection) -> int:
    """The schema version a SQLite database is at; 0 for a database Klaw never migrated."""
    if conn.execute(_SQLITE_HAS_VERSION_TABLE).fetchone() is None:
        return 0
    row = conn.execute(SELECT_VERSION).fetchone()
    return 0 if row is None or row[0] is None else int(row[0])


def newer_schema_error(found: int, location: str) -> MetadataError:
    return MetadataError(
        f"metadata database {location} is at schema version {found}, but this Klaw only knows "
        f"versions up to {LATEST_VERSION}",
        hint="upgrade Klaw to the version that wrote this database, or point Klaw at another "
        "metadata database",
    )


def check_version(conn: sqlite3.Connection, location: str) -> None:
    """Raise ``MetadataError`` unless the database is at exactly ``LATEST_VERSION``."""
    found = current_version(conn)
    if found > LATEST_VERSION:
        raise newer_schema_error(found, location)
    if found < LATEST_VERSION:
        state = "has no Klaw schema" if found == 0 else f"is at schema version {found}"
        raise MetadataError(
            f"metadata database {location} {state}; this Klaw needs version {LATEST_VERSION}",
            hint=UPGRADE_HINT,
        )


def migrate(conn: sqlite3.Connection, location: str) -> list[int]:
    """Apply every missing migration in one ``BEGIN IMMEDIATE`` transaction.

    ``conn`` must be in autocommit mode (``isolation_level=None``). Returns the versions
    applied (empty when the schema was current). Two processes migrating at once serialize on
    the write lock; the second finds nothing to do.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(CREATE_SCHEMA_VERSION)
        row = conn.execute(SELECT_VERSION).fetchone()
        found = 0 if row is None or row[0] is None else int(row[0])
        if found > LATEST_VERSION:
            raise newer_schema_error(found, location)
        applied: list[int] = []
        now = time.time()
        for migration in MIGRATIONS:
            if migration.version <= found:
                continue
            for statement in (*migration.statements, *migration.sqlite):
                conn.execute(sqlite_statement(statement))
            conn.execute(INSERT_VERSION, (migration.version, migration.description, now))
            applied.append(migration.version)
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
    return applied
