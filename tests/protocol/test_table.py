"""The command table: every command has an entry, every entry is a route of the app with the
same method, path and name, and the request the client builds from a command reaches that
route."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from fastapi import FastAPI
from fastapi.routing import APIRoute
from starlette.routing import Match

from klaw.api.http import ROLES, StaticTokenAuthenticator, create_app
from klaw.errors import NotOverHttpError
from klaw.protocol import COMMANDS, Heartbeat, ListRuns, SubmitRun, table
from klaw.service.orchestrator import Orchestrator
from klaw.states import RunState

# the required fields of each command, for an example of it
REQUIRED = {
    "workflow": "daily",
    "run_id": "r-1",
    "key": "sales/daily",
    "name": "nightly",
    "token_id": "0123456789ab",
    "role": "viewer",
    "older_than": 60.0,
    "stage": "s",
    "attempt": 1,
    "token": "t",
    "error": "e",
    "until": 1.0,
    "workflows": ["daily", "hourly"],
    "number": 3,
    "to": "qa",
    "a": 1,
    "request_id": "req_1",
    "bundle": {"klaw_bundle": 1},
    "files": {"config.yaml": "engine: duckdb\n"},
}


def example(cls: type[msgspec.Struct]) -> msgspec.Struct:
    fields = msgspec.structs.fields(cls)
    given = {f.name: REQUIRED[f.name] for f in fields if f.required and f.name in REQUIRED}
    return msgspec.convert(given, cls)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FastAPI]:
    root = tmp_path_factory.mktemp("table")
    (root / "klaw.toml").write_text('[project]\nname = "t"\nmodules = ["flows.py"]\n')
    (root / "flows.py").write_text("import klaw\n")
    orch = Orchestrator.open(root)
    try:
        yield create_app(
            orch, StaticTokenAuthenticator.parse("admin:x"), allowed_hosts=["*"], cors_origins=[]
        )
    finally:
        orch.close()


@pytest.fixture(scope="module")
def routes(app: FastAPI) -> list[APIRoute]:
    return [r for r in app.routes if isinstance(r, APIRoute)]


def test_derived_routes_document_the_commands_fields(app: FastAPI) -> None:
    spec = app.openapi()["paths"]
    runs = {p["name"]: p for p in spec["/api/v1/runs"]["get"]["parameters"]}
    assert runs["limit"]["schema"]["minimum"] == 1
    assert runs["limit"]["schema"]["maximum"] == 100_000
    assert runs["state"]["schema"]["anyOf"][0]["type"] == "array"  # the wire name of states
    logs = {p["name"]: p for p in spec["/api/v1/runs/{run_id}/logs"]["get"]["parameters"]}
    assert logs["after"]["schema"]["minimum"] == 0  # after_seq, as the table renames it
    prune = spec["/api/v1/db/prune"]["post"]
    assert prune["parameters"][0]["required"] is True
    assert "older than" in prune["description"]


def test_every_command_has_an_entry() -> None:
    assert set(table.HTTP) == set(COMMANDS.values())


def test_every_entry_is_a_route_of_the_app(routes: list[APIRoute]) -> None:
    by_name = {r.name: r for r in routes}
    for cls, http in table.HTTP.items():
        if http is None:
            continue
        route = by_name[http.name]
        assert route.path == table.PREFIX + http.path, cls
        assert route.methods == {http.method}, cls
        assert route.status_code in (None, http.status), cls
        assert ROLES[http.name].label == http.role


def test_a_commands_request_reaches_its_route(routes: list[APIRoute]) -> None:
    for cls, http in table.HTTP.items():
        if http is None:
            continue
        method, path, query, _ = table.request(example(cls))
        scope = {"type": "http", "path": path, "method": method}
        matched = [r.name for r in routes if r.matches(scope)[0] is Match.FULL]
        assert matched[:1] == [http.name], (cls, path, matched)
        route = next(r for r in routes if r.name == http.name)
        known = {p.alias or p.name for p in route.dependant.query_params}
        assert set(query) <= known, (cls, set(query) - known)


def test_fields_at_their_default_stay_off_the_wire() -> None:
    method, path, query, body = table.request(ListRuns())
    assert (method, path, query, body) == ("GET", "/api/v1/runs", {}, None)
    states = ListRuns(states=(RunState.FAILED,), limit=5)
    assert table.request(states)[2] == {"state": ["failed"], "limit": 5}


def test_a_run_resumed_and_an_agent_call() -> None:
    assert table.request(SubmitRun(workflow="w", resume="r 1"))[1] == "/api/v1/runs/r%201/resume"
    with pytest.raises(NotOverHttpError, match="Flight"):
        table.request(Heartbeat(run_id="r", stage="s", attempt=1, token="t"))
    with pytest.raises(NotOverHttpError, match="executor"):
        table.request(SubmitRun(workflow="w", executor="ray"))


def test_path_fields_keep_slashes_only_where_the_path_says(tmp_path: Path) -> None:
    from klaw.protocol import GetAsset, GetRun

    assert table.request(GetAsset(key="a/b c"))[1] == "/api/v1/assets/a/b%20c"
    assert table.request(GetRun(run_id="a/b"))[1] == "/api/v1/runs/a%2Fb"
