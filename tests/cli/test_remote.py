"""The real ``klaw`` CLI against a real Klaw Flight server (``serve`` in this process, port 0)
over a project in a temporary folder. The CLI runs in an empty folder with ``--server`` (or
``KLAW_SERVER``) and ``KLAW_TOKEN``: everything it shows comes from the server. What a command
prints remotely is compared with what the same command prints locally in the project."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from klaw.api.flight.server import RunningServer, serve
from klaw.service.orchestrator import Orchestrator

from .driver import (
    Background,
    Result,
    assert_error,
    flat,
    klaw,
    run_id_of,
    wait_for_stage,
    write_project,
)

TOKEN = "remote-test-token"

WORKFLOWS = """
import time

import pyarrow as pa

import klaw


@klaw.asset
def orders() -> pa.Table:
    print("made orders")
    return pa.table({"day": ["d1", "d1", "d2"], "amount": [10.0, 5.0, 7.0]})


@klaw.asset(retries=1, tags=["marts"])
def totals(orders: pa.Table) -> pa.Table:
    return pa.table({"rows": [orders.num_rows]})


shop = klaw.workflow("shop", [orders, totals])


@klaw.stage
def explode():
    raise ValueError("boom from explode")


broken = klaw.workflow("broken", [explode])


@klaw.stage
def nap():
    for _ in range(2400):  # about two minutes: ended by a cancel long before
        time.sleep(0.05)
    return 1


slow = klaw.workflow("slow", [nap])


@klaw.stage(deps=["b"])
def a():
    return 1


@klaw.stage(deps=["a"])
def b():
    return 1


cyclic = klaw.workflow("cyclic", [a, b])
"""


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_project(tmp_path_factory.mktemp("cli-remote"), {"shop": WORKFLOWS})


@pytest.fixture(scope="module")
def server(project: Path) -> Iterator[RunningServer]:
    orchestrator = Orchestrator.open(project)
    running = serve(orchestrator, host="127.0.0.1", port=0, tokens=[TOKEN])
    try:
        yield running
    finally:
        running.stop()
        orchestrator.shutdown()
        orchestrator.close()


@pytest.fixture(scope="module")
def elsewhere(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An empty folder: no project here, so whatever the CLI shows comes from the server."""
    return tmp_path_factory.mktemp("cli-remote-client")


@pytest.fixture(scope="module")
def shop_run(server: RunningServer, elsewhere: Path) -> str:
    """The id of a succeeded run of ``shop``, made through the server."""
    result = remote(server, elsewhere, "run", "shop")
    assert result.returncode == 0, str(result)
    return run_id_of(result)


def remote(
    server: RunningServer, cwd: Path, *args: str, token: str | None = TOKEN, tty: bool = False
) -> Result:
    """``klaw --server URL ARGS`` in ``cwd``, with ``token`` in KLAW_TOKEN (None: unset);
    ``tty``: as if on a terminal, so ``klaw run`` shows its live display."""
    return klaw(cwd, "--server", server.location, *args, extra_env=client_env(token, tty))


def client_env(token: str | None = TOKEN, tty: bool = False) -> dict[str, str]:
    values = {} if token is None else {"KLAW_TOKEN": token}
    if tty:
        values["TTY_COMPATIBLE"] = "1"
    return values


def same_as_local(server: RunningServer, project: Path, elsewhere: Path, *args: str) -> Result:
    """Run ``args`` locally in the project and through the server: same exit, same output."""
    here = klaw(project, *args)
    there = remote(server, elsewhere, *args)
    assert there.returncode == here.returncode, f"{here}\n{there}"
    assert there.stdout == here.stdout, f"{here}\n{there}"
    return there


# -- definitions -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ("workflows", "list"),
        ("workflows", "list", "-o", "json"),
        ("validate", "shop", "slow"),
        ("plan", "shop"),
        ("plan", "shop", "-o", "json"),
        ("plan", "shop", "--select", "totals", "-o", "json"),
    ],
    ids=" ".join,
)
def test_definitions_are_the_servers(
    server: RunningServer, project: Path, elsewhere: Path, args: tuple[str, ...]
) -> None:
    result = same_as_local(server, project, elsewhere, *args)
    assert result.returncode == 0, str(result)


def test_validate_names_every_problem_and_exits_2(
    server: RunningServer, project: Path, elsewhere: Path
) -> None:
    result = same_as_local(server, project, elsewhere, "validate", "-o", "json")
    assert result.returncode == 2, str(result)
    found = {r["workflow"]: r for r in result.json()}
    assert found["shop"] == {"workflow": "shop", "ok": True, "problems": [], "unchecked": []}
    assert any("a -> b -> a" in p for p in found["cyclic"]["problems"])
    table = remote(server, elsewhere, "validate")
    assert table.returncode == 2, str(table)
    assert "invalid cyclic" in table.out


