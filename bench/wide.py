"""W6: a 100,000-stage fan-out of no-ops (one root, 99,998 no-ops, one join), run by Klaw or as
tasks of a ``ThreadPoolExecutor``, each pass in a process of its own so that its peak RSS
belongs to it:

    python -m bench.wide {klaw,pool} [--stages N] [--workers N]

prints one JSON object: the pass's wall time, the process's peak RSS, and its RSS just before
the work was described (after imports; for Klaw, after a one-stage warm-up run in another home),
so that the difference is what the stages cost: for Klaw their definitions, plan, run state
and records on their way to SQLite; for the pool its futures.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor, wait

from bench import shapes

STAGES = 100_000


def _rss() -> int:
    """Current resident set size of this process, in bytes (Linux ``/proc``)."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize()


def _peak() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux


def klaw_pass(stages: int, workers: int) -> dict[str, float]:
    import klaw
    from bench import workflows

    scratch = tempfile.mkdtemp(prefix="klaw-w6-")
    try:
        klaw.run(workflows.single(), home=f"{scratch}/warm", max_workers=workers)
        baseline = _rss()
        wf = workflows.fanout(stages - 2)
        start = time.perf_counter()
        record = klaw.run(wf, home=f"{scratch}/home", max_workers=workers)
        seconds = time.perf_counter() - start
        if record.state.value != "succeeded":
            raise RuntimeError(f"W6 ended {record.state.value}: {record.error}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return {"seconds": seconds, "peak_rss": _peak(), "baseline_rss": baseline}


def pool_pass(stages: int, workers: int) -> dict[str, float]:
    with ThreadPoolExecutor(workers) as pool:
        pool.submit(shapes.root).result()  # the threads exist before the baseline
        baseline = _rss()
        start = time.perf_counter()
        value = pool.submit(shapes.root).result()
        done, _ = wait([pool.submit(shapes.noop, value) for _ in range(stages - 2)])
        for future in done:
            future.result()
        pool.submit(shapes.join).result()
        seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_rss": _peak(), "baseline_rss": baseline}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.wide")
    parser.add_argument("runner", choices=["klaw", "pool"])
    parser.add_argument("--stages", type=int, default=STAGES)
    parser.add_argument("--workers", type=int, default=6)
    args = parser.parse_args()
    run = klaw_pass if args.runner == "klaw" else pool_pass
    print(json.dumps(run(args.stages, args.workers)))


if __name__ == "__main__":
    main()
