"""The Postgres dialect of the metadata schema, for ``PostgresMetadataStore``.

Postgres applies the portable migrations of ``klaw.metadata.migrations`` and then the steps
here (``postgres_steps``). The store runs the portable statements of ``klaw.metadata.rows`` with
``%s`` placeholders; bulk writes are one ``INSERT ... SELECT * FROM unnest(arrays)`` per table.

* **Time partitions.** ``events`` and ``metrics`` are ``PARTITION BY RANGE (ts)`` on the float
  epoch column (the column SQLite has), one partition per UTC day named ``events_pYYYYMMDD``
  and holding ``[day * 86400, (day + 1) * 86400)``. The store creates them on demand. With
  TimescaleDB they are hypertables instead, chunked by day through ``klaw_epoch_us(ts)``
  (Timescale cannot chunk a float column directly).
* **Event heads.** A partitioned table cannot have a key without its partition column, so
  ``events`` loses its ``(run_id, seq)`` key; ``event_heads`` holds each run's last ``seq``
  and is advanced with a compare-and-set in the same transaction as the events.
* **NUL-safe text.** Postgres ``TEXT`` cannot hold ``\\x00``. ``register_text_adapters``
  installs a dumper that escapes ``\\x00`` and the escape character (U+FFFF, a Unicode
  noncharacter) and a loader that reverses it, so every string round-trips; other text is
  stored as written.
"""

from __future__ import annotations

import datetime
import re
from collections.abc import Iterable, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.abc import Buffer
from psycopg.adapt import Dumper, Loader
from psycopg.pq import Format

from klaw.errors import MetadataError
from klaw.metadata import migrations, rows
from klaw.metadata.records import RunRecord

DAY = 86_400.0
PARTITIONED: dict[str, str] = {  # table -> the index its read path needs
    "events": "CREATE INDEX events_by_run ON events (run_id, seq)",
    "metrics": "CREATE INDEX metrics_by_run ON metrics (run_id, name)",
}
LOCK_CLASS = 0x6B6C6177  # "klaw": the first key of every advisory lock the store takes
_DAY_MIN, _DAY_MAX = -719_162, 2_932_897  # 0001-01-01 and 9999-12-31, in days since 1970
_EPOCH = datetime.date(1970, 1, 1)


def _pg(statement: str) -> str:
    return statement.replace("?", "%s")


LOG_FIELDS = rows.LOG_FIELDS
METRIC_FIELDS = rows.METRIC_FIELDS
INSERT_VERSION = _pg(migrations.INSERT_VERSION)

SELECT_HEADS = "SELECT run_id, seq FROM event_heads WHERE run_id = ANY(%s) FOR UPDATE"
NEW_HEAD = "INSERT INTO event_heads (run_id, seq, prev) VALUES (%s, 1, 0)"
BUMP_HEAD = (
    "INSERT INTO event_heads (run_id, seq, prev) VALUES (%s, 1, 0) ON CONFLICT (run_id) "
    "DO UPDATE SET prev = event_heads.seq, seq = event_heads.seq + 1 RETURNING seq"
)
SELECT_LOG_HEADS = "SELECT run_id, MAX(seq) FROM logs WHERE run_id = ANY(%s) GROUP BY run_id"
LOCK = "SELECT pg_advisory_xact_lock(%s, hashtext(%s))"
HAS_VERSION_TABLE = "SELECT to_regclass('schema_version') IS NOT NULL"
IS_PARTITIONED = (
    "SELECT EXISTS (SELECT 1 FROM pg_partitioned_table WHERE partrelid = to_regclass('events'))"
)
TIMESCALE_AVAILABLE = "SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'"
DROP_CHUNKS = "SELECT count(*) FROM drop_chunks(%s::regclass, older_than => %s::BIGINT)"
SELECT_PARTITIONS = (
    "SELECT n.nspname, c.relname, p.relname FROM pg_inherits i "
    "JOIN pg_class c ON c.oid = i.inhrelid JOIN pg_namespace n ON n.oid = c.relnamespace "
    "JOIN pg_class p ON p.oid = i.inhparent "
    "WHERE i.inhparent IN (to_regclass('events'), to_regclass('metrics'))"
)
_ORDERED_BY = (("runs", "run_id"), ("attempts", "stage"), ("logs", "stage"), ("metrics", "name"))
_CREATE_PARTITION = "CREATE TABLE IF NOT EXISTS {} PARTITION OF {} FOR VALUES FROM ({}) TO ({})"
_PARTITION_NAME = re.compile(r"(events|metrics)_p(\d{8})")

