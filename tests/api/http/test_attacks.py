"""Hostile path parameters against a real uvicorn server: ``../`` and control characters in
every path parameter (workflow name, run id, asset key, schedule name) get a 4xx
problem+json, never a 5xx, and touch no file outside the project; an unknown workflow or run
is a 404 naming it.

A burst from one token being limited (429) while another token goes on is proven in
``test_limits.py`` (``test_a_token_over_its_burst_is_limited_and_others_are_not``)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from klaw.api.http import Role

from .live import Live, serving
from .test_routes import assert_problem

API = "/api/v1"

# Percent-encoded, so that no client normalises them away; the server decodes them.
HOSTILE = [
    "..%2F..%2Foutside%2Fsecret.txt",
    "..%2F..%2F..%2F..%2F..%2Fetc%2Fpasswd",
    "..",
    "%2E%2E",
    "..%5C..%5Coutside",
    "a%00b",
    "%00",
    "line%0Abreak",
    "carriage%0D%0Areturn",
    "%1B%5B31mred",
    "%7F",
]

ROUTES = [
    ("GET", "/workflows/{}"),
    ("GET", "/workflows/{}/plan"),
    ("GET", "/runs/{}"),
    ("POST", "/runs/{}/cancel?wait=0"),
    ("POST", "/runs/{}/resume"),
    ("GET", "/runs/{}/attempts"),
    ("GET", "/runs/{}/events"),
    ("GET", "/runs/{}/stream"),
    ("GET", "/runs/{}/logs"),
    ("GET", "/assets/{}"),
    ("GET", "/assets/{}/snapshots"),
    ("GET", "/assets/{}/rows"),
    ("GET", "/assets/{}/lineage"),
    ("POST", "/schedules/{}/pause"),
    ("POST", "/schedules/{}/resume"),
]


@pytest.fixture(scope="module")
def root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("attacks")
    (base / "outside").mkdir()
    (base / "outside" / "secret.txt").write_text("not for klaw")
    return base


@pytest.fixture(scope="module")
def live(root: Path) -> Iterator[Live]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("KLAW_HTTP__RATE", "100000")  # the limits are tested in test_limits.py
        env.setenv("KLAW_HTTP__BURST", "100000")
        with serving(root / "project", "http_attack_flows") as served:
            yield served


def tree(path: Path) -> dict[str, tuple[int, float]]:
    """Every file under ``path`` with its size and modification time."""
    found: dict[str, tuple[int, float]] = {}
    for folder, _, files in os.walk(path):
        for name in files:
            stat = (Path(folder) / name).stat()
            found[str(Path(folder) / name)] = (stat.st_size, stat.st_mtime)
    return found


@pytest.mark.parametrize(("method", "route"), ROUTES, ids=[f"{m} {r}" for m, r in ROUTES])
def test_hostile_path_parameters_are_4xx_problems(
    live: Live, root: Path, method: str, route: str
) -> None:
    outside = tree(root / "outside")
    beside = sorted(p.name for p in root.iterdir())
    with live.client(Role.ADMIN) as admin:
        for value in HOSTILE:
            response = admin.request(method, f"{API}{route.format(value)}")
            assert 400 <= response.status_code < 500, (value, response.text)
            assert response.headers["content-type"] == "application/problem+json", value
            assert "Traceback" not in response.text
    assert tree(root / "outside") == outside
    assert sorted(p.name for p in root.iterdir()) == beside


def test_an_unknown_workflow_is_a_404_naming_it(live: Live) -> None:
    with live.client(Role.VIEWER) as viewer:
        body = assert_problem(
            viewer.get(f"{API}/workflows/no-such-flow"), 404, "WorkflowNotFoundError"
        )
    assert "no-such-flow" in body["detail"]


def test_an_unknown_run_is_a_404_naming_it(live: Live) -> None:
    with live.client(Role.VIEWER) as viewer:
        for path in ("", "/attempts", "/events", "/logs", "/stream"):
            response = viewer.get(f"{API}/runs/no-such-run{path}")
            body = assert_problem(response, 404, "RunNotFoundError")
            assert "no-such-run" in body["detail"], path


def test_a_hostile_value_in_a_query_or_body_is_no_5xx(live: Live) -> None:
    with live.client(Role.ADMIN) as admin:
        for value in ("../../outside", "a\x00b", "x\n\x1b[31m"):
            runs = admin.get(f"{API}/runs", params={"workflow": value, "before": value})
            assert runs.status_code == 200, runs.text
            logs = admin.get(f"{API}/runs/nope/logs", params={"stage": value})
            assert_problem(logs, 404, "RunNotFoundError")
            plan = admin.get(f"{API}/workflows/pipe/plan", params={"select": value})
            assert 400 <= plan.status_code < 500, plan.text
            submit = admin.post(f"{API}/runs", json={"workflow": value})
            assert_problem(submit, 400, "DefinitionError")


def test_literal_dot_segments_never_leave_the_api(live: Live) -> None:
    # sent as they are (no client normalisation): the server answers 4xx, never a file
    with httpx.Client(base_url=live.url, timeout=30) as raw:
        request = raw.build_request("GET", f"{live.url}/")
        request.url = request.url.copy_with(raw_path=b"/api/v1/assets/../../../etc/passwd")
        response = raw.send(request)
    assert 400 <= response.status_code < 500, response.text
    assert "root:" not in response.text
