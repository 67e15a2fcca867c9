"""A failure in one branch: by default the other branch carries on; with ``--fail-fast`` the
running stages are stopped and the stages not yet started are skipped. The good branch waits
at a gate the test opens only once the failure is recorded, so the order does not depend on
timing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from .driver import Background, attempts_by_stage, klaw, wait_for_stage, write_project

BRANCHES = """
import time
from pathlib import Path

import klaw

ROOT = Path(__file__).resolve().parent.parent


@klaw.stage
def bad():
    raise RuntimeError("this branch fails")


@klaw.stage
def bad_child(bad):
    return bad


@klaw.stage
def gate():
    for _ in range(2400):  # at most 2 minutes
        if (ROOT / "gate.open").exists():
            return 1
        time.sleep(0.05)
    raise RuntimeError("the gate was never opened")


@klaw.stage
def gate_child(gate):
    return gate


branches = klaw.workflow("branches", [bad, bad_child, gate, gate_child])
"""


def _run(project: Path, *flags: str) -> tuple[int, dict[str, Any]]:
    (project / "gate.open").unlink(missing_ok=True)
    run = Background(project, "run", "branches", "-o", "json", *flags)
    try:
        wait_for_stage(project, run, "branches", "bad", "failed")
        (project / "gate.open").touch()
        result = run.finish()
    finally:
        run.kill()
    return result.returncode, result.json()


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_project(tmp_path_factory.mktemp("cli-fail-fast"), {"branches": BRANCHES})


def _states(result: dict[str, Any]) -> dict[str, str]:
    return {stage: att[-1]["state"] for stage, att in attempts_by_stage(result).items()}


def test_by_default_the_other_branch_carries_on(project: Path) -> None:
    code, result = _run(project)
    assert code == 1
    assert result["run"]["state"] == "failed"
    assert _states(result) == {
        "bad": "failed",
        "bad_child": "upstream_failed",
        "gate": "succeeded",
        "gate_child": "succeeded",
    }


def test_fail_fast_stops_running_stages_and_skips_the_rest(project: Path) -> None:
    (project / "gate.open").unlink(missing_ok=True)  # the gate stays shut: only a stop ends it
    finished = klaw(project, "run", "branches", "-o", "json", "--fail-fast")
    code, result = finished.returncode, finished.json()
    assert code == 1
    assert result["run"]["state"] == "failed"
    states = _states(result)
    assert states["bad"] == "failed"
    assert states["bad_child"] == "upstream_failed"
    assert states["gate"] == "cancelled"  # stopped while it waited at the gate
    assert states["gate_child"] == "skipped"
