"""The project the browser tests serve: a launch form with constraints, stages slow enough to
watch, a failing stage with a traceback, a run to cancel, an asset with several snapshots, and
a folder workflow (config.yaml + workflow.sql, written by hand) for the lifecycle pages and the
builder."""

from __future__ import annotations

from pathlib import Path

FLOWS = """
import time
from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, Field

import klaw


class Launch(BaseModel):
    rows: int = Field(3, ge=1, le=1000, description="How many rows to make.")
    label: str = Field("x", min_length=1)
    pace: Literal["quick", "steady"] = "quick"


@klaw.asset
def made(params: Launch) -> pa.Table:
    print(f"making {params.rows} rows")
    return pa.table({"n": list(range(params.rows)), "label": [params.label] * params.rows})


@klaw.stage
def settle(made: pa.Table, params: Launch) -> int:
    time.sleep(4.0 if params.pace == "steady" else 0.0)
    return made.num_rows


@klaw.stage
def summed(settle: int) -> int:
    return settle * 2


def parse_amount(text):
    return int(text)


@klaw.stage
def explode() -> int:
    print("about to parse the amount")
    return parse_amount("not a number")


@klaw.stage
def wait_long() -> int:
    time.sleep(600)
    return 0


launch = klaw.workflow("launch", [made, settle, summed], description="makes rows")
broken = klaw.workflow("broken", [explode], description="fails on purpose")
forever = klaw.workflow("forever", [wait_long], description="runs until cancelled")
"""


# A hand-written folder workflow: comments, a folded description, a flow list; the builder
# must send these bytes back as they are when nothing is edited.
SALES_CONFIG = """# Sales, in DuckDB SQL.
description: >-
  Orders and their total,
  made up for the browser tests.
engine: duckdb
retries: 1 # each statement once more on failure
tags: [sales, sql]
"""

SALES_SQL = """-- The sales workflow: one stage per statement.

-- name: orders
-- Three orders.
SELECT range AS id, (range + 1) * 10.0 AS amount
FROM range(3);

-- name: totals
SELECT sum(amount) AS total, count(*) AS orders
FROM orders;
"""


def write(root: Path) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    (root / "klaw.toml").write_text(
        '[project]\nname = "uiproj"\nmodules = ["flows.py"]\nworkflow_dirs = ["workflows"]\n'
    )
    (root / "flows.py").write_text(FLOWS)
    sales = root / "workflows" / "sales"
    sales.mkdir(parents=True, exist_ok=True)
    (sales / "config.yaml").write_text(SALES_CONFIG)
    (sales / "workflow.sql").write_text(SALES_SQL)
    return root
