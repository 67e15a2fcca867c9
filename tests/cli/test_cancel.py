"""Stopping a run: Ctrl-C on ``klaw run``, ``klaw cancel`` from another process (thread and
process executors), and a second run of a workflow that is already running."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest

from .driver import (
    WAIT,
    Background,
    Result,
    assert_error,
    attempts_by_stage,
    gone,
    klaw,
    wait_for_stage,
    write_project,
)

LONG = """
import os
import time
from pathlib import Path

import klaw

ROOT = Path(__file__).resolve().parent.parent


@klaw.stage
def warm_up():
    return 1


@klaw.stage
def slow(warm_up):
    (ROOT / "slow.pid").write_text(str(os.getpid()))
    for _ in range(200):
        time.sleep(0.05)
    return warm_up


@klaw.stage
def after(slow):
    return slow


long = klaw.workflow("long", [warm_up, slow, after])
"""


@dataclass
class Stopped:
    """A run of ``long`` stopped while its stage ``slow`` ran."""

    project: Path
    run_id: str
    run: Result  # what `klaw run long` printed and how it exited
    show: dict[str, Any]  # runs show -o json, afterwards
    cancel: Result | None = None  # `klaw cancel`, when that is how it was stopped
    second: Result | None = None  # a second `klaw run long` while the first ran
    stage_pid: int = 0
    children: list[psutil.Process] = field(default_factory=list)  # of `klaw run`, while it ran
    stage_gone_after_cancel: bool = False


def _stop(tmp: Path, how: str, *flags: str) -> Stopped:
    project = write_project(tmp, {"long": LONG})
    run = Background(project, "run", "long", *flags)
    try:
        run_id = wait_for_stage(project, run, "long", "slow")
        stage_pid = int((project / "slow.pid").read_text())
        children = psutil.Process(run.pid).children(recursive=True)
        second = cancel = None
        stage_gone = False
        if how == "ctrl-c":
            run.ctrl_c()
        else:
            second = klaw(project, "run", "long")
            cancel = klaw(project, "cancel", run_id, "--wait", str(WAIT))
            stage_gone = stage_pid == run.pid or gone(stage_pid)
        result = run.finish(timeout=WAIT)  # bounded: raises if it does not exit
    finally:
        run.kill()
    show = klaw(project, "runs", "show", run_id, "-o", "json")
    assert show.returncode == 0, str(show)
    return Stopped(
        project, run_id, result, show.json(), cancel, second, stage_pid, children, stage_gone
    )


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory: pytest.TempPathFactory) -> Stopped:
    return _stop(tmp_path_factory.mktemp("cli-ctrl-c"), "ctrl-c")


@pytest.fixture(scope="module")
def cancelled(tmp_path_factory: pytest.TempPathFactory) -> Stopped:
    return _stop(tmp_path_factory.mktemp("cli-cancel"), "cancel")


@pytest.fixture(scope="module")
def cancelled_process(tmp_path_factory: pytest.TempPathFactory) -> Stopped:
    return _stop(tmp_path_factory.mktemp("cli-cancel-process"), "cancel", "--executor", "process")


def _assert_cancelled(stopped: Stopped) -> None:
    assert stopped.show["run"]["state"] == "cancelled", stopped.show
    states = {s: [a["state"] for a in att] for s, att in attempts_by_stage(stopped.show).items()}
    assert states == {"warm_up": ["succeeded"], "slow": ["cancelled"], "after": ["cancelled"]}
    assert f"run {stopped.run_id} cancelled" in stopped.run.out
    assert stopped.run.returncode != 0, str(stopped.run)
    assert "Traceback" not in stopped.run.stderr, str(stopped.run)


def test_ctrl_c_cancels_the_run_and_its_running_stage(interrupted: Stopped) -> None:
    _assert_cancelled(interrupted)


def test_klaw_cancel_from_another_process(cancelled: Stopped) -> None:
    assert cancelled.cancel is not None
    assert cancelled.cancel.returncode == 0, str(cancelled.cancel)
    assert f"run {cancelled.run_id} is cancelled" in cancelled.cancel.out
    _assert_cancelled(cancelled)


def test_klaw_cancel_with_the_process_executor(cancelled_process: Stopped) -> None:
    assert cancelled_process.cancel is not None
    assert cancelled_process.cancel.returncode == 0, str(cancelled_process.cancel)
    _assert_cancelled(cancelled_process)


def test_cancel_kills_the_worker_process(cancelled_process: Stopped) -> None:
    stopped = cancelled_process
    assert stopped.stage_pid in [c.pid for c in stopped.children]  # it ran in a worker
    assert stopped.stage_gone_after_cancel  # gone when `klaw cancel` returned
    _, alive = psutil.wait_procs(stopped.children, timeout=WAIT)
    assert alive == []  # nothing `klaw run` started outlives it


def test_second_run_while_one_runs_names_the_running_run(cancelled: Stopped) -> None:
    assert cancelled.second is not None
    assert_error(cancelled.second, 2, "already has 1 active run", cancelled.run_id)
    listed = klaw(cancelled.project, "runs", "list", "-o", "json")
    assert [r["run_id"] for r in listed.json()] == [cancelled.run_id]  # nothing recorded
