"""The resource routes against a real uvicorn server: one workflow with its graph, params
schema and configuration; a run's logs paged and tailed; one asset, a preview of its rows and
its lineage across workflows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from klaw.api.http import ROLES, Role

from .live import Live, serving
from .test_routes import assert_problem

API = "/api/v1"
LINE, SEQ = 5, 7  # a log line is a JSON array: run_id, stage, attempt, stream, ts, line, level, seq

FLOWS = """
import pyarrow as pa
from pydantic import BaseModel

import klaw


class Size(BaseModel):
    n: int = 3


@klaw.asset
def numbers(params: Size) -> pa.Table:
    for i in range(1, 6):
        print(f"line {i}")
    labels = [f"n{i}" for i in range(params.n)]
    return pa.table({"x": list(range(1, params.n + 1)), "label": labels})


@klaw.stage(retries=2)
def total(numbers: pa.Table) -> int:
    return sum(numbers.column("x").to_pylist())


@klaw.asset
def summary(total: int) -> pa.Table:
    return pa.table({"total": [total]})


@klaw.asset
def report(numbers: pa.Table) -> pa.Table:
    return numbers


pipe = klaw.workflow(
    "pipe", [numbers, total, summary], description="three stages", schedule="0 3 * * *",
    tags=["daily"],
)
reporting = klaw.workflow("reporting", [report])
"""


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    root = tmp_path_factory.mktemp("resources")
    with serving(root, "http_resources_flows", flows=FLOWS) as served:
        yield served


@pytest.fixture(scope="module")
def viewer(live: Live) -> Iterator[httpx.Client]:
    with live.client(Role.VIEWER) as client:
        yield client


@pytest.fixture(scope="module")
def done(live: Live) -> dict[str, Any]:
    """A finished run of ``pipe`` with n=12, then one of ``reporting``."""
    with live.client(Role.OPERATOR) as operator:
        created = operator.post(f"{API}/runs", json={"workflow": "pipe", "params": {"n": 12}})
        assert created.status_code == 201, created.text
        run = live.wait_done(created.json()["run"]["run_id"])
        assert run["state"] == "succeeded", run
        other = operator.post(f"{API}/runs", json={"workflow": "reporting"})
        assert other.status_code == 201, other.text
        assert live.wait_done(other.json()["run"]["run_id"])["state"] == "succeeded"
    return run


def test_every_new_route_is_a_viewer_route() -> None:
    for name in ("get_workflow", "preview_rows", "asset_lineage", "get_asset", "read_logs"):
        assert ROLES[name] is Role.VIEWER


def test_a_workflow_with_its_graph_schema_and_config(viewer: httpx.Client) -> None:
    response = viewer.get(f"{API}/workflows/pipe")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "WorkflowReply"
    info = body["workflow"]
    assert (info["name"], info["schedule"], info["tags"]) == ("pipe", "0 3 * * *", ["daily"])
    assert info["description"] == "three stages"
    assert info["source"]
    assert [s["name"] for s in body["stages"]] == ["numbers", "total", "summary"]
    stages = {s["name"]: s for s in body["stages"]}
    assert (stages["numbers"]["kind"], stages["numbers"]["asset"]) == ("asset", "numbers")
    assert (stages["total"]["kind"], stages["total"]["retries"]) == ("stage", 2)
    assert body["edges"] == [["numbers", "total"], ["total", "summary"]]
    schema = body["params_schema"]
    assert schema["type"] == "object"
    assert schema["properties"]["n"]["default"] == 3
    assert body["max_active_runs"] == 1
    reporting = viewer.get(f"{API}/workflows/reporting").json()
    assert reporting["stages"][0]["inputs"] == ["numbers"]  # read from pipe's asset
    assert reporting["edges"] == []


def test_an_unknown_workflow_is_a_404_naming_it(viewer: httpx.Client) -> None:
    body = assert_problem(viewer.get(f"{API}/workflows/pipes"), 404, "WorkflowNotFoundError")
    assert "'pipes'" in body["detail"]
    assert "pipe" in body["detail"].split("'pipes'")[1]  # the close match


def test_logs_paged_and_tailed(viewer: httpx.Client, done: dict[str, Any]) -> None:
    logs = f"{API}/runs/{done['run_id']}/logs"
    every = viewer.get(logs, params={"stage": "numbers"}).json()
    assert every["type"] == "LogsReply"
    lines = [log[LINE] for log in every["logs"]]
    assert lines == [f"line {i}" for i in range(1, 6)]
    seqs = [log[SEQ] for log in every["logs"]]

    first = viewer.get(logs, params={"stage": "numbers", "limit": 2}).json()["logs"]
    assert [log[LINE] for log in first] == ["line 1", "line 2"]
    rest = viewer.get(logs, params={"stage": "numbers", "after": first[-1][SEQ]}).json()
    assert [log[SEQ] for log in rest["logs"]] == seqs[2:]
    tail = viewer.get(logs, params={"stage": "numbers", "tail": 2}).json()["logs"]
    assert [log[LINE] for log in tail] == ["line 4", "line 5"]
    assert viewer.get(logs, params={"after": seqs[-1]}).json()["logs"] == [
        log for log in viewer.get(logs).json()["logs"] if log[SEQ] > seqs[-1]
    ]

    assert_problem(viewer.get(logs, params={"limit": 0}), 422, "InvalidRequest")
    assert_problem(viewer.get(logs, params={"tail": 10_001}), 422, "InvalidRequest")
    assert_problem(viewer.get(logs, params={"stage": "nope"}), 422, "SelectionError")
    missing = assert_problem(viewer.get(f"{API}/runs/no-such-run/logs"), 404, "RunNotFoundError")
    assert "no-such-run" in missing["detail"]


def test_an_asset_with_schema_and_latest_snapshot(
    viewer: httpx.Client, done: dict[str, Any]
) -> None:
    response = viewer.get(f"{API}/assets/numbers")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["type"] == "AssetReply"
    assert body["asset"]["key"] == "numbers"
    assert body["asset"]["rows"] == 12
    assert set(body["asset"]["schema"]) == {"x", "label"}
    latest = body["latest"]
    assert latest["run_id"] == done["run_id"]
    assert latest["snapshot"] == body["asset"]["latest_snapshot"]
    assert latest["schema"] == body["asset"]["schema"]
    assert_problem(viewer.get(f"{API}/assets/nothing"), 404, "AssetNotFoundError")


def test_rows_previewed_with_a_capped_limit(viewer: httpx.Client, done: dict[str, Any]) -> None:
    rows = viewer.get(f"{API}/assets/numbers/rows", params={"limit": 3}).json()
    assert rows["type"] == "RowsReply"
    assert rows["rows"] == [
        {"x": 1, "label": "n0"},
        {"x": 2, "label": "n1"},
        {"x": 3, "label": "n2"},
    ]
    assert rows["total_rows"] == 12
    assert set(rows["schema"]) == {"x", "label"}
    snapshot = rows["snapshot"]
    again = viewer.get(f"{API}/assets/numbers/rows", params={"snapshot": snapshot}).json()
    assert len(again["rows"]) == 12  # the default limit (100) is more than there are
    schema_only = viewer.get(f"{API}/assets/numbers/rows", params={"limit": 0}).json()
    assert schema_only["rows"] == []
    assert set(schema_only["schema"]) == {"x", "label"}

    too_many = viewer.get(f"{API}/assets/numbers/rows", params={"limit": 1001})
    assert_problem(too_many, 422, "InvalidRequest")
    no_snapshot = viewer.get(f"{API}/assets/numbers/rows", params={"snapshot": 99_999})
    assert_problem(no_snapshot, 404, "AssetNotFoundError")
    assert_problem(viewer.get(f"{API}/assets/nothing/rows"), 404, "AssetNotFoundError")


def test_lineage_across_stages_and_workflows(viewer: httpx.Client, done: dict[str, Any]) -> None:
    numbers = viewer.get(f"{API}/assets/numbers/lineage").json()
    assert numbers == {
        "type": "LineageReply",
        "key": "numbers",
        "workflow": "pipe",
        "stage": "numbers",
        "upstream": [],
        "downstream": ["report", "summary"],  # through the stage `total`; another workflow
    }
    summary = viewer.get(f"{API}/assets/summary/lineage").json()
    assert (summary["upstream"], summary["downstream"]) == (["numbers"], [])
    report = viewer.get(f"{API}/assets/report/lineage").json()
    assert (report["workflow"], report["upstream"]) == ("reporting", ["numbers"])
    assert_problem(viewer.get(f"{API}/assets/nothing/lineage"), 404, "AssetNotFoundError")


def test_the_new_routes_need_a_token(live: Live) -> None:
    with live.client() as anonymous:
        for path in ("/workflows/pipe", "/assets/numbers", "/assets/numbers/rows"):
            assert_problem(anonymous.get(f"{API}{path}"), 401, "AuthError")
