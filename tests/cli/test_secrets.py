"""Secrets through the real ``klaw`` executable: resume gets the real value (never the stored
mask), the record and the logs never hold the value, a missing secret is a clean error."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from .driver import assert_error, klaw, run_id_of, write_project

SECRET_STR = """
from pathlib import Path

import pyarrow as pa
from pydantic import BaseModel, SecretStr

import klaw

ROOT = Path(__file__).resolve().parent.parent


class Login(BaseModel):
    password: SecretStr


@klaw.asset
def a():
    return pa.table({"x": [1]})


@klaw.asset
def b(a, params: Login):
    with (ROOT / "seen.txt").open("a") as seen:
        seen.write(params.password.get_secret_value() + "\\n")
    if (ROOT / "fail.marker").exists():
        raise RuntimeError("b fails while fail.marker exists")
    return a


wf = klaw.workflow("wf", [a, b])
"""


def seen(project: Path) -> list[str]:
    return (project / "seen.txt").read_text().splitlines()


def test_resume_of_a_secret_str_never_replays_the_mask(tmp_path: Path) -> None:
    project = write_project(tmp_path, {"wf": SECRET_STR})
    (project / "fail.marker").touch()
    first = klaw(project, "run", "wf", "--param", "password=hunter2", "-o", "json")
    assert first.returncode == 1, str(first)
    run_id = first.json()["run"]["run_id"]
    assert seen(project) == ["hunter2"]
    (project / "fail.marker").unlink()

    again = klaw(project, "run", "wf", "--resume", run_id)
    assert_error(again, 2, "password", "not stored", "klaw.Secret")
    assert seen(project) == ["hunter2"]  # the stage did not run with a mask

    given = klaw(project, "run", "wf", "--resume", run_id, "--param", "password=hunter2")
    assert given.returncode == 0, str(given)
    assert seen(project) == ["hunter2", "hunter2"]
    with sqlite3.connect(project / ".klaw" / "klaw.db") as db:
        stored = [row[0] for row in db.execute("SELECT params FROM runs")]
    assert len(stored) == 2
    assert not any("hunter2" in text for text in stored), stored
    assert run_id_of(given) != run_id


SECRET_REF = """
import logging
from pathlib import Path

import pyarrow as pa
from pydantic import BaseModel

import klaw

ROOT = Path(__file__).resolve().parent.parent


class Warehouse(BaseModel):
    password: klaw.Secret = klaw.Secret("warehouse_password")


@klaw.asset
def a():
    return pa.table({"x": [1]})


@klaw.asset
def load(a, params: Warehouse):
    value = params.password.get_secret_value()
    with (ROOT / "seen.txt").open("a") as seen:
        seen.write(value + "\\n")
    print(f"connecting with {value} as {params.password!r}")
    logging.getLogger("load").warning("password=%s", value)
    if (ROOT / "fail.marker").exists():
        raise RuntimeError(f"login refused for {value}")
    return a


