"""Leases and fencing with real worker processes: a killed worker, a worker stopped past its
lease (its late results are refused), a worker killed right after it claimed its attempt."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from klaw.execution.lease import LeaseKeeper, LeaseLostError
from klaw.execution.readiness import Readiness
from klaw.metadata.records import Lease
from klaw.service.orchestrator import Orchestrator, RunRequest
from klaw.states import RunState, StageState

FLOWS = """
import os
import time
from pathlib import Path

import pyarrow as pa

import klaw

ROOT = Path(__file__).resolve().parent


@klaw.asset
def numbers() -> pa.Table:
    pids = ROOT / "pids"
    pids.mkdir(exist_ok=True)
    (pids / str(os.getpid())).touch()
    first = not (ROOT / "first-done").exists()
    (ROOT / "first-done").touch()
    if first:  # the first attempt waits to be told to go on
        while not (ROOT / "go").exists():
            time.sleep(0.02)
    return pa.table({"x": [1, 2, 3], "first": [first] * 3})


@klaw.stage
def total(numbers: pa.Table) -> int:
    return sum(numbers.column("x").to_pylist())


flow = klaw.workflow("flow", [numbers, total])
"""

WAIT = 60.0


@pytest.fixture
def project(tmp_path: Path) -> Iterator[tuple[Path, Orchestrator]]:
    (tmp_path / "klaw.toml").write_text(
        '[project]\nname = "leases"\nmodules = ["lease_flows.py"]\n'
    )
    (tmp_path / "lease_flows.py").write_text(FLOWS)
    orch = Orchestrator.open(tmp_path, lease_ttl=3.0, max_workers=2, executor="process")
    try:
        yield tmp_path, orch
    finally:
        orch.shutdown(wait=WAIT)
        orch.close()


def _until(check: object, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


def _first_worker(root: Path) -> int:
    _until(lambda: (root / "pids").exists() and any((root / "pids").iterdir()), "the stage")
    return int(next((root / "pids").iterdir()).name)


def _attempts(orch: Orchestrator, run_id: str) -> dict[int, tuple[StageState, str | None]]:
    return {a.attempt: (a.state, a.error) for a in orch.attempts(run_id) if a.stage == "numbers"}


def test_a_killed_worker_is_retried_as_a_new_attempt(
    project: tuple[Path, Orchestrator],
) -> None:
    root, orch = project
    run = orch.start(RunRequest(workflow="flow"))
    os.kill(_first_worker(root), signal.SIGKILL)
    assert orch.wait(run.run_id, timeout=WAIT)
    final = orch.get_run(run.run_id)
    assert final.state is RunState.SUCCEEDED  # no retries configured: a lost attempt is free
    attempts = _attempts(orch, run.run_id)
    assert attempts[1][0] is StageState.RETRYING  # as any attempt that is tried again
    assert "worker process died" in (attempts[1][1] or "")
    assert attempts[2] == (StageState.SUCCEEDED, None)
    kinds = [(e.kind, e.attempt) for e in orch.events(run.run_id) if e.stage == "numbers"]
    assert ("stage_lost", 1) in kinds
    [snapshot] = orch.snapshots("numbers")
    assert snapshot.attempt == 2


def test_a_worker_stopped_past_its_lease_is_fenced(project: tuple[Path, Orchestrator]) -> None:
    root, orch = project
    run = orch.start(RunRequest(workflow="flow"))
    stale = _first_worker(root)
    os.kill(stale, signal.SIGSTOP)
    try:
        # the lease runs out, the attempt is given up and a new one runs in another worker
        _until(lambda: _attempts(orch, run.run_id).get(1, (None,))[0] is StageState.FAILED, "")
        (root / "go").touch()  # the stopped attempt may finish as soon as it is woken
    finally:
        os.kill(stale, signal.SIGCONT)
    assert orch.wait(run.run_id, timeout=WAIT)
    assert orch.get_run(run.run_id).state is RunState.SUCCEEDED
    attempts = _attempts(orch, run.run_id)
    assert attempts[1][0] is StageState.FAILED and "lease expired" in (attempts[1][1] or "")
    assert attempts[2][0] is StageState.SUCCEEDED
    # the woken attempt ran to its end, but nothing it produced was kept
    [snapshot] = orch.snapshots("numbers")
    assert snapshot.attempt == 2
    table = orch.read_asset("numbers")
    assert table.column("first").to_pylist() == [False] * 3
    assert not [g for g in orch.logs(run.run_id) if g.stage == "numbers" and g.attempt == 1]
    # and its lease can never be renewed again
    token = next(a.token for a in orch.attempts(run.run_id) if a.attempt == 1)
    lease = Lease(run.run_id, "numbers", 1, token)
    assert orch.metadata.renew_leases([lease], time.time() + 60) == [lease]


def test_a_worker_killed_right_after_claiming_its_attempt(
    project: tuple[Path, Orchestrator], monkeypatch: pytest.MonkeyPatch
) -> None:
    root, orch = project
    (root / "go").touch()
    monkeypatch.setenv("KLAW_FAILPOINTS", f"worker_claimed@{root / 'claimed-once'}")
    run = orch.start(RunRequest(workflow="flow"))
    assert orch.wait(run.run_id, timeout=WAIT)
    assert orch.get_run(run.run_id).state is RunState.SUCCEEDED
    assert (root / "claimed-once").exists()  # the failpoint fired (in exactly one worker)
    records = {a.attempt: a for a in orch.attempts(run.run_id) if a.stage == "numbers"}
    assert records[1].state is StageState.RETRYING and records[2].state is StageState.SUCCEEDED
    assert records[1].token != records[2].token
    [snapshot] = orch.snapshots("numbers")
    assert snapshot.attempt == 2


# -- the keeper and the state machine on their own ---------------------------------------------


def test_a_lost_attempt_does_not_use_the_retry_budget() -> None:
    ready = Readiness({"a": ()}, {"a": 0})
    ready.start()
    for attempt in range(1, Readiness.MAX_LOST + 1):
        assert ready.started("a").attempt == attempt
        [t] = ready.lost("a")
        assert t.state is StageState.RETRYING
        ready.retry_due("a")
    ready.started("a")
    [end] = ready.lost("a")  # lost once too often: the stage fails for good
    assert end.state is StageState.FAILED and ready.run_state is RunState.FAILED


def test_attempt_numbers_continue_after_a_takeover() -> None:
    ready = Readiness({"a": ()}, {"a": 1}, attempts_before={"a": 4})
    [t] = ready.start()
    assert t.attempt == 5
    ready.started("a")
    assert ready.failed("a")[0].state is StageState.RETRYING  # its one retry is still there


def test_keeper_refuses_a_commit_once_fenced(project: tuple[Path, Orchestrator]) -> None:
    _, orch = project
    from klaw.metadata.records import AttemptRecord, Batch, RunRecord

    run = RunRecord(run_id="r-keeper", workflow="flow", state=RunState.RUNNING, created_at=1.0)
    orch.metadata.create_run(run)
    attempt = AttemptRecord(
        run_id=run.run_id, stage="numbers", attempt=1, state=StageState.RUNNING, token="t1"
    )
    orch.metadata.commit(Batch(attempts=[attempt]))
    keeper = LeaseKeeper(lambda: orch.metadata, ttl=60.0)
    wf = orch.workflow("flow")
    from klaw.execution.task import Task

    # a hand-off that took the whole lease: the keeper asks the database before the stage runs
    late = time.time() - 1
    task = Task(
        run_id=run.run_id, stage=wf.stages[0], attempt=1, token="t1", inputs=(), lease_until=late
    )
    keeper.hold(task)  # still this attempt's: the lease is renewed
    keeper.check(task)  # renewed a moment ago: answered from memory
    keeper.release(task)
    [ended] = orch.metadata.expire_leases(run.run_id, time.time() + 1000, "gone")
    assert ended.token == "t1"
    try:
        with pytest.raises(LeaseLostError, match="lost its lease"):
            keeper.hold(task)  # given up meanwhile: refused before the stage starts
    finally:
        keeper.release(task)
        keeper.close()
