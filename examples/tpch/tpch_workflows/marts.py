"""Joins and aggregates over the cleaned sources."""

import logging

import duckdb
import polars as pl
import pyarrow as pa

import klaw
from tpch_workflows.params import ForecastParams, TpchParams

log = logging.getLogger(__name__)


def _duckdb(**tables: pa.Table) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection of this stage's own, with its inputs visible as tables by name."""
    con = duckdb.connect()
    for name, table in tables.items():
        con.register(name, table)
    return con


@klaw.asset(tags=["mart"])
def order_lines(
    lineitem_clean: pa.Table, orders_clean: pa.Table, customers: pa.Table, nations: pa.Table
) -> duckdb.DuckDBPyRelation:
    """One row per order line with its order, customer, nation and region
    (lineitem ⋈ orders ⋈ customer ⋈ nation), in DuckDB."""
    con = _duckdb(
        lineitem_clean=lineitem_clean,
        orders_clean=orders_clean,
        customers=customers,
        nations=nations,
    )
    return con.sql(
        """
        SELECT l.order_key, l.line_number, o.order_date, o.order_month, o.priority,
               c.customer_key, c.customer, c.segment, n.nation, n.region,
               l.supplier_key, l.ship_mode, l.quantity, l.net_revenue, l.delay_days, l.is_late
        FROM lineitem_clean AS l
        JOIN orders_clean AS o ON o.order_key = l.order_key
        JOIN customers AS c ON c.customer_key = o.customer_key
        JOIN nations AS n ON n.nation_key = c.nation_key
        """
    )


@klaw.asset(tags=["mart"])
def revenue_by_nation_month(order_lines: pl.DataFrame) -> pl.DataFrame:
    """Net revenue, orders and lines per region, nation and month."""
    result = (
        order_lines.group_by("region", "nation", "order_month")
        .agg(
            pl.col("net_revenue").sum().alias("revenue"),
            pl.col("order_key").n_unique().cast(pl.Int64).alias("orders"),
            pl.len().cast(pl.Int64).alias("lines"),
        )
        .sort("region", "nation", "order_month")
    )
    log.info("%d nation-months, total revenue %.2f", result.height, result["revenue"].sum())
    return result


@klaw.stage
def customer_revenue(order_lines: pl.DataFrame) -> pl.DataFrame:
    """Net revenue and orders per customer: handed to top_customers and quality_check in
    memory, not stored."""
    return order_lines.group_by("customer_key", "customer", "nation", "segment").agg(
        pl.col("net_revenue").sum().alias("revenue"),
        pl.col("order_key").n_unique().cast(pl.Int64).alias("orders"),
        pl.col("order_date").max().alias("last_order"),
    )


@klaw.asset(tags=["mart"])
def top_customers(customer_revenue: pl.DataFrame, params: TpchParams) -> pl.DataFrame:
    """The ``top_n`` customers by net revenue, ranked from 1."""
    top = customer_revenue.sort(["revenue", "customer_key"], descending=[True, False]).head(
        params.top_n
    )
    print(f"top {top.height} of {customer_revenue.height} customers by revenue")
    return top.select(pl.int_range(1, top.height + 1, dtype=pl.Int32).alias("rank"), pl.all())


@klaw.asset(tags=["mart"])
def shipping_delays(
    lineitem_clean: pa.Table, suppliers: pa.Table, nations: pa.Table
) -> duckdb.DuckDBPyRelation:
    """How late lines arrive (receipt after commit date) per supplier region and ship mode."""
    con = _duckdb(lineitem_clean=lineitem_clean, suppliers=suppliers, nations=nations)
    return con.sql(
        """
        SELECT n.region AS supplier_region,
               l.ship_mode,
               count(*) AS lines,
               count(*) FILTER (WHERE l.is_late) AS late_lines,
               round(avg(l.is_late::INTEGER), 4) AS late_share,
               round(avg(l.delay_days) FILTER (WHERE l.is_late), 2) AS avg_days_late,
               max(l.delay_days) AS max_days_late
        FROM lineitem_clean AS l
        JOIN suppliers AS s ON s.supplier_key = l.supplier_key
        JOIN nations AS n ON n.nation_key = s.nation_key
        GROUP BY ALL
        ORDER BY supplier_region, ship_mode
        """
    )


# TPC-H Q6 in DataFusion, per ship year: how much more revenue there would have been without
# the small discounts given on small orders. An SQL stage reads the stages it names as tables
# (here lineitem_clean) and binds its params as $name.
forecast_revenue_change = klaw.sql(
    """
    -- TPC-H Q6 (forecasting revenue change) per ship year, in DataFusion.
    SELECT CAST(date_part('year', ship_date) AS INT) AS ship_year,
           count(*) AS lines,
           round(sum(extended_price * discount), 2) AS revenue_change
    FROM lineitem_clean
    WHERE discount BETWEEN $forecast_min_discount AND $forecast_max_discount
      AND quantity < $forecast_max_quantity
    GROUP BY 1
    ORDER BY 1
    """,
    name="forecast_revenue_change",
    engine="datafusion",
    params_model=ForecastParams,
    tags=["mart"],
)
