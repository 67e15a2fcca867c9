"""Polars as an engine: SQL through ``polars.SQLContext`` over frames made from Arrow without
copying, and the engine of Python stages that return Polars frames.

Polars SQL has no query parameters. Params are given to a query as a one-row table named
``params`` (``SELECT * FROM orders WHERE amount >= (SELECT min_amount FROM params)``), so a
value is always data, never SQL text; ``params`` is therefore never an upstream table.

Which tables a query reads comes from DuckDB's parser (through the DuckDB engine), which reads
the SELECT syntax Polars SQL accepts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import polars as pl
import pyarrow as pa

from klaw import tabular
from klaw.engines.engine import (
    SqlError,
    SqlProblem,
    not_one_select,
    require_tables,
    syntax_error,
    unknown_column,
    unknown_table,
)

PARAMS_TABLE = "params"

_POSITION = re.compile(r"\bLine: (\d+)")
_TABLE = re.compile(r"relation '([^']+)' was not found")
_COLUMN = re.compile(r"""(?:unable to find column "([^"]+)"|no column named '([^']+)')""")


class PolarsEngine:
    """Polars: SQL over Arrow (params as the one-row table ``params``); Polars frames out."""

    name = "polars"

    def sql(
        self, query: str, tables: Mapping[str, pa.Table], params: Mapping[str, Any]
    ) -> pa.Table:
        frames = {name: self.from_arrow(table) for name, table in tables.items()}
        return self.to_arrow(
            self._run(query, frames, params, {n: t.schema for n, t in tables.items()})
        )

    def tables_read(self, query: str) -> set[str]:
        from klaw.engines import get_engine

        return get_engine("duckdb").tables_read(query) - {PARAMS_TABLE}

    def check(
        self, query: str, schemas: Mapping[str, pa.Schema], params: Mapping[str, Any]
    ) -> pa.Schema:
        read = require_tables(self.tables_read(query), schemas)
        frames = {n: self.from_arrow(schemas[n].empty_table()) for n in read}
        return self.to_arrow(self._run(query, frames, params, {n: schemas[n] for n in read})).schema

    def from_arrow(self, table: pa.Table) -> pl.DataFrame:
        frame = pl.from_arrow(table, rechunk=False)
        assert isinstance(frame, pl.DataFrame)
        return frame

    def to_arrow(self, value: Any) -> pa.Table:
        if isinstance(value, pl.LazyFrame):
            value = value.collect()
        if isinstance(value, pl.DataFrame):
            # the newest Arrow types are Polars' own (string views): no conversion, no copy
            return value.to_arrow(compat_level=pl.CompatLevel.newest())
        return value if isinstance(value, pa.Table) else tabular.to_arrow(value)

    def _run(
        self,
        query: str,
        frames: dict[str, pl.DataFrame],
        params: Mapping[str, Any],
        schemas: Mapping[str, pa.Schema],
    ) -> pl.DataFrame:
        if params:
            frames[PARAMS_TABLE] = pl.DataFrame([dict(params)])
        try:
            result = pl.SQLContext(frames=frames).execute(query, eager=False).collect()
        except (pl.exceptions.PolarsError, pl.exceptions.SQLSyntaxError) as exc:
            raise _translate(exc, frames, schemas) from None
        assert isinstance(result, pl.DataFrame)
        return result


def _translate(
    exc: Exception, frames: Mapping[str, pl.DataFrame], schemas: Mapping[str, pa.Schema]
) -> SqlError:
    text = str(exc)
    match = _POSITION.search(text)
    line = int(match.group(1)) if match else None
    detail = text.split("\n", 1)[0]
    if "sql parser error" in text:
        return syntax_error(detail.removeprefix("sql parser error: "), line)
    if "one (and only one) statement" in text:
        return not_one_select("found more than one statement")
    if "statement type is not supported" in text:
        return not_one_select("found a statement that is not a query")
    if found := _TABLE.search(text):
        return unknown_table(found.group(1), frames, line)
    if found := _COLUMN.search(text):
        return unknown_column(found.group(1) or found.group(2), schemas, line)
    return SqlError(f"Polars refused the query: {detail}", problem=SqlProblem.OTHER, line=line)
