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


def _two_workflows(root: Path, producer: dict[str, str], consumer_sql: str) -> None:
    """Folder workflow `sales` (files ``producer``) and `report`, whose SQL reads an asset of
    `sales` that has no snapshot yet."""
    files = {
        "klaw.toml": '[project]\nname = "two"\nworkflow_dirs = ["workflows"]\n',
        "workflows/sales/config.yaml": "engine: duckdb\n",
        "workflows/report/config.yaml": "engine: duckdb\n",
        "workflows/report/workflow.sql": consumer_sql,
        **{f"workflows/sales/{name}": text for name, text in producer.items()},
    }
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


MISSPELT = "-- name: big\nSELECT order_id FROM orders WHERE amout > 10;\n"


def test_sql_reading_another_workflows_sql_asset_is_checked_against_its_schema(
    tmp_path: Path,
) -> None:
    producer = "-- name: orders\nSELECT * FROM (VALUES (1, 10.0)) AS t(order_id, amount);\n"
    _two_workflows(tmp_path, {"workflow.sql": producer}, MISSPELT)
    checked = klaw(tmp_path, "validate")
    assert checked.returncode == 2, str(checked)
    assert "ok      report" not in checked.stdout
    for needle in ("report/workflow.sql:2", "'amout'", "did you mean", "'amount'"):
        assert needle in checked.stdout, str(checked)


PY_ORDERS = """
import pyarrow as pa
import klaw


@klaw.asset
def orders() -> pa.Table:
    return pa.table({"order_id": [1], "amount": [10.0]})
"""


def test_sql_that_cannot_be_checked_yet_is_reported_unchecked(tmp_path: Path) -> None:
    _two_workflows(tmp_path, {"workflow.py": PY_ORDERS}, MISSPELT)
    checked = klaw(tmp_path, "validate")
    assert checked.returncode == 0, str(checked)  # a warning, not a failure
    assert "ok      report" not in checked.stdout
    assert "ok      sales" in checked.stdout
    for needle in ("unchecked", "'big'", "asset 'orders' has no snapshot yet", "workflow 'sales'"):
        assert needle in checked.stdout, str(checked)
    as_json = {r["workflow"]: r for r in klaw(tmp_path, "validate", "-o", "json").json()}
    assert as_json["sales"]["unchecked"] == []
    (why,) = as_json["report"]["unchecked"]
    assert as_json["report"]["ok"] is True
    assert "SQL stage 'big'" in why and "no snapshot yet" in why
    # once the producer has run, its snapshot's schema checks the statement
    assert klaw(tmp_path, "run", "sales").returncode == 0
    again = klaw(tmp_path, "validate", "report")
    assert again.returncode == 2 and "'amout'" in again.stdout, str(again)