# -- bulk writes -----------------------------------------------------------------------------

_FLOATS = {"created_at", "started_at", "ended_at", "queued_at", "ts", "value", "lease_expires_at"}
_INTS = {"owner_pid", "version", "attempt", "snapshot_id", "row_count", "byte_count", "seq", "prev"}


class Bulk:
    """An insert (or upsert) of any number of rows as one statement with one binary array
    parameter per column. An upsert's rows must have distinct keys."""

    def __init__(self, table: str, columns: Sequence[str], upsert: str = "") -> None:
        types = ["float8" if c in _FLOATS else "int8" if c in _INTS else "text" for c in columns]
        arrays = ", ".join(f"%b::{t}[]" for t in types)
        conflict = upsert[upsert.index(" ON CONFLICT") :] if upsert else ""
        self.sql = f"INSERT INTO {table} ({', '.join(columns)}) SELECT * FROM unnest({arrays})"
        self.sql += conflict
        self._floats = [i for i, t in enumerate(types) if t == "float8"]

    def args(self, rows: Iterable[Sequence[Any]]) -> list[list[Any]]:
        columns = [list(column) for column in zip(*rows, strict=True)]
        for i in self._floats:  # an int among floats would make psycopg refuse the list
            columns[i] = [None if v is None else float(v) for v in columns[i]]
        return columns


BULK_RUNS = Bulk("runs", RunRecord.__struct_fields__, rows.UPSERT_RUN)
BULK_ATTEMPTS = Bulk("attempts", rows.ATTEMPT_COLUMNS.split(", "), rows.UPSERT_ATTEMPT)
BULK_EVENTS = Bulk("events", rows.EVENT_FIELDS)
BULK_LOGS = Bulk("logs", LOG_FIELDS)
BULK_METRICS = Bulk("metrics", METRIC_FIELDS)
# Compare-and-set: a head another writer moved on (seq != prev) becomes NULL, which NOT NULL
# refuses, failing the transaction.
ADVANCE_HEADS = Bulk(
    "event_heads",
    ("run_id", "seq", "prev"),
    " ON CONFLICT (run_id) DO UPDATE SET prev = excluded.prev, "
    "seq = CASE WHEN event_heads.seq = excluded.prev THEN excluded.seq END",
)


def stale_head(exc: psycopg.Error) -> bool:
    """Whether ``exc`` is ``ADVANCE_HEADS`` finding a head moved on by another writer."""
    return isinstance(exc, psycopg.errors.NotNullViolation) and (
        exc.diag.table_name == "event_heads"
    )


# -- NUL-safe text ---------------------------------------------------------------------------

_ESC = "\uffff"


def _escape(text: str) -> str:
    return text.replace(_ESC, _ESC + "1").replace("\x00", _ESC + "0")


def _unescape(text: str) -> str:
    head, *rest = text.split(_ESC)
    return head + "".join(("\x00" if part[0] == "0" else _ESC) + part[1:] for part in rest)


class _TextDumper(Dumper):
    oid = psycopg.postgres.types["text"].oid

    def dump(self, obj: str) -> Buffer:
        if "\x00" in obj or _ESC in obj:
            obj = _escape(obj)
        return obj.encode()


class _TextBinaryDumper(_TextDumper):
    format = Format.BINARY  # the same bytes: UTF-8 is text's binary form too


class _TextLoader(Loader):
    def load(self, data: Buffer) -> str:
        text = bytes(data).decode()
        return _unescape(text) if _ESC in text else text


