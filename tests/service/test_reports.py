"""Workers reporting by command: Heartbeat, CompleteAttempt and FailAttempt reach the runner of
a live run only under the attempt's current token, whether the run is driven in this process or
by a run worker; anything else is refused by name."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

from klaw import protocol as c
from klaw.service.dispatcher import Dispatcher
from klaw.service.orchestrator import Orchestrator, RunRequest
from klaw.states import RunState, StageState

FLOWS = """
import time
from pathlib import Path

import pyarrow as pa

import klaw

ROOT = Path(__file__).resolve().parent


@klaw.asset(retries=0)
def waits() -> pa.Table:
    while not (ROOT / "release").exists():  # runs until the test is done with it
        time.sleep(0.02)
    return pa.table({"x": [0]})


@klaw.stage
def after(waits: pa.Table) -> list[int]:
    return waits.column("x").to_pylist()


flow = klaw.workflow("flow", [waits, after])
"""
WAIT = 60.0


@pytest.fixture(params=["in-process", "run-worker"])
def running(
    tmp_path: Path, request: pytest.FixtureRequest
) -> Iterator[tuple[Dispatcher, str, str]]:
    """A run of ``flow`` whose stage ``waits`` is running: on a thread of this process, or in a
    run worker (as under ``klaw server``: reports then travel down the worker's pipe)."""
    (tmp_path / "klaw.toml").write_text(
        '[project]\nname = "reports"\nmodules = ["report_flows.py"]\n'
    )
    (tmp_path / "report_flows.py").write_text(FLOWS)
    orch = Orchestrator.open(tmp_path)
    if request.param == "run-worker":
        orch.isolate_user_code()
    dispatcher = Dispatcher(orch)
    try:
        run = orch.start(RunRequest(workflow="flow"))
        deadline = time.monotonic() + WAIT
        token = ""
        while not token:
            found = [a for a in orch.attempts(run.run_id) if a.state is StageState.RUNNING]
            token = found[0].token if found else ""
            assert time.monotonic() < deadline, "stage waits did not start"
            time.sleep(0.02)
        yield dispatcher, run.run_id, token
    finally:
        (tmp_path / "release").touch()
        orch.shutdown(wait=WAIT)
        orch.close()


def _send(dispatcher: Dispatcher, cmd: c.Command) -> c.Reply:
    return c.decode_reply(dispatcher.handle(c.encode(cmd)))


def test_a_heartbeat_renews_only_the_current_attempt(
    running: tuple[Dispatcher, str, str],
) -> None:
    dispatcher, run_id, token = running
    ok = _send(dispatcher, c.Heartbeat(run_id=run_id, stage="waits", attempt=1, token=token))
    assert isinstance(ok, c.LeaseReply) and ok.expires_at > time.time()
    [attempt] = [a for a in dispatcher.orchestrator.attempts(run_id) if a.stage == "waits"]
    assert attempt.lease_expires_at == ok.expires_at
    stale = _send(dispatcher, c.Heartbeat(run_id=run_id, stage="waits", attempt=1, token="old"))
    assert isinstance(stale, c.ErrorReply) and stale.code == "StaleAttemptError"
    assert "'waits'" in stale.message


def test_a_stale_report_is_refused_and_changes_nothing(
    running: tuple[Dispatcher, str, str],
) -> None:
    dispatcher, run_id, token = running
    for cmd in (
        c.CompleteAttempt(run_id=run_id, stage="waits", attempt=1, token="old"),
        c.FailAttempt(run_id=run_id, stage="waits", attempt=1, token="old", error="late"),
        c.FailAttempt(run_id=run_id, stage="waits", attempt=2, token=token, error="no such"),
        c.CompleteAttempt(run_id="no-such-run", stage="waits", attempt=1, token=token),
    ):
        reply = _send(dispatcher, cmd)
        assert isinstance(reply, c.ErrorReply) and reply.code == "StaleAttemptError", reply
    assert dispatcher.orchestrator.get_run(run_id).state is RunState.RUNNING


def test_a_failure_reported_by_command_ends_the_attempt(
    running: tuple[Dispatcher, str, str],
) -> None:
    dispatcher, run_id, token = running
    cmd = c.FailAttempt(
        run_id=run_id, stage="waits", attempt=1, token=token, error="disk full", retryable=False
    )
    reply = _send(dispatcher, cmd)
    assert isinstance(reply, c.AcceptedReply) and reply.stage == "waits"
    assert dispatcher.orchestrator.wait(run_id, timeout=WAIT)
    run = dispatcher.orchestrator.get_run(run_id)
    assert run.state is RunState.FAILED
    states = {a.stage: (a.state, a.error) for a in dispatcher.orchestrator.attempts(run_id)}
    assert states == {
        "waits": (StageState.FAILED, "disk full"),
        "after": (StageState.UPSTREAM_FAILED, None),
    }


def test_a_completion_reported_by_command_moves_the_run_on(
    running: tuple[Dispatcher, str, str],
) -> None:
    dispatcher, run_id, token = running
    orch = dispatcher.orchestrator
    # the worker committed its snapshot where it ran, then reports it
    snapshot = orch.lake().commit(
        "waits", pa.table({"x": [7, 8]}), run_id=run_id, stage="waits", attempt=1
    )
    done = c.CompleteAttempt(
        run_id=run_id, stage="waits", attempt=1, token=token, snapshot=snapshot, rows=2
    )
    reply = _send(dispatcher, done)
    assert isinstance(reply, c.AcceptedReply)
    assert orch.wait(run_id, timeout=WAIT)
    assert orch.get_run(run_id).state is RunState.SUCCEEDED
    attempts = {a.stage: a for a in orch.attempts(run_id)}
    assert (attempts["waits"].snapshot_id, attempts["waits"].rows) == (snapshot, 2)
    assert [s.snapshot for s in orch.snapshots("waits")] == [snapshot]  # only the reported one
    again = _send(dispatcher, done)
    assert isinstance(again, c.ErrorReply) and again.code == "StaleAttemptError"
