"""Stages that fail, time out, retry or talk: what ``klaw run``, ``runs show``, ``logs`` and
``assets list`` say about them, and that the work that succeeded is kept."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from .driver import Result, assert_error, attempts_by_stage, klaw, line_of, run_id_of, write_project

STAGES = """
import logging
import sys
import time
from pathlib import Path

import pyarrow as pa

import klaw

ROOT = Path(__file__).resolve().parent.parent


@klaw.asset
def good():
    return pa.table({"x": [1, 2]})


@klaw.asset
def boom(good):
    raise ValueError("kaboom in user code")


@klaw.asset
def other():
    return pa.table({"y": [1]})


crash = klaw.workflow("crash", [good, boom, other])


@klaw.asset
def not_a_table():
    return {"a": [1, 2]}


not_tabular = klaw.workflow("not_tabular", [not_a_table])


@klaw.stage
def chatty():
    print("hello on stdout")
    print("hello on stderr", file=sys.stderr)
    logging.getLogger("wf.chat").warning("hello from logging")
    return 1


@klaw.stage
def quiet(chatty):
    return chatty


chat = klaw.workflow("chat", [chatty, quiet])


@klaw.stage(timeout=0.5)
def sleepy():
    for _ in range(200):
        time.sleep(0.05)


timeout = klaw.workflow("timeout", [sleepy])


@klaw.stage(retries=klaw.RetryPolicy(retries=2, delay=0.05))
def flaky():
    counter = ROOT / "flaky.count"
    n = int(counter.read_text()) + 1 if counter.exists() else 1
    counter.write_text(str(n))
    if n < 3:
        raise RuntimeError(f"flaky attempt {n}")
    return 1


retry = klaw.workflow("retry", [flaky])
"""


@dataclass
class Runs:
    project: Path
    crash: Result
    not_tabular: Result  # -o json
    chat: Result
    timeout: Result  # -o json
    retry: Result

    @property
    def module(self) -> Path:
        return self.project / "wf" / "stages.py"


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Runs:
    project = write_project(tmp_path_factory.mktemp("cli-failures"), {"stages": STAGES})
    return Runs(
        project,
        crash=klaw(project, "run", "crash"),
        not_tabular=klaw(project, "run", "not_tabular", "-o", "json"),
        chat=klaw(project, "run", "chat"),
        timeout=klaw(project, "run", "timeout", "-o", "json"),
        retry=klaw(project, "run", "retry"),
    )


# -- a stage raising --------------------------------------------------------------------------


def test_stage_raising_fails_the_run(runs: Runs) -> None:
    run_id = run_id_of(runs.crash)
    assert runs.crash.returncode == 1, str(runs.crash)
    assert f"run {run_id} failed" in runs.crash.out
    assert f"klaw logs {run_id}" in runs.crash.out  # says where to look
    assert "Traceback" not in runs.crash.stderr
    show = klaw(runs.project, "runs", "show", run_id)
    assert show.returncode == 0, str(show)
    assert f"run {run_id} workflow crash failed" in show.out
    assert "stage(s) failed: boom" in show.out
    assert "ValueError: kaboom in user code" in show.out


def test_user_traceback_is_in_the_logs(runs: Runs) -> None:
    logs = klaw(runs.project, "logs", run_id_of(runs.crash), "--stage", "boom")
    assert logs.returncode == 0, str(logs)
    line = line_of(runs.module, 'raise ValueError("kaboom')
    assert "Traceback (most recent call last)" in logs.stdout
    assert f'File "{runs.module}", line {line}, in boom' in logs.stdout
    assert 'raise ValueError("kaboom in user code")' in logs.stdout
    assert "boom#1 stderr: ValueError: kaboom in user code" in logs.stdout
    assert "klaw/execution" not in logs.stdout  # the user's frames, not Klaw's


def test_snapshots_of_the_stages_that_succeeded_are_kept(runs: Runs) -> None:
    listed = klaw(runs.project, "assets", "list")
    assert listed.returncode == 0, str(listed)
    rows = [line for line in listed.stdout.splitlines() if "│" in line]
    keys = {line.split("│")[1].strip() for line in rows}
    assert {"good", "other"} <= keys
    assert "boom" not in keys


# -- a stage returning something that is not a table ------------------------------------------


def test_asset_returning_a_dict_fails_saying_not_tabular(runs: Runs) -> None:
    assert runs.not_tabular.returncode == 1, str(runs.not_tabular)
    result = runs.not_tabular.json()
    assert result["run"]["state"] == "failed"
    (attempt,) = result["attempts"]
    assert attempt["state"] == "failed"
    assert "returned dict, which is not tabular" in attempt["error"]
    assert "@klaw.stage" in attempt["error"]
    assert "not tabular" in runs.not_tabular.out  # the person running it sees it too
    assert "Traceback" not in runs.not_tabular.stderr


# -- logs -------------------------------------------------------------------------------------


def test_logs_show_stdout_stderr_and_logging(runs: Runs) -> None:
    assert runs.chat.returncode == 0, str(runs.chat)
    logs = klaw(runs.project, "logs", run_id_of(runs.chat), "--stage", "chatty")
    assert logs.returncode == 0, str(logs)
    lines = logs.stdout.splitlines()
    assert "chatty#1 stdout: hello on stdout" in lines
    assert "chatty#1 stderr: hello on stderr" in lines
    assert "chatty#1 log WARNING: wf.chat: hello from logging" in lines
    assert all(line.startswith("chatty#") for line in lines)  # only the stage asked for


def test_logs_of_a_misspelt_stage_name_the_close_one(runs: Runs) -> None:
    result = klaw(runs.project, "logs", run_id_of(runs.chat), "--stage", "chaty")
    assert_error(result, 2, "no stage 'chaty'", "did you mean chatty")


def test_logs_of_an_unknown_stage_name_the_stages(runs: Runs) -> None:
    result = klaw(runs.project, "logs", run_id_of(runs.chat), "--stage", "nope")
    assert_error(result, 2, "'nope'", "chatty", "quiet")


# -- timeouts and retries ---------------------------------------------------------------------


def test_timeout_ends_the_stage_timed_out(runs: Runs) -> None:
    assert runs.timeout.returncode == 1, str(runs.timeout)
    result = runs.timeout.json()
    assert result["run"]["state"] == "failed"
    (attempt,) = result["attempts"]
    assert attempt["stage"] == "sleepy"
    assert attempt["state"] == "timed_out"
    assert attempt["error"] == "timed out after 0.5 s"


def test_retries_until_success(runs: Runs) -> None:
    assert runs.retry.returncode == 0, str(runs.retry)
    show = klaw(runs.project, "runs", "show", run_id_of(runs.retry), "-o", "json")
    assert show.json()["run"]["state"] == "succeeded"
    attempts = attempts_by_stage(show.json())["flaky"]
    assert [a["attempt"] for a in attempts] == [1, 2, 3]
    assert [a["state"] for a in attempts] == ["retrying", "retrying", "succeeded"]
    assert [a["error"] for a in attempts] == [
        "RuntimeError: flaky attempt 1",
        "RuntimeError: flaky attempt 2",
        None,
    ]
    assert (runs.project / "flaky.count").read_text() == "3"
