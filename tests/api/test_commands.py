"""Every typed command over Flight ``DoAction``, through ``klaw.Client`` and a bare Flight
client; bad input comes back as ErrorReply codes, never as a traceback."""

from __future__ import annotations

from collections.abc import Iterator

import msgspec
import pytest
from pyarrow import flight

import klaw
from klaw import protocol as c
from klaw.errors import DefinitionError, RunNotFoundError, SelectionError
from klaw.metadata.records import RunRecord
from klaw.states import RunState, StageState

from .served import TOKEN, Served, auth, serving


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    with serving(tmp_path_factory.mktemp("api-commands"), "api_command_flows") as served:
        yield served


@pytest.fixture(scope="module")
def first_run(served: Served) -> RunRecord:
    with served.client() as client:
        return client.submit("pipe", wait=True)


def raw_action(served: Served, body: bytes, kind: str = "command") -> bytes:
    client = served.raw()
    try:
        results = list(client.do_action(flight.Action(kind, body), auth()))
    finally:
        client.close()
    assert len(results) == 1
    return bytes(results[0].body.to_pybytes())


def test_list_actions_describes_the_command_action(served: Served) -> None:
    client = served.raw()
    try:
        actions = list(client.list_actions(auth()))
    finally:
        client.close()
    assert [a.type for a in actions] == ["command"]
    assert "MessagePack" in actions[0].description and "SubmitRun" in actions[0].description


# The reply each command gets when it succeeds; any other command (added later) must at least
# come back as a reply, or as an ErrorReply naming a KlawError, never as an internal error.
REPLIES: dict[str, type[c.Reply]] = {
    "SubmitRun": c.RunReply,
    "CancelRun": c.RunReply,
    "GetRun": c.RunReply,
    "ListRuns": c.RunsReply,
    "ListAttempts": c.AttemptsReply,
    "ListEvents": c.EventsReply,
    "Ping": c.PongReply,
    "ReadLogs": c.LogsReply,
    "ListWorkflows": c.WorkflowsReply,
    "PlanWorkflow": c.PlanReply,
    "ValidateWorkflows": c.ValidateReply,
    "ListAssets": c.AssetsReply,
    "ListSnapshots": c.SnapshotsReply,
    "GetWorkflow": c.WorkflowReply,
    "ReadLogPage": c.LogsReply,
    "GetAsset": c.AssetReply,
    "PreviewRows": c.RowsReply,
    "GetLineage": c.LineageReply,
    "GetOverview": c.OverviewReply,
    "LastRuns": c.RunsReply,
    "CreateToken": c.TokenReply,
    "ListTokens": c.TokensReply,
    "PruneMetadata": c.PruneReply,
}


def example(name: str, run_id: str) -> c.Command:
    """A command of type ``name`` about the served project, its required fields filled."""
    sample = {
        "run_id": run_id,
        "workflow": "pipe",
        "key": "numbers",
        "name": "pipe",
        "stage": "numbers",
        "attempt": 1,
        "token": "not-the-token",  # the run has ended: attempt reports are refused
        "error": "boom",
        "role": "viewer",
        "workflows": ("pipe",),
        "older_than": 30 * 86400.0,
        "token_id": "000000000000",  # no such token: a clean MetadataError
        "number": 1,  # no version yet: a clean VersionNotFoundError
        "to": "qa",
        "a": 1,
        "request_id": "req_none",
        "bundle": {"klaw_bundle": 1},  # malformed: a clean VersionBundleError
        "files": {"config.yaml": "engine: duckdb\n"},  # no code file: the draft's error
    }
    cls = c.COMMANDS[name]
    required = [f.name for f in msgspec.structs.fields(cls) if f.required]
    missing = [f for f in required if f not in sample]
    assert not missing, f"add a sample value for {name}.{missing} to this test"
    cmd: c.Command = cls(**{f: sample[f] for f in required})  # type: ignore[assignment]
    return cmd


@pytest.mark.parametrize("name", sorted(c.COMMANDS))
def test_every_command_over_do_action(served: Served, first_run: RunRecord, name: str) -> None:
    cmd = example(name, first_run.run_id)
    reply = c.decode_reply(raw_action(served, c.encode(cmd)))  # a bare Flight client
    if name in REPLIES:
        assert isinstance(reply, REPLIES[name]), reply
        with served.client() as client:  # the same through klaw.Client
            if isinstance(cmd, c.SubmitRun):
                cmd = msgspec.structs.replace(cmd, wait=False)
            again = client.execute(cmd)
            assert isinstance(again, REPLIES[name])
            if isinstance(cmd, c.SubmitRun):  # one active run per workflow: let it end
                assert isinstance(again, c.RunReply)
                assert client.wait(again.run.run_id, timeout=60).state.terminal
    elif isinstance(reply, c.ErrorReply):
        assert reply.code not in {"InternalError", "MalformedCommandError"}, reply


