"""``python -m bench`` (``make bench``): run the workloads, print one table.

python -m bench [--only W1,W3] [--repeat N] [--workers N] [--json FILE|-]
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

from bench.report import Row, table, to_json
from bench.workloads import WORKLOADS, Settings


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench",
        description="Klaw's benchmarks, each next to its floor measured in the same run.",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated workloads to run (default: all of "
        + ", ".join(w.key for w in WORKLOADS)
        + ")",
    )
    parser.add_argument(
        "--repeat", type=int, default=None, help="timed samples per figure (default: per workload)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help="worker threads for Klaw and the thread-pool floors (default: Klaw's default)",
    )
    parser.add_argument(
        "--json", metavar="FILE", default=None, help="also write the results as JSON ('-': stdout)"
    )
    args = parser.parse_args(argv)
    if args.repeat is not None and args.repeat < 1:
        parser.error("--repeat must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = _arguments(argv)
    known = {w.key: w for w in WORKLOADS}
    chosen = [key.strip().upper() for key in args.only.split(",") if key.strip()]
    unknown = [key for key in chosen if key not in known]
    if unknown:
        print(
            f"unknown workload(s): {', '.join(unknown)}; known: {', '.join(known)}", file=sys.stderr
        )
        return 2
    selected = [known[k] for k in chosen] if chosen else list(WORKLOADS)

    from klaw.execution.local import default_workers

    workers = args.workers or default_workers()
    scratch = Path(tempfile.mkdtemp(prefix="klaw-bench-"))
    settings = Settings(scratch=scratch, repeat=args.repeat, workers=workers)
    rows: list[Row] = []
    durations: dict[str, float] = {}
    started = time.perf_counter()
    try:
        for workload in selected:
            print(f"{workload.key}: {workload.title} ...", file=sys.stderr, flush=True)
            t0 = time.perf_counter()
            rows.extend(workload.run(settings))
            durations[workload.key] = time.perf_counter() - t0
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    total = time.perf_counter() - started

    load = os.getloadavg()
    out = sys.stderr if args.json == "-" else sys.stdout  # keep stdout pure JSON then
    print(file=out)
    print(table(rows), file=out)
    print(file=out)
    print(
        f"{platform.python_implementation()} {platform.python_version()}, "
        f"{os.cpu_count()} CPUs, {workers} workers, load average {load[0]:.1f} (timings on a "
        f"busy machine stretch); medians; benchmark took {total:.0f} s.",
        file=out,
    )
    if args.json is not None:
        meta = {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "workers": workers,
            "load_average": load,
            "repeat": args.repeat,
            "workload_seconds": durations,
        }
        text = to_json(rows, meta)
        if args.json == "-":
            print(text)
        else:
            Path(args.json).write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
