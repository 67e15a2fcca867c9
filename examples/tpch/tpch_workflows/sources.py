"""Source assets: read the generated TPC-H Parquet files and clean them.

Cleaning means friendly column names, money as float64, trimmed text and a few derived
columns. Nothing is filtered out here: bad rows are ``quality_check``'s job, and it can only
report what it sees.
"""

import duckdb
import polars as pl

import klaw
from tpch_workflows.params import TpchParams, source_file


@klaw.asset(retries=1, tags=["source"])
def nations(params: TpchParams) -> duckdb.DuckDBPyRelation:
    """Every nation with its region (nation ⋈ region), in DuckDB."""
    con = duckdb.connect()
    con.read_parquet(str(source_file(params, "nation"))).create_view("nation")
    con.read_parquet(str(source_file(params, "region"))).create_view("region")
    return con.sql(
        """
        SELECT n.n_nationkey AS nation_key,
               trim(n.n_name) AS nation,
               r.r_regionkey AS region_key,
               trim(r.r_name) AS region
        FROM nation AS n
        JOIN region AS r ON r.r_regionkey = n.n_regionkey
        ORDER BY nation_key
        """
    )


@klaw.asset(retries=1, tags=["source"])
def customers(params: TpchParams) -> pl.DataFrame:
    """Customers with their market segment, balance and the country code of their phone."""
    raw = pl.read_parquet(source_file(params, "customer"))
    phone = pl.col("c_phone").str.strip_chars()
    return raw.select(
        pl.col("c_custkey").alias("customer_key"),
        pl.col("c_name").str.strip_chars().alias("customer"),
        pl.col("c_nationkey").alias("nation_key"),
        pl.col("c_mktsegment").str.strip_chars().str.to_titlecase().alias("segment"),
        pl.col("c_acctbal").cast(pl.Float64).alias("account_balance"),
        phone.alias("phone"),
        phone.str.split("-").list.first().cast(pl.Int32, strict=False).alias("country_code"),
    )


@klaw.asset(retries=1, tags=["source"])
def orders_clean(params: TpchParams) -> pl.DataFrame:
    """Orders with their month, year and a numeric priority (1 = urgent … 5 = low)."""
    raw = pl.read_parquet(source_file(params, "orders"))
    priority = pl.col("o_orderpriority").str.strip_chars()
    return raw.select(
        pl.col("o_orderkey").alias("order_key"),
        pl.col("o_custkey").alias("customer_key"),
        pl.col("o_orderstatus").str.strip_chars().alias("status"),
        pl.col("o_totalprice").cast(pl.Float64).alias("total_price"),
        pl.col("o_orderdate").alias("order_date"),
        pl.col("o_orderdate").dt.truncate("1mo").alias("order_month"),
        pl.col("o_orderdate").dt.year().alias("order_year"),
        priority.alias("priority"),
        priority.str.slice(0, 1).cast(pl.Int8, strict=False).alias("priority_rank"),
        pl.col("o_clerk").str.strip_chars().alias("clerk"),
    )


@klaw.asset(retries=1, tags=["source"])
def lineitem_clean(params: TpchParams) -> duckdb.DuckDBPyRelation:
    """Order lines with net revenue (price after discount) and delivery delay, in DuckDB."""
    con = duckdb.connect()
    con.read_parquet(str(source_file(params, "lineitem"))).create_view("lineitem")
    return con.sql(
        """
        SELECT l_orderkey AS order_key,
               l_linenumber AS line_number,
               l_partkey AS part_key,
               l_suppkey AS supplier_key,
               l_quantity::DOUBLE AS quantity,
               l_extendedprice::DOUBLE AS extended_price,
               l_discount::DOUBLE AS discount,
               l_tax::DOUBLE AS tax,
               (l_extendedprice * (1 - l_discount))::DOUBLE AS net_revenue,
               trim(l_returnflag) AS return_flag,
               trim(l_linestatus) AS line_status,
               trim(l_shipmode) AS ship_mode,
               l_shipdate AS ship_date,
               l_commitdate AS commit_date,
               l_receiptdate AS receipt_date,
               date_diff('day', l_commitdate, l_receiptdate) AS delay_days,
               l_receiptdate > l_commitdate AS is_late
        FROM lineitem
        """
    )


@klaw.asset(retries=1, tags=["source"])
def suppliers(params: TpchParams) -> pl.DataFrame:
    """Suppliers with their nation and balance."""
    raw = pl.read_parquet(source_file(params, "supplier"))
    return raw.select(
        pl.col("s_suppkey").alias("supplier_key"),
        pl.col("s_name").str.strip_chars().alias("supplier"),
        pl.col("s_nationkey").alias("nation_key"),
        pl.col("s_acctbal").cast(pl.Float64).alias("account_balance"),
    )
