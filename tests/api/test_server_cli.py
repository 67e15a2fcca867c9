"""``klaw server`` as a real process: it serves a Client, exits 0 on SIGTERM / SIGINT, and
refuses to start (exit 2, no traceback) without tokens or on a metadata schema to upgrade."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid
from contextlib import AbstractContextManager as ContextManager
from pathlib import Path

import psycopg
import pytest

from klaw.api.flight import Client
from klaw.states import RunState

from ..cli.driver import WAIT, Background, assert_error, klaw, service
from .served import TOKEN, write_project

POSTGRES = os.environ.get("KLAW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


def klaw_server(cwd: Path, *args: str, **extra_env: str) -> ContextManager[Background]:
    return service(cwd, "server", *args, **extra_env)


def test_serves_a_client_and_exits_0_on_sigterm(tmp_path: Path) -> None:
    root = write_project(tmp_path, "cli_server_flows")
    with klaw_server(root, KLAW_FLIGHT__TOKENS=f"{TOKEN},another-token-2") as server:
        line = server.first_line()
        assert line.startswith("Klaw server listening on grpc://127.0.0.1:"), line
        location = line.rsplit(" ", 1)[-1]
        with Client(location, token=TOKEN) as client:
            assert client.ping().project == "apiproj"
            run = client.submit("pipe", params={"n": 2}, wait=True)
            assert run.state is RunState.SUCCEEDED
            assert client.read_asset("numbers").column("x").to_pylist() == [1, 2]
        with Client(location, token="another-token-2") as client:
            assert [w.name for w in client.workflows()] == ["pipe"]
        code, _, err = server.stop(signal.SIGTERM)
    assert code == 0, err
    assert "Traceback" not in err and "stopped" in err


def test_json_output_token_file_and_sigint(tmp_path: Path) -> None:
    root = write_project(tmp_path, "cli_server_json_flows")
    (root / "tokens.txt").write_text("# server tokens\nfile-token-3\n")
    with klaw_server(root, "-o", "json", KLAW_FLIGHT__TOKENS_FILE="tokens.txt") as server:
        started = json.loads(server.first_line())
        assert started["project"] == "apiproj" and started["host"] == "127.0.0.1"
        assert started["listening"] == f"grpc://127.0.0.1:{started['port']}"
        assert started["recovered"] == []  # no run was left by a dead server
        with Client(started["listening"], token="file-token-3") as client:
            assert client.ping().project == "apiproj"
        code, _, err = server.stop(signal.SIGINT)
    assert code == 0, err
    assert "Traceback" not in err


def test_refuses_to_start_without_tokens(tmp_path: Path) -> None:
    root = write_project(tmp_path, "cli_server_no_tokens")
    result = klaw(root, "server", "--port", "0")
    assert_error(result, 2, "No tokens", "KLAW_FLIGHT__TOKENS", "KLAW_FLIGHT__TOKENS_FILE")
    assert "listening" not in result.stdout


def test_refuses_to_start_on_a_metadata_schema_to_upgrade(tmp_path: Path) -> None:
    schema = f"klaw_server_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(POSTGRES, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        root = write_project(tmp_path, "cli_server_postgres")
        url = f"{POSTGRES}?options=-csearch_path%3D{schema}"
        toml = root / "klaw.toml"
        toml.write_text(toml.read_text() + f'[settings.metadata]\nurl = "{url}"\n')
        with klaw_server(root, KLAW_FLIGHT__TOKENS=TOKEN) as server:
            code, out, err = server.proc.wait(timeout=WAIT), *server.proc.communicate(timeout=WAIT)
        assert code == 2, err
        assert "klaw db upgrade" in " ".join(err.split()) and "Traceback" not in err
        assert "listening" not in out
    finally:
        with psycopg.connect(POSTGRES, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.mark.parametrize("port", ["-1", "70000"])
def test_a_bad_port_is_a_usage_error(tmp_path: Path, port: str) -> None:
    root = write_project(tmp_path, f"cli_server_port_{port.strip('-')}")
    result = klaw(root, "server", "--port", port)
    assert result.returncode == 2 and "Traceback" not in result.stderr


CRASH_FLOWS = """
import time
from pathlib import Path

import pyarrow as pa

import klaw

ROOT = Path(__file__).resolve().parent


@klaw.asset
def first() -> pa.Table:
    return pa.table({"x": [1, 2, 3]})


@klaw.asset
def second(first: pa.Table) -> pa.Table:
    if not (ROOT / "second-started").exists():  # hangs until its server is killed
        (ROOT / "second-started").touch()
        while True:
            time.sleep(0.05)
    return first


crashy = klaw.workflow("crashy", [first, second])
"""


def test_a_run_survives_kill_9_of_the_server(tmp_path: Path) -> None:
    root = tmp_path / "crash"
    root.mkdir()
    (root / "klaw.toml").write_text(
        '[project]\nname = "crashproj"\nmodules = ["server_crash_flows.py"]\n'
    )
    (root / "server_crash_flows.py").write_text(CRASH_FLOWS)
    with klaw_server(root, "-o", "json", KLAW_FLIGHT__TOKENS=TOKEN) as server:
        location = json.loads(server.first_line())["listening"]
        with Client(location, token=TOKEN) as client:
            run = client.submit("crashy", wait=False)
            deadline = time.monotonic() + WAIT
            while not any(
                (a.stage, a.state.value) == ("second", "running")
                for a in client.attempts(run.run_id)
            ):
                assert time.monotonic() < deadline, "stage second did not start"
                time.sleep(0.05)
        server.kill()  # SIGKILL: no shutdown of any kind
    with klaw_server(root, "-o", "json", KLAW_FLIGHT__TOKENS=TOKEN) as server:
        started = json.loads(server.first_line())
        assert started["recovered"] == [run.run_id]
        with Client(started["listening"], token=TOKEN) as client:
            final = client.wait(run.run_id, timeout=WAIT)
            assert final.state is RunState.SUCCEEDED
            attempts = [(a.stage, a.attempt, a.state.value) for a in client.attempts(run.run_id)]
            assert attempts == [
                ("first", 1, "succeeded"),
                ("second", 1, "failed"),
                ("second", 2, "succeeded"),
            ]
            assert [s.attempt for s in client.snapshots("first")] == [1]
            assert [s.attempt for s in client.snapshots("second")] == [2]
        code, _, err = server.stop(signal.SIGTERM)
    assert code == 0, err
