"""Traces to a real OTLP/HTTP receiver on loopback, and OpenLineage events through the
openlineage-python client: a run and its attempts as one trace, a run launched over HTTP as a
child of the caller's ``traceparent`` (across the run worker process), an unreachable collector
that changes nothing, and lineage events per attempt."""

from __future__ import annotations

import json
import logging
import socket
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
import pytest

import klaw
from klaw import telemetry
from klaw.api.flight.client import Client
from klaw.authoring.sql import klaw_sql
from klaw.protocol import RunReply, SubmitRun
from klaw.settings import TelemetrySettings
from klaw.states import RunState
from tests.cli.driver import Dev, wait_for, write_project
from tests.telemetry.receiver import Log, Received, otlp_receiver

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = "00f067aa0ba902b7"


class Flaky:
    """Fails its first call, then succeeds (one retry: two attempt spans)."""

    calls = 0


@klaw.asset
def raw() -> pa.Table:
    return pa.table({"n": [1, 2, 3], "name": ["a", "b", "c"]})


@klaw.asset(retries=klaw.RetryPolicy(retries=1, delay=0.01))
def doubled(raw: pa.Table) -> pa.Table:
    Flaky.calls += 1
    if Flaky.calls == 1:
        raise ConnectionError("transient")
    return raw.set_column(0, "n", pa.compute.multiply(raw["n"], 2))


@klaw.stage
def broken(doubled: pa.Table) -> int:
    raise ValueError("broken on purpose")


@klaw.stage
def counted(raw: pa.Table) -> int:
    return raw.num_rows


totals = klaw_sql("SELECT name, sum(n) AS n FROM raw GROUP BY name", name="totals")
on_datafusion = klaw_sql(
    "SELECT count(*) AS c FROM raw", name="counted_df", engine="datafusion", kind="stage"
)


@klaw.stage
def chatty(raw: pa.Table) -> int:
    print("chatty says hello")
    logging.getLogger("chatty").warning("chatty warns")
    return raw.num_rows


traced = klaw.workflow("traced", [raw, doubled])
talking = klaw.workflow("traced_logs", [raw, chatty])
queried = klaw.workflow("traced_sql", [raw, totals, on_datafusion])
elsewhere = klaw.workflow("traced_elsewhere", [raw, counted])
failing = klaw.workflow("failing_lineage", [raw, doubled, broken])


@pytest.fixture
def receiver() -> Iterator[Received]:
    with otlp_receiver() as found:
        yield found


@pytest.fixture(autouse=True)
def _telemetry_off_afterwards() -> Iterator[None]:
    Flaky.calls = 0
    yield
    telemetry.configure(TelemetrySettings())


def _spans_of(received: Received, trace_id: str, count: int) -> dict[str, list]:  # type: ignore[type-arg]
    def enough() -> dict[str, list] | None:  # type: ignore[type-arg]
        telemetry.flush()
        spans = [s for s in received.spans if s.trace_id == trace_id]
        if len(spans) < count:
            return None
        found: dict[str, list] = {}  # type: ignore[type-arg]
        for span in spans:
            found.setdefault(span.name, []).append(span)
        return found

    return wait_for(f"{count} spans of trace {trace_id}", enough)


