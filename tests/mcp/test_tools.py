"""The tools derive from the command table: every command with a role is a tool or left out on
purpose, a command added to the table is a tool with no MCP code, and a server of them (in
process, the SDK's client) checks roles, arguments and confirmations."""

from __future__ import annotations

import json
from typing import Any

import anyio
import mcp.types as types
import msgspec
import pytest

from klaw.api.http.auth import Principal, Role
from klaw.errors import ConfigError, InvalidCommandError
from klaw.mcp import audit, tools
from klaw.mcp.server import KlawMcp, confirm_list
from klaw.metadata.records import RunRecord
from klaw.protocol import ListRuns, RunReply, SubmitRun, table
from klaw.protocol.commands import Command
from klaw.protocol.replies import Reply
from klaw.states import RunState
from mcp import Client


def test_every_table_entry_is_a_tool_or_left_out_on_purpose() -> None:
    derived, excluded = tools.derive(), tools.excluded()
    for cls, http in table.HTTP.items():
        if cls in excluded:
            continue
        assert http is not None
        assert http.name in derived, cls.__name__
        spec = derived[http.name]
        assert spec.command is cls
        assert spec.role.label == http.role
        assert spec.mutating == (http.method == "POST" and not http.safe)
    # left out: the admin's commands, the agents' calls, a route answered by another command
    assert {table.HTTP[c].name for c in excluded if table.HTTP[c] is not None} >= {
        "create_token",
        "list_tokens",
        "revoke_token",
        "prune_metadata",
    }
    assert not any(spec.role is Role.ADMIN for spec in derived.values())


def test_a_command_added_to_the_table_is_a_tool(monkeypatch: pytest.MonkeyPatch) -> None:
    class ApproveRun(msgspec.Struct, tag=True, kw_only=True, frozen=True):
        """Approve a run that waits for an approval."""

        run_id: str
        note: str | None = None
        version: int = 1

    entry = table.Http("POST", "/runs/{run_id}/approve", "approve_run", "approver")
    monkeypatch.setitem(table.HTTP, ApproveRun, entry)
    spec = tools.derive()["approve_run"]
    assert spec.role is Role.APPROVER and spec.mutating
    assert spec.description.startswith("Approve a run that waits for an approval.")
    assert set(spec.input_schema["properties"]) == {"run_id", "note", "dry_run"}
    assert spec.input_schema["required"] == ["run_id"]
    assert spec.build({"run_id": "r1"}) == ApproveRun(run_id="r1")


def test_schemas_and_arguments() -> None:
    submit = tools.TOOLS["submit_run"]
    props = submit.input_schema["properties"]
    assert {"workflow", "params", "select", "wait", "dry_run"} <= set(props)
    assert not {"version", "type", "executor", "max_workers"} & set(props)
    assert submit.build({"workflow": "w", "select": "a+"}) == SubmitRun(
        workflow="w", selection="a+"
    )
    assert "dry_run" not in tools.TOOLS["validate_workflows"].input_schema["properties"]
    assert tools.TOOLS["preview_rows"].input_schema["properties"]["limit"]["maximum"] == 100
    with pytest.raises(InvalidCommandError) as bad:
        tools.TOOLS["list_runs"].build({"states": ["sideways"]})
    assert bad.value.field == "states"
    with pytest.raises(InvalidCommandError) as bad:
        tools.TOOLS["plan_workflow"].build({"workflow": 3})
    assert bad.value.field == "workflow"
    assert "`workflow`" in bad.value.message


def test_confirm_setting_names_tools() -> None:
    every = confirm_list(["*"])
    assert {"submit_run", "cancel_run", "pause_schedule", "promote_version"} <= every
    assert not {"validate_workflows", "check_draft", "get_run"} & every
    with pytest.raises(ConfigError, match="submit_runs"):
        confirm_list(["submit_runs"])


