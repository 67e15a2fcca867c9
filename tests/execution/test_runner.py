"""The runner end to end, on the real SQLite metadata store and DuckLake lake, on both local
executors: every fixture must give the same states, snapshots and contents on each."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

import klaw
from klaw import failpoints
from klaw.metadata.records import RunFilter
from klaw.service.orchestrator import Orchestrator, RunRequest
from klaw.states import RunState, StageState
from tests.execution import workflows as wf

ALL = [
    wf.linear,
    wf.fanout,
    wf.failing,
    wf.retrying,
    wf.non_retryable,
    wf.timeout,
    wf.cancellable,
    wf.wrong_output,
    wf.noisy,
    wf.slow_input,
]


@pytest.fixture(params=["thread", "process"])
def executor(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def orch(tmp_path: Path) -> Any:
    o = klaw.open_orchestrator(*ALL, home=tmp_path / "home", stop_grace=2.0)
    yield o
    o.close()


def run(orch: Orchestrator, name: str, executor: str, **kw: Any) -> Any:
    return orch.run(RunRequest(workflow=name, executor=executor, max_workers=2, **kw))


def states(orch: Orchestrator, run_id: str) -> dict[str, str]:
    """The final state of each stage (its last attempt)."""
    out: dict[str, str] = {}
    for a in sorted(orch.attempts(run_id), key=lambda a: a.attempt):
        out[a.stage] = a.state.value
    return out


def test_linear_workflow_stores_assets_and_hands_types(orch: Orchestrator, executor: str) -> None:
    result = run(orch, "linear", executor)
    assert result.state is RunState.SUCCEEDED
    assert states(orch, result.run_id) == dict.fromkeys(
        ["numbers", "doubled", "total", "summary"], "succeeded"
    )
    assert orch.read_asset("summary").to_pylist() == [{"total": 90}]
    assert orch.read_asset("doubled").column_names == ["n", "group", "n2"]
    keys = {a.key: a.snapshots for a in orch.assets()}
    assert keys == {"numbers": 1, "doubled": 1, "summary": 1}  # total is a plain stage
    for attempt in orch.attempts(result.run_id):
        if attempt.asset_key:
            snaps = orch.snapshots(attempt.asset_key)
            assert [(s.run_id, s.stage, s.attempt) for s in snaps] == [
                (result.run_id, attempt.stage, 1)
            ]
            assert attempt.snapshot_id == snaps[0].snapshot


def test_fan_out_and_in(orch: Orchestrator, executor: str) -> None:
    result = run(orch, "fanout", executor)
    assert result.state is RunState.SUCCEEDED
    assert result.stage_counts == {"succeeded": 22}


def test_failure_keeps_succeeded_snapshots_and_skips_downstream(
    orch: Orchestrator, executor: str
) -> None:
    result = run(orch, "failing", executor)
    assert result.state is RunState.FAILED
    assert "bad" in (result.error or "")
    assert states(orch, result.run_id) == {
        "good": "succeeded",
        "bad": "failed",
        "after_bad": "upstream_failed",
        "independent": "succeeded",
    }
    assert {a.key for a in orch.assets()} == {"good", "independent"}
    logs = "\n".join(rec.line for rec in orch.logs(result.run_id, "bad"))
    assert "about to fail" in logs
    assert 'raise ValueError("bad input in row 3")' in logs  # the user's own traceback
    assert "klaw/execution" not in logs  # Klaw's frames are dropped


def test_fail_fast_skips_what_has_not_started(orch: Orchestrator, executor: str) -> None:
    result = orch.run(
        RunRequest(workflow="failing", executor=executor, max_workers=1, fail_fast=True)
    )
    assert result.state is RunState.FAILED
    final = states(orch, result.run_id)
    assert final["bad"] == "failed"
    assert final["after_bad"] == "upstream_failed"
    assert final["independent"] in {"skipped", "succeeded", "cancelled"}


def test_retries_until_success(orch: Orchestrator, executor: str, tmp_path: Path) -> None:
    params = {"scratch": str(tmp_path), "fail_times": 2}
    result = run(orch, "retrying", executor, params=params)
    assert result.state is RunState.SUCCEEDED
    attempts = sorted(orch.attempts(result.run_id), key=lambda a: a.attempt)
    assert [(a.attempt, a.state) for a in attempts] == [
        (1, StageState.RETRYING),
        (2, StageState.RETRYING),
        (3, StageState.SUCCEEDED),
    ]
    assert attempts[0].error == "ConnectionError: transient"
    assert len(orch.snapshots("flaky")) == 1  # only the successful attempt commits


def test_retries_run_out(orch: Orchestrator, executor: str, tmp_path: Path) -> None:
    params = {"scratch": str(tmp_path), "fail_times": 5}
    result = run(orch, "retrying", executor, params=params)
    assert result.state is RunState.FAILED
    assert [a.state for a in orch.attempts(result.run_id)][-1] is StageState.FAILED
    assert (tmp_path / "flaky.count").read_text() == "3"


def test_non_retryable_error_is_not_retried(
    orch: Orchestrator, executor: str, tmp_path: Path
) -> None:
    result = run(orch, "non_retryable", executor, params={"scratch": str(tmp_path)})
    assert result.state is RunState.FAILED
    assert (tmp_path / "fatal.count").read_text() == "1"


def test_timeout_stops_the_stage(orch: Orchestrator, executor: str, tmp_path: Path) -> None:
    result = run(orch, "timeout", executor, params={"scratch": str(tmp_path)})
    assert result.state is RunState.FAILED
    (attempt,) = orch.attempts(result.run_id)
    assert attempt.state is StageState.TIMED_OUT
    assert attempt.error == "timed out after 0.3 s"
    if executor == "process":  # the worker process is killed, not left running
        pid = int((tmp_path / "sleepy.pid").read_text())
        psutil.Process(pid).wait(timeout=10) if psutil.pid_exists(pid) else None
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


def _slow_reads(monkeypatch: pytest.MonkeyPatch, ms: int) -> None:
    """Every read of the ``slow_source`` snapshot as a stage input sleeps ``ms`` first (in this
    process and in the workers it starts)."""
    monkeypatch.setenv("KLAW_FAILPOINTS", f"read_input:slow_source=sleep({ms})")
    monkeypatch.setattr(failpoints, "_armed", {})


def _io_metrics(orch: Orchestrator, run_id: str, stage: str) -> dict[str, float]:
    return {
        m.name: m.value
        for m in orch.metadata.list_metrics(run_id)
        if m.stage == stage and m.name in {"load_s", "commit_s"}
    }


def test_timeout_does_not_count_reading_inputs(
    orch: Orchestrator, executor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(orch, "slow_input", executor, selection="slow_source").state is RunState.SUCCEEDED
    _slow_reads(monkeypatch, 1500)  # three times the stage's timeout of 0.5 s
    result = run(orch, "slow_input", executor, selection="quick")  # reads the stored snapshot
    assert result.state is RunState.SUCCEEDED, result.error
    (attempt,) = orch.attempts(result.run_id)
    assert attempt.state is StageState.SUCCEEDED and attempt.error is None
    timings = _io_metrics(orch, result.run_id, "quick")
    assert timings["load_s"] >= 1.5
    assert timings["commit_s"] > 0


def test_a_function_overrunning_its_timeout_still_times_out_after_a_slow_read(
    orch: Orchestrator, executor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(orch, "slow_input", executor, selection="slow_source").state is RunState.SUCCEEDED
    _slow_reads(monkeypatch, 1000)
    result = run(orch, "slow_input", executor, selection="dawdle")
    assert result.state is RunState.FAILED
    (attempt,) = orch.attempts(result.run_id)
    assert attempt.state is StageState.TIMED_OUT
    assert attempt.error == "timed out after 0.5 s"


@pytest.mark.slow
def test_reading_inputs_has_its_own_bound(
    orch: Orchestrator, tmp_path: Path, executor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert run(orch, "slow_input", executor, selection="slow_source").state is RunState.SUCCEEDED
    o = klaw.open_orchestrator(
        wf.slow_input, home=tmp_path / "home", stop_grace=5.0, stage_io_timeout=1.0
    )
    try:
        _slow_reads(monkeypatch, 3000)
        result = run(o, "slow_input", executor, selection="quick")
        assert result.state is RunState.FAILED
        (attempt,) = o.attempts(result.run_id)
        assert attempt.state is StageState.TIMED_OUT
        assert attempt.error is not None
        assert attempt.error.startswith("timed out loading inputs: stage 'quick'")
        assert "asset 'slow_source' (snapshot 1)" in attempt.error
        assert "KLAW_EXECUTOR__STAGE_IO_TIMEOUT" in attempt.error
    finally:
        o.close()


def test_cancel_stops_in_flight_work(orch: Orchestrator, executor: str, tmp_path: Path) -> None:
    running = threading.Event()
    run_ids: list[str] = []

    def on_start(record: Any, plan: Any) -> None:
        run_ids.append(record.run_id)

    def on_events(events: list[Any]) -> None:
        if any(e.stage == "long" and e.state == "running" for e in events):
            running.set()

    def cancel_when_running() -> None:
        assert running.wait(timeout=60)
        pid_file = tmp_path / "long.pid"
        for _ in range(1200):  # the stage itself has begun (a process worker may be starting)
            if pid_file.exists():
                break
            time.sleep(0.05)
        orch.cancel(run_ids[0], wait=30)

    canceller = threading.Thread(target=cancel_when_running)
    canceller.start()
    result = orch.run(
        RunRequest(
            workflow="cancellable",
            executor=executor,
            params={"scratch": str(tmp_path)},
        ),
        on_start=on_start,
        on_events=on_events,
    )
    canceller.join(timeout=60)
    assert result.state is RunState.CANCELLED
    assert states(orch, result.run_id) == {"long": "cancelled", "after_long": "cancelled"}
    assert orch.get_run(result.run_id).state is RunState.CANCELLED
    events = [e.kind for e in orch.metadata.list_events(result.run_id)]
    assert "cancel_requested" in events
    if executor == "process":
        pid = int((tmp_path / "long.pid").read_text())
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie"


def test_asset_that_is_not_tabular_fails_without_retry(orch: Orchestrator, executor: str) -> None:
    result = run(orch, "wrong_output", executor)
    assert result.state is RunState.FAILED
    (attempt,) = orch.attempts(result.run_id)
    assert attempt.state is StageState.FAILED
    assert "returned dict, which is not tabular" in (attempt.error or "")
    assert "@klaw.stage" in (attempt.error or "")


def test_stdout_stderr_and_logging_are_captured(orch: Orchestrator, executor: str) -> None:
    result = run(orch, "noisy", executor)
    lines = {(rec.stream, rec.line) for rec in orch.logs(result.run_id)}
    assert ("stdout", "to stdout") in lines
    assert ("stderr", "to stderr") in lines
    assert ("log", "chatty: to logging") in lines


def test_resume_reruns_only_what_failed(orch: Orchestrator, executor: str, tmp_path: Path) -> None:
    params = {"scratch": str(tmp_path), "fail_times": 5}
    first = run(orch, "retrying", executor, params=params)
    assert first.state is RunState.FAILED
    second = run(orch, "retrying", executor, resume=first.run_id, params={"fail_times": 0})
    assert second.state is RunState.SUCCEEDED
    assert second.parent_run_id == first.run_id
    assert second.params["scratch"] == str(tmp_path)  # params carried over

    linear = run(orch, "linear", executor)
    snap = {a.stage: a.snapshot_id for a in orch.attempts(linear.run_id)}
    # a succeeded run cannot be resumed; a failed one reuses the snapshots that succeeded
    with pytest.raises(klaw.KlawError, match="only a failed or cancelled run"):
        run(orch, "linear", executor, resume=linear.run_id)
    failing = run(orch, "failing", executor)
    again = run(orch, "failing", executor, resume=failing.run_id)
    reused = {a.stage: a for a in orch.attempts(again.run_id) if a.reused_from}
    assert set(reused) == {"good", "independent"}
    assert reused["good"].reused_from == failing.run_id
    assert len(orch.snapshots("good")) == 1  # not committed again
    assert snap["numbers"] is not None


def test_second_run_while_one_is_in_progress_is_refused(
    orch: Orchestrator, executor: str, tmp_path: Path
) -> None:
    errors: list[BaseException] = []
    run_ids: list[str] = []

    def on_start(record: Any, plan: Any) -> None:
        run_ids.append(record.run_id)
        try:
            orch.run(RunRequest(workflow="cancellable", params={"scratch": str(tmp_path)}))
        except klaw.KlawError as exc:
            errors.append(exc)
        orch.cancel(record.run_id, wait=0)

    orch.run(
        RunRequest(workflow="cancellable", executor=executor, params={"scratch": str(tmp_path)}),
        on_start=on_start,
    )
    assert len(errors) == 1
    assert run_ids[0] in str(errors[0])
    assert len(orch.runs(RunFilter(workflow="cancellable"))) == 1


def test_a_cancel_asked_before_the_start_starts_no_stage(
    orch: Orchestrator, executor: str, tmp_path: Path
) -> None:
    def on_start(record: Any, plan: Any) -> None:
        orch.cancel(record.run_id, wait=0)

    result = orch.run(
        RunRequest(workflow="cancellable", executor=executor, params={"scratch": str(tmp_path)}),
        on_start=on_start,
    )
    assert result.state is RunState.CANCELLED
    assert not (tmp_path / "long.pid").exists()  # the long stage never began
    assert "succeeded" not in states(orch, result.run_id).values()


def test_partial_selection_reads_latest_snapshot(orch: Orchestrator, executor: str) -> None:
    with pytest.raises(klaw.KlawError, match="has no snapshot yet"):
        run(orch, "linear", executor, selection="doubled")
    run(orch, "linear", executor)
    result = run(orch, "linear", executor, selection="doubled+")
    assert result.state is RunState.SUCCEEDED
    assert set(states(orch, result.run_id)) == {"doubled", "total", "summary"}
    assert len(orch.snapshots("numbers")) == 1
    assert len(orch.snapshots("doubled")) == 2


def test_a_wide_fan_out_uses_a_bounded_pool(tmp_path: Path) -> None:
    seen: set[str] = set()

    def leaf(root: int) -> int:
        seen.add(threading.current_thread().name + str(threading.get_ident()))
        time.sleep(0.001)
        return root

    stages = [wf.root] + [
        klaw.stage(name=f"wide_{i}", inputs={"root": "root"})(leaf) for i in range(200)
    ]
    result = klaw.run(klaw.workflow("wide", stages), home=tmp_path / "h", max_workers=4)
    assert result.state is RunState.SUCCEEDED
    assert 1 <= len(seen) <= 5  # four workers, plus the runner's own thread for a lone stage