def test_plan_details_come_from_the_server(server: RunningServer, elsewhere: Path) -> None:
    result = remote(server, elsewhere, "plan", "shop", "-o", "json")
    assert result.returncode == 0, str(result)
    stages = {s["stage"]: s for s in result.json()["stages"]}
    assert stages["totals"] == {
        "level": 1,
        "stage": "totals",
        "kind": "asset",
        "upstream": ["orders"],
        "reads_latest": [],
        "retries": 1,
        "timeout": None,
        "tags": ["marts"],
    }


def test_the_server_can_come_from_klaw_server(server: RunningServer, elsewhere: Path) -> None:
    env = {**client_env(), "KLAW_SERVER": server.location}
    result = klaw(elsewhere, "workflows", "list", "-o", "json", extra_env=env)
    assert result.returncode == 0, str(result)
    assert [w["name"] for w in result.json()] == ["broken", "cyclic", "shop", "slow"]


def test_an_unknown_workflow_is_a_clean_error(server: RunningServer, elsewhere: Path) -> None:
    result = remote(server, elsewhere, "plan", "shpo")
    assert_error(result, 2, "No workflow named 'shpo'", "did you mean shop")


# -- runs ------------------------------------------------------------------------------------
def test_run_shows_progress_and_a_summary(server: RunningServer, elsewhere: Path) -> None:
    result = remote(server, elsewhere, "run", "shop", tty=True)
    assert result.returncode == 0, str(result)
    run_id = run_id_of(result)
    assert f"run {run_id} of shop: 2 stage(s)" in result.out
    assert "2/2" in result.out  # the progress bar reached the end
    assert f"run {run_id} succeeded in" in result.out
    assert "(2 succeeded)" in result.out


def test_a_failing_run_exits_1_and_says_where_to_look(
    server: RunningServer, project: Path, elsewhere: Path
) -> None:
    result = remote(server, elsewhere, "run", "broken", tty=True)
    assert result.returncode == 1, str(result)
    assert "Traceback" not in result.stderr, str(result)
    run_id = run_id_of(result)
    assert "failed explode (attempt 1): ValueError: boom from explode" in result.out
    assert f"run {run_id} failed in" in result.out
    assert f"klaw logs {run_id}" in result.out
    assert f"resume: klaw run broken --resume {run_id}" in result.out
    logs = same_as_local(server, project, elsewhere, "logs", run_id)
    assert "boom from explode" in logs.out
    show = same_as_local(server, project, elsewhere, "runs", "show", run_id, "-o", "json")
    assert show.json()["run"]["state"] == "failed"


def test_run_json_has_the_shape_of_a_local_run(
    server: RunningServer, project: Path, elsewhere: Path
) -> None:
    there = remote(server, elsewhere, "run", "shop", "-o", "json")
    here = klaw(project, "run", "shop", "-o", "json")
    assert there.returncode == here.returncode == 0, f"{here}\n{there}"
    remote_run, local_run = there.json(), here.json()
    assert remote_run.keys() == local_run.keys() == {"run", "attempts"}
    assert remote_run["run"].keys() == local_run["run"].keys()
    assert remote_run["run"]["state"] == "succeeded"
    assert [a.keys() for a in remote_run["attempts"]] == [a.keys() for a in local_run["attempts"]]
    assert sorted(a["stage"] for a in remote_run["attempts"]) == ["orders", "totals"]


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
def test_runs_are_the_servers(
    server: RunningServer, project: Path, elsewhere: Path, shop_run: str, args: tuple[str, ...]
) -> None:
    args = tuple(a.format(run=shop_run) for a in args)
    result = same_as_local(server, project, elsewhere, *args)
    assert result.returncode == 0, str(result)
    if args[0] == "logs":
        assert "made orders" in result.out


def test_cancel_stops_a_run_the_server_owns(
    server: RunningServer, project: Path, elsewhere: Path
) -> None:
    follower = Background(
        elsewhere, "--server", server.location, "run", "slow", extra_env=client_env()
    )
    try:
        run_id = wait_for_stage(project, follower, "slow", "nap")
        cancel = remote(server, elsewhere, "cancel", run_id)
        assert cancel.returncode == 0, str(cancel)
        assert f"run {run_id} is cancelled" in cancel.out
        followed = follower.finish()
    finally:
        follower.kill()
    assert followed.returncode == 1, str(followed)
    assert f"run {run_id} cancelled in" in followed.out