wf = klaw.workflow("wf", [a, load])
"""

ENV = "KLAW_SECRET_WAREHOUSE_PASSWORD"


def rows(project: Path, sql: str) -> list[tuple[object, ...]]:
    with sqlite3.connect(project / ".klaw" / "klaw.db") as db:
        return list(db.execute(sql))


def test_a_secret_is_resolved_on_every_run_and_never_stored(tmp_path: Path) -> None:
    project = write_project(tmp_path, {"wf": SECRET_REF})
    (project / "fail.marker").touch()
    first = klaw(project, "run", "wf", "-o", "json", extra_env={ENV: "s3cr3t-one"})
    assert first.returncode == 1, str(first)
    run_id = first.json()["run"]["run_id"]
    assert seen(project) == ["s3cr3t-one"]
    assert "s3cr3t" not in first.stdout + first.stderr

    # the record: the reference, never the value; logs and the error masked
    (params,) = rows(project, "SELECT params FROM runs")
    assert "secret:warehouse_password" in str(params[0])
    everything = rows(project, "SELECT * FROM runs") + rows(project, "SELECT * FROM attempts")
    everything += rows(project, "SELECT * FROM logs") + rows(project, "SELECT * FROM events")
    assert not any("s3cr3t" in str(row) for row in everything), everything
    lines = [str(r[0]) for r in rows(project, "SELECT line FROM logs WHERE stage = 'load'")]
    assert "connecting with *** as Secret('warehouse_password')" in lines
    assert "load: password=***" in lines
    (error,) = rows(project, "SELECT error FROM attempts WHERE stage = 'load'")
    assert error[0] == "RuntimeError: login refused for ***"
    show = klaw(project, "runs", "show", run_id, "-o", "json")
    assert show.json()["run"]["params"] == {"password": "secret:warehouse_password"}
    logs = klaw(project, "logs", run_id)
    assert "connecting with ***" in logs.out and "s3cr3t" not in logs.out

    # resume looks the secret up again (here: rotated), from the secrets directory
    (project / "fail.marker").unlink()
    (project / ".klaw" / "secrets").mkdir()
    (project / ".klaw" / "secrets" / "warehouse_password").write_text("s3cr3t-two\n")
    resumed = klaw(project, "run", "wf", "--resume", run_id)
    assert resumed.returncode == 0, str(resumed)
    assert seen(project) == ["s3cr3t-one", "s3cr3t-two"]
    assert not any("s3cr3t" in str(row) for row in rows(project, "SELECT * FROM logs"))


def test_a_reference_on_the_command_line(tmp_path: Path) -> None:
    project = write_project(tmp_path, {"wf": SECRET_REF})
    done = klaw(
        project,
        "run",
        "wf",
        "--param",
        "password=secret:other.pw",
        extra_env={"KLAW_SECRET_OTHER_PW": "from-env"},
    )
    assert done.returncode == 0, str(done)
    assert seen(project) == ["from-env"]
    (params,) = rows(project, "SELECT params FROM runs")
    assert "secret:other.pw" in str(params[0])


def test_a_missing_secret_is_a_clear_error_before_the_run(tmp_path: Path) -> None:
    project = write_project(tmp_path, {"wf": SECRET_REF})
    missing = klaw(project, "run", "wf")
    assert_error(
        missing,
        2,
        "secret 'warehouse_password'",
        "param 'password' of stage 'load'",
        f"environment variable {ENV}",
        f"file {project / '.klaw' / 'secrets' / 'warehouse_password'}",
    )
    assert not (project / "seen.txt").exists()
    db = project / ".klaw" / "klaw.db"
    assert not db.exists() or rows(project, "SELECT run_id FROM runs") == []  # nothing recorded
    plain = klaw(project, "run", "wf", "--param", "password=hunter2")
    assert_error(plain, 2, "password", "secret:NAME")


def _login_folder(root: Path, token: str = "{$secret: api_token}") -> Path:
    files = {
        "klaw.toml": '[project]\nname = "s"\nworkflow_dirs = ["workflows"]\n',
        "workflows/login/config.yaml": (
            f"engine: duckdb\nkind: asset\nparams:\n  user: ana\n  token: {token}\n"
        ),
        "workflows/login/workflow.sql": (
            "-- name: checked\n"
            "SELECT $user AS who, length($token) AS token_length, $token = 'tok-1234' AS matches\n"
        ),
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_a_config_yaml_secret_binds_its_value_in_sql(tmp_path: Path) -> None:
    project = _login_folder(tmp_path)
    schema = klaw(project, "schema", "login")
    assert schema.returncode == 0, str(schema)
    token = schema.json()["properties"]["token"]
    assert token["format"] == "password" and token["default"] == "secret:api_token"
    checked = klaw(project, "validate")
    assert checked.returncode == 0, str(checked)

    ran = klaw(
        project, "run", "login", "-o", "json", extra_env={"KLAW_SECRET_API_TOKEN": "tok-1234"}
    )
    assert ran.returncode == 0, str(ran)
    shown = klaw(project, "assets", "show", "checked", "-o", "json")
    assert shown.json()["preview"] == [{"who": "ana", "token_length": 8, "matches": True}]
    everything = rows(project, "SELECT * FROM runs") + rows(project, "SELECT * FROM events")
    assert not any("tok-1234" in str(row) for row in everything), everything
    (params,) = rows(project, "SELECT params FROM runs")
    assert "secret:api_token" in str(params[0])

    missing = klaw(project, "run", "login")
    assert_error(missing, 2, "secret 'api_token'", "KLAW_SECRET_API_TOKEN")


def test_a_bad_secret_name_in_config_yaml_names_the_file(tmp_path: Path) -> None:
    project = _login_folder(tmp_path, token="{$secret: ../etc/passwd}")
    listed = klaw(project, "workflows", "list")
    assert_error(listed, 2, "config.yaml", "param 'token'", "not a secret name")