class Fake:
    """Commands answered in memory: every SubmitRun makes a succeeded run."""

    def __init__(self) -> None:
        self.sent: list[Command] = []

    def execute(self, cmd: Command) -> Reply:
        self.sent.append(cmd)
        assert isinstance(cmd, SubmitRun | ListRuns)
        run = RunRecord(run_id="r1", workflow="w", state=RunState.SUCCEEDED, created_at=0.0)
        return RunReply(run=run)


@pytest.mark.parametrize("mode", ["legacy", "auto"])
@pytest.mark.parametrize("answer", ["accept", "decline"])
def test_confirmation_in_both_protocol_eras(
    mode: str, answer: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[tuple[str, str, str]] = []
    monkeypatch.setattr(
        audit,
        "record",
        lambda caller, tool, args, outcome, **_: calls.append((caller, tool, outcome)),
    )
    fake = Fake()
    local = Principal(subject="local:test", role=Role.OPERATOR)
    server = KlawMcp(fake, confirm=["submit_run"], local=local).server()

    async def confirm(context: Any, params: Any) -> types.ElicitResult:
        return types.ElicitResult(action=answer, content={"allow": True})  # type: ignore[arg-type]

    async def main() -> Any:
        async with Client(server, mode=mode, elicitation_callback=confirm) as client:
            return await client.call_tool("submit_run", {"workflow": "w", "wait": False})

    result = anyio.run(main)
    if answer == "accept":
        assert not result.is_error
        assert [type(c) for c in fake.sent] == [SubmitRun]
        assert calls[-1] == ("local:test", "submit_run", "ok")
    else:
        assert result.is_error and fake.sent == []
        assert calls[-1] == ("local:test", "submit_run", "declined")


def test_a_big_reply_is_cut_with_a_note() -> None:
    from klaw.mcp.server import MAX_TEXT, result

    cut = result({"rows": ["x" * 1000] * 100})
    shown = cut.content[0].text  # type: ignore[union-attr]
    assert len(shown) < MAX_TEXT + 300
    assert "[cut: the reply is" in shown
    assert cut.structured_content is None


def test_dry_run_of_a_command_sends_nothing() -> None:
    fake = Fake()
    local = Principal(subject="local:test", role=Role.OPERATOR)
    server = KlawMcp(fake, local=local).server()

    async def main() -> Any:
        async with Client(server) as client:
            return await client.call_tool("cancel_run", {"run_id": "r 1", "dry_run": True})

    said = anyio.run(main)
    assert not said.is_error and fake.sent == []
    request = said.structured_content["request"]
    assert (request["method"], request["path"]) == ("POST", "/api/v1/runs/r%201/cancel")
    assert said.structured_content["command"] == {"run_id": "r 1", "wait": 30.0}


def test_audit_writes_one_structlog_record(capfd: pytest.CaptureFixture[str]) -> None:
    from klaw.observability import configure_logging

    configure_logging("info", "json")
    try:
        audit.record("token:abc", "get_run", {"run_id": "r1", "long": "x" * 1000}, "ok")
    finally:
        configure_logging("warning")
    [line] = [x for x in capfd.readouterr().err.splitlines() if "mcp.call" in x]
    found = json.loads(line)
    assert found["event"] == "mcp.call"
    assert (found["caller"], found["tool"], found["outcome"]) == ("token:abc", "get_run", "ok")
    assert found["arguments"]["run_id"] == "r1"
    assert len(found["arguments"]["long"]) < 300


def test_each_call_is_a_span(monkeypatch: pytest.MonkeyPatch) -> None:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from klaw import telemetry

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(telemetry.ACTIVE, "tracer", provider.get_tracer("test"))
    local = Principal(subject="local:test", role=Role.VIEWER)
    server = KlawMcp(Fake(), local=local).server()

    async def main() -> Any:
        async with Client(server) as client:
            return await client.call_tool("list_runs", {})

    assert not anyio.run(main).is_error
    [span] = [s for s in exporter.get_finished_spans() if s.name == "mcp.call"]
    assert span.attributes is not None
    assert span.attributes["mcp.tool"] == "list_runs"
    assert span.attributes["klaw.caller"] == "local:test"
