"""T1: TPC-H Q1, Q3, Q5 and Q6 at scale factor 1, per engine (DuckDB, DataFusion, Polars), as a
Klaw workflow next to the same queries run by the engine alone, interleaved in the same run.

The data: TPC-H Parquet made once by ``tpchgen-cli`` into ``bench/.cache/tpch-sf1/`` (kept
between runs; delete it to make it again), its generation timed apart from the figures. The
six tables are read once per benchmark (the columns the four queries use), string views cast to
plain strings (DuckDB's Arrow scan cannot filter string views), and held in memory: the
figures are query compute plus what Klaw adds, not Parquet decoding, which would otherwise be
most of the time on both sides.

Per engine, the Klaw workflow is six source stages that hand out those Arrow tables (for
Polars: Polars frames made from them, ``rechunk=False``) and four query stages, every one a
plain ``@klaw.stage`` (nothing stored): ``klaw.sql(..., engine=...)`` for DuckDB and DataFusion,
Polars expressions for Polars. The floor does the same by hand: one DuckDB connection or one
DataFusion ``SessionContext`` with the six tables registered, or the same Polars functions over
frames made the same way; each of the four results is fetched as an Arrow table (Polars: a
DataFrame), as Klaw's stages return them.
"""

from __future__ import annotations

import datetime as dt
import inspect
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

import klaw
from bench.report import Row, Unit
from bench.timing import Case, interleaved

if TYPE_CHECKING:
    from bench.workloads import Settings

SCALE = 1.0
CACHE = Path(__file__).resolve().parent / ".cache"
ENGINES = ("duckdb", "datafusion", "polars")
ENGINE_LABELS = {"duckdb": "DuckDB", "datafusion": "DataFusion", "polars": "Polars"}

# the columns Q1, Q3, Q5 and Q6 read, per table
COLUMNS: dict[str, tuple[str, ...]] = {
    "lineitem": (
        "l_orderkey",
        "l_suppkey",
        "l_quantity",
        "l_extendedprice",
        "l_discount",
        "l_tax",
        "l_returnflag",
        "l_linestatus",
        "l_shipdate",
    ),
    "orders": ("o_orderkey", "o_custkey", "o_orderdate", "o_shippriority"),
    "customer": ("c_custkey", "c_mktsegment", "c_nationkey"),
    "supplier": ("s_suppkey", "s_nationkey"),
    "nation": ("n_nationkey", "n_name", "n_regionkey"),
    "region": ("r_regionkey", "r_name"),
}
TABLES = tuple(COLUMNS)
EXPECTED_ROWS = {"q1": 4, "q3": 10, "q5": 5, "q6": 1}  # result rows of each query, any SF

# -- the data -----------------------------------------------------------------------------------


def scale_text(scale: float = SCALE) -> str:
    return f"SF{scale:g}"


def data_folder(scale: float = SCALE) -> Path:
    return CACHE / f"tpch-sf{scale:g}"


def _tpchgen() -> str:
    """The ``tpchgen-cli`` installed next to this interpreter (the venv's), else on PATH."""
    script = Path(sys.executable).parent / "tpchgen-cli"
    if script.exists():
        return str(script)
    found = shutil.which("tpchgen-cli")
    if found is None:
        raise RuntimeError(
            f"no `tpchgen-cli` next to {sys.executable} or on PATH: pip install tpchgen-cli"
        )
    return found


def generate(scale: float = SCALE) -> float | None:
    """TPC-H Parquet of ``TABLES`` at ``scale`` into the cache, unless it is there already;
    the seconds generation took (``None``: it was there)."""
    folder = data_folder(scale)
    if all((folder / f"{table}.parquet").is_file() for table in TABLES):
        return None
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    command = [
        _tpchgen(),
        "parquet",
        "--scale-factor",
        f"{scale:g}",
        "--tables",
        ",".join(TABLES),
        "--output-dir",
        str(partial),
        "--quiet",
    ]
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"`{' '.join(command)}` failed:\n{done.stdout}{done.stderr}")
    elapsed = time.perf_counter() - started
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)  # only a complete set of files gets the real name
    return elapsed


