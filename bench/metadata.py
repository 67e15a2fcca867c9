"""M: metadata write throughput, SQLite and Postgres, each next to its driver used by hand.

Two batch shapes, both committed by ``MetadataStore.commit`` as one transaction:

- small: one attempt update and one event, what the runner writes per stage transition; each
  sample is ``SMALL_COMMITS`` commits in a row, reported per commit;
- large: ``LARGE_ROWS`` events of one run (a burst of transitions, or a backlog the recorder
  merged), reported as rows/s.

The floor writes the same rows into the same tables of the same database, each batch in one
transaction: ``sqlite3`` ``executemany`` on a connection with the store's own settings (WAL,
``synchronous=NORMAL``), or ``psycopg`` ``executemany``. Records and floor rows are built before
the timing. Postgres runs in a schema of its own in ``KLAW_BENCH_POSTGRES_URL`` (default: the
tests' ``postgresql://postgres@127.0.0.1:5432/test``), dropped afterwards; when that server
cannot be reached the Postgres rows are skipped with a note.
"""

from __future__ import annotations

import itertools
import os
import sqlite3
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.report import Row, Unit
from bench.timing import Case, interleaved
from klaw.metadata import rows
from klaw.metadata.records import AttemptRecord, Batch, EventRecord
from klaw.metadata.sqlite import SQLiteMetadataStore
from klaw.metadata.store import MetadataStore
from klaw.states import StageState

if TYPE_CHECKING:
    from bench.workloads import Settings

SMALL_COMMITS = 200
LARGE_ROWS = 1000
LARGE_COMMITS = 5
POSTGRES_URL = os.environ.get(
    "KLAW_BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
)

_runs = itertools.count(1)


def _run_id(prefix: str) -> str:
    return f"{prefix}-{next(_runs):06d}-{uuid.uuid4().hex[:8]}"


def _small(run_id: str, i: int) -> Batch:
    """A stage transition as the runner records it: the attempt's new state and its event."""
    now = time.time()
    stage = f"stage_{i:04d}"
    attempt = AttemptRecord(
        run_id=run_id,
        stage=stage,
        attempt=1,
        state=StageState.SUCCEEDED,
        token="t" * 16,
        queued_at=now - 0.002,
        started_at=now - 0.001,
        ended_at=now,
    )
    event = EventRecord(
        run_id=run_id,
        kind="stage",
        ts=now,
        stage=stage,
        attempt=1,
        state=StageState.SUCCEEDED.value,
        data={"duration_s": 0.001},
    )
    return Batch(attempts=[attempt], events=[event])


def _large(run_id: str) -> Batch:
    now = time.time()
    return Batch(
        events=[
            EventRecord(
                run_id=run_id,
                kind="stage",
                ts=now,
                stage=f"stage_{i:04d}",
                attempt=1,
                state=StageState.RUNNING.value,
                data={"worker": i % 8},
            )
            for i in range(LARGE_ROWS)
        ]
    )


def _floor_rows(batches: list[Batch]) -> list[tuple[list[Any], list[Any]]]:
    """Each batch's attempt and event rows as the store writes them, events numbered per run
    from 1 (as the store numbers them)."""
    seqs: dict[str, int] = {}
    prepared: list[tuple[list[Any], list[Any]]] = []
    for batch in batches:
        for event in batch.events:
            event.seq = seqs[event.run_id] = seqs.get(event.run_id, 0) + 1
        attempts = [rows.attempt_row(a) for a in batch.attempts]
        prepared.append((attempts, [rows.event_row(e) for e in batch.events]))
    return prepared


@dataclass(slots=True)
class _Workload:
    """Batches made in ``setup`` (outside the timing) and written by ``run``."""

    make: Callable[[], list[Batch]]
    batches: list[Batch] = field(default_factory=list)

    def setup(self) -> None:
        self.batches = self.make()


def _small_batches() -> list[Batch]:
    run_id = _run_id("small")
    return [_small(run_id, i) for i in range(SMALL_COMMITS)]


def _large_batches() -> list[Batch]:
    return [_large(_run_id("large")) for _ in range(LARGE_COMMITS)]


def _klaw_case(store: MetadataStore, make: Callable[[], list[Batch]]) -> Case:
    work = _Workload(make)

    def run() -> None:
        for batch in work.batches:
            store.commit(batch)

    return Case(run, work.setup)


def _floor_case(
    write: Callable[[list[Any], list[Any]], None], make: Callable[[], list[Batch]]
) -> Case:
    prepared: list[tuple[list[Any], list[Any]]] = []

    def setup() -> None:
        prepared[:] = _floor_rows(make())

    def run() -> None:
        for attempts, events in prepared:
            write(attempts, events)

    return Case(run, setup)


