"""``klaw mcp`` over stdio, spawned by the MCP SDK's own client, on a real temporary project."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

from mcp import Client, StdioServerParameters

from ..cli.driver import KLAW, env, klaw
from .conftest import INJECTION

MUTATING = {"submit_run", "cancel_run", "pause_schedule", "resume_schedule"}


def session(project: Path, *args: str, extra: dict[str, str] | None = None) -> Client:
    params = StdioServerParameters(
        command=str(KLAW), args=["mcp", *args], cwd=str(project), env=env(extra)
    )
    return Client(params)


def run(project: Path, body: Callable[[Client], Awaitable[Any]], *args: str) -> Any:
    async def main() -> Any:
        async with session(project, *args) as client:
            return await body(client)

    return anyio.run(main)


def text(result: Any) -> str:
    return "".join(block.text for block in result.content)


def test_tools_calls_and_logs(project: Path) -> None:
    async def body(client: Client) -> dict[str, Any]:
        listed = {t.name: t for t in (await client.list_tools()).tools}
        workflows = await client.call_tool("list_workflows", {})
        submitted = await client.call_tool("submit_run", {"workflow": "shop", "wait": True})
        run_id = submitted.structured_content["run"]["run_id"]
        logs = await client.call_tool("read_logs", {"run_id": run_id, "stage": "orders"})
        page = await client.call_tool("read_logs", {"run_id": run_id, "limit": 1})
        resource = await client.read_resource(f"klaw://runs/{run_id}/logs")
        preview = await client.read_resource("klaw://assets/orders/preview")
        rows = await client.call_tool("preview_rows", {"key": "orders", "limit": 2})
        return {
            "listed": listed,
            "workflows": workflows,
            "submitted": submitted,
            "logs": logs,
            "page": page,
            "resource": resource,
            "preview": preview,
            "rows": rows,
        }

    found = run(project, body)
    listed = found["listed"]
    assert {"list_workflows", "submit_run", "read_logs", "get_run", "preview_rows"} <= set(listed)
    assert not {"create_token", "list_tokens", "revoke_token", "prune_metadata"} & set(listed)
    assert "version" not in listed["submit_run"].input_schema["properties"]
    assert not found["workflows"].is_error
    names = [w["name"] for w in found["workflows"].structured_content["workflows"]]
    assert names == ["broken", "shop", "slow"]
    submitted = found["submitted"]
    assert not submitted.is_error, text(submitted)
    assert submitted.structured_content["run"]["state"] == "succeeded"
    logs = found["logs"]
    assert not logs.is_error
    lines = [r["line"] for r in logs.structured_content["logs"]]
    assert lines == ["made orders", INJECTION]
    # data, verbatim: inside the JSON text and the resource, and nothing was cancelled
    assert INJECTION in text(logs)
    assert "next" in found["page"].structured_content  # a full page says how to go on
    assert f"orders#1 stdout: {INJECTION}" in found["resource"].contents[0].text
    preview = json.loads(found["preview"].contents[0].text)
    assert preview["key"] == "orders" and preview["total_rows"] == 3
    assert preview["rows"][0] == {"day": "d1", "amount": 10.0}
    assert len(found["rows"].structured_content["rows"]) == 2


def test_malformed_arguments_are_tool_errors(project: Path) -> None:
    async def body(client: Client) -> list[Any]:
        return [
            await client.call_tool("list_runs", {"limit": "many"}),
            await client.call_tool("get_run", {}),
            await client.call_tool("get_run", {"run_id": "x", "colour": "red"}),
            await client.call_tool("read_logs", {"run_id": "x", "limit": 100_000}),
            await client.call_tool("list_workflows", {}),  # the server is still there
        ]

    limit, missing, unknown, too_many, after = run(project, body)
    for result, field in ((limit, "limit"), (missing, "run_id"), (unknown, "colour")):
        assert result.is_error, text(result)
        assert result.structured_content["field"] == field
        assert field in text(result)
    assert too_many.is_error and "at most 500" in text(too_many)
    assert not after.is_error


def test_dry_run_submit_records_no_run(project: Path) -> None:
    before = klaw(project, "runs", "list", "--workflow", "broken", "-o", "json").json()

    async def body(client: Client) -> Any:
        return await client.call_tool("submit_run", {"workflow": "broken", "dry_run": True})

    planned = run(project, body)
    assert not planned.is_error, text(planned)
    assert planned.structured_content["plan"]["stages"] == ["explode"]
    after = klaw(project, "runs", "list", "--workflow", "broken", "-o", "json").json()
    assert after == before


def test_viewer_sees_no_mutating_tool(project: Path) -> None:
    async def body(client: Client) -> tuple[set[str], Any]:
        names = {t.name for t in (await client.list_tools()).tools}
        return names, await client.call_tool("submit_run", {"workflow": "shop"})

    names, refused = run(project, body, "--role", "viewer")
    assert "list_runs" in names
    assert not names & MUTATING
    assert refused.is_error
    assert refused.structured_content["error"] == "ForbiddenError"


def test_prompts_and_a_failed_run(project: Path) -> None:
    async def body(client: Client) -> tuple[Any, Any, Any]:
        failed = await client.call_tool("submit_run", {"workflow": "broken"})
        run_id = failed.structured_content["run"]["run_id"]
        prompts = await client.list_prompts()
        prompt = await client.get_prompt("diagnose_failed_run", {"run_id": run_id})
        return failed, prompts, prompt

    failed, prompts, prompt = run(project, body)
    assert failed.structured_content["run"]["state"] == "failed"
    assert {p.name for p in prompts.prompts} == {"diagnose_failed_run", "explain_workflow"}
    run_id = failed.structured_content["run"]["run_id"]
    assert run_id in prompt.messages[0].content.text


def test_confirmation_without_elicitation_is_refused(project: Path) -> None:
    async def main() -> Any:
        extra = {"KLAW_MCP__CONFIRM": "submit_run"}
        async with session(project, extra=extra) as client:
            return await client.call_tool("submit_run", {"workflow": "shop"})

    refused = anyio.run(main)
    assert refused.is_error
    assert refused.structured_content["error"] == "ConfirmationRequiredError"
    assert "confirmation" in text(refused)


@pytest.mark.parametrize("answer", [True, False])
def test_confirmation_by_elicitation(project: Path, answer: bool) -> None:
    import mcp.types as types

    asked: list[str] = []

    async def confirm(context: Any, params: Any) -> types.ElicitResult:
        asked.append(params.message)
        return types.ElicitResult(action="accept", content={"allow": answer})

    async def main() -> Any:
        params = StdioServerParameters(
            command=str(KLAW),
            args=["mcp"],
            cwd=str(project),
            env=env({"KLAW_MCP__CONFIRM": "submit_run"}),
        )
        async with Client(params, elicitation_callback=confirm) as client:
            return await client.call_tool("submit_run", {"workflow": "shop"})

    result = anyio.run(main)
    assert len(asked) == 1 and "submit_run" in asked[0]
    if answer:
        assert not result.is_error, text(result)
        assert result.structured_content["run"]["state"] == "succeeded"
    else:
        assert result.is_error
        assert result.structured_content["error"] == "ConfirmationDeclinedError"
        json.loads(json.dumps(result.structured_content))


def test_runs_started_here_are_cancelled_when_the_client_goes(project: Path) -> None:
    async def body(client: Client) -> str:
        started = await client.call_tool("submit_run", {"workflow": "slow", "wait": False})
        assert started.structured_content["run"]["state"] in ("queued", "running")
        assert "follow it with get_run" in started.structured_content["note"]
        return str(started.structured_content["run"]["run_id"])

    run_id = run(project, body)
    shown = klaw(project, "runs", "show", run_id, "-o", "json").json()
    assert shown["run"]["state"] == "cancelled", shown
