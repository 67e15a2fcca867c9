"""User code out of the serving process: under a real ``klaw dev`` each run executes in a
worker process of its own. A stage that calls ``os._exit``, one that segfaults and one that
allocates past ``run_memory_limit`` each end their run ``failed`` saying what happened, while
the server keeps answering and other runs finish; a cancel stops a run in its worker; a
workflow module that raises or hangs at import is reported and the others are served."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .driver import Dev, wait_for, write_project

FLOWS = """
import ctypes
import os
import time

import klaw


@klaw.stage
def hello() -> int:
    return 1


@klaw.stage
def crash() -> int:
    os._exit(3)


@klaw.stage
def segv() -> int:
    ctypes.string_at(0)
    return 1


@klaw.stage
def hog() -> int:
    chunks = []
    while True:
        chunks.append(bytearray(64 * 2**20))
        time.sleep(0.02)


@klaw.stage
def slow() -> int:
    time.sleep(600)
    return 1


ok = klaw.workflow("ok", [hello])
exits = klaw.workflow("exits", [crash])
segfaults = klaw.workflow("segfaults", [segv])
hogs = klaw.workflow("hogs", [hog])
slows = klaw.workflow("slows", [slow])
"""

RAISES = """
import klaw

broken = 1 / 0
"""

HANGS = """
import time

time.sleep(3600)
"""


@pytest.fixture
def dev(tmp_path: Path) -> Iterator[Dev]:
    root = write_project(tmp_path / "isolated", {"worker_flows": FLOWS}, name="isolated")
    running = Dev(root, {"KLAW_EXECUTOR__RUN_MEMORY_LIMIT": "600MiB"})
    try:
        yield running
    finally:
        running.kill()


def _submit(dev: Dev, workflow: str) -> dict[str, Any]:
    with dev.api() as client:
        answer = client.post("/api/v1/runs", json={"workflow": workflow})
    assert answer.status_code == 201, answer.text
    run: dict[str, Any] = answer.json()["run"]
    return run


def _ended(dev: Dev, run_id: str) -> dict[str, Any]:
    def ended() -> dict[str, Any] | None:
        with dev.api() as client:
            run: dict[str, Any] = client.get(f"/api/v1/runs/{run_id}").json()["run"]
        return run if run["state"] in ("succeeded", "failed", "cancelled") else None

    return wait_for(f"run {run_id} to end", ended)


def _healthy(dev: Dev) -> None:
    assert dev.proc.poll() is None, "".join(dev.stderr)
    with dev.api() as client:
        assert client.get("/health").status_code == 200


@pytest.mark.parametrize(
    ("workflow", "says"),
    [
        ("exits", "exited with code 3"),
        ("segfaults", "SIGSEGV"),
        ("hogs", "over run_memory_limit (600 MiB)"),
    ],
)
def test_a_stage_that_kills_its_process_fails_its_run_not_the_server(
    dev: Dev, workflow: str, says: str
) -> None:
    run = _submit(dev, workflow)
    assert run["owner_pid"] != dev.proc.pid  # prepared and run in a worker process
    final = _ended(dev, run["run_id"])
    assert final["state"] == "failed"
    assert says in final["error"], final["error"]
    _healthy(dev)
    other = _ended(dev, _submit(dev, "ok")["run_id"])  # the server goes on running runs
    assert other["state"] == "succeeded", other


def test_cancel_stops_a_run_in_its_worker(dev: Dev) -> None:
    run = _submit(dev, "slows")

    def running() -> bool | None:
        with dev.api() as client:
            attempts = client.get(f"/api/v1/runs/{run['run_id']}/attempts").json()["attempts"]
        return any(a["state"] == "running" for a in attempts) or None

    wait_for("stage slow to start", running)
    with dev.api() as client:
        answer = client.post(f"/api/v1/runs/{run['run_id']}/cancel")
    assert answer.status_code == 200, answer.text
    assert _ended(dev, run["run_id"])["state"] == "cancelled"
    _healthy(dev)


def test_bad_input_is_refused_by_the_worker_with_its_own_error(dev: Dev) -> None:
    with dev.api() as client:
        answer = client.post("/api/v1/runs", json={"workflow": "ok", "params": {"nope": 1}})
        assert answer.status_code == 422, answer.text
        assert answer.json()["code"] == "ParamsError"
        assert client.get("/api/v1/runs").json()["runs"] == []  # nothing recorded
    _healthy(dev)


def test_a_module_that_raises_or_hangs_at_import_is_reported(tmp_path: Path) -> None:
    modules = {"good_flows": FLOWS, "raising_flows": RAISES, "hanging_flows": HANGS}
    root = write_project(tmp_path / "imports", modules, name="imports")
    dev = Dev(root, {"KLAW_EXECUTOR__DEFINITION_LOAD_TIMEOUT": "3"})
    try:
        assert "ok" in dev.workflows()  # the good module's workflows are served
        errors = "".join(dev.stderr)
        assert "'wf.raising_flows'" in errors and "ZeroDivisionError" in errors, errors
        assert f"{root / 'wf' / 'raising_flows.py'}:3" in errors, errors  # file and line
        assert "'wf.hanging_flows' did not finish importing within 3 s" in errors, errors
        run = _ended(dev, _submit(dev, "ok")["run_id"])  # its worker skips the bad modules
        assert run["state"] == "succeeded", run
        _healthy(dev)
    finally:
        dev.kill()


SPY = """
import os
from pathlib import Path

import klaw

with open(Path(__file__).resolve().parent.parent / "imported-by", "a") as f:
    f.write(f"{os.getpid()}\\n")


@klaw.stage
def one() -> int:
    return 1


spied = klaw.workflow("spied", [one], schedule="0 3 * * *")
"""


def test_the_serving_process_never_imports_a_workflow_module(tmp_path: Path) -> None:
    root = write_project(tmp_path / "spy", {"spy_flows": SPY}, name="spy")
    dev = Dev(root)
    try:
        with dev.api() as client:
            assert [w["name"] for w in client.get("/api/v1/workflows").json()["workflows"]] == [
                "spied"
            ]
            assert client.get("/api/v1/workflows/spied").status_code == 200
            assert client.get("/api/v1/workflows/spied/plan").status_code == 200
            assert client.post("/api/v1/workflows/validate", json={}).status_code == 200
            assert client.get("/api/v1/schedules").json()["schedules"][0]["name"] == "spied"
            assert client.get("/api/v1/workflows/nope").status_code == 404
        run = _ended(dev, _submit(dev, "spied")["run_id"])
        assert run["state"] == "succeeded", run
        _healthy(dev)
        importers = {int(p) for p in (root / "imported-by").read_text().split()}
        assert importers  # the import check, the definitions process and the run worker
        assert dev.proc.pid not in importers
    finally:
        dev.kill()
