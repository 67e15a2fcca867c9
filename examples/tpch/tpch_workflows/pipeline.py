"""The ``tpch`` workflow: TPC-H Parquet -> cleaned sources -> joins and marts -> quality gate.

    nations ──────────┬──> order_lines ───┬──> revenue_by_nation_month ──┐
    customers ────────┤                   │                              ├──> quality_check
    orders_clean ─────┤                   └──> customer_revenue* ────────┤
    lineitem_clean ───┤                              └──> top_customers
    suppliers ────────┴──> shipping_delays
    lineitem_clean ──────> forecast_revenue_change (DataFusion SQL)

order_lines reads nations, customers, orders_clean and lineitem_clean; shipping_delays reads
lineitem_clean, suppliers and nations; quality_check also reads customers, orders_clean and
lineitem_clean. (* a plain stage: handed on in memory, not stored.)

The folder workflow ``tpch_sql`` (``workflows/tpch_sql/``) reads the assets this one stores.
"""

import klaw
from tpch_workflows.marts import (
    customer_revenue,
    forecast_revenue_change,
    order_lines,
    revenue_by_nation_month,
    shipping_delays,
    top_customers,
)
from tpch_workflows.quality import quality_check
from tpch_workflows.sources import customers, lineitem_clean, nations, orders_clean, suppliers

tpch = klaw.workflow(
    "tpch",
    [
        nations,
        customers,
        orders_clean,
        lineitem_clean,
        suppliers,
        order_lines,
        revenue_by_nation_month,
        customer_revenue,
        top_customers,
        shipping_delays,
        forecast_revenue_change,
        quality_check,
    ],
    description="TPC-H orders to revenue by nation and month, top customers and shipping "
    "delays, gated by a data-quality check.",
    tags=["example", "tpch"],
)
