"""Tabular values: recognition, conversion to Arrow without copies, hand-over types."""

from __future__ import annotations

import duckdb
import polars as pl
import pyarrow as pa
import pytest

from klaw import tabular


@pytest.fixture
def table() -> pa.Table:
    return pa.table({"a": list(range(1000)), "b": [float(i) for i in range(1000)]})


def test_polars_round_trip_shares_buffers(table: pa.Table) -> None:
    df = tabular.convert(table, "polars")
    assert isinstance(df, pl.DataFrame)
    back = tabular.to_arrow(df)
    # zero copy: the Arrow column of the round trip points at the same memory
    assert back["a"].chunks[0].buffers()[1].address == table["a"].chunks[0].buffers()[1].address


def test_duckdb_relation_is_materialised(table: pa.Table) -> None:
    con = duckdb.connect()
    con.register("t", table)
    rel = con.sql("select a * 2 as a2 from t where a < 10")
    out = tabular.materialise(rel)
    assert isinstance(out, pa.Table) and out.num_rows == 10


@pytest.mark.parametrize("target", ["any", "arrow", "polars", "polars_lazy"])
def test_convert_targets(table: pa.Table, target: str) -> None:
    out = tabular.convert(pl.from_arrow(table), target)
    expected = {
        "any": pl.DataFrame,
        "arrow": pa.Table,
        "polars": pl.DataFrame,
        "polars_lazy": pl.LazyFrame,
    }[target]
    assert isinstance(out, expected)


def test_not_tabular() -> None:
    assert not tabular.is_tabular({"a": 1})
    with pytest.raises(TypeError, match="dict is not tabular"):
        tabular.to_arrow({"a": 1})
    assert tabular.measure(5) == (None, None)


def test_measure(table: pa.Table) -> None:
    assert tabular.measure(table) == (1000, table.nbytes)
    rows, size = tabular.measure(pl.from_arrow(table))
    assert rows == 1000 and size is not None and size > 0
