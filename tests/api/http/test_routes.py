"""Every route of /api/v1 against a real uvicorn server, with the role it needs; errors as
problem+json; /openapi.json lists every route."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi.routing import APIRoute

from klaw.api.http import ROLES, Role
from klaw.api.http.routes import PUBLIC

from .live import Live, serving

API = "/api/v1"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Live]:
    with serving(tmp_path_factory.mktemp("routes"), "http_routes_flows") as served:
        yield served


@pytest.fixture(scope="module")
def viewer(live: Live) -> Iterator[httpx.Client]:
    with live.client(Role.VIEWER) as client:
        yield client


@pytest.fixture(scope="module")
def operator(live: Live) -> Iterator[httpx.Client]:
    with live.client(Role.OPERATOR) as client:
        yield client


def assert_problem(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert {"type", "title", "status", "detail", "code"} <= set(body)
    assert body["status"] == status
    assert body["code"] == code
    assert "Traceback" not in body["detail"]
    return body


def submit(client: httpx.Client, workflow: str, **fields: Any) -> dict[str, Any]:
    response = client.post(f"{API}/runs", json={"workflow": workflow, **fields})
    assert response.status_code == 201, response.text
    run: dict[str, Any] = response.json()["run"]
    assert response.headers["location"] == f"{API}/runs/{run['run_id']}"
    return run


def test_workflows_plan_and_validate(viewer: httpx.Client) -> None:
    workflows = viewer.get(f"{API}/workflows").json()["workflows"]
    assert [w["name"] for w in workflows] == ["broken", "pipe"]
    plan = viewer.get(f"{API}/workflows/pipe/plan", params={"select": "numbers"}).json()
    assert plan["stages"] == ["numbers"]
    whole = viewer.get(f"{API}/workflows/pipe/plan").json()
    assert whole["levels"] == [["numbers"], ["total"]]
    results = viewer.post(f"{API}/workflows/validate", json={"workflows": ["pipe"]}).json()
    assert results["results"] == [
        {"workflow": "pipe", "error": None, "problems": [], "unchecked": []}
    ]
    everything = viewer.post(f"{API}/workflows/validate", json={}).json()["results"]
    assert {r["workflow"] for r in everything} == {"pipe", "broken"}


def test_a_run_submitted_and_followed(
    live: Live, operator: httpx.Client, viewer: httpx.Client
) -> None:
    run = submit(operator, "pipe", params={"n": 4}, fail_fast=True)
    assert run["state"] == "queued"
    assert run["params"] == {"n": 4}
    done = live.wait_done(run["run_id"])
    assert done["state"] == "succeeded"
    run_id = run["run_id"]

    assert viewer.get(f"{API}/runs/{run_id}").json()["run"]["state"] == "succeeded"
    attempts = viewer.get(f"{API}/runs/{run_id}/attempts").json()["attempts"]
    assert {a["stage"]: a["state"] for a in attempts} == {
        "numbers": "succeeded",
        "total": "succeeded",
    }
    timings = {a["stage"]: (a["load_s"], a["commit_s"]) for a in attempts}
    assert timings["numbers"][0] is None and timings["numbers"][1] > 0  # stored a snapshot
    assert timings["total"][0] >= 0 and timings["total"][1] is None  # read an input
    events = viewer.get(f"{API}/runs/{run_id}/events").json()
    assert events["run"]["state"] == "succeeded"
    seqs = [e["seq"] for e in events["events"]]
    assert seqs == sorted(seqs) and seqs
    later = viewer.get(f"{API}/runs/{run_id}/events", params={"after": seqs[-2]}).json()
    assert [e["seq"] for e in later["events"]] == seqs[-1:]
    logs = viewer.get(f"{API}/runs/{run_id}/logs", params={"stage": "numbers"}).json()["logs"]
    assert any("making numbers" in str(line) for line in logs)

    # cancelling a finished run answers the run as it is
    cancelled = operator.post(f"{API}/runs/{run_id}/cancel").json()["run"]
    assert cancelled["state"] == "succeeded"

    assets = viewer.get(f"{API}/assets").json()["assets"]
    assert "numbers" in {a["key"] for a in assets}
    snapshots = viewer.get(f"{API}/assets/numbers/snapshots").json()["snapshots"]
    assert run_id in {s["run_id"] for s in snapshots}


def test_runs_listed_filtered_and_paged(
    live: Live, operator: httpx.Client, viewer: httpx.Client
) -> None:
    first = submit(operator, "pipe")["run_id"]
    live.wait_done(first)
    second = submit(operator, "pipe")["run_id"]
    live.wait_done(second)
    page = viewer.get(f"{API}/runs", params={"workflow": "pipe", "limit": 1}).json()["runs"]
    assert [r["run_id"] for r in page] == [second]
    nxt = viewer.get(f"{API}/runs", params={"workflow": "pipe", "limit": 1, "before": second})
    assert [r["run_id"] for r in nxt.json()["runs"]] == [first]
    failed = viewer.get(f"{API}/runs", params={"state": "failed", "workflow": "pipe"}).json()
    assert failed["runs"] == []
    both = viewer.get(f"{API}/runs", params=[("state", "succeeded"), ("state", "failed")])
    assert {first, second} <= {r["run_id"] for r in both.json()["runs"]}


def test_a_failed_run_resumed(live: Live, operator: httpx.Client) -> None:
    failed = submit(operator, "broken")["run_id"]
    assert live.wait_done(failed)["state"] == "failed"
    response = operator.post(f"{API}/runs/{failed}/resume")
    assert response.status_code == 201, response.text
    resumed = response.json()["run"]
    assert resumed["parent_run_id"] == failed
    assert response.headers["location"] == f"{API}/runs/{resumed['run_id']}"
    assert live.wait_done(resumed["run_id"])["state"] == "failed"


def test_schedules_listed_paused_resumed(operator: httpx.Client, viewer: httpx.Client) -> None:
    schedules = viewer.get(f"{API}/schedules").json()["schedules"]
    assert [(s["name"], s["cron"], s["paused"]) for s in schedules] == [
        ("pipe", "0 3 * * *", False)
    ]
    paused = operator.post(f"{API}/schedules/pipe/pause").json()["schedule"]
    assert paused["paused"] is True
    resumed = operator.post(f"{API}/schedules/pipe/resume").json()["schedule"]
    assert resumed["paused"] is False


def test_unknown_things_are_problems(viewer: httpx.Client, operator: httpx.Client) -> None:
    assert_problem(viewer.get(f"{API}/runs/nosuchrun"), 404, "RunNotFoundError")
    assert_problem(viewer.get(f"{API}/runs/nosuchrun/attempts"), 404, "RunNotFoundError")
    body = assert_problem(viewer.get(f"{API}/workflows/nope/plan"), 400, "DefinitionError")
    assert "nope" in body["detail"]
    assert_problem(operator.post(f"{API}/runs", json={"workflow": "nope"}), 400, "DefinitionError")
    assert_problem(operator.post(f"{API}/schedules/nope/pause"), 404, "ScheduleNotFoundError")
    assert_problem(viewer.get(f"{API}/nowhere"), 404, "RouteNotFound")
    assert_problem(viewer.delete(f"{API}/runs"), 405, "MethodNotAllowed")


def test_bad_input_is_a_problem(viewer: httpx.Client, operator: httpx.Client) -> None:
    bad = operator.post(f"{API}/runs", json={"workflow": "pipe", "params": {"n": "many"}})
    assert "n" in assert_problem(bad, 422, "ParamsError")["detail"]
    select = viewer.get(f"{API}/workflows/pipe/plan", params={"select": "nothing_here"})
    assert_problem(select, 422, "SelectionError")
    malformed = operator.post(
        f"{API}/runs", content=b'{"workflow": ', headers={"content-type": "application/json"}
    )
    assert_problem(malformed, 422, "InvalidRequest")
    missing = operator.post(f"{API}/runs", json={"params": {}})
    assert "workflow" in assert_problem(missing, 422, "InvalidRequest")["detail"]
    extra = operator.post(f"{API}/runs", json={"workflow": "pipe", "wait": True})
    assert_problem(extra, 422, "InvalidRequest")
    assert_problem(viewer.get(f"{API}/runs", params={"limit": 0}), 422, "InvalidRequest")
    assert_problem(viewer.get(f"{API}/runs", params={"state": "bogus"}), 422, "InvalidRequest")


def test_openapi_lists_every_route(live: Live) -> None:
    with httpx.Client(base_url=live.url, timeout=60.0) as client:
        spec = client.get("/openapi.json").json()
    routes = [r for r in live.app.routes if isinstance(r, APIRoute) and r.include_in_schema]
    assert {r.name for r in routes if r.path.startswith(API)} == set(ROLES) | PUBLIC
    for route in routes:
        for method in route.methods:
            assert method.lower() in spec["paths"][route.path_format], (method, route.path)
    assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"
    run_body = spec["components"]["schemas"]["RunBody"]
    assert set(run_body["properties"]) == {
        "workflow",
        "params",
        "selection",
        "fail_fast",
        "environment",
    }
    token = spec["paths"]["/api/v1/tokens"]["post"]["requestBody"]["content"]["application/json"]
    assert set(token["schema"]["properties"]) == {"name", "role", "expires_in"}
    assert token["schema"]["required"] == ["name", "role"]
