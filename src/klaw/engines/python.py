"""Plain Python as an engine: the stage's own function does the work. It runs no SQL; it
turns whatever tabular value a Python stage returns into Arrow."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from klaw import tabular
from klaw.errors import EngineError

if TYPE_CHECKING:
    import pyarrow as pa


class PythonEngine:
    """Python stages: no SQL; Arrow in, Arrow out through :mod:`klaw.tabular`."""

    name = "python"

    def sql(
        self, query: str, tables: Mapping[str, pa.Table], params: Mapping[str, Any]
    ) -> pa.Table:
        raise _no_sql()

    def tables_read(self, query: str) -> set[str]:
        raise _no_sql()

    def check(
        self, query: str, schemas: Mapping[str, pa.Schema], params: Mapping[str, Any]
    ) -> pa.Schema:
        raise _no_sql()

    def from_arrow(self, table: pa.Table) -> pa.Table:
        return table

    def to_arrow(self, value: Any) -> pa.Table:
        try:
            return tabular.to_arrow(value)
        except TypeError:
            raise EngineError(
                f"The python engine cannot turn {tabular.describe(value)} into an Arrow table.",
                hint="Return a pyarrow Table, a Polars DataFrame or a DuckDB relation.",
            ) from None


def _no_sql() -> EngineError:
    return EngineError(
        "The python engine runs Python stages and no SQL.",
        hint="Give an SQL stage engine='duckdb', 'datafusion' or 'polars'.",
    )
