"""``klaw --url URL mcp`` over stdio: the commands go to a real ``klaw api`` (on a free port),
with the token of KLAW_TOKEN, from a folder with no project; the API's role for that token
decides the tools listed."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp import Client, StdioServerParameters

from ..cli.driver import KLAW, Background, env
from .conftest import INJECTION
from .test_stdio import MUTATING, text

VIEWER, OPERATOR = "remote-viewer-token", "remote-operator-token"


@pytest.fixture(scope="module")
def api(project: Path) -> Iterator[str]:
    tokens = {"KLAW_HTTP__TOKENS": f"viewer:{VIEWER},operator:{OPERATOR}"}
    server = Background(project, "api", "--port", "0", "-o", "json", extra_env=tokens)
    try:
        yield json.loads(server.first_line())["listening"]
        server.stop(signal.SIGTERM)
    finally:
        server.kill()


def call(folder: Path, url: str, token: str, body: Any) -> Any:
    params = StdioServerParameters(
        command=str(KLAW),
        args=["--url", url, "mcp"],
        cwd=str(folder),
        env=env({"KLAW_TOKEN": token}),
    )

    async def main() -> Any:
        async with Client(params) as client:
            return await body(client)

    return anyio.run(main)


def test_operator_over_the_api(tmp_path: Path, api: str) -> None:
    async def body(client: Client) -> tuple[set[str], Any, Any]:
        names = {t.name for t in (await client.list_tools()).tools}
        run = await client.call_tool("submit_run", {"workflow": "shop"})
        run_id = run.structured_content["run"]["run_id"]
        return names, run, await client.call_tool("read_logs", {"run_id": run_id})

    names, run, logs = call(tmp_path, api, OPERATOR, body)
    assert names >= MUTATING
    assert run.structured_content["run"]["state"] == "succeeded", text(run)
    assert INJECTION in [r["line"] for r in logs.structured_content["logs"]]


def test_a_viewer_token_lists_no_mutating_tool(tmp_path: Path, api: str) -> None:
    async def body(client: Client) -> tuple[set[str], Any]:
        names = {t.name for t in (await client.list_tools()).tools}
        return names, await client.call_tool("cancel_run", {"run_id": "r1"})

    names, refused = call(tmp_path, api, VIEWER, body)
    assert "list_runs" in names and not names & MUTATING
    assert refused.is_error and refused.structured_content["error"] == "ForbiddenError"


def test_a_refused_token_is_a_clean_error(tmp_path: Path, api: str) -> None:
    import subprocess

    done = subprocess.run(
        [str(KLAW), "--url", api, "mcp"],
        cwd=tmp_path,
        env=env({"KLAW_TOKEN": "not-a-token"}),
        input="",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2, done.stderr
    assert "refused the token of KLAW_TOKEN" in done.stderr
    assert "Traceback" not in done.stderr


FLIGHT = "remote-flight-token"


@pytest.fixture(scope="module")
def flight(project: Path) -> Iterator[str]:
    tokens = {"KLAW_FLIGHT__TOKENS": FLIGHT}
    server = Background(project, "server", "--port", "0", "-o", "json", extra_env=tokens)
    try:
        yield json.loads(server.first_line())["listening"]
        server.stop(signal.SIGTERM)
    finally:
        server.kill()


def test_over_arrow_flight(tmp_path: Path, flight: str) -> None:
    params = StdioServerParameters(
        command=str(KLAW),
        args=["--server", flight, "mcp"],
        cwd=str(tmp_path),
        env=env({"KLAW_TOKEN": FLIGHT}),
    )

    async def main() -> tuple[Any, Any]:
        async with Client(params) as client:
            run = await client.call_tool("submit_run", {"workflow": "shop"})
            run_id = run.structured_content["run"]["run_id"]
            return run, await client.call_tool("get_run", {"run_id": run_id})

    run, found = anyio.run(main)
    assert run.structured_content["run"]["state"] == "succeeded", text(run)
    assert found.structured_content["run"]["run_id"] == run.structured_content["run"]["run_id"]
