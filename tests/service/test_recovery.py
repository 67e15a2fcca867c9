"""Crash recovery: the process that owns a run is killed with SIGKILL (mid-run, or between
creating the run and starting it); another process takes the run over and finishes it without
running finished stages again, without two snapshots from one attempt, and without leaving a
stage ``running``."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import psutil
import pytest

from klaw.service.orchestrator import Orchestrator
from klaw.states import RunState, StageState

FLOWS = """
import os
import time
from pathlib import Path

import pyarrow as pa

import klaw

ROOT = Path(__file__).resolve().parent


@klaw.asset
def a() -> pa.Table:
    return pa.table({"x": [1, 2, 3]})


@klaw.asset
def b(a: pa.Table) -> pa.Table:
    return a


@klaw.stage
def note(b: pa.Table) -> int:
    return b.num_rows


@klaw.asset
def c(b: pa.Table, note: int) -> pa.Table:
    if not (ROOT / "c-started").exists():  # the first attempt hangs until its owner dies
        (ROOT / "c-started.tmp").write_text(str(os.getpid()))
        (ROOT / "c-started.tmp").rename(ROOT / "c-started")
        while True:
            time.sleep(0.05)
    return b


@klaw.stage
def d(c: pa.Table) -> int:
    return c.num_rows


chain = klaw.workflow("chain", [a, b, note, c, d])
"""

# The "server": owns one run in the background, as `klaw server` does, until it is killed.
OWNER = """
import sys, time
from pathlib import Path
from klaw.service.orchestrator import Orchestrator, RunRequest

orch = Orchestrator.open(Path(sys.argv[1]), executor=sys.argv[2])
run = orch.start(RunRequest(workflow="chain"))
print(run.run_id, flush=True)
while True:
    time.sleep(1)
"""

WAIT = 60.0


def _until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "klaw.toml").write_text(
        '[project]\nname = "crash"\nmodules = ["recovery_flows.py"]\n'
    )
    (tmp_path / "recovery_flows.py").write_text(FLOWS)
    return tmp_path


@pytest.fixture
def recovering(root: Path) -> Iterator[Orchestrator]:
    orch = Orchestrator.open(root, lease_ttl=3.0)
    try:
        yield orch
    finally:
        orch.shutdown(wait=WAIT)
        orch.close()


def _owner(root: Path, executor: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", OWNER, str(root), executor],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "KLAW_EXECUTOR__LEASE_TTL": "3", **(env or {})},
    )


def _states(orch: Orchestrator, run_id: str) -> list[tuple[str, int, StageState]]:
    return [(a.stage, a.attempt, a.state) for a in orch.attempts(run_id)]


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_a_run_survives_kill_9_of_its_owner(
    root: Path, recovering: Orchestrator, executor: str
) -> None:
    owner = _owner(root, executor)
    try:
        assert owner.stdout is not None
        run_id = owner.stdout.readline().strip()
        assert run_id, owner.communicate(timeout=WAIT)
        _until((root / "c-started").exists, "stage c to start")
        worker = int((root / "c-started").read_text())
        # kill once `c` is recorded running (the owner records asynchronously)
        _until(lambda: ("c", 1, StageState.RUNNING) in _states(recovering, run_id), "c running")
        owner.send_signal(signal.SIGKILL)
        owner.wait(timeout=WAIT)
    finally:
        owner.kill()
        owner.communicate(timeout=WAIT)
    # the stage's worker (a child process with the process executor) does not run on
    _until(lambda: not psutil.pid_exists(worker) or _zombie(worker), "the orphaned worker")

    assert [r.run_id for r in recovering.recover()] == [run_id]
    assert recovering.wait(run_id, timeout=WAIT)
    run = recovering.get_run(run_id)
    assert run.state is RunState.SUCCEEDED, run.error
    assert (run.owner_pid, run.owner_host) == (os.getpid(), run.owner_host)
    states = _states(recovering, run_id)
    # finished asset stages ran once; the stage that was running was fenced and ran again;
    # `note` ran again too: its value lived only in the dead process and `c` still needed it
    assert states == [
        ("a", 1, StageState.SUCCEEDED),
        ("b", 1, StageState.SUCCEEDED),
        ("c", 1, StageState.FAILED),
        ("c", 2, StageState.SUCCEEDED),
        ("d", 1, StageState.SUCCEEDED),
        ("note", 1, StageState.SUCCEEDED),
        ("note", 2, StageState.SUCCEEDED),
    ]
    lost = next(a for a in recovering.attempts(run_id) if (a.stage, a.attempt) == ("c", 1))
    assert lost.error is not None and "died" in lost.error
    for key, attempts in {"a": [1], "b": [1], "c": [2]}.items():
        assert [s.attempt for s in recovering.snapshots(key)] == attempts
    kinds = [e.kind for e in recovering.events(run_id)]
    assert kinds.index("run_recovering") < kinds.index("run_recovered") < len(kinds) - 1
    assert kinds[-1] == "run_finished"
    assert recovering.recover() == []  # nothing is left to take over


def test_a_run_survives_kill_9_between_create_and_start(
    root: Path, recovering: Orchestrator
) -> None:
    (root / "c-started").write_text("0")  # no stage hangs this time
    owner = _owner(root, "thread", {"KLAW_FAILPOINTS": "after_create_run"})
    _, err = owner.communicate(timeout=WAIT)
    assert owner.returncode == -signal.SIGKILL, err
    [queued] = recovering.runs()
    assert queued.state is RunState.QUEUED and recovering.attempts(queued.run_id) == []

    [taken] = recovering.recover()
    assert taken.run_id == queued.run_id
    assert recovering.wait(taken.run_id, timeout=WAIT)
    assert recovering.get_run(taken.run_id).state is RunState.SUCCEEDED
    states = _states(recovering, taken.run_id)
    assert {(stage, n) for stage, n, _ in states} == {
        ("a", 1),
        ("b", 1),
        ("c", 1),
        ("d", 1),
        ("note", 1),
    }
    assert all(state is StageState.SUCCEEDED for _, _, state in states)


def test_a_live_owner_keeps_its_run(root: Path, recovering: Orchestrator) -> None:
    owner = _owner(root, "thread")
    try:
        assert owner.stdout is not None
        run_id = owner.stdout.readline().strip()
        _until((root / "c-started").exists, "stage c to start")
        assert recovering.recover() == []
        assert recovering.get_run(run_id).state is RunState.RUNNING
    finally:
        owner.kill()
        owner.communicate(timeout=WAIT)


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_a_run_whose_workflow_is_gone_is_ended_failed(root: Path, recovering: Orchestrator) -> None:
    owner = _owner(root, "thread", {"KLAW_FAILPOINTS": "after_create_run"})
    _, err = owner.communicate(timeout=WAIT)
    assert owner.returncode == -signal.SIGKILL, err
    flows = root / "recovery_flows.py"
    flows.write_text(flows.read_text().replace('klaw.workflow("chain"', 'klaw.workflow("renamed"'))
    [orphan] = recovering.runs()

    assert recovering.recover() == []
    ended = recovering.get_run(orphan.run_id)
    assert ended.state is RunState.FAILED
    assert ended.error is not None and "could not be recovered" in ended.error
    assert "'chain'" in ended.error
    assert recovering.recover() == []  # ended for good: nothing to take over again
