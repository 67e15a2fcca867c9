"""``klaw dev`` as a real subprocess on free ports: its dev token opens both the HTTP API and
Flight, a changed workflow module is reloaded, a broken one is reported while the old
definitions stay, and SIGTERM stops it cleanly."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from klaw.api.flight.client import Client
from klaw.protocol import Ping, PongReply

from .driver import WAIT, Dev, wait_for, write_project

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
    running = Dev(
        project, {"KLAW_FLIGHT__TOKENS": "flight-token", "KLAW_HTTP__TOKENS": "admin:api-token"}
    )
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
