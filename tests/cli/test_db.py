"""Metadata in Postgres from the command line: a schema that is not upgraded is refused with
the command to run, `klaw db upgrade` fixes it, runs then record there; `klaw db prune`."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from .driver import assert_error, klaw

SERVER = os.environ.get("KLAW_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")


@pytest.fixture
def schema_url() -> Iterator[str]:
    schema = f"klaw_cli_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(SERVER, autocommit=True) as conn:
        conn.execute(f"CREATE SCHEMA {schema}")
    try:
        yield f"{SERVER}?options=-csearch_path%3D{schema}"
    finally:
        with psycopg.connect(SERVER, autocommit=True) as conn:
            conn.execute(f"DROP SCHEMA {schema} CASCADE")


def test_postgres_metadata_needs_an_upgrade_then_records_runs(
    tmp_path: Path, schema_url: str
) -> None:
    klaw(tmp_path, "init", ".")
    toml = tmp_path / "klaw.toml"
    toml.write_text(toml.read_text() + f'[settings.metadata]\nurl = "{schema_url}"\n')
    assert_error(klaw(tmp_path, "run", "example"), 2, "klaw db upgrade")
    assert klaw(tmp_path, "db", "upgrade").returncode == 0
    ran = klaw(tmp_path, "run", "example", "-o", "json")
    assert ran.returncode == 0, str(ran)
    runs = klaw(tmp_path, "runs", "list", "-o", "json").json()
    assert [r["state"] for r in runs] == ["succeeded"]
    pruned = klaw(tmp_path, "db", "prune", "--older-than", "30d", "-o", "json")
    assert pruned.returncode == 0 and pruned.json()["older_than_seconds"] == 30 * 86400
    assert_error(
        klaw(tmp_path, "db", "prune", "--older-than", "soon"),
        2,
        "--older-than 'soon' is not a duration",
    )


def test_sqlite_prune(tmp_path: Path) -> None:
    klaw(tmp_path, "init", ".")
    assert klaw(tmp_path, "run", "example").returncode == 0
    result = klaw(tmp_path, "db", "prune", "--older-than", "0s", "-o", "json")
    assert result.returncode == 0 and result.json()["pruned"] > 0
    assert result.json()["expired_keys"] == 0
    assert klaw(tmp_path, "runs", "list", "-o", "json").json()[0]["state"] == "succeeded"
