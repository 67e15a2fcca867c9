"""Data crosses engines without copies where Arrow allows: DuckDB's result (Arrow) becomes a
Polars frame over the same buffers, comes back to Arrow over them again, and DataFusion's
result of a projection is made of slices of those buffers. No row is ever converted to Python.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from klaw.engines import get_engine

ROWS = 200_000


def _buffers(table: pa.Table, column: str) -> list[pa.Buffer]:
    return [
        buffer
        for chunk in table.column(column).chunks
        for buffer in chunk.buffers()
        if buffer is not None and buffer.size > 0
    ]


def _inside(buffer: pa.Buffer, pool: list[pa.Buffer]) -> bool:
    return any(
        b.address <= buffer.address and buffer.address + buffer.size <= b.address + b.size
        for b in pool
    )


def _source() -> pa.Table:
    return pa.table(
        {
            "id": pa.array(np.arange(ROWS, dtype=np.int64)),
            "amount": pa.array(np.linspace(0.0, 1.0, ROWS)),
        }
    )


def test_duckdb_to_polars_to_datafusion_shares_buffers() -> None:
    duck, polars, fusion = get_engine("duckdb"), get_engine("polars"), get_engine("datafusion")
    made = duck.sql("SELECT id, amount * 2 AS doubled FROM src", {"src": _source()}, {})

    frame = polars.from_arrow(made)  # DuckDB's Arrow -> Polars: the same memory
    back = polars.to_arrow(frame)
    for column in ("id", "doubled"):
        made_buffers = _buffers(made, column)
        assert made_buffers
        assert all(_inside(b, made_buffers) for b in _buffers(back, column)), column

    out = fusion.sql("SELECT id, doubled FROM t", {"t": back}, {})  # Arrow -> DataFusion -> Arrow
    assert out.num_rows == ROWS
    for column in ("id", "doubled"):
        assert all(_inside(b, _buffers(made, column)) for b in _buffers(out, column)), column


def test_polars_result_of_a_python_stage_reaches_arrow_without_copying_strings() -> None:
    import polars as pl

    polars = get_engine("polars")
    frame = pl.DataFrame({"name": [f"customer number {i}" for i in range(1000)], "n": range(1000)})
    table = polars.to_arrow(frame)
    assert table.schema.field("name").type == pa.string_view()  # Polars' own layout, as is
    again = polars.to_arrow(polars.from_arrow(table))
    for column in ("name", "n"):
        assert all(_inside(b, _buffers(table, column)) for b in _buffers(again, column))


def test_a_registered_table_is_scanned_not_copied_by_datafusion() -> None:
    source = _source()
    out = get_engine("datafusion").sql("SELECT * FROM t", {"t": source}, {})
    assert out.num_rows == ROWS
    assert all(_inside(b, _buffers(source, "id")) for b in _buffers(out, "id"))
