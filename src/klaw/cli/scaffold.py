"""``klaw init``: a small project that runs and tests green straight away."""

from __future__ import annotations

from pathlib import Path

from klaw.errors import ConfigError

KLAW_TOML = """\
[project]
name = "{name}"
modules = ["workflows.example"]

[settings]
# home = ".klaw"          # metadata and lake live here

[settings.executor]
# kind = "thread"         # or "process", "ray"
# max_workers = 8
"""

WORKFLOW = '''\
"""An example workflow: raw orders -> cleaned orders -> revenue per day."""

import polars as pl
import pyarrow as pa
from pydantic import BaseModel

import klaw


class ExampleParams(BaseModel):
    min_amount: float = 0.0


@klaw.asset
def raw_orders() -> pa.Table:
    return pa.table(
        {
            "order_id": [1, 2, 3, 4],
            "day": ["2026-01-01", "2026-01-01", "2026-01-02", "2026-01-02"],
            "amount": [10.0, 25.5, 7.25, 40.0],
        }
    )


@klaw.asset(retries=1)
def orders(raw_orders: pl.DataFrame, params: ExampleParams) -> pl.DataFrame:
    return raw_orders.filter(pl.col("amount") >= params.min_amount)


@klaw.asset
def daily_revenue(orders: pl.DataFrame) -> pl.DataFrame:
    return orders.group_by("day").agg(pl.col("amount").sum().alias("revenue")).sort("day")


example = klaw.workflow("example", [raw_orders, orders, daily_revenue])
'''

TEST = '''\
"""Stages are plain functions: test them directly, and the workflow's graph as a whole."""

import polars as pl

from workflows.example import daily_revenue, example

import klaw


def test_daily_revenue_sums_per_day() -> None:
    orders = pl.DataFrame({"day": ["d1", "d1", "d2"], "amount": [1.0, 2.0, 5.0]})
    result = daily_revenue(orders)
    assert result.to_dicts() == [{"day": "d1", "revenue": 3.0}, {"day": "d2", "revenue": 5.0}]


def test_workflow_is_valid() -> None:
    assert klaw.plan(example).stages == ("raw_orders", "orders", "daily_revenue")
'''


SQL_KLAW_TOML = """\
[project]
name = "{name}"
workflow_dirs = ["workflows"]   # one folder per workflow: config.yaml + workflow.sql / .py
"""

SQL_CONFIG = """\
# The schema of this file: klaw schema --config
description: Orders and daily revenue, in SQL.
engine: duckdb          # or datafusion
retries: 1
timeout: 600
params:
  min_amount: 0.0       # read in SQL as $min_amount, bound as a query parameter
"""

SQL_WORKFLOW = """\
-- name: raw_orders
SELECT *
FROM (VALUES
    (1, DATE '2026-01-01', 10.0),
    (2, DATE '2026-01-01', 25.5),
    (3, DATE '2026-01-02', 7.25),
    (4, DATE '2026-01-02', 40.0)
) AS t(order_id, day, amount);

-- name: daily_revenue
-- Upstream statements and assets are tables by name: this one reads raw_orders.
SELECT day, sum(amount) AS revenue
FROM raw_orders
WHERE amount >= $min_amount
GROUP BY day
ORDER BY day;
"""

SQL_TEST = '''\
"""The folder workflow plans, and its SQL checks out against its upstream schemas."""

from pathlib import Path

import klaw

ROOT = Path(__file__).resolve().parent.parent


def test_example_sql_plans() -> None:
    project = klaw.open_project(ROOT)
    try:
        assert project.plan("example_sql").stages == ("raw_orders", "daily_revenue")
        assert project.validate(["example_sql"]) == {"example_sql": None}
    finally:
        project.close()
'''


def scaffold(
    directory: Path, name: str | None = None, template: str = "python"
) -> tuple[list[Path], str]:
    """Write the example project into ``directory``; refuse to overwrite anything. Returns the
    files written and the example workflow's name."""
    root = directory.resolve()
    common = {root / ".gitignore": ".klaw/\n__pycache__/\n"}
    if template == "python":
        workflow = "example"
        files = {
            root / "klaw.toml": KLAW_TOML.format(name=name or root.name),
            root / "workflows" / "__init__.py": "",
            root / "workflows" / "example.py": WORKFLOW,
            root / "tests" / "test_example.py": TEST,
        }
    elif template == "sql":
        workflow = "example_sql"
        folder = root / "workflows" / workflow
        files = {
            root / "klaw.toml": SQL_KLAW_TOML.format(name=name or root.name),
            folder / "config.yaml": SQL_CONFIG,
            folder / "workflow.sql": SQL_WORKFLOW,
            root / "tests" / "test_example_sql.py": SQL_TEST,
        }
    else:
        raise ConfigError(
            f"Unknown template {template!r}.", hint="Use --template python or --template sql."
        )
    files |= common
    existing = [p for p in files if p.exists()]
    if existing:
        raise ConfigError(
            f"{existing[0]} already exists; klaw init does not overwrite files.",
            hint="Choose an empty folder: klaw init NEW_DIR.",
        )
    for path, text in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return list(files), workflow