def _plain_strings(table: pa.Table) -> pa.Table:
    """``table`` with string views as plain strings, which every engine scans."""
    fields = [
        f.with_type(pa.string()) if pa.types.is_string_view(f.type) else f for f in table.schema
    ]
    return table.cast(pa.schema(fields))


def read_tables(scale: float = SCALE) -> dict[str, pa.Table]:
    """The columns of ``COLUMNS`` of every table, as Arrow tables."""
    folder = data_folder(scale)
    return {
        name: _plain_strings(pq.read_table(folder / f"{name}.parquet", columns=list(columns)))
        for name, columns in COLUMNS.items()
    }


def polars_frame(table: pa.Table) -> pl.DataFrame:
    """A Polars frame over ``table`` as Klaw's Polars engine makes one (no rechunk)."""
    frame = pl.from_arrow(table, rechunk=False)
    assert isinstance(frame, pl.DataFrame)
    return frame


# -- the queries: SQL for DuckDB and DataFusion, the same in Polars expressions ------------------

SQL: dict[str, str] = {
    "q1": """
SELECT l_returnflag, l_linestatus,
       sum(l_quantity) AS sum_qty,
       sum(l_extendedprice) AS sum_base_price,
       sum(l_extendedprice * (1 - l_discount)) AS sum_disc_price,
       sum(l_extendedprice * (1 - l_discount) * (1 + l_tax)) AS sum_charge,
       avg(l_quantity) AS avg_qty,
       avg(l_extendedprice) AS avg_price,
       avg(l_discount) AS avg_disc,
       count(*) AS count_order
FROM lineitem
WHERE l_shipdate <= DATE '1998-09-02'
GROUP BY l_returnflag, l_linestatus
ORDER BY l_returnflag, l_linestatus""",
    "q3": """
SELECT l_orderkey, sum(l_extendedprice * (1 - l_discount)) AS revenue, o_orderdate, o_shippriority
FROM customer, orders, lineitem
WHERE c_mktsegment = 'BUILDING' AND c_custkey = o_custkey AND l_orderkey = o_orderkey
  AND o_orderdate < DATE '1995-03-15' AND l_shipdate > DATE '1995-03-15'
GROUP BY l_orderkey, o_orderdate, o_shippriority
ORDER BY revenue DESC, o_orderdate
LIMIT 10""",
    "q5": """
SELECT n_name, sum(l_extendedprice * (1 - l_discount)) AS revenue
FROM customer, orders, lineitem, supplier, nation, region
WHERE c_custkey = o_custkey AND l_orderkey = o_orderkey AND l_suppkey = s_suppkey
  AND c_nationkey = s_nationkey AND s_nationkey = n_nationkey AND n_regionkey = r_regionkey
  AND r_name = 'ASIA' AND o_orderdate >= DATE '1994-01-01' AND o_orderdate < DATE '1995-01-01'
GROUP BY n_name
ORDER BY revenue DESC""",
    "q6": """
SELECT sum(l_extendedprice * l_discount) AS revenue
FROM lineitem
WHERE l_shipdate >= DATE '1994-01-01' AND l_shipdate < DATE '1995-01-01'
  AND l_discount BETWEEN 0.05 AND 0.07 AND l_quantity < 24""",
}

_col = pl.col


def _disc_price() -> pl.Expr:
    return _col("l_extendedprice") * (1 - _col("l_discount"))


def q1(lineitem: pl.DataFrame) -> pl.DataFrame:
    return (
        lineitem.lazy()
        .filter(_col("l_shipdate") <= dt.date(1998, 9, 2))
        .group_by("l_returnflag", "l_linestatus")
        .agg(
            sum_qty=_col("l_quantity").sum(),
            sum_base_price=_col("l_extendedprice").sum(),
            sum_disc_price=_disc_price().sum(),
            sum_charge=(_disc_price() * (1 + _col("l_tax"))).sum(),
            avg_qty=_col("l_quantity").mean(),
            avg_price=_col("l_extendedprice").mean(),
            avg_disc=_col("l_discount").mean(),
            count_order=pl.len(),
        )
        .sort("l_returnflag", "l_linestatus")
        .collect()
    )


