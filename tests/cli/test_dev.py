"""``klaw dev`` as a real subprocess on free ports: its dev token opens both the HTTP API and
Flight, a changed workflow module is reloaded, a broken one is reported while the old
definitions stay, and SIGTERM stops it cleanly."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest

from klaw.api.flight.client import Client
from klaw.protocol import Ping, PongReply

from .driver import KLAW, WAIT, env, wait_for, write_project

FLOWS = """
import klaw


@klaw.stage
def one() -> int:
    return 1


first = klaw.workflow("first", [one])
"""

ADDED = """

second = klaw.workflow("second", [one])
"""


class Dev:
    """``klaw dev -o json`` running in ``cwd``; its output read as it comes (bounded)."""

    def __init__(self, cwd: Path, extra_env: dict[str, str] | None = None) -> None:
        self.proc = subprocess.Popen(
            [str(KLAW), "dev", "--port", "0", "--api-port", "0", "-o", "json"],
            cwd=cwd,
            env=env(extra_env),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.stderr: list[str] = []
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._readers = [
            threading.Thread(target=self._read, args=(self.proc.stdout, None), daemon=True),
            threading.Thread(target=self._read, args=(self.proc.stderr, self.stderr), daemon=True),
        ]
        for reader in self._readers:
            reader.start()
        try:
            first = self.lines.get(timeout=WAIT)
        except queue.Empty:
            raise AssertionError(f"klaw dev printed nothing: {''.join(self.stderr)}") from None
        self.info: dict[str, Any] = json.loads(first)

    def _read(self, stream: IO[str], into: list[str] | None) -> None:
        for line in stream:
            if into is None:
                self.lines.put(line)
            else:
                into.append(line)

    def api(self) -> httpx.Client:
        token = self.info["token"]
        return httpx.Client(
            base_url=self.info["api"], headers={"Authorization": f"Bearer {token}"}, timeout=WAIT
        )

    def workflows(self) -> list[str]:
        with self.api() as client:
            answer = client.get("/api/v1/workflows")
        assert answer.status_code == 200, answer.text
        return [w["name"] for w in answer.json()["workflows"]]

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        code = self.proc.wait(timeout=WAIT)
        for reader in self._readers:
            reader.join(timeout=WAIT)
        return code

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=WAIT)


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return write_project(tmp_path / "devproj", {"flows": FLOWS}, name="devproj")


@pytest.fixture
def dev(project: Path) -> Iterator[Dev]:
    running = Dev(project)
    try:
        yield running
    finally:
        running.kill()


def test_dev_serves_both_with_one_token_and_reloads(dev: Dev, project: Path) -> None:
    info = dev.info
    assert info["project"] == "devproj"
    assert info["api"].startswith("http://127.0.0.1:")
    assert info["flight"].startswith("grpc://127.0.0.1:")
    assert len(info["token"]) >= 32

    assert httpx.get(f"{info['api']}/health", timeout=WAIT).json() == {"status": "ok"}
    with Client(info["flight"], info["token"]) as flight:
        pong = flight.execute(Ping())
    assert isinstance(pong, PongReply)
    assert pong.project == "devproj"
    assert dev.workflows() == ["first"]

    module = project / "wf" / "flows.py"
    module.write_text(module.read_text() + ADDED)
    wait_for("the added workflow", lambda: dev.workflows() == ["first", "second"])

    module.write_text(module.read_text() + "\nraise ValueError('broken on purpose')\n")
    wait_for(
        "the import error on stderr",
        lambda: any("broken on purpose" in line for line in dev.stderr),
    )
    assert any("previous definitions stay" in line for line in dev.stderr)
    assert dev.workflows() == ["first", "second"]

    assert dev.terminate() == 0, "".join(dev.stderr)
    assert "Traceback" not in "".join(dev.stderr)


def test_configured_tokens_are_used_instead_of_a_dev_token(project: Path) -> None:
    running = Dev(project, {"KLAW_TOKENS": "flight-token", "KLAW_API_TOKENS": "admin:api-token"})
    try:
        assert running.info["token"] is None
        answer = httpx.get(
            f"{running.info['api']}/api/v1/workflows",
            headers={"Authorization": "Bearer api-token"},
            timeout=WAIT,
        )
        assert answer.status_code == 200, answer.text
        assert running.terminate() == 0
    finally:
        running.kill()
