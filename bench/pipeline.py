"""W3: an 8-stage pipeline over a 1,000,000-row table (pyarrow compute and Polars), run by Klaw
or called in a loop. Each measurement runs in its own process so that peak RSS belongs to it:

    python -m bench.pipeline time [--repeat N] [--rows N]   # Klaw and the loop, interleaved
    python -m bench.pipeline memory {klaw,loop} [--rows N]  # one pass

prints one JSON object: the timed samples per runner, or the peak RSS of the process and its
RSS just before the pass (for Klaw, after a one-stage warm-up run, so that the difference is
what the data costs). ``--rows`` changes the table's size (default 1,000,000).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
from collections.abc import Callable
from typing import Any

import polars as pl
import pyarrow as pa
import pyarrow.compute as pc

ROWS = 1_000_000
ROWS_VARIABLE = "BENCH_ROWS"  # how --rows reaches the source stage, which takes no arguments


# -- the eight stages: parameter names are the stages they read --------------------------------


def events() -> pa.Table:
    """The source: ``ROWS`` rows of ids, keys, values, quantities and a region string."""
    n = int(os.environ.get(ROWS_VARIABLE, ROWS))
    frame = pl.DataFrame({"id": pl.int_range(0, n, eager=True)}).with_columns(
        key=pl.col("id") * 7919 % 1000,
        value=(pl.col("id") * 104729 % 10007).cast(pl.Float64) / 100.0,
        qty=pl.col("id") % 17 + 1,
        region=pl.format("r{}", pl.col("id") % 8),
    )
    return frame.to_arrow()


def priced(events: pa.Table) -> pa.Table:
    return events.append_column("amount", pc.multiply(events["value"], events["qty"]))


def large(priced: pa.Table) -> pa.Table:
    return priced.filter(pc.greater(priced["amount"], 300.0))


def key_stats(events: pa.Table) -> pa.Table:
    return events.group_by("key").aggregate([("value", "mean"), ("qty", "sum")])


def joined(large: pa.Table, key_stats: pa.Table) -> pl.DataFrame:
    left, right = pl.DataFrame(large), pl.DataFrame(key_stats)
    return left.join(right, on="key")


def scored(joined: pl.DataFrame) -> pl.DataFrame:
    return joined.with_columns(score=pl.col("amount") / pl.col("value_mean"))


def ranked(scored: pl.DataFrame) -> pl.DataFrame:
    return scored.sort("score", descending=True)


def summary(ranked: pl.DataFrame) -> pl.DataFrame:
    return ranked.group_by("region").agg(
        pl.len().alias("rows"), pl.col("score").sum(), pl.col("amount").max()
    )


FUNCTIONS: tuple[Callable[..., Any], ...] = (
    events,
    priced,
    large,
    key_stats,
    joined,
    scored,
    ranked,
    summary,
)


# -- the two ways of running them ---------------------------------------------------------------


def klaw_runner(base: str, workers: int | None) -> Callable[[], None]:
    """A fresh home under ``base`` for every run, metadata recorded as always."""
    import klaw

    wf = klaw.workflow("pipeline", [klaw.stage(fn) for fn in FUNCTIONS])

    def run() -> None:
        home = tempfile.mkdtemp(dir=base)
        record = klaw.run(wf, home=home, max_workers=workers)
        if record.state.value != "succeeded":
            raise RuntimeError(f"W3 run ended {record.state.value}: {record.error}")

    return run


def ping() -> int:
    return 1


def klaw_warmup(base: str) -> None:
    """A one-stage run, so that what any first run loads (the rest of Klaw, SQLite, worker
    threads) is in place before the baseline is taken."""
    import klaw

    klaw.run(klaw.workflow("ping", [klaw.stage(ping)]), home=tempfile.mkdtemp(dir=base))


def loop_runner() -> Callable[[], None]:
    from bench.floors import pipeline_loop

    return lambda: pipeline_loop(FUNCTIONS)


def _rss() -> int:
    """This process's resident set size now, in bytes."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except OSError:  # not Linux
        import psutil  # type: ignore[import-untyped]

        return int(psutil.Process().memory_info().rss)


def _peak_rss() -> int:
    """The most this process has ever had resident, in bytes."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # bytes on macOS, KiB elsewhere


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.pipeline")
    commands = parser.add_subparsers(dest="mode", required=True)
    timed = commands.add_parser("time", help="Klaw and the loop, timed interleaved")
    timed.add_argument("--repeat", type=int, default=5)
    memory = commands.add_parser("memory", help="peak RSS of one pass")
    memory.add_argument("runner", choices=["klaw", "loop"])
    for sub in (timed, memory):
        sub.add_argument("--workers", type=int, default=None)
        sub.add_argument("--rows", type=int, default=ROWS)
    args = parser.parse_args(argv)
    os.environ[ROWS_VARIABLE] = str(args.rows)

    base = tempfile.mkdtemp(prefix="klaw-bench-w3-")
    try:
        if args.mode == "time":
            from bench.timing import Case, interleaved

            samples = interleaved(
                {"klaw": Case(klaw_runner(base, args.workers)), "loop": Case(loop_runner())},
                args.repeat,
            )
            out: dict[str, Any] = {name: list(s.seconds) for name, s in samples.items()}
        else:
            run = klaw_runner(base, args.workers) if args.runner == "klaw" else loop_runner()
            started = _rss()
            if args.runner == "klaw":
                klaw_warmup(base)
            baseline = _rss()
            run()
            peak = _peak_rss()
            out = {"peak_rss": peak, "baseline_rss": baseline, "start_rss": started}
    finally:
        shutil.rmtree(base, ignore_errors=True)
    json.dump(out, sys.stdout)


if __name__ == "__main__":
    main()
