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
