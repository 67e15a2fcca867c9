"""The real ``klaw`` CLI against a real Klaw HTTP API (uvicorn on a free port, in this process)
over a project in a temporary folder. The CLI runs in an empty folder with ``--url`` (or
``KLAW_URL``) and ``KLAW_TOKEN``: everything it shows comes from the API. What a command prints
over HTTP is compared with what the same command prints locally in the project."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn

from klaw.api.http import StaticTokenAuthenticator, create_app
from klaw.api.http.client import HttpClient
from klaw.api.http.limits import Limits
from klaw.protocol import ListWorkflows, WorkflowsReply
from klaw.service.orchestrator import Orchestrator

from .driver import (
    WAIT,
    Background,
    Result,
    assert_error,
    klaw,
    run_id_of,
    wait_for_stage,
    write_project,
)
from .test_remote import WORKFLOWS

TOKEN = "http-remote-test-token"


class Api:
    """A uvicorn server of a Klaw app on 127.0.0.1 until :meth:`stop`."""

    def __init__(self, orchestrator: Orchestrator, limits: Limits | None = None) -> None:
        app = create_app(
            orchestrator,
            StaticTokenAuthenticator.parse(f"admin:{TOKEN}"),
            allowed_hosts=["127.0.0.1"],
            cors_origins=[],
            limits=limits,
        )
        config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + WAIT
        while not self.server.started and self.thread.is_alive() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.server.started, "uvicorn did not start"
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=WAIT)


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_project(tmp_path_factory.mktemp("cli-http"), {"shop": WORKFLOWS})


@pytest.fixture(scope="module")
def orchestrator(project: Path) -> Iterator[Orchestrator]:
    orchestrator = Orchestrator.open(project)
    try:
        yield orchestrator
    finally:
        orchestrator.shutdown()
        orchestrator.close()


@pytest.fixture(scope="module")
def api(orchestrator: Orchestrator) -> Iterator[Api]:
    running = Api(orchestrator)
    try:
        yield running
    finally:
        running.stop()


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty folder: no project here, so whatever the CLI shows comes from the API."""
    return tmp_path_factory.mktemp("cli-http-client")


@pytest.fixture(scope="module")
def shop_run(api: Api, elsewhere: Path) -> str:
    """The id of a succeeded run of ``shop``, made through the API."""
    result = remote(api, elsewhere, "run", "shop")
    assert result.returncode == 0, str(result)
    return run_id_of(result)


def token_env(token: str | None = TOKEN, tty: bool = False) -> dict[str, str]:
    values = {} if token is None else {"KLAW_TOKEN": token}
    if tty:
        values["TTY_COMPATIBLE"] = "1"
    return values


def remote(api: Api, cwd: Path, *args: str, token: str | None = TOKEN, tty: bool = False) -> Result:
    """``klaw --url URL ARGS`` in ``cwd``, with ``token`` in KLAW_TOKEN (None: unset)."""
    return klaw(cwd, "--url", api.url, *args, extra_env=token_env(token, tty))


def same_as_local(api: Api, project: Path, elsewhere: Path, *args: str) -> Result:
    """Run ``args`` locally in the project and through the API: same exit, same output."""
    here = klaw(project, *args)
    there = remote(api, elsewhere, *args)
    assert there.returncode == here.returncode, f"{here}\n{there}"
    assert there.stdout == here.stdout, f"{here}\n{there}"
    return there


# -- definitions -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ("workflows", "list", "-o", "json"),
        ("validate", "shop", "slow"),
        ("plan", "shop"),
        ("plan", "shop", "-o", "json"),
        ("plan", "shop", "--select", "totals", "-o", "json"),
    ],
    ids=" ".join,
)
def test_definitions_are_the_apis(
    api: Api, project: Path, elsewhere: Path, args: tuple[str, ...]
) -> None:
    result = same_as_local(api, project, elsewhere, *args)
    assert result.returncode == 0, str(result)


def test_workflows_table_names_the_api(api: Api, elsewhere: Path) -> None:
    result = remote(api, elsewhere, "workflows", "list")
    assert result.returncode == 0, str(result)
    assert f"Workflows of {api.url}" in result.out
    assert "shop" in result.out


def test_the_api_can_come_from_klaw_url(api: Api, elsewhere: Path) -> None:
    env = {**token_env(), "KLAW_URL": api.url}
    result = klaw(elsewhere, "workflows", "list", "-o", "json", extra_env=env)
    assert result.returncode == 0, str(result)
    assert [w["name"] for w in result.json()] == ["broken", "cyclic", "shop", "slow"]


def test_validate_names_every_problem_and_exits_2(api: Api, project: Path, elsewhere: Path) -> None:
    result = same_as_local(api, project, elsewhere, "validate", "-o", "json")
    assert result.returncode == 2, str(result)
    found = {r["workflow"]: r for r in result.json()}
    assert any("a -> b -> a" in p for p in found["cyclic"]["problems"])


def test_an_unknown_workflow_is_a_clean_error(api: Api, elsewhere: Path) -> None:
    result = remote(api, elsewhere, "plan", "shpo")
    assert_error(result, 2, "No workflow named 'shpo'", "did you mean shop")


