"""G1: reading a page of a run's log as the log grows (10, 10,000 and 1,000,000 lines).

A run's log lines are committed to a SQLite metadata store (``MetadataStore.commit``, batches
of 10,000). Two pages of 100 lines are read, as the web UI and ``GET /runs/{id}/logs`` read
them: the last lines (``tail``) and the lines after a cursor in the middle. The floor is the
same query by hand with ``sqlite3`` on the same file (the store's own index), so the ratio is
Klaw's cost over the database's; the figure must be flat in the log's size.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

from bench.report import Basis, Row, Target, Unit
from bench.timing import Case, interleaved
from klaw.metadata.records import Batch, LogRecord, RunRecord
from klaw.metadata.sqlite import SQLiteMetadataStore
from klaw.states import RunState

if TYPE_CHECKING:
    from bench.workloads import Settings

SIZES = (10, 10_000, 1_000_000)
PAGE = 100
BATCH = 10_000
TARGET = Target(2.0, Basis.RATIO)
FIELDS = "run_id, stage, attempt, stream, seq, ts, level, line"


def _filled(path: str, lines: int) -> SQLiteMetadataStore:
    store = SQLiteMetadataStore(path)
    store.migrate()
    run = RunRecord(
        run_id="g1",
        workflow="w",
        state=RunState.RUNNING,
        created_at=0.0,
        params={},
        owner_host="h",
        owner_pid=1,
    )
    store.create_run(run)
    for start in range(0, lines, BATCH):
        logs = [
            LogRecord(
                run_id="g1",
                stage=f"s{i % 7}",
                attempt=1,
                stream="stdout",
                ts=float(i),
                line=f"line {i} of a long log",
            )
            for i in range(start, min(lines, start + BATCH))
        ]
        store.commit(Batch(logs=logs))
    return store


def log_pages(settings: Settings) -> list[Row]:
    rows: list[Row] = []
    for size in SIZES:
        rows += _measure(str(settings.home() / "klaw.db"), size, settings.times(50))
    return rows


def _measure(path: str, size: int, repeat: int) -> list[Row]:
    store = _filled(path, size)
    conn = sqlite3.connect(path)
    middle = size // 2
    tail_sql = f"SELECT {FIELDS} FROM logs WHERE run_id = ? ORDER BY seq DESC LIMIT {PAGE}"
    after_sql = f"SELECT {FIELDS} FROM logs WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT {PAGE}"
    cases = {
        "tail": Case(lambda: store.read_logs("g1", limit=PAGE, tail=True)),
        "tail floor": Case(lambda: conn.execute(tail_sql, ("g1",)).fetchall()),
        "after": Case(lambda: store.read_logs("g1", after_seq=middle, limit=PAGE)),
        "after floor": Case(lambda: conn.execute(after_sql, ("g1", middle)).fetchall()),
    }
    try:
        found = interleaved(cases, repeat)
    finally:
        conn.close()
        store.close()
    return [
        Row(
            "G1",
            f"log page, {label}, {size:,}-line log",
            Unit.SECONDS,
            found[name].median,
            found[f"{name} floor"].median,
            "sqlite3 by hand",
            TARGET,
        )
        for name, label in (("tail", "last 100 lines"), ("after", "100 lines after a cursor"))
    ]
