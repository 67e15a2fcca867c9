"""Where W1's and W2's per-stage time goes: the same runs with parts of Klaw swapped out.

    python -m bench.breakdown [--only W1,W2] [--repeat N]

Not part of ``make bench`` (it reaches into Klaw's internals: the ``Runner``, the thread
executor, the SQLite store). Each line drives the same plan; the differences between lines
attribute the cost:

- ``klaw.run`` (fresh home) - ``Runner, SQLite file``: opening, migrating and closing a new
  home, planning, creating the run record;
- ``SQLite file`` - ``SQLite :memory:``: the metadata file's I/O (WAL writes, locks);
- ``SQLite :memory:`` - ``no-op metadata``: SQL execution and building the rows;
- ``no-op metadata`` - ``inline executor``: handing each stage to a worker thread and back;
- ``inline executor``: the runner's own bookkeeping plus ``invoke`` around each call.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import klaw
from bench import workflows
from bench.timing import Case, interleaved
from klaw.execution.invoke import invoke
from klaw.execution.local import ThreadExecutor, default_workers
from klaw.execution.runner import Runner
from klaw.execution.task import Task
from klaw.execution.values import ValueStore
from klaw.graph.plan import Plan
from klaw.ids import new_run_id
from klaw.metadata.records import Batch, RunRecord
from klaw.metadata.sqlite import SQLiteMetadataStore
from klaw.states import RunState


class NoMetadata:
    """A metadata writer that writes nothing (counts the batches it was given)."""

    def __init__(self) -> None:
        self.commits = 0

    def migrate(self) -> None:
        pass

    def create_run(self, run: RunRecord, *, max_active: int | None = None) -> None:
        pass

    def commit(self, batch: Batch) -> None:
        self.commits += 1

    def request_cancel(self, run_id: str) -> RunRecord:
        raise NotImplementedError

    def close(self) -> None:
        pass


class InlineExecutor:
    """Runs each attempt on the runner's own thread, inside ``submit``: no thread handoff."""

    def __init__(self, capacity: int) -> None:
        self._capacity = capacity
        self._deliver: Callable[[Any], None] | None = None
        self._values: ValueStore | None = None

    @property
    def capacity(self) -> int:
        return self._capacity

    def open(self, deliver: Callable[[Any], None], values: ValueStore) -> None:
        self._deliver, self._values = deliver, values

    def submit(self, task: Task) -> None:
        assert self._deliver is not None and self._values is not None
        self._deliver(invoke(task, self._values, _no_assets))

    def stop(self, task: Task) -> None:
        pass

    def abandon(self, task: Task) -> None:
        pass

    def close(self) -> None:
        pass


def _no_assets() -> Any:
    raise RuntimeError("the breakdown workflows have no assets")


def _runner_case(plan: Plan, scratch: Path, workers: int, metadata: str, executor: str) -> Case:
    """``Runner.execute`` alone: the store is opened and the run created outside the timing."""
    ready: list[tuple[Runner, Any]] = []

    def setup() -> None:
        store: Any
        if metadata == "none":
            store = NoMetadata()
        else:
            where = ":memory:" if metadata == "memory" else tempfile.mkdtemp(dir=scratch)
            store = SQLiteMetadataStore(where if where == ":memory:" else Path(where) / "klaw.db")
            store.migrate()
        run = RunRecord(
            run_id=new_run_id(),
            workflow=plan.graph.name,
            state=RunState.QUEUED,
            created_at=time.time(),
            owner_host=socket.gethostname(),
            owner_pid=os.getpid(),
        )
        store.create_run(run)
        chosen: Any = (
            InlineExecutor(workers) if executor == "inline" else ThreadExecutor(_no_assets, workers)
        )
        ready.append((Runner(plan, run, executor=chosen, metadata=store), store))

    def run() -> None:
        runner, store = ready.pop()
        record = runner.execute()
        store.close()
        if record.state is not RunState.SUCCEEDED:
            raise RuntimeError(f"breakdown run ended {record.state.value}")

    return Case(run, setup)


def _klaw_case(wf: klaw.Workflow, scratch: Path, workers: int, *, fresh: bool) -> Case:
    homes: list[str] = []

    def setup() -> None:
        if fresh or not homes:
            homes.append(tempfile.mkdtemp(dir=scratch))

    return Case(lambda: klaw.run(wf, home=homes[-1], max_workers=workers), setup)


def breakdown(wf: klaw.Workflow, stages: int, repeat: int, workers: int) -> list[str]:
    scratch = Path(tempfile.mkdtemp(prefix="klaw-breakdown-"))
    plan = klaw.plan(wf)
    try:
        cases = {
            "klaw.run, fresh home": _klaw_case(wf, scratch, workers, fresh=True),
            "klaw.run, home reused": _klaw_case(wf, scratch, workers, fresh=False),
            "Runner, SQLite file, threads": _runner_case(plan, scratch, workers, "file", "thread"),
            "Runner, SQLite :memory:, threads": _runner_case(
                plan, scratch, workers, "memory", "thread"
            ),
            "Runner, no-op metadata, threads": _runner_case(
                plan, scratch, workers, "none", "thread"
            ),
            "Runner, no-op metadata, inline executor": _runner_case(
                plan, scratch, workers, "none", "inline"
            ),
            "Runner, SQLite file, inline executor": _runner_case(
                plan, scratch, workers, "file", "inline"
            ),
        }
        samples = interleaved(cases, repeat)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    counter = NoMetadata()
    run = RunRecord(run_id=new_run_id(), workflow=wf.name, state=RunState.QUEUED, created_at=0.0)
    Runner(plan, run, executor=ThreadExecutor(_no_assets, workers), metadata=counter).execute()
    width = max(len(name) for name in samples)
    lines = [f"{wf.name}: {stages} stages, {workers} workers, median of {repeat}"]
    for name, s in samples.items():
        lines.append(
            f"  {name:<{width}}  {s.median * 1e3:8.2f} ms  {s.median / stages * 1e6:8.1f} µs/stage"
        )
    lines.append(f"  metadata commits per run (threads): {counter.commits}")
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.breakdown")
    parser.add_argument("--only", default="W1,W2")
    parser.add_argument("--repeat", type=int, default=9)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    workers = args.workers or default_workers()
    chosen = {key.strip().upper() for key in args.only.split(",")}
    if "W1" in chosen:
        print("\n".join(breakdown(workflows.fanout(500), 502, args.repeat, workers)))
    if "W2" in chosen:
        print("\n".join(breakdown(workflows.chain(200), 200, args.repeat, workers)))
    print(f"load average {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