def _rows(
    backend: str,
    klaw_commit: Callable[[Callable[[], list[Batch]]], Case],
    floor_commit: Callable[[Callable[[], list[Batch]]], Case],
    floor_label: str,
    repeat: int,
) -> list[Row]:
    samples = interleaved(
        {
            "small": klaw_commit(_small_batches),
            "small_floor": floor_commit(_small_batches),
            "large": klaw_commit(_large_batches),
            "large_floor": floor_commit(_large_batches),
        },
        repeat,
    )
    per_commit = samples["small"].median / SMALL_COMMITS
    floor_per_commit = samples["small_floor"].median / SMALL_COMMITS
    rate = LARGE_ROWS * LARGE_COMMITS / samples["large"].median
    floor_rate = LARGE_ROWS * LARGE_COMMITS / samples["large_floor"].median
    return [
        Row(
            "M",
            f"{backend}: commit of 1 attempt + 1 event",
            Unit.SECONDS,
            per_commit,
            floor_per_commit,
            floor_label,
            notes={"commits_per_s": 1 / per_commit, "floor_commits_per_s": 1 / floor_per_commit},
        ),
        Row(
            "M",
            f"{backend}: commits of {LARGE_ROWS:,} events, rows/s",
            Unit.ROWS_PER_SECOND,
            rate,
            floor_rate,
            floor_label,
        ),
    ]


# -- SQLite ------------------------------------------------------------------------------------


def sqlite_rows(scratch: Path, repeat: int) -> list[Row]:
    path = scratch / "metadata-bench.db"
    store = SQLiteMetadataStore(path)
    store.migrate()
    conn = sqlite3.connect(path, timeout=10.0, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = NORMAL")  # what the store sets

    def write(attempts: list[Any], events: list[Any]) -> None:
        conn.execute("BEGIN IMMEDIATE")
        if attempts:
            conn.executemany(rows.UPSERT_ATTEMPT, attempts)
        conn.executemany(rows.INSERT_EVENT, events)
        conn.execute("COMMIT")

    try:
        return _rows(
            "SQLite",
            lambda make: _klaw_case(store, make),
            lambda make: _floor_case(write, make),
            "sqlite3 executemany",
            repeat,
        )
    finally:
        conn.close()
        store.close()


# -- Postgres ----------------------------------------------------------------------------------


@contextmanager
def _postgres_schema(url: str) -> Iterator[str | None]:
    """The URL of a fresh schema (dropped afterwards), or None when Postgres is out of reach."""
    try:
        import psycopg
        from psycopg import sql
    except ImportError:
        print("M: psycopg is not installed; the Postgres rows are skipped", file=sys.stderr)
        yield None
        return
    try:
        admin = psycopg.connect(url, autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as exc:
        reason = " ".join(str(exc).split())
        print(
            f"M: Postgres is not reachable at {url} ({reason}); the Postgres rows are skipped"
            " (set KLAW_BENCH_POSTGRES_URL)",
            file=sys.stderr,
        )
        yield None
        return
    schema = f"klaw_bench_{uuid.uuid4().hex[:12]}"
    try:
        admin.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        yield f"{url}{'&' if '?' in url else '?'}options=-csearch_path%3D{schema}"
    finally:
        admin.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        admin.close()


def postgres_rows(repeat: int) -> list[Row]:
    with _postgres_schema(POSTGRES_URL) as url:
        if url is None:
            return []
        import psycopg

        from klaw.metadata.postgres import PostgresMetadataStore

        store = PostgresMetadataStore(url)
        store.migrate()
        store.commit(_small(_run_id("warm"), 0))  # today's event partition exists from here on
        conn = psycopg.connect(url, autocommit=True)  # as the store's: BEGIN ... COMMIT below
        upsert = rows.UPSERT_ATTEMPT.replace("?", "%s")
        insert = rows.INSERT_EVENT.replace("?", "%s")

        def write(attempts: list[Any], events: list[Any]) -> None:
            with conn.transaction(), conn.cursor() as cur:
                if attempts:
                    cur.executemany(upsert, attempts)
                cur.executemany(insert, events)

        try:
            return _rows(
                "Postgres",
                lambda make: _klaw_case(store, make),
                lambda make: _floor_case(write, make),
                "psycopg executemany",
                repeat,
            )
        finally:
            conn.close()
            store.close()


def write_throughput(settings: Settings) -> list[Row]:
    """The SQLite rows, then the Postgres rows (none when Postgres is out of reach)."""
    repeat = settings.times(7)
    return sqlite_rows(settings.scratch, repeat) + postgres_rows(repeat)