def test_client_convenience_methods(served: Served, first_run: RunRecord) -> None:
    run_id = first_run.run_id
    with klaw.Client(served.server.location, token=TOKEN) as client:
        assert first_run.state is RunState.SUCCEEDED
        assert client.ping().project == "apiproj"
        assert client.get_run(run_id).run_id == run_id
        assert run_id in [r.run_id for r in client.runs("pipe", states=(RunState.SUCCEEDED,))]
        attempts = client.attempts(run_id)
        assert {a.stage: a.state for a in attempts} == {
            "numbers": StageState.SUCCEEDED,
            "total": StageState.SUCCEEDED,
        }
        assert [log.line for log in client.logs(run_id, "total")] == ["summing"]
        [workflow] = client.workflows()
        assert (workflow.name, workflow.assets) == ("pipe", ("numbers",))
        assert client.plan("pipe").stages == ("numbers", "total")
        assert [r.ok for r in client.validate("pipe")] == [True]
        assert "numbers" in [a.key for a in client.assets()]
        assert client.snapshots("numbers")[0].run_id == run_id
        assert client.cancel(run_id, wait=0.0).state is RunState.SUCCEEDED
        page = client.events(run_id)
        assert page.events[0].kind == "run_created" and page.run.run_id == run_id


def test_run_submitted_without_waiting_is_followed_to_its_end(served: Served) -> None:
    with served.client() as client:
        run = client.submit("pipe", params={"n": 5})
        assert run.state is RunState.QUEUED
        seq, kinds, state = 0, [], run.state
        while not state.terminal:  # as a remote client does: ListEvents with a cursor
            page = client.events(run.run_id, after_seq=seq)
            kinds += [e.kind for e in page.events]
            seq = page.events[-1].seq if page.events else seq
            state = page.run.state
            served.orchestrator.wait(run.run_id, timeout=0.05)  # a bounded pause, no assert
        kinds += [e.kind for e in client.events(run.run_id, after_seq=seq).events]
        assert state is RunState.SUCCEEDED
        assert kinds[0] == "run_created" and kinds[-1] == "run_finished"
        assert [e.kind for e in client.follow(run.run_id)] == kinds  # all again, in order
        assert client.wait(run.run_id, timeout=60).state is RunState.SUCCEEDED
        table = client.read_asset("numbers", client.attempts(run.run_id)[0].snapshot_id)
        assert table.column("x").to_pylist() == [1, 2, 3, 4, 5]


def raw(value: object) -> bytes:
    return msgspec.msgpack.encode(value)


@pytest.mark.parametrize(
    ("body", "code", "names"),
    [
        (b"\xc1 not msgpack", "MalformedCommandError", ["MessagePack"]),
        (raw([1, 2]), "MalformedCommandError", ["'type'"]),
        (raw({"type": "GetRun", "run_id": "x" * c.MAX_COMMAND_BYTES}), "CommandTooLargeError", []),
        (raw({"type": "Explode"}), "UnknownCommandError", ["'Explode'"]),
        (raw({"type": "GetRun", "run_id": 1}), "InvalidCommandError", ["GetRun", "'run_id'"]),
        (raw({"type": "ListRuns", "version": 9}), "UnsupportedVersionError", ["version 9"]),
        (c.encode(c.SubmitRun(workflow="pipz")), "DefinitionError", ["'pipz'", "pipe"]),
        (c.encode(c.GetRun(run_id="no-such-run")), "RunNotFoundError", ["'no-such-run'"]),
    ],
)
def test_bad_commands_give_error_replies(
    served: Served, body: bytes, code: str, names: list[str]
) -> None:
    reply = c.decode_reply(raw_action(served, body))
    assert isinstance(reply, c.ErrorReply), reply
    assert reply.code == code
    for name in names:
        assert name in reply.message
    assert "Traceback" not in reply.message


def test_client_raises_the_error_the_reply_names(served: Served) -> None:
    with served.client() as client:
        with pytest.raises(RunNotFoundError) as missing:
            client.get_run("no-such-run")
        assert "'no-such-run'" in missing.value.message
        with pytest.raises(DefinitionError) as unknown:
            client.submit("pipz")
        assert "did you mean pipe" in unknown.value.message and unknown.value.hint
        with pytest.raises(SelectionError) as stage:
            client.plan("pipe", selection="nope")
        assert "nope" in stage.value.message


def test_unknown_action_type_is_refused_naming_the_known_ones(served: Served) -> None:
    client = served.raw()
    try:
        with pytest.raises(flight.FlightServerError) as info:
            list(client.do_action(flight.Action("explode", b""), auth()))
    finally:
        client.close()
    text = str(info.value)
    assert "'explode'" in text and "command" in text and "Traceback" not in text


def test_error_reply_codes_without_a_class_here_stay_remote_errors() -> None:
    from klaw.errors import RemoteError
    from klaw.protocol import from_reply

    exc = from_reply(c.ErrorReply(code="SomeFutureError", message="new", hint="do x"))
    assert type(exc) is RemoteError and exc.code == "SomeFutureError"
    assert (exc.message, exc.hint) == ("new", "do x")
    graph = from_reply(c.ErrorReply(code="GraphError", message="a cycle: a -> b -> a"))
    assert graph.message == "a cycle: a -> b -> a"