def test_a_run_is_one_trace_of_its_attempts_and_commits(
    tmp_path: Path, receiver: Received, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KLAW_TELEMETRY__TRACES", "otlp-http")
    monkeypatch.setenv("KLAW_TELEMETRY__ENDPOINT", receiver.url)
    monkeypatch.setenv("KLAW_TELEMETRY__SERVICE_NAME", "klaw-test")
    run = klaw.run(traced, home=tmp_path / "home")
    assert run.state is RunState.SUCCEEDED

    telemetry.flush()
    (root,) = wait_for("the run's span", lambda: receiver.named("run traced") or None)
    spans = _spans_of(receiver, root.trace_id, 6)  # run, 3 attempts, 2 commits
    assert root.parent_id == "" and root.service == "klaw-test"
    assert root.attributes["klaw.run_id"] == run.run_id
    assert root.attributes["klaw.state"] == "succeeded"

    (raw_span,) = spans["stage raw"]
    attempts = sorted(spans["stage doubled"], key=lambda s: s.attributes["klaw.attempt"])
    assert [a.attributes["klaw.attempt"] for a in attempts] == [1, 2]  # a retry: its own span
    assert attempts[0].status == 2 and attempts[1].status != 2  # ERROR, then not
    for stage in (raw_span, *attempts):
        assert stage.parent_id == root.span_id
        assert stage.attributes["klaw.run_id"] == run.run_id
    assert raw_span.attributes["klaw.asset"] == "raw" and raw_span.attributes["klaw.rows"] == 3

    commits = {c.name: c for c in spans["commit raw"] + spans["commit doubled"]}
    assert commits["commit raw"].parent_id == raw_span.span_id
    assert commits["commit doubled"].parent_id == attempts[1].span_id
    assert commits["commit raw"].attributes["klaw.snapshot"] == raw_span.attributes["klaw.snapshot"]


def test_log_records_and_captured_stage_logs_are_exported_with_their_trace(
    tmp_path: Path, receiver: Received, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KLAW_TELEMETRY__TRACES", "otlp-http")
    monkeypatch.setenv("KLAW_TELEMETRY__LOGS", "otlp-http")
    monkeypatch.setenv("KLAW_TELEMETRY__ENDPOINT", receiver.url)
    monkeypatch.setenv("KLAW_LOG__LEVEL", "info")
    run = klaw.run(talking, home=tmp_path / "home")
    assert run.state is RunState.SUCCEEDED
    telemetry.flush()
    (root,) = wait_for("the run's span", lambda: receiver.named("run traced_logs") or None)
    spans = _spans_of(receiver, root.trace_id, 4)
    stage_span = spans["stage chatty"][0]

    def logged(body: str) -> Log | None:
        telemetry.flush()
        with receiver.lock:
            return next((r for r in receiver.logs if r.body == body), None)

    printed = wait_for("the stage's printed line", lambda: logged("chatty says hello"))
    assert (printed.trace_id, printed.span_id) == (root.trace_id, stage_span.span_id)
    assert printed.attributes["log.iostream"] == "stdout"
    assert printed.attributes["klaw.stage"] == "chatty"
    warned = wait_for("the stage's log record", lambda: logged("chatty: chatty warns"))
    assert warned.severity == "WARNING" and warned.span_id == stage_span.span_id
    finished = wait_for("Klaw's own record", lambda: logged("run finished"))
    assert finished.trace_id == root.trace_id and finished.span_id == root.span_id
    assert finished.attributes["run_id"] == run.run_id and finished.severity == "INFO"


def test_an_sql_stage_is_an_engine_query_span_of_its_attempt(
    tmp_path: Path, receiver: Received, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("KLAW_TELEMETRY__TRACES", "otlp-http")
    monkeypatch.setenv("KLAW_TELEMETRY__ENDPOINT", receiver.url)
    run = klaw.run(queried, home=tmp_path / "home")
    assert run.state is RunState.SUCCEEDED
    telemetry.flush()
    (root,) = wait_for("the run's span", lambda: receiver.named("run traced_sql") or None)
    spans = _spans_of(receiver, root.trace_id, 8)  # run, 3 attempts, 2 queries, 2 commits
    (duck,) = spans["query totals"]
    assert duck.parent_id == spans["stage totals"][0].span_id
    assert duck.attributes["db.system.name"] == "duckdb"
    assert duck.attributes["db.query.text"].startswith("SELECT name, sum(n)")
    assert duck.attributes["db.query.summary"] == "SELECT raw"
    (fusion,) = spans["query counted_df"]
    assert fusion.attributes["db.system.name"] == "datafusion"
    assert fusion.parent_id == spans["stage counted_df"][0].span_id


def test_an_sql_stage_sends_the_column_lineage_of_its_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    events_file = tmp_path / "lineage.jsonl"
    monkeypatch.setenv("KLAW_TELEMETRY__LINEAGE", "file")
    monkeypatch.setenv("KLAW_TELEMETRY__LINEAGE_FILE", str(events_file))
    run = klaw.run(queried, home=tmp_path / "home")
    assert run.state is RunState.SUCCEEDED
    telemetry.flush()
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    (done,) = [
        e
        for e in events
        if e["job"]["name"] == "traced_sql.totals" and e["eventType"] == "COMPLETE"
    ]
    assert done["job"]["facets"]["sql"]["query"].startswith("SELECT name")
    (output,) = done["outputs"]
    fields = output["facets"]["columnLineage"]["fields"]
    assert set(fields) == {"name", "n"}
    (name,) = fields["name"]["inputFields"]
    assert (name["name"], name["field"]) == ("raw", "name")
    assert name["transformations"][0]["subtype"] == "IDENTITY"
    (summed,) = fields["n"]["inputFields"]
    assert (summed["name"], summed["field"]) == ("raw", "n")
    assert summed["transformations"][0] == {"type": "DIRECT", "subtype": "TRANSFORMATION"}


@pytest.mark.parametrize(
    "executor", ["process", pytest.param("ray", marks=pytest.mark.slow)], ids=str
)
def test_stages_run_by_worker_processes_are_spans_of_the_run(
    tmp_path: Path, receiver: Received, monkeypatch: pytest.MonkeyPatch, executor: str
) -> None:
    events_file = tmp_path / "lineage.jsonl"
    monkeypatch.setenv("KLAW_TELEMETRY__TRACES", "otlp-http")
    monkeypatch.setenv("KLAW_TELEMETRY__ENDPOINT", receiver.url)
    monkeypatch.setenv("KLAW_TELEMETRY__LINEAGE", "file")
    monkeypatch.setenv("KLAW_TELEMETRY__LINEAGE_FILE", str(events_file))
    run = klaw.run(elsewhere, home=tmp_path / "home", executor=executor, max_workers=2)
    assert run.state is RunState.SUCCEEDED

    telemetry.flush()
    (root,) = wait_for("the run's span", lambda: receiver.named("run traced_elsewhere") or None)
    spans = _spans_of(receiver, root.trace_id, 4)  # run, 2 attempts, 1 commit (in the workers)
    for stage in ("stage raw", "stage counted"):
        (span,) = spans[stage]
        assert span.parent_id == root.span_id and span.attributes["klaw.run_id"] == run.run_id
    assert spans["commit raw"][0].parent_id == spans["stage raw"][0].span_id
    # the workers sent the attempts' lineage events too
    events = [json.loads(line) for line in events_file.read_text().splitlines()]
    assert sorted(e["eventType"] for e in events) == ["COMPLETE", "COMPLETE", "START", "START"]


def test_an_unreachable_collector_changes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with socket.socket() as probe:  # a port nothing listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setenv("KLAW_TELEMETRY__TRACES", "otlp-http")
    monkeypatch.setenv("KLAW_TELEMETRY__ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("KLAW_TELEMETRY__LINEAGE", "http")
    monkeypatch.setenv("KLAW_TELEMETRY__LINEAGE_URL", f"http://127.0.0.1:{port}")
    run = klaw.run(traced, home=tmp_path / "home")
    assert run.state is RunState.SUCCEEDED
    telemetry.flush(timeout_ms=2000)
    assert telemetry.dropped() >= 1  # the lineage events that could not be sent are counted


def test_lineage_events_per_attempt(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    events_file = tmp_path / "lineage.jsonl"
    monkeypatch.setenv("KLAW_TELEMETRY__LINEAGE", "file")
    monkeypatch.setenv("KLAW_TELEMETRY__LINEAGE_FILE", str(events_file))
    monkeypatch.setenv("KLAW_TELEMETRY__LINEAGE_NAMESPACE", "analytics")
    run = klaw.run(failing, home=tmp_path / "home")
    assert run.state is RunState.FAILED
    telemetry.flush()
    events = [json.loads(line) for line in events_file.read_text().splitlines() if line]
    by_job: dict[str, list[str]] = {}
    for event in events:
        assert event["producer"] and event["schemaURL"].startswith("https://openlineage.io/")
        assert event["job"]["namespace"] == "analytics"
        by_job.setdefault(event["job"]["name"], []).append(event["eventType"])
    assert sorted(by_job["failing_lineage.raw"]) == ["COMPLETE", "START"]
    assert sorted(by_job["failing_lineage.doubled"]) == ["COMPLETE", "FAIL", "START", "START"]
    assert sorted(by_job["failing_lineage.broken"]) == ["FAIL", "START"]

    (done,) = [
        e
        for e in events
        if e["job"]["name"] == "failing_lineage.raw" and e["eventType"] == "COMPLETE"
    ]
    (output,) = done["outputs"]
    assert output["name"] == "raw"
    assert [f["name"] for f in output["facets"]["schema"]["fields"]] == ["n", "name"]
    assert output["outputFacets"]["outputStatistics"]["rowCount"] == 3
    parent = done["run"]["facets"]["parent"]
    assert parent["job"]["name"] == "failing_lineage"
    assert parent["run"]["runId"] == str(telemetry.lineage_run_id(run.run_id))
    (failed,) = [
        e
        for e in events
        if e["job"]["name"] == "failing_lineage.broken" and e["eventType"] == "FAIL"
    ]
    assert "broken on purpose" in failed["run"]["facets"]["errorMessage"]["message"]
    assert [i["name"] for i in failed["inputs"]] == ["doubled"]


HTTP_WORKFLOW = """
import pyarrow as pa
import klaw

@klaw.asset
def first() -> pa.Table:
    return pa.table({"x": [1, 2]})

@klaw.stage
def second(first: pa.Table) -> int:
    return first.num_rows

wf = klaw.workflow("served", [first, second])
"""


@pytest.mark.slow
def test_a_run_launched_over_http_or_flight_is_a_child_of_the_callers_trace(
    tmp_path: Path, receiver: Received
) -> None:
    project = write_project(tmp_path, {"served": textwrap.dedent(HTTP_WORKFLOW)})
    dev = Dev(
        project,
        {
            "KLAW_TELEMETRY__TRACES": "otlp-http",
            "KLAW_TELEMETRY__ENDPOINT": receiver.url,
            "OTEL_BSP_SCHEDULE_DELAY": "100",  # the SDK's own variable: export batches soon
        },
    )
    try:
        with dev.api() as client:
            answer = client.post(
                "/api/v1/runs",
                json={"workflow": "served"},
                headers={"traceparent": f"00-{TRACE_ID}-{CALLER}-01"},
            )
            assert answer.status_code in (200, 201, 202), answer.text
            run_id = answer.json()["run"]["run_id"]

            def finished() -> bool | None:
                state = client.get(f"/api/v1/runs/{run_id}").json()["run"]["state"]
                return True if state in ("succeeded", "failed") else None

            wait_for("the run to end", finished)
        spans = _spans_of(receiver, TRACE_ID, 5)  # request, run, 2 stages, 1 commit

        # over Flight: the client sends its current span's context with the command
        telemetry.configure(TelemetrySettings(traces="otlp-http", endpoint=receiver.url))
        tracer = telemetry.ACTIVE.tracer
        assert tracer is not None
        with (
            tracer.start_as_current_span("caller") as caller,
            Client(dev.info["flight"], dev.info["token"]) as flight,
        ):
            reply = flight.execute(SubmitRun(workflow="served", wait=True))
            uploaded = flight.write_asset("uploaded", pa.table({"x": [1, 2, 3]}))
            assert flight.read_asset("uploaded").num_rows == 3
        assert isinstance(reply, RunReply) and reply.run.state is RunState.SUCCEEDED
        flight_trace = format(caller.get_span_context().trace_id, "032x")
        # caller, command, run, 2 stages, commit; DoPut and DoGet
        over_flight = _spans_of(receiver, flight_trace, 8)
    finally:
        dev.terminate()
    (command,) = over_flight["klaw.command SubmitRun"]
    assert command.parent_id == format(caller.get_span_context().span_id, "016x")
    assert command.attributes["rpc.system"] == "apache_arrow_flight"
    (put,) = over_flight["klaw.DoPut uploaded"]
    (get,) = over_flight["klaw.DoGet uploaded"]
    for data_call in (put, get):
        assert data_call.parent_id == format(caller.get_span_context().span_id, "016x")
        assert data_call.attributes["klaw.asset"] == "uploaded"
        assert data_call.attributes["klaw.snapshot"] == uploaded
    assert put.attributes["klaw.rows"] == 3 and put.attributes["rpc.method"] == "DoPut"
    (flight_run,) = over_flight["run served"]
    assert flight_run.parent_id == command.span_id
    assert flight_run.attributes["klaw.run_id"] == reply.run.run_id
    (request,) = spans["POST /api/v1/runs"]
    assert request.parent_id == CALLER and request.kind == 2  # SERVER
    assert request.attributes["http.route"] == "/api/v1/runs"
    assert request.attributes["http.response.status_code"] in (200, 201, 202)
    (run,) = spans["run served"]
    assert run.parent_id == request.span_id  # prepared in the run worker, under the request
    assert run.attributes["klaw.run_id"] == run_id
    for stage in ("stage first", "stage second"):
        (span,) = spans[stage]
        assert span.parent_id == run.span_id
    assert spans["commit first"][0].parent_id == spans["stage first"][0].span_id
