"""The recorder's queue is bounded: a runner far ahead of a slow database waits for it
(back-pressure) instead of piling records up in memory, and still records every transition."""

from __future__ import annotations

from pathlib import Path

import pytest

import klaw
from klaw import failpoints
from klaw.metadata.records import Batch
from klaw.service.orchestrator import RunRequest
from klaw.states import RunState


def _step(x: int) -> int:
    return x + 1


def _chain(length: int) -> klaw.Workflow:
    stages = [klaw.stage(name="c0")(lambda: 0)]
    stages += [klaw.stage(name=f"c{i}", inputs={"x": f"c{i - 1}"})(_step) for i in range(1, length)]
    return klaw.workflow("chain", stages)


def _size(batch: Batch) -> int:
    parts = (batch.events, batch.attempts, batch.runs, batch.logs, batch.metrics)
    return sum(len(p) for p in parts)


def test_a_slow_database_holds_the_runner_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # every SQLite commit takes 5 ms longer: no-op stages would otherwise run far ahead of it
    monkeypatch.setenv("KLAW_FAILPOINTS", "sqlite_commit=sleep(5)")
    monkeypatch.setattr(failpoints, "_armed", {})
    length, limit = 150, 16
    orch = klaw.open_orchestrator(_chain(length), home=tmp_path / "home", metadata_queue=limit)
    try:
        store = orch.metadata
        commit = store.commit
        sizes: list[int] = []

        def observed(batch: Batch) -> None:  # the real commit, its size noted
            sizes.append(_size(batch))
            commit(batch)

        monkeypatch.setattr(store, "commit", observed)
        run = orch.run(RunRequest(workflow="chain"))
        assert run.state is RunState.SUCCEEDED
        # a commit holds what waited for it: never more than the bound
        assert max(sizes) <= limit, sizes
        assert len(sizes) >= length * 2 // limit  # the records went in many small commits
        # nothing was dropped: every stage's running and succeeded transitions are durable
        states = [(e.stage, e.state) for e in orch.events(run.run_id) if e.kind == "stage"]
        for i in range(length):
            assert (f"c{i}", "running") in states
            assert (f"c{i}", "succeeded") in states
        attempts = orch.attempts(run.run_id)
        assert len(attempts) == length
        assert all(a.state.value == "succeeded" and a.ended_at for a in attempts)
    finally:
        orch.close()
