"""Folder workflows from the command line: the SQL template, the config schema, SQL errors."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from .driver import assert_error, klaw


def test_sql_template_runs_and_its_test_passes(tmp_path: Path) -> None:
    assert klaw(tmp_path, "init", ".", "--template", "sql").returncode == 0
    assert (tmp_path / "workflows" / "example_sql" / "workflow.sql").exists()
    ran = klaw(tmp_path, "run", "example_sql", "--param", "min_amount=20", "-o", "json")
    assert ran.returncode == 0, str(ran)
    shown = klaw(tmp_path, "assets", "show", "daily_revenue", "-o", "json")
    assert [row["day"] for row in shown.json()["preview"]] == ["2026-01-01", "2026-01-02"]
    test = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )
    assert test.returncode == 0, test.stdout + test.stderr


def test_config_schema_is_printed(tmp_path: Path) -> None:
    result = klaw(tmp_path, "schema", "--config")
    assert result.returncode == 0
    assert "engine" in json.loads(result.stdout)["properties"]


def test_a_column_that_does_not_exist_names_file_and_line(tmp_path: Path) -> None:
    klaw(tmp_path, "init", ".", "--template", "sql")
    sql = tmp_path / "workflows" / "example_sql" / "workflow.sql"
    sql.write_text(sql.read_text().replace("sum(amount)", "sum(amout)"))
    checked = klaw(tmp_path, "validate")
    assert checked.returncode == 2 and "Traceback" not in checked.out
    for needle in ("workflow.sql:12", "'amout'", "did you mean", "'amount'"):
        assert needle in checked.stdout, str(checked)
    assert_error(klaw(tmp_path, "run", "example_sql"), 2, "'amout'")


def test_unknown_engine_in_config(tmp_path: Path) -> None:
    klaw(tmp_path, "init", ".", "--template", "sql")
    config = tmp_path / "workflows" / "example_sql" / "config.yaml"
    config.write_text(config.read_text().replace("engine: duckdb", "engine: spark"))
    assert_error(klaw(tmp_path, "workflows", "list"), 2, "config.yaml:", "engine is 'spark'")
