"""The TPC-H example (what `make demo` runs), run for real on a tiny generated data set through
the ``klaw`` command line: good data succeeds and reconciles with queries written by hand (the
Python workflow ``tpch``, its DataFusion stage, and the SQL folder workflow ``tpch_sql`` that
reads its assets); bad data fails the quality check loudly and keeps what succeeded."""

from __future__ import annotations

import contextlib
import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb
import polars as pl
import pytest

import klaw

if TYPE_CHECKING:
    from klaw.service.orchestrator import Orchestrator

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "tpch"
BIN = Path(sys.executable).parent
TABLES = ("customer", "orders", "lineitem", "nation", "region", "supplier")
ASSETS = {
    "nations",
    "customers",
    "orders_clean",
    "lineitem_clean",
    "suppliers",
    "order_lines",
    "revenue_by_nation_month",
    "top_customers",
    "shipping_delays",
    "forecast_revenue_change",
    "quality_check",
}
SQL_ASSETS = {"pricing_summary", "local_supplier_volume", "region_volume"}  # of tpch_sql
TOP_N = 5

pytestmark = pytest.mark.slow  # real runs in subprocesses: several seconds in all


@pytest.fixture(scope="module")
def tpch_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """TPC-H at scale factor 0.01 (60k order lines), generated once for the module."""
    tpchgen = BIN / "tpchgen-cli"
    assert tpchgen.exists(), f"{tpchgen} is missing: pip install -e '.[dev]'"
    folder = tmp_path_factory.mktemp("tpch") / "sf0.01"
    subprocess.run(
        [tpchgen, "parquet", "-s", "0.01", "-T", ",".join(TABLES), "-o", folder, "-q"],
        check=True,
        timeout=60,
    )
    return folder


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the example project, without its data or state."""
    target = tmp_path / "tpch"
    shutil.copytree(EXAMPLE, target, ignore=shutil.ignore_patterns("data", ".klaw", "__pycache__"))
    return target


def cli(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [BIN / "klaw", "--project", project, *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def run(project: Path, workflow: str, *params: str) -> tuple[int, dict[str, Any]]:
    """Run a workflow through the CLI with ``--param`` each of ``params``; the exit code and
    the JSON it printed."""
    args = [arg for param in params for arg in ("--param", param)]
    result = cli(project, "run", workflow, *args, "-o", "json")
    assert result.stdout, result.stderr
    return result.returncode, json.loads(result.stdout)


def run_tpch(project: Path, data: Path) -> tuple[int, dict[str, Any]]:
    return run(project, "tpch", f"data_dir={data}", f"top_n={TOP_N}")


@contextlib.contextmanager
def lake(project: Path) -> Iterator[Orchestrator]:
    orch = klaw.open_orchestrator(home=project / ".klaw")
    try:
        yield orch
    finally:
        orch.close()


def by_key(rows: list[dict[str, Any]], *keys: str) -> dict[tuple[Any, ...], dict[str, Any]]:
    return {tuple(row[k] for k in keys): row for row in rows}


def raw_tables(data: Path) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection with the raw TPC-H Parquet files as views by table name."""
    con = duckdb.connect()
    for table in TABLES:
        con.read_parquet(str(data / f"{table}.parquet")).create_view(table)
    return con


