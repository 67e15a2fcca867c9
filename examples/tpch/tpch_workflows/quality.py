"""The data-quality gate: every check runs, and the run fails if any of them finds bad rows.

On good data the stage stores a report (one row per check) as the ``quality_check`` asset.
On bad data it raises ``klaw.NonRetryableError`` naming each failed check with its count and
a few examples; reading the same files again would not help, so it is not retried.
"""

import logging
from dataclasses import dataclass, field

import polars as pl

import klaw

log = logging.getLogger(__name__)

EXAMPLES = 5  # bad rows quoted per failed check
# Revenue is summed in float64 in three places, in different orders; totals agree to far
# better than this, and any lost or duplicated line moves them by much more.
RELATIVE_TOLERANCE = 1e-9
ABSOLUTE_TOLERANCE = 0.01


@dataclass(frozen=True)
class Check:
    name: str
    description: str
    checked: int  # rows (or totals) looked at
    failed: int  # how many of them are bad
    examples: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.failed == 0

    def summary(self) -> str:
        text = f"{self.name}: {self.failed} of {self.checked} failed ({self.description})"
        return text + (f"; e.g. {'; '.join(self.examples)}" if self.examples else "")


def _keys(frame: pl.DataFrame, columns: list[str]) -> list[str]:
    return [
        ", ".join(f"{c}={row[c]}" for c in columns)
        for row in frame.head(EXAMPLES).select(columns).iter_rows(named=True)
    ]


def null_keys(tables: dict[str, tuple[pl.DataFrame, list[str]]]) -> Check:
    failed, checked, examples = 0, 0, []
    for name, (frame, columns) in tables.items():
        for column in columns:
            nulls = frame[column].null_count()
            checked += frame.height
            failed += nulls
            if nulls:
                examples.append(f"{name}.{column} has {nulls} nulls")
    return Check("null_keys", "key columns must not be null", checked, failed, examples)


def duplicate_keys(tables: dict[str, tuple[pl.DataFrame, list[str]]]) -> Check:
    failed, checked, examples = 0, 0, []
    for name, (frame, columns) in tables.items():
        dupes = frame.filter(pl.struct(columns).is_duplicated())
        checked += frame.height
        failed += dupes.height
        examples += [f"{name} {key}" for key in _keys(dupes.unique(columns), columns)]
    return Check("duplicate_keys", "keys must be unique", checked, failed, examples[:EXAMPLES])


def negative_prices(lines: pl.DataFrame, orders: pl.DataFrame) -> Check:
    bad_lines = lines.filter((pl.col("extended_price") < 0) | (pl.col("net_revenue") < 0))
    bad_orders = orders.filter(pl.col("total_price") < 0)
    examples = _keys(bad_lines, ["order_key", "line_number", "extended_price"])
    examples += _keys(bad_orders, ["order_key", "total_price"])
    return Check(
        "negative_prices",
        "line prices and order totals must be >= 0",
        lines.height + orders.height,
        bad_lines.height + bad_orders.height,
        examples[:EXAMPLES],
    )


def out_of_range(lines: pl.DataFrame) -> Check:
    bad = lines.filter(
        (pl.col("quantity") <= 0)
        | ~pl.col("discount").is_between(0, 1)
        | ~pl.col("tax").is_between(0, 1)
    )
    return Check(
        "out_of_range",
        "quantity must be > 0, discount and tax between 0 and 1",
        lines.height,
        bad.height,
        _keys(bad, ["order_key", "line_number", "quantity", "discount", "tax"]),
    )


def missing_matches(
    name: str, description: str, left: pl.DataFrame, right: pl.DataFrame, on: str
) -> Check:
    """Rows of ``left`` whose ``on`` has no row in ``right``."""
    orphans = left.join(right.select(on).unique(), on=on, how="anti", nulls_equal=False)
    return Check(name, description, left.height, orphans.height, _keys(orphans, [on]))


def revenue_reconciles(totals: dict[str, float]) -> Check:
    (base_name, base), *others = totals.items()
    examples = []
    for name, total in others:
        diff = total - base
        if abs(diff) > max(ABSOLUTE_TOLERANCE, RELATIVE_TOLERANCE * abs(base)):
            examples.append(f"{name} {total:.2f} vs {base_name} {base:.2f} (diff {diff:+.2f})")
    return Check(
        "revenue_reconciles",
        f"total net revenue must agree across {', '.join(totals)}",
        len(others),
        len(examples),
        examples,
    )


@klaw.asset(tags=["quality"])
def quality_check(
    customers: pl.DataFrame,
    orders_clean: pl.DataFrame,
    lineitem_clean: pl.DataFrame,
    revenue_by_nation_month: pl.DataFrame,
    customer_revenue: pl.DataFrame,
) -> pl.DataFrame:
    """Null and duplicate keys, negative prices, out-of-range values, orders without lines,
    lines without orders, orders without customers, and revenue that does not reconcile
    between lineitem_clean, revenue_by_nation_month and customer_revenue."""
    keys = {
        "customers": (customers, ["customer_key"]),
        "orders_clean": (orders_clean, ["order_key"]),
        "lineitem_clean": (lineitem_clean, ["order_key", "line_number"]),
    }
    checks = [
        null_keys(
            {
                "customers": (customers, ["customer_key", "nation_key"]),
                "orders_clean": (orders_clean, ["order_key", "customer_key"]),
                "lineitem_clean": (lineitem_clean, ["order_key", "line_number"]),
            }
        ),
        duplicate_keys(keys),
        negative_prices(lineitem_clean, orders_clean),
        out_of_range(lineitem_clean),
        missing_matches(
            "orders_without_lines",
            "every order must have at least one line",
            orders_clean,
            lineitem_clean,
            "order_key",
        ),
        missing_matches(
            "lines_without_order",
            "every line must belong to an order",
            lineitem_clean,
            orders_clean,
            "order_key",
        ),
        missing_matches(
            "orders_without_customer",
            "every order must belong to a customer",
            orders_clean,
            customers,
            "customer_key",
        ),
        revenue_reconciles(
            {
                "lineitem_clean": float(lineitem_clean["net_revenue"].sum()),
                "revenue_by_nation_month": float(revenue_by_nation_month["revenue"].sum()),
                "customer_revenue": float(customer_revenue["revenue"].sum()),
            }
        ),
    ]
    for check in checks:
        log.log(logging.INFO if check.passed else logging.ERROR, "%s", check.summary())
    failed = [c for c in checks if not c.passed]
    if failed:
        lines = "\n".join(f"  - {c.summary()}" for c in failed)
        raise klaw.NonRetryableError(
            f"quality_check failed {len(failed)} of {len(checks)} checks "
            f"({', '.join(c.name for c in failed)}):\n{lines}"
        )
    return pl.DataFrame(
        {
            "check": [c.name for c in checks],
            "description": [c.description for c in checks],
            "checked": [c.checked for c in checks],
            "failed": [c.failed for c in checks],
            "passed": [c.passed for c in checks],
        }
    )