def q3(customer: pl.DataFrame, orders: pl.DataFrame, lineitem: pl.DataFrame) -> pl.DataFrame:
    buyers = customer.lazy().filter(_col("c_mktsegment") == "BUILDING")
    early = orders.lazy().filter(_col("o_orderdate") < dt.date(1995, 3, 15))
    late = lineitem.lazy().filter(_col("l_shipdate") > dt.date(1995, 3, 15))
    return (
        buyers.join(early, left_on="c_custkey", right_on="o_custkey")
        .join(late, left_on="o_orderkey", right_on="l_orderkey")
        .group_by(_col("o_orderkey").alias("l_orderkey"), "o_orderdate", "o_shippriority")
        .agg(revenue=_disc_price().sum())
        .select("l_orderkey", "revenue", "o_orderdate", "o_shippriority")
        .sort(["revenue", "o_orderdate"], descending=[True, False])
        .head(10)
        .collect()
    )


def q5(
    customer: pl.DataFrame,
    orders: pl.DataFrame,
    lineitem: pl.DataFrame,
    supplier: pl.DataFrame,
    nation: pl.DataFrame,
    region: pl.DataFrame,
) -> pl.DataFrame:
    asia = region.lazy().filter(_col("r_name") == "ASIA")
    year = orders.lazy().filter(
        _col("o_orderdate").is_between(dt.date(1994, 1, 1), dt.date(1995, 1, 1), closed="left")
    )
    return (
        asia.join(nation.lazy(), left_on="r_regionkey", right_on="n_regionkey")
        .join(customer.lazy(), left_on="n_nationkey", right_on="c_nationkey")
        .join(year, left_on="c_custkey", right_on="o_custkey")
        .join(lineitem.lazy(), left_on="o_orderkey", right_on="l_orderkey")
        .join(
            supplier.lazy(),
            left_on=["l_suppkey", "n_nationkey"],
            right_on=["s_suppkey", "s_nationkey"],
        )
        .group_by("n_name")
        .agg(revenue=_disc_price().sum())
        .sort("revenue", descending=True)
        .collect()
    )


def q6(lineitem: pl.DataFrame) -> pl.DataFrame:
    return (
        lineitem.lazy()
        .filter(
            _col("l_shipdate").is_between(dt.date(1994, 1, 1), dt.date(1995, 1, 1), closed="left"),
            _col("l_discount").is_between(0.05, 0.07),
            _col("l_quantity") < 24,
        )
        .select(revenue=(_col("l_extendedprice") * _col("l_discount")).sum())
        .collect()
    )


POLARS_QUERIES: dict[str, Callable[..., pl.DataFrame]] = {"q1": q1, "q3": q3, "q5": q5, "q6": q6}

# -- Klaw: one workflow per engine --------------------------------------------------------------


def _source(name: str, table: pa.Table, *, as_polars: bool) -> klaw.StageDef:
    """A plain stage called ``name`` (the table name the queries read) handing out ``table``,
    or a Polars frame made from it (as the floor makes one)."""

    def load() -> pa.Table | pl.DataFrame:
        return polars_frame(table) if as_polars else table

    load.__doc__ = f"The TPC-H table {name}."
    return klaw.stage(name=name)(load)


def workflow(engine: str, tables: Mapping[str, pa.Table]) -> klaw.Workflow:
    """Six source stages and four query stages, all plain stages, run by ``engine``."""
    as_polars = engine == "polars"
    sources = [_source(name, table, as_polars=as_polars) for name, table in tables.items()]
    if as_polars:
        queries = [klaw.stage(name=name)(fn) for name, fn in POLARS_QUERIES.items()]
    else:
        queries = [
            klaw.sql(query, name=name, engine=engine, kind="stage") for name, query in SQL.items()
        ]
    return klaw.workflow(f"tpch_{engine}", [*sources, *queries])


def _klaw_case(wf: klaw.Workflow, settings: Settings) -> Case:
    """A Klaw run of ``wf`` in this process, in a fresh home each time (made outside the
    timing), its metadata durably recorded as always."""
    homes: list[Path] = []

    def setup() -> None:
        homes.append(settings.home())

    def run() -> None:
        record = klaw.run(wf, home=homes[-1], max_workers=settings.workers)
        if record.state.value != "succeeded":
            raise RuntimeError(f"{wf.name} ended {record.state.value}: {record.error}")

    return Case(run, setup)