def test_ctrl_c_while_following_cancels_the_run(
    server: RunningServer, project: Path, elsewhere: Path
) -> None:
    follower = Background(
        elsewhere, "--server", server.location, "run", "slow", extra_env=client_env(tty=True)
    )
    try:
        run_id = wait_for_stage(project, follower, "slow", "nap")
        follower.ctrl_c()
        followed = follower.finish()
    finally:
        follower.kill()
    assert followed.returncode == 1, str(followed)
    assert "Traceback" not in followed.stderr, str(followed)
    assert f"cancelling run {run_id} on {server.location}" in followed.out
    assert f"run {run_id} cancelled in" in followed.out
    show = remote(server, elsewhere, "runs", "show", run_id, "-o", "json")
    assert show.json()["run"]["state"] == "cancelled"


# -- assets ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "args",
    [
        ("assets", "list"),
        ("assets", "list", "-o", "json"),
        ("assets", "show", "orders", "-o", "json"),
        ("assets", "show", "orders", "--snapshot", "1", "--limit", "2"),
        ("assets", "show", "totals", "--limit", "0", "-o", "json"),
    ],
    ids=" ".join,
)
def test_assets_are_the_servers(
    server: RunningServer, project: Path, elsewhere: Path, shop_run: str, args: tuple[str, ...]
) -> None:
    result = same_as_local(server, project, elsewhere, *args)
    assert result.returncode == 0, str(result)


def test_asset_rows_are_read_from_the_server(
    server: RunningServer, elsewhere: Path, shop_run: str
) -> None:
    result = remote(server, elsewhere, "assets", "show", "orders", "--snapshot", "1", "-o", "json")
    assert result.returncode == 0, str(result)
    shown = result.json()
    assert shown["snapshot"] == 1
    assert shown["schema"] == {"day": "string", "amount": "double"}
    assert shown["preview"][0] == {"day": "d1", "amount": 10.0}


def test_an_unknown_asset_is_a_clean_error(server: RunningServer, elsewhere: Path) -> None:
    result = remote(server, elsewhere, "assets", "show", "nope")
    assert_error(result, 2, "nope")


def test_prune_and_tokens_act_on_the_server(server: RunningServer, elsewhere: Path) -> None:
    pruned = remote(server, elsewhere, "db", "prune", "--older-than", "30d", "-o", "json")
    assert pruned.returncode == 0, str(pruned)
    assert pruned.json()["older_than_seconds"] == 30 * 86400
    made = remote(server, elsewhere, "tokens", "create", "--role", "viewer", "--name", "ci")
    assert made.returncode == 0, str(made)
    secret = made.stdout.splitlines()[0]
    assert secret.startswith("klaw_")
    listed = remote(server, elsewhere, "tokens", "list", "-o", "json").json()
    [token] = [t for t in listed if t["name"] == "ci"]
    assert token["state"] == "active" and "secret" not in token
    gone = remote(server, elsewhere, "tokens", "revoke", token["id"], "-o", "json")
    assert gone.json()["state"] == "revoked", str(gone)


# -- what stays local ------------------------------------------------------------------------
def test_db_upgrade_refuses_a_server(server: RunningServer, elsewhere: Path) -> None:
    result = remote(server, elsewhere, "db", "upgrade")
    assert_error(
        result,
        2,
        "klaw db upgrade acts on a local metadata database",
        server.location,
        "KLAW_SERVER unset",
    )


def test_schema_acts_here_and_says_so(server: RunningServer, project: Path) -> None:
    result = remote(server, project, "schema", "shop")
    assert result.returncode == 0, str(result)
    assert result.json()["type"] == "object"
    assert f"klaw schema acts on this machine; the server {server.location}" in flat(result.stderr)


def test_init_acts_here_and_says_so(server: RunningServer, tmp_path: Path) -> None:
    result = remote(server, tmp_path, "init", "fresh")
    assert result.returncode == 0, str(result)
    assert (tmp_path / "fresh" / "klaw.toml").is_file()
    assert f"klaw init acts on this machine; the server {server.location}" in flat(result.stderr)


# -- refusals --------------------------------------------------------------------------------
def test_a_wrong_token_is_refused_cleanly(server: RunningServer, elsewhere: Path) -> None:
    result = remote(server, elsewhere, "runs", "list", token="not-the-token")
    assert_error(result, 2, server.location, "KLAW_TOKEN", "not one the server accepts")


def test_a_missing_token_is_refused_cleanly(server: RunningServer, elsewhere: Path) -> None:
    result = remote(server, elsewhere, "workflows", "list", token=None)
    assert_error(result, 2, server.location, "KLAW_TOKEN is not set", "Set KLAW_TOKEN")


def test_no_server_listening_names_the_url(elsewhere: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on once this is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = f"grpc://127.0.0.1:{port}"
    result = klaw(elsewhere, "--server", url, "runs", "list", extra_env=client_env())
    assert_error(result, 2, f"No Klaw server answers at {url}")
