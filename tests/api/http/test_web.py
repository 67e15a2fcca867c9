"""What the web UI asks of the API: one-time login codes, who a token is, the overview, runs in a
time range, and the pages and files of the built app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from klaw.api.http import Role
from klaw.api.http.login import LoginCodes
from klaw.api.http.ui import HEADERS, ui_router
from klaw.errors import AuthError
from tests.api.http.live import TOKENS, Live, serving

API = "/api/v1"


@pytest.fixture(scope="module")
def codes() -> LoginCodes:
    return LoginCodes()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, codes: LoginCodes) -> Iterator[Live]:
    with serving(tmp_path_factory.mktemp("web"), "web_flows", logins=codes) as served:
        yield served


def test_a_login_code_is_exchanged_once_for_its_token(live: Live, codes: LoginCodes) -> None:
    code = codes.issue(TOKENS[Role.OPERATOR])
    with live.client() as anonymous:
        got = anonymous.post(f"{API}/auth/exchange", json={"code": code})
        assert got.status_code == 200, got.text
        assert got.json()["token"] == TOKENS[Role.OPERATOR]
        assert got.json()["role"] == "operator"
        assert got.headers["cache-control"] == "no-store"
        again = anonymous.post(f"{API}/auth/exchange", json={"code": code})
        assert again.status_code == 401
        assert "used already" in again.json()["detail"]
        wrong = anonymous.post(f"{API}/auth/exchange", json={"code": "made-up"})
        assert wrong.status_code == 401
        assert anonymous.post(f"{API}/auth/exchange", json={}).status_code == 422


def test_a_code_expires() -> None:
    now = [0.0]
    codes = LoginCodes(ttl=10.0, clock=lambda: now[0])
    kept, lost = codes.issue("a"), codes.issue("b")
    assert codes.exchange(kept) == "a"
    now[0] = 10.0
    with pytest.raises(AuthError, match="expired"):
        codes.exchange(lost)


def test_me_names_the_role_of_the_token(live: Live) -> None:
    with live.client(Role.VIEWER) as viewer, live.client() as anonymous:
        assert viewer.get(f"{API}/auth/me").json()["role"] == "viewer"
        assert anonymous.get(f"{API}/auth/me").status_code == 401


def test_the_overview_counts_runs_failures_and_durations(live: Live) -> None:
    with live.client(Role.OPERATOR) as op:
        ok = op.post(f"{API}/runs", json={"workflow": "pipe"}).json()["run"]["run_id"]
        bad = op.post(f"{API}/runs", json={"workflow": "broken"}).json()["run"]["run_id"]
        live.wait_done(ok), live.wait_done(bad)
        body = op.get(f"{API}/overview", params={"hours": 1, "buckets": 6}).json()
    assert body["type"] == "OverviewReply"
    assert body["window_s"] == 3600 and body["bucket_s"] == 600
    assert len(body["buckets"]) == 6
    totals: dict[str, int] = {}
    for bucket in body["buckets"]:
        for state, n in bucket["counts"].items():
            totals[state] = totals.get(state, 0) + n
    assert totals["succeeded"] >= 1 and totals["failed"] >= 1
    failing = {(f["workflow"], f["stage"]): f for f in body["failing"]}
    assert failing["broken", "boom"]["last_run_id"] == bad
    assert "boom on purpose" in failing["broken", "boom"]["last_error"]
    durations = [row["duration_s"] for row in body["longest"]]
    assert durations and durations == sorted(durations, reverse=True)
    assert {row["stage"] for row in body["longest"]} >= {"numbers", "total"}


def test_runs_in_a_time_range(live: Live) -> None:
    with live.client(Role.OPERATOR) as op:
        run = op.post(f"{API}/runs", json={"workflow": "pipe"}).json()["run"]
        live.wait_done(run["run_id"])
        created = run["created_at"]
        around = {"since": created - 1, "until": created + 1, "limit": 1000}
        inside = [r["run_id"] for r in op.get(f"{API}/runs", params=around).json()["runs"]]
        assert run["run_id"] in inside
        later = op.get(f"{API}/runs", params={"since": created + 1}).json()["runs"]
        assert run["run_id"] not in [r["run_id"] for r in later]
        earlier = op.get(f"{API}/runs", params={"until": created}).json()["runs"]
        assert run["run_id"] not in [r["run_id"] for r in earlier]


def test_pages_are_the_app_and_other_paths_are_not(tmp_path: Path) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    dist = tmp_path / "dist"
    (dist / "static").mkdir(parents=True)
    (dist / "index.html").write_text("<!doctype html><title>Klaw app</title>")
    (dist / "static" / "app-1a2b.js").write_text("console.log(1)")
    (dist / "favicon.svg").write_text("<svg/>")
    client = TestClient(FastAPI(routes=ui_router(dist).routes))
    for page in ("/", "/runs", "/runs/r-1/logs?stage=a", "/assets/a/b/c", "/login?code=x"):
        got = client.get(page)
        assert got.status_code == 200 and "Klaw app" in got.text, page
        assert got.headers["cache-control"] == "no-cache"
        assert got.headers["referrer-policy"] == "no-referrer"
        assert got.headers["content-security-policy"] == HEADERS["Content-Security-Policy"]
    js = client.get("/static/app-1a2b.js")
    assert js.status_code == 200 and "immutable" in js.headers["cache-control"]
    assert client.get("/favicon.svg").text == "<svg/>"
    for missing in ("/static/nope.js", "/etc/passwd", "/api/v2/x"):
        assert client.get(missing).status_code == 404, missing


def test_without_a_build_the_app_says_how_to_build_it(tmp_path: Path) -> None:
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    client = TestClient(FastAPI(routes=ui_router(tmp_path / "none").routes))
    got = client.get("/workflows")
    assert got.status_code == 200 and "make ui" in got.text


def test_the_api_still_answers_beside_the_app(live: Live) -> None:
    with live.client() as anonymous:
        assert anonymous.get("/openapi.json").status_code == 200
        assert anonymous.get("/health").json() == {"status": "ok"}
        assert anonymous.get(f"{API}/no-such-route").status_code in (401, 404)


def test_a_workflow_comes_with_its_layout_when_asked(live: Live) -> None:
    with live.client(Role.VIEWER) as viewer:
        plain = viewer.get(f"{API}/workflows/pipe").json()
        drawn = viewer.get(f"{API}/workflows/pipe", params={"layout": "true"}).json()
    assert plain["positions"] == {}
    assert set(drawn["positions"]) == {s["name"] for s in drawn["stages"]}
    (x0, _), (x1, _) = drawn["positions"]["numbers"], drawn["positions"]["total"]
    assert x0 < x1  # total reads numbers: one layer to the right