def test_tpch_runs_and_reconciles_with_a_hand_written_query(project: Path, tpch_data: Path) -> None:
    code, out = run_tpch(project, tpch_data)
    assert code == 0, out
    assert out["run"]["state"] == "succeeded"
    attempts = {a["stage"]: a for a in out["attempts"]}
    assert all(a["state"] == "succeeded" for a in attempts.values())
    assert attempts["customer_revenue"]["snapshot_id"] is None  # a plain stage: not stored

    with lake(project) as orch:
        assets = {a.key: a for a in orch.assets()}
        assert set(assets) == ASSETS
        for asset in ASSETS:
            (snapshot,) = orch.snapshots(asset)
            assert snapshot.run_id == out["run"]["run_id"]
            assert snapshot.snapshot == attempts[asset]["snapshot_id"]
        revenue = orch.read_asset("revenue_by_nation_month").to_pylist()
        top = orch.read_asset("top_customers").to_pylist()
        report = orch.read_asset("quality_check").to_pylist()
        forecast = orch.read_asset("forecast_revenue_change").to_pylist()

    con = raw_tables(tpch_data)
    expected = con.sql(
        """
        SELECT trim(n_name) AS nation, date_trunc('month', o_orderdate)::DATE AS order_month,
               sum(l_extendedprice * (1 - l_discount))::DOUBLE AS revenue,
               count(DISTINCT o_orderkey) AS orders, count(*) AS lines
        FROM lineitem
        JOIN orders ON o_orderkey = l_orderkey
        JOIN customer ON c_custkey = o_custkey
        JOIN nation ON n_nationkey = c_nationkey
        GROUP BY ALL
        """
    ).to_arrow_table()
    want = by_key(expected.to_pylist(), "nation", "order_month")
    got = by_key(revenue, "nation", "order_month")
    assert set(got) == set(want)
    for key, row in want.items():
        assert got[key]["revenue"] == pytest.approx(row["revenue"], rel=1e-9), key
        assert (got[key]["orders"], got[key]["lines"]) == (row["orders"], row["lines"]), key
    (total,) = con.sql(
        "SELECT sum(l_extendedprice * (1 - l_discount))::DOUBLE FROM lineitem"
    ).fetchone() or (None,)
    assert sum(r["revenue"] for r in revenue) == pytest.approx(total, rel=1e-9)

    best = con.sql(
        f"""
        SELECT o_custkey AS customer_key, sum(l_extendedprice * (1 - l_discount))::DOUBLE AS rev
        FROM lineitem JOIN orders ON o_orderkey = l_orderkey
        GROUP BY ALL ORDER BY rev DESC, customer_key LIMIT {TOP_N}
        """
    ).fetchall()
    assert len(top) == TOP_N
    assert [r["rank"] for r in top] == list(range(1, TOP_N + 1))
    assert [r["revenue"] for r in top] == sorted((r["revenue"] for r in top), reverse=True)
    assert [r["customer_key"] for r in top] == [key for key, _ in best]
    assert [r["revenue"] for r in top] == pytest.approx([rev for _, rev in best], rel=1e-9)

    assert len(report) == 8
    assert all(r["passed"] and r["failed"] == 0 for r in report)

    # forecast_revenue_change is an SQL stage run by DataFusion: TPC-H Q6 per ship year, here
    # computed again by Polars over the raw Parquet (discount 0.05 to 0.07, quantity < 24).
    lineitem = pl.read_parquet(tpch_data / "lineitem.parquet").with_columns(
        pl.col("l_quantity", "l_extendedprice", "l_discount").cast(pl.Float64)
    )
    q6 = (
        lineitem.filter(pl.col("l_discount").is_between(0.05, 0.07), pl.col("l_quantity") < 24)
        .group_by(pl.col("l_shipdate").dt.year().alias("ship_year"))
        .agg(
            pl.len().alias("lines"),
            (pl.col("l_extendedprice") * pl.col("l_discount")).sum().alias("revenue_change"),
        )
        .sort("ship_year")
    )
    assert [r["ship_year"] for r in forecast] == q6["ship_year"].to_list()
    assert [r["lines"] for r in forecast] == q6["lines"].to_list()
    # rounded to cents by the stage
    assert [r["revenue_change"] for r in forecast] == pytest.approx(
        q6["revenue_change"].to_list(), abs=0.0101
    )
    assert sum(r["lines"] for r in forecast) > 0

    check_tpch_sql(project, con)


def check_tpch_sql(project: Path, con: duckdb.DuckDBPyConnection) -> None:
    """Run the SQL folder workflow ``tpch_sql`` over the assets ``tpch`` just stored and check
    its Q5-style local supplier volume (with ``$min_revenue`` set so that it drops half the
    rows), the statement that reads it, and its Q1 pricing summary."""
    validate = cli(project, "validate")  # now that tpch stored its assets, with their schemas
    assert validate.returncode == 0, validate.stdout + validate.stderr
    assert "ok      tpch_sql" in validate.stdout

    local = con.sql(
        """
        SELECT trim(r_name) AS region, trim(n_name) AS nation, year(o_orderdate) AS order_year,
               sum(l_extendedprice * (1 - l_discount))::DOUBLE AS revenue,
               count(DISTINCT o_orderkey) AS orders, count(*) AS lines
        FROM lineitem
        JOIN orders ON o_orderkey = l_orderkey
        JOIN customer ON c_custkey = o_custkey
        JOIN supplier ON s_suppkey = l_suppkey AND s_nationkey = c_nationkey
        JOIN nation ON n_nationkey = c_nationkey
        JOIN region ON r_regionkey = n_regionkey
        GROUP BY ALL
        """
    ).to_arrow_table()
    revenues = sorted(local["revenue"].to_pylist())
    middle = len(revenues) // 2
    min_revenue = (revenues[middle - 1] + revenues[middle]) / 2
    want = {
        key: row
        for key, row in by_key(local.to_pylist(), "region", "nation", "order_year").items()
        if row["revenue"] >= min_revenue
    }
    assert 0 < len(want) < len(revenues)

    code, out = run(project, "tpch_sql", f"min_revenue={min_revenue!r}")
    assert code == 0, out
    assert out["run"]["state"] == "succeeded"
    assert out["run"]["params"] == {"ship_cutoff_days": 90, "min_revenue": min_revenue}
    attempts = {a["stage"]: a for a in out["attempts"]}
    assert set(attempts) == SQL_ASSETS
    assert all(a["state"] == "succeeded" for a in attempts.values())

    with lake(project) as orch:
        assert {a.key for a in orch.assets()} == ASSETS | SQL_ASSETS
        for asset in SQL_ASSETS:
            (snapshot,) = orch.snapshots(asset)
            assert snapshot.run_id == out["run"]["run_id"]
            assert snapshot.snapshot == attempts[asset]["snapshot_id"]
        volume = orch.read_asset("local_supplier_volume").to_pylist()
        regions = orch.read_asset("region_volume").to_pylist()
        pricing = orch.read_asset("pricing_summary").to_pylist()

    got = by_key(volume, "region", "nation", "order_year")
    assert set(got) == set(want)
    for key, row in want.items():
        assert got[key]["revenue"] == pytest.approx(row["revenue"], rel=1e-9), key
        assert (got[key]["orders"], got[key]["lines"]) == (row["orders"], row["lines"]), key

    per_region: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for row in want.values():
        per_region.setdefault((row["region"], row["order_year"]), []).append(row)
    assert set(by_key(regions, "region", "order_year")) == set(per_region)
    for row in regions:
        rows = per_region[row["region"], row["order_year"]]
        assert row["revenue"] == pytest.approx(sum(r["revenue"] for r in rows), abs=0.0051)
        assert row["nations"] == len(rows)
        assert row["top_nation"] == max(rows, key=lambda r: r["revenue"])["nation"]

    q1 = con.sql(
        """
        SELECT trim(l_returnflag) AS return_flag, trim(l_linestatus) AS line_status,
               sum(l_quantity)::DOUBLE AS sum_qty,
               sum(l_extendedprice * (1 - l_discount) * (1 + l_tax))::DOUBLE AS sum_charge,
               count(*) AS count_order
        FROM lineitem
        WHERE l_shipdate <= DATE '1998-12-01' - INTERVAL 90 DAY
        GROUP BY ALL
        """
    ).to_arrow_table()
    expected_q1 = by_key(q1.to_pylist(), "return_flag", "line_status")
    got_q1 = by_key(pricing, "return_flag", "line_status")
    assert set(got_q1) == set(expected_q1)
    for group, row in expected_q1.items():
        assert got_q1[group]["count_order"] == row["count_order"], group
        assert got_q1[group]["sum_qty"] == row["sum_qty"], group
        assert got_q1[group]["sum_charge"] == pytest.approx(row["sum_charge"], rel=1e-9), group


