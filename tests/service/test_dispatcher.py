"""Typed commands on the wire, and a real project driven only through ``Dispatcher.handle``."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from klaw import errors
from klaw import protocol as c
from klaw.service.dispatcher import Dispatcher
from klaw.service.orchestrator import Orchestrator
from klaw.states import RunState, StageState

# -- encode / decode -------------------------------------------------------------------------
EVERY_COMMAND: list[c.Command] = [
    c.SubmitRun(workflow="wf"),
    c.SubmitRun(
        workflow="wf",
        selection="+b",
        params={"n": 3, "label": "x", "nested": {"a": [1.5, None, True]}},
        executor="process",
        max_workers=2,
        fail_fast=True,
        resume="r1",
    ),
    c.CancelRun(run_id="r1"),
    c.CancelRun(run_id="r1", wait=0.0),
    c.GetRun(run_id="r1"),
    c.ListRuns(),
    c.ListRuns(workflow="wf", states=(RunState.FAILED, RunState.RUNNING), limit=3, before="r9"),
    c.ListAttempts(run_id="r1"),
    c.ListEvents(run_id="r1"),
    c.ListEvents(run_id="r1", after_seq=7),
    c.Ping(),
    c.Heartbeat(run_id="r1", stage="a", attempt=1, token="t"),
    c.CompleteAttempt(run_id="r1", stage="a", attempt=2, token="t", snapshot=3, rows=4, bytes=5),
    c.FailAttempt(run_id="r1", stage="a", attempt=1, token="t", error="x", retryable=False),
    c.SubmitRun(workflow="wf", wait=False),
    c.ReadLogs(run_id="r1"),
    c.ReadLogs(run_id="r1", stage="a"),
    c.ListWorkflows(),
    c.PlanWorkflow(workflow="wf"),
    c.PlanWorkflow(workflow="wf", selection="tag:raw"),
    c.ValidateWorkflows(),
    c.ValidateWorkflows(workflows=("a", "b")),
    c.ListAssets(),
    c.ListSnapshots(key="orders"),
    c.ListSchedules(),
    c.PauseSchedule(name="nightly"),
    c.ResumeSchedule(name="nightly"),
    c.GetWorkflow(workflow="wf"),
    c.ReadLogPage(run_id="r1"),
    c.ReadLogPage(run_id="r1", stage="a", after_seq=3, limit=10, tail=5),
    c.GetAsset(key="orders"),
    c.PreviewRows(key="orders"),
    c.PreviewRows(key="orders", snapshot=2, limit=1000),
    c.GetLineage(key="orders"),
    c.GetOverview(hours=6, buckets=12),
    c.CreateToken(name="ci", role="viewer", expires_in=3600.0),
    c.ListTokens(),
    c.RevokeToken(token_id="0123456789ab"),
    c.PruneMetadata(older_than=86400.0),
    c.ListRuns(since=1.0, until=2.0),
    c.LastRuns(workflows=("a", "b"), limit=20),
    c.CreateVersion(workflow="wf"),
    c.CreateVersion(workflow="wf", message="m", files={"config.yaml": "stages: {}\n"}),
    c.ListVersions(workflow="wf", limit=5, before=9),
    c.GetVersion(workflow="wf", number=2),
    c.DiffVersions(workflow="wf", a=1),
    c.DiffVersions(workflow="wf", a=1, b=3),
    c.GetSource(workflow="wf"),
    c.DeleteVersion(workflow="wf", number=1),
    c.PromoteVersion(workflow="wf", number=1, to="uat"),
    c.DemoteVersion(workflow="wf"),
    c.RetireVersion(workflow="wf", number=1),
    c.ListApprovals(),
    c.ListApprovals(workflow="wf", state="all", limit=10),
    c.ApproveRequest(request_id="q1", comment="ok"),
    c.RejectRequest(request_id="q1"),
    c.ListAudit(workflow="wf", limit=10, before=4),
    c.ExportVersion(workflow="wf", number=1),
    c.ImportVersion(bundle={"format": 1, "files": {"a": "b"}}, replace=True),
    c.CheckDraft(workflow="wf", files={"workflow.sql": "select 1"}, selection="a"),
    c.SyncGit(dry_run=True),
]


def test_every_command_type_is_covered() -> None:
    assert {type(cmd).__name__ for cmd in EVERY_COMMAND} == set(c.COMMANDS)


@pytest.mark.parametrize("cmd", EVERY_COMMAND, ids=lambda cmd: type(cmd).__name__)
def test_round_trip(cmd: c.Command) -> None:
    data = c.encode(cmd)
    assert msgspec.msgpack.decode(data)["type"] == type(cmd).__name__
    assert c.decode(data) == cmd


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
    max_leaves=8,
)
maybe_text = st.none() | st.text()


@given(
    workflow=st.text(),
    selection=maybe_text,
    params=st.dictionaries(st.text(), json_values, max_size=4),
    executor=maybe_text,
    max_workers=st.none() | st.integers(1, 2**31),
    fail_fast=st.booleans(),
    resume=maybe_text,
)
def test_submit_run_round_trips(
    workflow: str,
    selection: str | None,
    params: dict[str, Any],
    executor: str | None,
    max_workers: int | None,
    fail_fast: bool,
    resume: str | None,
) -> None:
    cmd = c.SubmitRun(
        workflow=workflow,
        selection=selection,
        params=params,
        executor=executor,
        max_workers=max_workers,
        fail_fast=fail_fast,
        resume=resume,
    )
    assert c.decode(c.encode(cmd)) == cmd


@given(
    workflow=maybe_text,
    states=st.lists(st.sampled_from(RunState), max_size=5).map(tuple),
    limit=st.integers(1, 10_000),
    before=maybe_text,
)
def test_list_runs_round_trips(
    workflow: str | None, states: tuple[RunState, ...], limit: int, before: str | None
) -> None:
    cmd = c.ListRuns(workflow=workflow, states=states, limit=limit, before=before)
    assert c.decode(c.encode(cmd)) == cmd


def raw(value: Any) -> bytes:
    return msgspec.msgpack.encode(value)


@pytest.mark.parametrize(
    ("data", "error", "names"),
    [
        (b"\xc1garbage", errors.MalformedCommandError, ["MessagePack"]),
        (raw([1, 2]), errors.MalformedCommandError, ["'type'"]),
        (raw({"workflow": "wf"}), errors.MalformedCommandError, ["'type'"]),
        (b"\x00" * (c.MAX_COMMAND_BYTES + 1), errors.CommandTooLargeError, ["1048577 bytes"]),
        (
            raw({"type": "SubmitRunn", "workflow": "w"}),
            errors.UnknownCommandError,
            ["'SubmitRunn'"],
        ),
        (raw({"type": "GetRun", "run_id": 7}), errors.InvalidCommandError, ["GetRun", "'run_id'"]),
        (raw({"type": "GetRun"}), errors.InvalidCommandError, ["GetRun", "'run_id'", "missing"]),
        (
            raw({"type": "ListRuns", "states": ["bogus"]}),
            errors.InvalidCommandError,
            ["ListRuns", "'states[0]'"],
        ),
        (
            raw({"type": "ListRuns", "limit": 0}),
            errors.InvalidCommandError,
            ["ListRuns", "'limit'"],
        ),
        (
            raw({"type": "SubmitRun", "workflow": "w", "version": 2, "new": 1}),
            errors.UnsupportedVersionError,
            ["SubmitRun", "version 2"],
        ),
        (
            raw({"type": "GetRun", "run_id": "r", "version": 0}),
            errors.InvalidCommandError,
            ["version"],
        ),
    ],
)
def test_decode_refuses(data: bytes, error: type[errors.CommandError], names: list[str]) -> None:
    with pytest.raises(error) as info:
        c.decode(data)
    assert type(info.value) is error
    for name in names:
        assert name in info.value.message


def test_unknown_tag_suggests_and_lists_commands() -> None:
    with pytest.raises(errors.UnknownCommandError) as info:
        c.decode(raw({"type": "SubmitRunn"}))
    assert "did you mean SubmitRun" in info.value.message
    assert info.value.field == "type" and "ListSnapshots" in (info.value.hint or "")


def test_invalid_field_is_named_on_the_error() -> None:
    with pytest.raises(errors.InvalidCommandError) as info:
        c.decode(raw({"type": "SubmitRun", "workflow": "w", "max_workers": "two"}))
    assert (info.value.command, info.value.field) == ("SubmitRun", "max_workers")


# -- a real project, driven only through bytes -----------------------------------------------
FLOWS = """
import pyarrow as pa

