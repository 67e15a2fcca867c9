"""DataFusion as an engine: SQL over Arrow tables registered by name (held, not copied: the
result of a plain projection shares the input's buffers), ``$name`` query parameters bound
after parsing (``param_values``), queries only (no DDL, DML or SET).

The tables a query reads come from DataFusion's own planner: a throwaway session whose catalog
records every table the planner asks for (CTE names never reach the catalog).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import datafusion
import pyarrow as pa
from datafusion.catalog import CatalogProvider, SchemaProvider, Table

from klaw import tabular
from klaw.engines.engine import (
    SqlError,
    SqlProblem,
    missing_parameter,
    not_one_select,
    require_tables,
    syntax_error,
    unknown_column,
    unknown_table,
)

_POSITION = re.compile(r"\bLine: (\d+)")
_TABLE = re.compile(r"table '([^']+)' not found")
_COLUMN = re.compile(r"No field named (.+?)\.(?:\s|$)")
_UNSUPPORTED = re.compile(r"Error during planning: (?:DDL|DML|Statement) not supported: (\w+)")
_PARAM = re.compile(r"(?:Placeholder '|placeholder with name )\$(\w+)")


class DataFusionEngine:
    """Apache DataFusion: SQL over Arrow with ``$name`` parameters."""

    name = "datafusion"

    def __init__(self) -> None:
        self._options = (
            datafusion.SQLOptions()
            .with_allow_ddl(False)
            .with_allow_dml(False)
            .with_allow_statements(False)
        )

    def sql(
        self, query: str, tables: Mapping[str, pa.Table], params: Mapping[str, Any]
    ) -> pa.Table:
        ctx = datafusion.SessionContext()
        for table_name, table in tables.items():
            ctx.create_dataframe([table.to_batches()], name=table_name, schema=table.schema)
        try:
            frame = ctx.sql(query, options=self._options, param_values=_values(params))
            return frame.to_arrow_table()
        except Exception as exc:  # DataFusion raises plain Exception / ValueError
            raise _translate(exc, {n: t.schema for n, t in tables.items()}, params) from None

    def tables_read(self, query: str) -> set[str]:
        recorder = _Recorder()
        ctx = datafusion.SessionContext()
        ctx.register_catalog_provider("datafusion", _Catalog(recorder))
        try:
            ctx.sql(query, options=self._options)
        except Exception as exc:
            error = _translate(exc, {}, {})
            if error.problem in (SqlProblem.SYNTAX, SqlProblem.STATEMENT):
                raise error from None
        return set(recorder.seen)

    def check(
        self, query: str, schemas: Mapping[str, pa.Schema], params: Mapping[str, Any]
    ) -> pa.Schema:
        read = require_tables(self.tables_read(query), schemas)
        ctx = datafusion.SessionContext()
        for table_name in read:
            ctx.create_dataframe([[]], name=table_name, schema=schemas[table_name])
        try:
            frame = ctx.sql(query, options=self._options, param_values=_values(params))
            return frame.schema()
        except Exception as exc:
            raise _translate(exc, {n: schemas[n] for n in read}, params) from None

    def from_arrow(self, table: pa.Table) -> datafusion.DataFrame:
        return datafusion.SessionContext().from_arrow(table)

    def to_arrow(self, value: Any) -> pa.Table:
        if isinstance(value, datafusion.DataFrame):
            return value.to_arrow_table()
        return value if isinstance(value, pa.Table) else tabular.to_arrow(value)


def _values(params: Mapping[str, Any]) -> dict[str, Any]:
    return {name: pa.scalar(value) for name, value in params.items()}


class _Recorder(SchemaProvider):
    """A schema that holds no tables and remembers every name the planner looked up."""

    def __init__(self) -> None:
        self.seen: list[str] = []

    def owner_name(self) -> str | None:
        return None

    def table_names(self) -> set[str]:
        return set()

    def table(self, name: str) -> Table | None:
        self.seen.append(name)
        return None

    def table_exist(self, name: str) -> bool:
        return False


class _Catalog(CatalogProvider):
    def __init__(self, schema: _Recorder) -> None:
        self._schema = schema

    def schema_names(self) -> set[str]:
        return {"public"}

    def schema(self, name: str) -> Any:
        return self._schema if name == "public" else None


def _translate(
    exc: Exception, schemas: Mapping[str, pa.Schema], params: Mapping[str, Any]
) -> SqlError:
    text = str(exc)
    match = _POSITION.search(text)
    line = int(match.group(1)) if match else None
    detail = text.split("\n", 1)[0]
    if "ParserError" in text or "sql parser error" in text.lower():
        inner = re.search(r'ParserError\("(.*)"\)', text)
        return syntax_error(inner.group(1) if inner else detail, line)
    if "only supports a single SQL statement" in text:
        return not_one_select("found more than one statement")
    if found := _UNSUPPORTED.search(text):
        return not_one_select(f"found {found.group(1)}")
    if found := _TABLE.search(text):
        return unknown_table(found.group(1).split(".")[-1], schemas, line)
    if found := _COLUMN.search(text):
        return unknown_column(found.group(1).rsplit(".", 1)[-1].strip('"'), schemas, line)
    if found := _PARAM.search(text):
        return missing_parameter(found.group(1), params, line)
    return SqlError(f"DataFusion refused the query: {detail}", problem=SqlProblem.OTHER, line=line)