def corrupt(source: Path, target: Path) -> tuple[list[int], list[int]]:
    """A copy of ``source`` where three lines have a negative price and two orders have lost
    all their lines. Returns (orders with a negative line, orders without lines)."""
    target.mkdir()
    for table in TABLES:
        if table != "lineitem":
            shutil.copy(source / f"{table}.parquet", target / f"{table}.parquet")
    con = duckdb.connect()
    con.read_parquet(str(source / "lineitem.parquet")).create_view("lineitem")
    first = con.sql("SELECT DISTINCT l_orderkey FROM lineitem ORDER BY 1 LIMIT 5").fetchall()
    keys = [row[0] for row in first]
    negative, dropped = keys[:3], keys[3:]
    con.execute(
        f"""
        COPY (
            SELECT * REPLACE (
                CASE WHEN l_orderkey IN ({", ".join(map(str, negative))}) AND l_linenumber = 1
                     THEN -l_extendedprice ELSE l_extendedprice END AS l_extendedprice)
            FROM lineitem
            WHERE l_orderkey NOT IN ({", ".join(map(str, dropped))})
        ) TO '{target / "lineitem.parquet"}' (FORMAT parquet)
        """
    )
    return negative, dropped


def test_bad_data_fails_the_quality_check_and_keeps_what_succeeded(
    project: Path, tpch_data: Path, tmp_path: Path
) -> None:
    negative, dropped = corrupt(tpch_data, tmp_path / "bad")

    code, out = run_tpch(project, tmp_path / "bad")
    run_id = out["run"]["run_id"]
    assert out["run"]["state"] == "failed"
    attempts = {a["stage"]: a for a in out["attempts"]}
    failed = [a for a in out["attempts"] if a["state"] != "succeeded"]
    assert [(a["stage"], a["state"], a["attempt"]) for a in failed] == [
        ("quality_check", "failed", 1)  # NonRetryableError: no second attempt
    ]
    error = attempts["quality_check"]["error"]
    assert "NonRetryableError" in error
    assert "negative_prices" in error and "orders_without_lines" in error
    assert "revenue_reconciles" not in error  # every line still reaches both totals

    logs = cli(project, "logs", run_id, "--stage", "quality_check")
    assert logs.returncode == 0, logs.stderr
    assert "quality_check failed 2 of 8 checks" in logs.stdout
    assert "negative_prices: 3 of" in logs.stdout
    assert f"order_key={negative[0]}, line_number=1, extended_price=-" in logs.stdout
    assert "orders_without_lines: 2 of" in logs.stdout
    assert f"order_key={dropped[0]}" in logs.stdout

    with lake(project) as orch:
        assets = {a.key: a for a in orch.assets()}
        assert set(assets) == ASSETS - {"quality_check"}  # the failed gate stored nothing
        for key in assets:
            (snapshot,) = orch.snapshots(key)
            assert snapshot.run_id == run_id
            assert snapshot.snapshot == attempts[key]["snapshot_id"]
        lines = orch.read_asset("lineitem_clean")
        assert sum(1 for price in lines["extended_price"].to_pylist() if price < 0) == 3

    assert code == 1, "`klaw run` must exit 1 when the run fails"