def register_text_adapters(conn: psycopg.Connection[Any]) -> None:
    conn.adapters.register_dumper(str, _TextDumper)
    conn.adapters.register_dumper(str, _TextBinaryDumper)
    conn.adapters.register_loader("text", _TextLoader)


# -- partitions ------------------------------------------------------------------------------


def days(table: str, timestamps: Iterable[float]) -> set[tuple[str, int]]:
    """The ``(table, day)`` partitions some timestamps fall in."""
    needed = set()
    for day in {ts // DAY for ts in timestamps}:
        if not _DAY_MIN <= day <= _DAY_MAX:  # NaN fails too
            raise MetadataError(
                f"a {table} record has timestamp {day * DAY!r}, outside the years 1-9999",
                hint="give records a POSIX timestamp in seconds (time.time())",
            )
        needed.add((table, int(day)))
    return needed


def partition_name(table: str, day: int) -> str:
    """The name of the partition of ``table`` holding day ``day`` (days since 1970, UTC)."""
    return f"{table}_p{_EPOCH + datetime.timedelta(days=day):%Y%m%d}"


def partition_day(table: str, name: str) -> int | None:
    """The day a partition of ``table`` holds; None for a table this store did not name."""
    match = _PARTITION_NAME.fullmatch(name)
    if match is None or match[1] != table:
        return None
    return (datetime.datetime.strptime(match[2], "%Y%m%d").date() - _EPOCH).days


def create_partition(table: str, day: int) -> sql.Composed:
    return sql.SQL(_CREATE_PARTITION).format(
        sql.Identifier(partition_name(table, day)),
        sql.Identifier(table),
        sql.Literal(day * DAY),
        sql.Literal((day + 1) * DAY),
    )


# The audit log: seq from an identity, and UPDATE and DELETE refused (append-only).
AUDIT_STEPS = [
    "ALTER TABLE audit ALTER COLUMN seq ADD GENERATED BY DEFAULT AS IDENTITY",
    "CREATE FUNCTION klaw_audit_append_only() RETURNS trigger LANGUAGE plpgsql AS "
    "$$ BEGIN RAISE EXCEPTION 'the audit log is append-only'; END $$",
    "CREATE TRIGGER audit_append_only BEFORE UPDATE OR DELETE ON audit "
    "FOR EACH ROW EXECUTE FUNCTION klaw_audit_append_only()",
]


def postgres_steps(version: int, *, timescale: bool) -> list[str]:
    """What Postgres runs after the portable statements of migration ``version``."""
    if version == 7:
        return AUDIT_STEPS
    if version != 1:
        return []
    steps = [
        # prev: the seq the last writer found, checked by ADVANCE_HEADS
        "CREATE TABLE event_heads (run_id TEXT PRIMARY KEY, seq BIGINT NOT NULL, prev BIGINT)",
        "ALTER TABLE events DROP CONSTRAINT events_pkey",
        # Sort and compare these as SQLite does (bytewise), whatever the database's locale.
        *(
            f'ALTER TABLE {table} ALTER COLUMN {column} TYPE TEXT COLLATE "C"'
            for table, column in _ORDERED_BY
        ),
    ]
    if timescale:
        return [
            *steps,
            "CREATE FUNCTION klaw_epoch_us(ts DOUBLE PRECISION) RETURNS BIGINT "
            "LANGUAGE SQL IMMUTABLE AS 'SELECT floor(ts * 1000000)::BIGINT'",
            PARTITIONED["events"],
            *(
                f"SELECT create_hypertable('{table}', 'ts', chunk_time_interval => "
                f"{int(DAY) * 1_000_000}, time_partitioning_func => 'klaw_epoch_us')"
                for table in PARTITIONED
            ),
        ]
    for table, index in PARTITIONED.items():  # the tables are empty: recreate them partitioned
        steps += [
            f"ALTER TABLE {table} RENAME TO {table}_unpartitioned",
            f"CREATE TABLE {table} (LIKE {table}_unpartitioned) PARTITION BY RANGE (ts)",
            f"DROP TABLE {table}_unpartitioned",
            index,
        ]
    return steps
