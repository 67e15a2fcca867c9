"""Secret values are masked in what a stage attempt leaves behind (captured output, logging,
the error and traceback), on the thread and the process executor (the values to mask travel
with the task; a process worker masks in the child)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

import klaw
from klaw.service.orchestrator import RunRequest
from klaw.states import RunState
from tests.execution import workflows as wf

VALUE, KEY = "vault-s3cr3t-value", "api-k3y-value"


@pytest.mark.parametrize("executor", ["thread", "process"])
def test_captured_output_and_errors_mask_secrets(
    tmp_path: Path, executor: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KLAW_SECRET_VAULT_PW", VALUE)
    orch = klaw.open_orchestrator(wf.secretive, home=tmp_path / "home")
    try:
        run = orch.run(RunRequest(workflow="secretive", executor=executor, params={"api_key": KEY}))
        assert run.state is RunState.FAILED
        lines = [(r.stream, r.line) for r in orch.logs(run.run_id)]
        (attempt,) = orch.attempts(run.run_id)
    finally:
        orch.close()
    assert ("stdout", "password *** key ***") in lines
    assert ("stdout", "***") in lines  # written in two pieces, masked as one line
    assert ("stderr", "to stderr ***") in lines
    assert ("log", "leaky: logged *** and ***") in lines
    assert attempt.error == "NonRetryableError: refused *** / ***"
    assert attempt.traceback is not None and "refused *** / ***" in attempt.traceback
    with sqlite3.connect(tmp_path / "home" / "klaw.db") as db:
        for table in ("runs", "attempts", "logs", "events"):
            for row in db.execute(f"SELECT * FROM {table}"):
                assert VALUE not in str(row) and KEY not in str(row), (table, row)
        (params,) = db.execute("SELECT params FROM runs").fetchone()
    assert "secret:vault_pw" in params and '"$redacted"' in params
