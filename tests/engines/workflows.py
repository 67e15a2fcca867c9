"""SQL workflow fixtures at module level, so process workers can import the Python stages
(SQL stages pickle as they are)."""

from __future__ import annotations

import polars as pl
import pyarrow as pa
from pydantic import BaseModel

import klaw
from klaw.authoring.sql import klaw_sql


class SalesParams(BaseModel):
    min_amount: float = 0.0
    label: str = "all"


@klaw.asset
def orders() -> pa.Table:
    return pa.table(
        {
            "day": ["d1", "d1", "d2", "d3"],
            "customer": [10, 20, 10, 30],
            "amount": [10.0, 5.0, 7.0, 1.0],
        }
    )


@klaw.asset
def customers() -> pl.DataFrame:  # a Python stage returning Polars
    return pl.DataFrame({"customer": [10, 20, 30], "name": ["ann", "bob", "cid"]})


revenue = klaw_sql(
    """
    -- Revenue per day, of orders of at least min_amount.
    WITH kept AS (SELECT * FROM orders WHERE amount >= $min_amount)
    SELECT day, sum(amount) AS revenue, $label AS label
    FROM kept GROUP BY day ORDER BY day
    """,
    name="revenue",
    params_model=SalesParams,
)

by_customer = klaw_sql(
    """
    SELECT c.name, sum(o.amount) AS spent
    FROM orders o JOIN customers c ON o.customer = c.customer
    GROUP BY c.name ORDER BY c.name
    """,
    name="by_customer",
    engine="datafusion",
)

top_days = klaw_sql(
    "SELECT day FROM revenue WHERE revenue > (SELECT min_amount FROM params) ORDER BY day",
    name="top_days",
    engine="polars",
    kind="stage",
    params_model=SalesParams,
)


@klaw.asset
def summary(top_days: pa.Table, by_customer: pl.DataFrame) -> pa.Table:  # Python after SQL
    return pa.table({"top_days": [top_days.num_rows], "customers": [by_customer.height]})


sales = klaw.workflow("sales", [orders, customers, revenue, by_customer, top_days, summary])


# -- an upstream whose schema is not what the SQL expects --------------------------------------
@klaw.asset
def payments() -> pa.Table:
    return pa.table({"day": ["d1"], "value": [1.0]})  # the SQL reads `amount`


daily_payments = klaw_sql(
    "SELECT day,\n       sum(amount) AS total\nFROM payments GROUP BY day",
    name="daily_payments",
    retries=2,
    source="payments.sql",
    line=10,
)

mismatch = klaw.workflow("mismatch", [payments, daily_payments])
