"""A1, A2 and A3: asset commits, next to writing the same Parquet by hand.

- A1: a workflow of one root and ``FANOUT`` asset stages, each committing a 3-row table to the
  lake (``klaw.run`` in this process, metadata in SQLite); the marginal time per asset (the run
  minus a one-asset run, over ``FANOUT - 1``). Floors: the same tables written with
  ``pyarrow.parquet.write_table`` and fsynced, one after another, and on 4 threads.
- A2: a lake that keeps growing: the time of one commit, of listing every asset, of showing an
  asset (its latest 20 snapshots) and of reading a past snapshot, at each of
  ``A2_CHECKPOINTS`` prior snapshots (50 assets, committed round-robin); the figure is the last
  checkpoint's and the floor the first's, so the ratio is how much the cost grew with history.
- A3: a 1,000,000-row asset committed, next to ``write_table`` + fsync of the same table.
"""

from __future__ import annotations

import os
import statistics
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa
import pyarrow.parquet as pq

import klaw
from bench.report import Basis, Row, Target, Unit
from bench.timing import Case, interleaved

if TYPE_CHECKING:
    from bench.workloads import Settings

FANOUT = 500
A2_CHECKPOINTS = (10, 1_000, 10_000)
A2_ASSETS = 50
A2_SAMPLES = 25  # timed operations of each kind at each checkpoint
GROWTH_TARGET = Target(1.5, Basis.RATIO)


def _small() -> pa.Table:
    return pa.table({"id": [1, 2, 3], "name": ["a", "b", "c"]})


def _root() -> int:
    return 1


def _leaf(x: int) -> pa.Table:
    return _small()


def _fanout(width: int) -> klaw.Workflow:
    leaves = [klaw.asset(name=f"asset_{i:04d}", inputs={"x": "root"})(_leaf) for i in range(width)]
    return klaw.workflow(f"assets{width}", [klaw.stage(name="root")(_root), *leaves])


def _write_by_hand(
    folder: Path, names: list[str], threads: int, table: pa.Table | None = None
) -> None:
    table = _small() if table is None else table

    def write(name: str) -> None:
        path = folder / f"{name}.parquet"
        pq.write_table(table, path)
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    if threads == 1:
        for name in names:
            write(name)
        return
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(write, names))


def fan_out(settings: Settings) -> list[Row]:
    """A1: the marginal cost of one more small asset in a run, next to writing its Parquet."""
    wide, one = _fanout(FANOUT), _fanout(1)
    names = [f"asset_{i:04d}" for i in range(FANOUT)]
    homes: list[Path] = []

    def fresh() -> None:
        homes.append(settings.home())

    def run(wf: klaw.Workflow) -> None:
        record = klaw.run(wf, home=homes[-1], max_workers=settings.workers)
        if record.state.value != "succeeded":
            raise RuntimeError(f"{wf.name} ended {record.state.value}: {record.error}")

    folders: list[Path] = []

    def folder() -> None:
        folders.append(Path(tempfile.mkdtemp(prefix="parquet-", dir=settings.scratch)))

    samples = interleaved(
        {
            "wide": Case(lambda: run(wide), fresh),
            "one": Case(lambda: run(one), fresh),
            "loop": Case(lambda: _write_by_hand(folders[-1], names, 1), folder),
            "threads": Case(lambda: _write_by_hand(folders[-1], names, 4), folder),
        },
        settings.times(2),
        warmup=1,
    )
    per_asset = (samples["wide"].median - samples["one"].median) / (FANOUT - 1)
    loop = samples["loop"].median / FANOUT
    threads = samples["threads"].median / FANOUT
    label = f"{FANOUT} small assets in one run, per asset (marginal)"
    return [
        Row("A1", label, Unit.SECONDS, per_asset, loop, "write_table+fsync loop"),
        Row(
            "A1",
            "  same, against 4 writer threads",
            Unit.SECONDS,
            per_asset,
            threads,
            "write_table+fsync, 4 threads",
            Target(2.0, Basis.RATIO),
        ),
        Row("A1", "  the whole run", Unit.SECONDS, samples["wide"].median),
    ]


