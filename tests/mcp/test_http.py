"""``klaw mcp --transport http``: a real server on 127.0.0.1 on a free port, the MCP SDK's own
client, Klaw's bearer tokens with roles (a static viewer and operator token, a stored one)."""

from __future__ import annotations

import json
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import httpx2
import pytest
from mcp.client.streamable_http import streamable_http_client

from mcp import Client

from ..cli.driver import Background, klaw
from .conftest import INJECTION
from .test_stdio import MUTATING, text

VIEWER, OPERATOR = "mcp-viewer-token", "mcp-operator-token"


@pytest.fixture(scope="module")
def url(project: Path) -> Iterator[str]:
    tokens = {"KLAW_HTTP__TOKENS": f"viewer:{VIEWER},operator:{OPERATOR}"}
    server = Background(
        project, "mcp", "--transport", "http", "--port", "0", "-o", "json", extra_env=tokens
    )
    try:
        yield json.loads(server.first_line())["listening"]
        code, _, err = server.stop(signal.SIGTERM)
        assert code == 0, err
        assert "Klaw MCP server stopped." in err
    finally:
        server.kill()


def connect(url: str, token: str) -> Client:
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {token}"}, timeout=60.0)
    return Client(streamable_http_client(url, http_client=http))


def test_viewer_lists_no_mutating_tool_and_is_refused(url: str) -> None:
    async def main() -> tuple[set[str], Any]:
        async with connect(url, VIEWER) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            return names, await client.call_tool("submit_run", {"workflow": "shop"})

    names, refused = anyio.run(main)
    assert {"list_runs", "read_logs", "get_run"} <= names
    assert not names & MUTATING
    assert refused.is_error
    assert refused.structured_content["error"] == "ForbiddenError"
    assert "operator" in text(refused)


def test_operator_submits_and_reads_logs(url: str) -> None:
    async def main() -> tuple[set[str], Any, Any]:
        async with connect(url, OPERATOR) as client:
            names = {t.name for t in (await client.list_tools()).tools}
            run = await client.call_tool("submit_run", {"workflow": "shop", "wait": True})
            run_id = run.structured_content["run"]["run_id"]
            return names, run, await client.call_tool("read_logs", {"run_id": run_id})

    names, run, logs = anyio.run(main)
    assert names >= MUTATING
    assert run.structured_content["run"]["state"] == "succeeded", text(run)
    assert [r["line"] for r in logs.structured_content["logs"]] == ["made orders", INJECTION]


def test_a_stored_token_is_accepted(project: Path, url: str) -> None:
    made = klaw(project, "tokens", "create", "--role", "viewer", "--name", "mcp", "-o", "json")
    token = made.json()["token"]

    async def main() -> set[str]:
        async with connect(url, token) as client:
            return {t.name for t in (await client.list_tools()).tools}

    names = anyio.run(main)
    assert "list_workflows" in names and not names & MUTATING


@pytest.mark.parametrize("header", [None, "Bearer not-a-token", "Basic abc"])
def test_missing_or_invalid_token_is_401(url: str, header: str | None) -> None:
    headers = {"Accept": "application/json, text/event-stream"}
    if header is not None:
        headers["Authorization"] = header
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
    answer = httpx.post(url, json=body, headers=headers, timeout=30.0)
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Bearer")
    assert answer.json()["code"] == "AuthError"


def test_lifecycle_tools_act_as_the_token(project: Path, url: str) -> None:
    async def main() -> Any:
        async with connect(url, OPERATOR) as client:
            return await client.call_tool(
                "create_version", {"workflow": "shop", "message": "from an assistant"}
            )

    made = anyio.run(main)
    assert not made.is_error, text(made)
    assert made.structured_content["version"]["author"].startswith("token:")
    audit = klaw(project, "audit", "list", "--workflow", "shop", "-o", "json").json()
    [entry] = [e for e in audit["entries"] if e["action"] == "version.created"]
    assert entry["actor"] == made.structured_content["version"]["author"]