# -- the floors: each engine alone, by hand -----------------------------------------------------


def duckdb_alone(tables: Mapping[str, pa.Table]) -> dict[str, pa.Table]:
    import duckdb

    with duckdb.connect(":memory:") as con:
        for name, table in tables.items():
            con.register(name, table)
        return {name: con.execute(query).to_arrow_table() for name, query in SQL.items()}


def datafusion_alone(tables: Mapping[str, pa.Table]) -> dict[str, pa.Table]:
    import datafusion

    ctx = datafusion.SessionContext()
    for name, table in tables.items():
        ctx.register_record_batches(name, [table.to_batches()])
    return {name: ctx.sql(query).to_arrow_table() for name, query in SQL.items()}


def polars_alone(tables: Mapping[str, pa.Table]) -> dict[str, pl.DataFrame]:
    frames = {name: polars_frame(table) for name, table in tables.items()}
    return {name: fn(**_wanted(fn, frames)) for name, fn in POLARS_QUERIES.items()}


def _wanted(fn: Callable[..., Any], frames: Mapping[str, pl.DataFrame]) -> dict[str, Any]:
    """The frames ``fn`` takes, by parameter name (as Klaw hands them)."""
    return {name: frames[name] for name in inspect.signature(fn).parameters}


FLOORS: dict[str, Callable[[Mapping[str, pa.Table]], Mapping[str, Any]]] = {
    "duckdb": duckdb_alone,
    "datafusion": datafusion_alone,
    "polars": polars_alone,
}


def _checked(engine: str, results: Mapping[str, Any]) -> None:
    """Each query gave as many rows as TPC-H's answer has."""
    got = {name: len(result) for name, result in results.items()}
    if got != EXPECTED_ROWS:
        raise RuntimeError(f"T1 {engine} gave {got} result rows; TPC-H's have {EXPECTED_ROWS}")


# -- the workload -------------------------------------------------------------------------------


def per_engine(settings: Settings) -> list[Row]:
    """Per engine: Q1+Q3+Q5+Q6 as a Klaw workflow and by the engine alone, interleaved;
    lineitem rows over the wall time of the four queries, and that wall time."""
    sf = scale_text()
    generated = generate()
    if generated is not None:
        print(
            f"T1: generated TPC-H {sf} in {data_folder()} in {generated:.1f} s "
            "(kept for later runs; not part of the figures)",
            file=sys.stderr,
            flush=True,
        )
    started = time.perf_counter()
    tables = read_tables()
    read_s = time.perf_counter() - started
    lineitem_rows = tables["lineitem"].num_rows
    notes: dict[str, Any] = {
        "scale_factor": SCALE,
        "lineitem_rows": lineitem_rows,
        "generate_s": generated,
        "read_s": read_s,
    }
    rows = [
        Row(
            "T1",
            f"TPC-H {sf}: read 6 tables (Parquet → Arrow, once)",
            Unit.SECONDS,
            read_s,
            notes=dict(notes),
        )
    ]
    repeat = settings.times(3)
    for engine in ENGINES:
        floor = FLOORS[engine]

        def by_hand(floor: Callable[[Mapping[str, pa.Table]], Mapping[str, Any]] = floor) -> None:
            floor(tables)

        _checked(engine, floor(tables))
        samples = interleaved(
            {"klaw": _klaw_case(workflow(engine, tables), settings), "floor": Case(by_hand)},
            repeat,
        )
        klaw_s, floor_s = samples["klaw"].median, samples["floor"].median
        alone = f"{ENGINE_LABELS[engine]} alone"
        figures = notes | {"engine": engine, "klaw_s": klaw_s, "floor_s": floor_s}
        rows += [
            Row(
                "T1",
                f"TPC-H {sf} {engine}: Q1+Q3+Q5+Q6, lineitem rows/s",
                Unit.ROWS_PER_SECOND,
                lineitem_rows / klaw_s,
                lineitem_rows / floor_s,
                alone,
                notes=figures,
            ),
            Row("T1", "  same, wall time", Unit.SECONDS, klaw_s, floor_s, alone),
        ]
    return rows