def _timed(fn: object) -> float:
    start = time.perf_counter()
    fn()  # type: ignore[operator]
    return time.perf_counter() - start


def history(settings: Settings) -> list[Row]:
    """A2: commit, assets list, assets show and a time-travel read as the lake's history grows."""
    from klaw.storage.ducklake import DuckLakeAssetStore

    folder = Path(tempfile.mkdtemp(prefix="lake-", dir=settings.scratch))
    table = _small()
    store = DuckLakeAssetStore(folder / "lake.sqlite", folder / "lake")
    made = 0
    first_of: dict[str, int] = {}
    figures: dict[int, dict[str, float]] = {}

    def commit() -> None:
        nonlocal made
        key = f"asset_{made % A2_ASSETS:02d}"
        snapshot = store.commit(key, table, run_id="bench", stage=key, attempt=1)
        first_of.setdefault(key, snapshot)
        made += 1

    try:
        for checkpoint in A2_CHECKPOINTS:
            while made < checkpoint:
                commit()
            timings: dict[str, list[float]] = {"commit": [], "list": [], "show": [], "read": []}
            for i in range(A2_SAMPLES):
                timings["commit"].append(_timed(commit))
                timings["list"].append(_timed(store.assets))
                key = f"asset_{i % A2_ASSETS:02d}"
                timings["show"].append(_timed(lambda k=key: store.snapshots(k, limit=20)))
                snap = first_of[key]
                timings["read"].append(_timed(lambda k=key, s=snap: store.read(k, s)))
            figures[checkpoint] = {k: statistics.median(v) for k, v in timings.items()}
    finally:
        store.close()
    first, last = A2_CHECKPOINTS[0], A2_CHECKPOINTS[-1]
    labels = {
        "commit": "commit of a 3-row asset",
        "list": f"assets list ({A2_ASSETS} assets)",
        "show": "assets show (latest 20 snapshots)",
        "read": "read of the asset's first snapshot",
    }
    rows = []
    for kind, text in labels.items():
        middle = ", ".join(f"{c:,}: {figures[c][kind] * 1e3:.1f} ms" for c in A2_CHECKPOINTS)
        rows.append(
            Row(
                "A2",
                f"{text}, at {last:,} snapshots",
                Unit.SECONDS,
                figures[last][kind],
                figures[first][kind],
                f"at {first:,}",
                GROWTH_TARGET,
                notes={"checkpoints": middle},
            )
        )
    return rows


def large(settings: Settings) -> list[Row]:
    """A3: committing a 1,000,000-row asset, next to writing its Parquet by hand (+ fsync)."""
    import numpy as np

    from klaw.storage.ducklake import DuckLakeAssetStore

    n = 1_000_000
    table = pa.table(
        {
            "id": pa.array(np.arange(n)),
            "value": pa.array(np.random.default_rng(7).random(n)),
            "kind": pa.array([f"k{i % 100}" for i in range(n)]),
        }
    )
    folder = Path(tempfile.mkdtemp(prefix="lake-", dir=settings.scratch))
    store = DuckLakeAssetStore(folder / "lake.sqlite", folder / "lake")
    by_hand = folder / "by-hand"
    by_hand.mkdir()

    def commit() -> None:
        store.commit("big", table, run_id="bench", stage="big", attempt=1)

    def write() -> None:
        _write_by_hand(by_hand, ["big"], 1, table)

    try:
        samples = interleaved({"klaw": Case(commit), "hand": Case(write)}, settings.times(5))
    finally:
        store.close()
    return [
        Row(
            "A3",
            "commit of a 1,000,000-row asset",
            Unit.SECONDS,
            samples["klaw"].median,
            samples["hand"].median,
            "write_table+fsync",
            Target(1.2, Basis.RATIO),
        )
    ]