import klaw


@klaw.asset
def numbers() -> pa.Table:
    print("making numbers")
    return pa.table({"x": [1, 2, 3]})


@klaw.stage
def total(numbers: pa.Table) -> int:
    print("summing")
    return sum(numbers.column("x").to_pylist())


pipe = klaw.workflow("pipe", [numbers, total], description="two stages")
"""


@dataclass
class Served:
    dispatcher: Dispatcher
    run: Any  # the RunRecord of the one submitted run

    def send(self, cmd: c.Command | bytes) -> c.Reply:
        data = cmd if isinstance(cmd, bytes) else c.encode(cmd)
        return c.decode_reply(self.dispatcher.handle(data))

    def error(self, cmd: c.Command | bytes) -> c.ErrorReply:
        reply = self.send(cmd)
        assert isinstance(reply, c.ErrorReply), reply
        return reply


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    root: Path = tmp_path_factory.mktemp("dispatch-project")
    (root / "klaw.toml").write_text('[project]\nname = "dproj"\nmodules = ["dispatch_flows.py"]\n')
    (root / "dispatch_flows.py").write_text(FLOWS)
    orchestrator = Orchestrator.open(root)
    dispatcher = Dispatcher(orchestrator)
    try:
        reply = c.decode_reply(dispatcher.handle(c.encode(c.SubmitRun(workflow="pipe"))))
        assert isinstance(reply, c.RunReply), reply
        yield Served(dispatcher, reply.run)
    finally:
        orchestrator.close()


def test_submit_run_returns_the_succeeded_run(served: Served) -> None:
    run = served.run
    assert run.workflow == "pipe" and run.state is RunState.SUCCEEDED
    assert run.stage_counts == {"succeeded": 2} and run.ended_at is not None


def test_get_and_list_runs(served: Served) -> None:
    got = served.send(c.GetRun(run_id=served.run.run_id))
    assert isinstance(got, c.RunReply) and got.run == served.run
    listed = served.send(c.ListRuns(workflow="pipe", states=(RunState.SUCCEEDED,)))
    assert isinstance(listed, c.RunsReply)
    assert [r.run_id for r in listed.runs] == [served.run.run_id]
    none = served.send(c.ListRuns(states=(RunState.FAILED,)))
    assert isinstance(none, c.RunsReply) and none.runs == []


def test_list_attempts_and_read_logs(served: Served) -> None:
    attempts = served.send(c.ListAttempts(run_id=served.run.run_id))
    assert isinstance(attempts, c.AttemptsReply)
    by_stage = {a.stage: a for a in attempts.attempts}
    assert set(by_stage) == {"numbers", "total"}
    assert all(a.state is StageState.SUCCEEDED for a in attempts.attempts)
    assert by_stage["numbers"].asset_key == "numbers" and by_stage["numbers"].snapshot_id == 1

    logs = served.send(c.ReadLogs(run_id=served.run.run_id))
    assert isinstance(logs, c.LogsReply)
    assert [(log.stage, log.line) for log in logs.logs] == [
        ("numbers", "making numbers"),
        ("total", "summing"),
    ]
    one = served.send(c.ReadLogs(run_id=served.run.run_id, stage="total"))
    assert isinstance(one, c.LogsReply) and [log.line for log in one.logs] == ["summing"]


def test_assets_and_snapshots(served: Served) -> None:
    assets = served.send(c.ListAssets())
    assert isinstance(assets, c.AssetsReply)
    assert [(a.key, a.rows, a.latest_snapshot) for a in assets.assets] == [("numbers", 3, 1)]
    snaps = served.send(c.ListSnapshots(key="numbers"))
    assert isinstance(snaps, c.SnapshotsReply)
    [snap] = snaps.snapshots
    assert (snap.run_id, snap.stage, snap.attempt) == (served.run.run_id, "numbers", 1)
    assert snap.schema == {"x": "int64"}


def test_workflows_plan_and_validate(served: Served) -> None:
    workflows = served.send(c.ListWorkflows())
    assert isinstance(workflows, c.WorkflowsReply)
    [info] = workflows.workflows
    assert (info.name, info.stages, info.assets) == ("pipe", ("numbers", "total"), ("numbers",))

    plan = served.send(c.PlanWorkflow(workflow="pipe"))
    assert isinstance(plan, c.PlanReply)
    assert plan.stages == ("numbers", "total")
    assert plan.levels == [["numbers"], ["total"]]
    assert plan.external == {}
    partial = served.send(c.PlanWorkflow(workflow="pipe", selection="total"))
    assert isinstance(partial, c.PlanReply)
    assert partial.stages == ("total",) and partial.external == {"total": ("numbers",)}

    valid = served.send(c.ValidateWorkflows())
    assert isinstance(valid, c.ValidateReply)
    assert [(r.workflow, r.ok) for r in valid.results] == [("pipe", True)]
    unknown = served.send(c.ValidateWorkflows(workflows=("nope",)))
    assert isinstance(unknown, c.ValidateReply)
    [result] = unknown.results
    assert result.error is not None and result.error.code == "DefinitionError"


@pytest.mark.parametrize(
    ("data", "code", "names"),
    [
        (b"\xc1 not msgpack", "MalformedCommandError", ["MessagePack"]),
        (raw({"type": "GetRun", "run_id": "x" * c.MAX_COMMAND_BYTES}), "CommandTooLargeError", []),
        (raw({"type": "Explode"}), "UnknownCommandError", ["'Explode'"]),
        (raw({"type": "GetRun", "run_id": 1}), "InvalidCommandError", ["GetRun", "'run_id'"]),
        (
            raw({"type": "ListRuns", "version": 99}),
            "UnsupportedVersionError",
            ["ListRuns", "version 99"],
        ),
        (c.encode(c.SubmitRun(workflow="pipz")), "DefinitionError", ["'pipz'", "pipe"]),
        (c.encode(c.PlanWorkflow(workflow="nope")), "DefinitionError", ["'nope'"]),
        (c.encode(c.GetRun(run_id="no-such-run")), "RunNotFoundError", ["'no-such-run'"]),
        (c.encode(c.ListAttempts(run_id="no-such-run")), "RunNotFoundError", ["'no-such-run'"]),
        (c.encode(c.ListSnapshots(key="missing")), "AssetNotFoundError", ["missing"]),
    ],
)
def test_bad_input_gives_an_error_reply(
    served: Served, data: bytes, code: str, names: list[str]
) -> None:
    reply = served.error(data)
    assert reply.code == code
    for name in names:
        assert name in reply.message


def test_read_logs_of_an_unknown_stage_names_it(served: Served) -> None:
    reply = served.error(c.ReadLogs(run_id=served.run.run_id, stage="totl"))
    assert reply.code == "SelectionError" and "'totl'" in reply.message
    assert "did you mean total" in reply.message


def test_execute_returns_reply_values(served: Served) -> None:
    reply = served.dispatcher.execute(c.GetRun(run_id=served.run.run_id))
    assert isinstance(reply, c.RunReply) and reply.run.run_id == served.run.run_id


def test_list_events_pages_by_cursor(served: Served) -> None:
    every = served.send(c.ListEvents(run_id=served.run.run_id))
    assert isinstance(every, c.EventsReply) and every.run.state is RunState.SUCCEEDED
    kinds = [e.kind for e in every.events]
    assert kinds[0] == "run_created" and kinds[-1] == "run_finished"
    assert [e.seq for e in every.events] == list(range(1, len(kinds) + 1))
    rest = served.send(c.ListEvents(run_id=served.run.run_id, after_seq=every.events[-2].seq))
    assert isinstance(rest, c.EventsReply) and [e.kind for e in rest.events] == ["run_finished"]


def test_ping_names_the_project(served: Served) -> None:
    import klaw

    reply = served.send(c.Ping())
    assert isinstance(reply, c.PongReply)
    assert (reply.project, reply.klaw_version) == ("dproj", klaw.__version__)


def test_submit_without_wait_returns_the_queued_run_and_runs_it(served: Served) -> None:
    reply = served.send(c.SubmitRun(workflow="pipe", wait=False))
    assert isinstance(reply, c.RunReply) and reply.run.state is RunState.QUEUED
    run_id, seq, state = reply.run.run_id, 0, reply.run.state
    kinds: list[str] = []
    while not state.terminal:  # follow the run by its events, as a remote client does
        events = served.send(c.ListEvents(run_id=run_id, after_seq=seq))
        assert isinstance(events, c.EventsReply)
        kinds += [e.kind for e in events.events]
        seq = events.events[-1].seq if events.events else seq
        state = events.run.state
        served.dispatcher.orchestrator.wait(run_id, timeout=0.05)
    events = served.send(c.ListEvents(run_id=run_id, after_seq=seq))
    assert isinstance(events, c.EventsReply)
    kinds += [e.kind for e in events.events]
    assert state is RunState.SUCCEEDED
    assert kinds[0] == "run_created" and kinds[-1] == "run_finished"


def test_submit_without_wait_refuses_bad_input_before_recording(served: Served) -> None:
    before = served.send(c.ListRuns(limit=100))
    reply = served.error(c.SubmitRun(workflow="pipe", params={"nope": 1}, wait=False))
    assert reply.code in {"ParamsError", "DefinitionError", "ConfigError"}, reply
    after = served.send(c.ListRuns(limit=100))
    assert isinstance(before, c.RunsReply) and isinstance(after, c.RunsReply)
    assert len(after.runs) == len(before.runs)


# -- schedules -------------------------------------------------------------------------------
SCHEDULED_FLOWS = """
import klaw