# -- runs ------------------------------------------------------------------------------------
def test_run_shows_progress_and_a_summary(api: Api, elsewhere: Path) -> None:
    result = remote(api, elsewhere, "run", "shop", tty=True)
    assert result.returncode == 0, str(result)
    run_id = run_id_of(result)
    assert f"run {run_id} of shop: 2 stage(s)" in result.out
    assert f"run {run_id} succeeded in" in result.out
    assert "(2 succeeded)" in result.out


def test_a_failing_run_exits_1(api: Api, project: Path, elsewhere: Path) -> None:
    result = remote(api, elsewhere, "run", "broken")
    assert result.returncode == 1, str(result)
    assert "Traceback" not in result.stderr, str(result)
    run_id = run_id_of(result)
    assert f"run {run_id} failed in" in result.out
    logs = same_as_local(api, project, elsewhere, "logs", run_id)
    assert "boom from explode" in logs.out


def test_run_json_has_the_shape_of_a_local_run(api: Api, project: Path, elsewhere: Path) -> None:
    there = remote(api, elsewhere, "run", "shop", "-o", "json")
    here = klaw(project, "run", "shop", "-o", "json")
    assert there.returncode == here.returncode == 0, f"{here}\n{there}"
    remote_run, local_run = there.json(), here.json()
    assert remote_run.keys() == local_run.keys() == {"run", "attempts"}
    assert remote_run["run"].keys() == local_run["run"].keys()
    assert [a.keys() for a in remote_run["attempts"]] == [a.keys() for a in local_run["attempts"]]


@pytest.mark.parametrize(
    "args",
    [
        ("runs", "list", "--workflow", "shop", "-o", "json"),
        ("runs", "show", "{run}"),
        ("runs", "show", "{run}", "-o", "json"),
        ("logs", "{run}"),
        ("logs", "{run}", "--stage", "orders", "-o", "json"),
    ],
    ids=" ".join,
)
def test_runs_are_the_apis(
    api: Api, project: Path, elsewhere: Path, shop_run: str, args: tuple[str, ...]
) -> None:
    args = tuple(a.format(run=shop_run) for a in args)
    result = same_as_local(api, project, elsewhere, *args)
    assert result.returncode == 0, str(result)


def test_cancel_stops_a_run_the_api_owns(api: Api, project: Path, elsewhere: Path) -> None:
    follower = Background(elsewhere, "--url", api.url, "run", "slow", extra_env=token_env())
    try:
        run_id = wait_for_stage(project, follower, "slow", "nap")
        cancel = remote(api, elsewhere, "cancel", run_id)
        assert cancel.returncode == 0, str(cancel)
        assert f"run {run_id} is cancelled" in cancel.out
        followed = follower.finish()
    finally:
        follower.kill()
    assert followed.returncode == 1, str(followed)
    assert f"run {run_id} cancelled in" in followed.out


# -- assets and schedules --------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [("assets", "list"), ("assets", "list", "-o", "json"), ("schedules", "list", "-o", "json")],
    ids=" ".join,
)
def test_assets_and_schedules_are_the_apis(
    api: Api, project: Path, elsewhere: Path, shop_run: str, args: tuple[str, ...]
) -> None:
    result = same_as_local(api, project, elsewhere, *args)
    assert result.returncode == 0, str(result)


def test_asset_rows_come_as_a_preview(
    api: Api, project: Path, elsewhere: Path, shop_run: str
) -> None:
    result = same_as_local(api, project, elsewhere, "assets", "show", "orders", "-o", "json")
    assert result.returncode == 0, str(result)


# -- refusals --------------------------------------------------------------------------------
def test_a_wrong_token_is_refused_cleanly(api: Api, elsewhere: Path) -> None:
    result = remote(api, elsewhere, "runs", "list", token="not-the-token")
    assert_error(result, 2, api.url, "KLAW_TOKEN", "not one the API accepts")


def test_a_missing_token_is_refused_cleanly(api: Api, elsewhere: Path) -> None:
    result = remote(api, elsewhere, "workflows", "list", token=None)
    assert_error(result, 2, api.url, "Set KLAW_TOKEN")


def test_no_api_listening_names_the_url(elsewhere: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on once this is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    result = klaw(elsewhere, "--url", url, "runs", "list", extra_env=token_env())
    assert_error(result, 2, f"No Klaw API answers at {url}")


def test_url_and_server_together_are_refused(elsewhere: Path) -> None:
    result = klaw(
        elsewhere,
        "--url",
        "http://127.0.0.1:1",
        "--server",
        "grpc://127.0.0.1:1",
        "runs",
        "list",
        extra_env=token_env(),
    )
    assert_error(result, 2, "--server", "--url", "only one")


def test_429_is_retried_after_retry_after(orchestrator: Orchestrator) -> None:
    tight = Api(orchestrator, Limits(rate=1.0, burst=1))
    said: list[str] = []
    try:
        with HttpClient(tight.url, TOKEN, on_retry=said.append) as client:
            for _ in range(2):  # the second is over the burst: retried after Retry-After
                reply = client.execute(ListWorkflows())
                assert isinstance(reply, WorkflowsReply)
    finally:
        tight.stop()
    assert said, "no 429 was retried"
    assert "rate limiting ListWorkflows; retrying in" in said[0]