@klaw.stage
def noop() -> int:
    return 1


nightly = klaw.workflow(
    "nightly", [noop], schedule="0 3 * * *", timezone="Europe/Paris", catch_up="all"
)
adhoc = klaw.workflow("adhoc", [noop])
"""


@pytest.fixture
def scheduled(tmp_path: Path) -> Iterator[Served]:
    """A project with a Python schedule, a folder (config.yaml) schedule and an unscheduled
    workflow, driven through bytes. ``run`` is unused here."""
    (tmp_path / "klaw.toml").write_text('[project]\nname = "sproj"\nmodules = ["sflows.py"]\n')
    (tmp_path / "sflows.py").write_text(SCHEDULED_FLOWS)
    folder = tmp_path / "workflows" / "usage"
    folder.mkdir(parents=True)
    (folder / "config.yaml").write_text("engine: python\nschedule: '*/15 * * * *'\n")
    (folder / "workflow.py").write_text(
        "import klaw\n\n\n@klaw.stage\ndef count() -> int:\n    return 2\n"
    )
    orchestrator = Orchestrator.open(tmp_path)
    try:
        yield Served(Dispatcher(orchestrator), None)
    finally:
        orchestrator.shutdown()
        orchestrator.close()


def _schedules(served: Served) -> dict[str, c.ScheduleInfo]:
    reply = served.send(c.ListSchedules())
    assert isinstance(reply, c.SchedulesReply), reply
    return {info.name: info for info in reply.schedules}


def test_list_schedules_shows_definitions_state_and_next_tick(scheduled: Served) -> None:
    import time

    from klaw.authoring.cron import parse_tick_key

    listed = _schedules(scheduled)
    assert list(listed) == ["nightly", "usage"]  # adhoc has no schedule
    nightly, usage = listed["nightly"], listed["usage"]
    assert (nightly.workflow, nightly.cron, nightly.timezone, nightly.catch_up) == (
        "nightly",
        "0 3 * * *",
        "Europe/Paris",
        "all",
    )
    assert (usage.cron, usage.timezone, usage.catch_up) == ("*/15 * * * *", "UTC", "latest")
    for info in (nightly, usage):
        assert info.paused is False and info.paused_at is None
        assert (info.last_tick, info.last_run_id, info.last_run_state, info.last_error) == (
            None,
            None,
            None,
            None,
        )
        assert info.next_tick is not None
        assert parse_tick_key(info.next_tick).timestamp() > time.time() - 1
    assert parse_tick_key(usage.next_tick or "").minute % 15 == 0


def test_pause_and_resume_by_command(scheduled: Served) -> None:
    paused = scheduled.send(c.PauseSchedule(name="nightly"))
    assert isinstance(paused, c.ScheduleReply), paused
    assert paused.schedule.paused and paused.schedule.next_tick is None
    assert paused.schedule.paused_at is not None
    listed = _schedules(scheduled)
    assert listed["nightly"].paused and not listed["usage"].paused
    again = scheduled.send(c.PauseSchedule(name="nightly"))  # idempotent
    assert isinstance(again, c.ScheduleReply)
    assert again.schedule.paused_at == paused.schedule.paused_at

    resumed = scheduled.send(c.ResumeSchedule(name="nightly"))
    assert isinstance(resumed, c.ScheduleReply), resumed
    assert not resumed.schedule.paused and resumed.schedule.next_tick is not None
    assert not _schedules(scheduled)["nightly"].paused


def test_list_schedules_shows_the_last_tick_and_its_run(scheduled: Served) -> None:
    submitted = scheduled.send(c.SubmitRun(workflow="usage"))
    assert isinstance(submitted, c.RunReply), submitted
    store = scheduled.dispatcher.orchestrator.metadata
    scheduled.send(c.PauseSchedule(name="usage"))  # syncs the definitions to the store
    scheduled.send(c.ResumeSchedule(name="usage"))
    assert store.claim_tick("usage", "2026-05-01T10:15:00Z", now=1.0)
    store.finish_tick("usage", "2026-05-01T10:15:00Z", run_id=submitted.run.run_id)
    assert store.claim_tick("nightly", "2026-05-01T01:00:00Z", now=1.0)
    store.finish_tick("nightly", "2026-05-01T01:00:00Z", error="RunConflictError: busy")
    listed = _schedules(scheduled)
    usage, nightly = listed["usage"], listed["nightly"]
    assert (usage.last_tick, usage.last_run_id, usage.last_run_state, usage.last_error) == (
        "2026-05-01T10:15:00Z",
        submitted.run.run_id,
        RunState.SUCCEEDED,
        None,
    )
    assert (nightly.last_run_id, nightly.last_error) == (None, "RunConflictError: busy")


@pytest.mark.parametrize(
    ("cmd", "names"),
    [
        (c.PauseSchedule(name="nightlly"), ["'nightlly'", "did you mean 'nightly'"]),
        (c.ResumeSchedule(name="usag"), ["'usag'", "did you mean 'usage'"]),
        (c.PauseSchedule(name="zzz"), ["'zzz'", "schedules: nightly, usage"]),
        (c.PauseSchedule(name="adhoc"), ["Workflow 'adhoc'", "has no schedule"]),
    ],
)
def test_unknown_schedule_is_named_with_close_names(
    scheduled: Served, cmd: c.Command, names: list[str]
) -> None:
    reply = scheduled.error(cmd)
    assert reply.code == "ScheduleNotFoundError"
    for name in names:
        assert name in reply.message
    assert reply.hint


def test_schedule_commands_need_a_name() -> None:
    with pytest.raises(errors.InvalidCommandError) as info:
        c.decode(raw({"type": "PauseSchedule"}))
    assert (info.value.command, info.value.field) == ("PauseSchedule", "name")
