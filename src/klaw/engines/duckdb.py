"""DuckDB as an engine: SQL over Arrow tables registered by name (scanned in place, not
copied), ``$name`` query parameters bound by DuckDB, the parser for the tables a query reads.

One in-memory database per engine, opened on first use; every call works on its own cursor
(a connection of that database), so calls on different threads do not see each other's
tables. Replacement scans of Python variables are off: a query sees only the tables given.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping
from typing import Any

import duckdb
import pyarrow as pa

from klaw import tabular
from klaw.engines.engine import (
    SqlError,
    SqlProblem,
    line_of,
    missing_parameter,
    not_one_select,
    require_tables,
    syntax_error,
    unknown_column,
    unknown_table,
)

# DuckDB's exception types say what went wrong (ParserException, CatalogException,
# BinderException, InvalidInputException); these read only what a type cannot carry: the line,
# and the name of the table, column or parameter the message is about.
_LINE = re.compile(r"\bLINE (\d+):")
_TABLE = re.compile(r"Table with name (\S+?) does not exist")
_COLUMN = re.compile(r'(?:Referenced column|does not have a column named) "([^"]+)"')
_PARAMS = re.compile(r"prepared statement parameters: (.+)$", re.MULTILINE)


_KEPT_QUERIES = 4096


class DuckDBEngine:
    """DuckDB: SQL over Arrow with ``$name`` parameters."""

    name = "duckdb"

    def __init__(self) -> None:
        self._db: duckdb.DuckDBPyConnection | None = None
        self._lock = threading.Lock()
        self._read: dict[str, frozenset[str]] = {}  # query -> the tables it reads

    def _cursor(self) -> duckdb.DuckDBPyConnection:
        with self._lock:
            if self._db is None:
                self._db = duckdb.connect(":memory:", config={"python_enable_replacements": False})
            return self._db.cursor()

    def sql(
        self, query: str, tables: Mapping[str, pa.Table], params: Mapping[str, Any]
    ) -> pa.Table:
        cursor = self._cursor()
        try:
            for table_name, table in tables.items():
                cursor.register(table_name, table)
            values = self._bind(cursor, query, params)
            return cursor.execute(query, values).to_arrow_table()
        except duckdb.Error as exc:
            raise _translate(exc, query, {n: t.schema for n, t in tables.items()}) from None
        finally:
            cursor.close()

    def tables_read(self, query: str) -> set[str]:
        """The tables ``query`` reads (kept per query text: loading a folder and checking it
        ask the same)."""
        found = self._read.get(query)
        if found is None:
            found = frozenset(self._tables_read(query))
            if len(self._read) >= _KEPT_QUERIES:
                self._read.pop(next(iter(self._read)))
            self._read[query] = found
        return set(found)

    def _tables_read(self, query: str) -> set[str]:
        cursor = self._cursor()
        try:
            self._statement(cursor, query)
            # the query as a literal, not a bound parameter: DuckDB tries `import pandas` on
            # every execute with parameters, a search of sys.path each time it is not installed
            literal = "'" + query.replace("'", "''") + "'"
            (text,) = cursor.execute(f"SELECT json_serialize_sql({literal})").fetchone() or ("{}",)
            tree = json.loads(text)
            if tree.get("error"):
                if tree.get("error_type") == "parser":
                    offset = int(tree.get("position") or 0)
                    raise syntax_error(tree.get("error_message", ""), line_of(query, offset))
                # not serialisable (a form the JSON serialiser does not cover): bind names only
                return set(cursor.get_table_names(query, qualified=False))
            found: set[str] = set()
            _walk(tree.get("statements", []), frozenset(), found)
            return found
        except duckdb.Error as exc:
            raise _translate(exc, query, {}) from None
        finally:
            cursor.close()

    def check(
        self, query: str, schemas: Mapping[str, pa.Schema], params: Mapping[str, Any]
    ) -> pa.Schema:
        read = require_tables(self.tables_read(query), schemas)
        cursor = self._cursor()
        try:
            for table_name, schema in schemas.items():
                if table_name in read:
                    cursor.register(table_name, schema.empty_table())
            values = self._bind(cursor, query, params)
            relation = cursor.sql(query, params=values or None)
            result: pa.Schema = relation.limit(0).to_arrow_table().schema
            return result
        except duckdb.Error as exc:
            raise _translate(exc, query, {n: schemas[n] for n in read if n in schemas}) from None
        finally:
            cursor.close()

    def from_arrow(self, table: pa.Table) -> duckdb.DuckDBPyRelation:
        return self._cursor().from_arrow(table)

    def to_arrow(self, value: Any) -> pa.Table:
        if isinstance(value, duckdb.DuckDBPyRelation):
            return value.to_arrow_table()
        return value if isinstance(value, pa.Table) else tabular.to_arrow(value)

    def _statement(self, cursor: duckdb.DuckDBPyConnection, query: str) -> Any:
        statements = cursor.extract_statements(query)
        if len(statements) != 1:
            raise not_one_select(f"found {len(statements)} statements")
        statement = statements[0]
        if statement.type != duckdb.StatementType.SELECT:
            raise not_one_select(f"found a {statement.type.name} statement")
        return statement

    def _bind(
        self, cursor: duckdb.DuckDBPyConnection, query: str, params: Mapping[str, Any]
    ) -> dict[str, Any]:
        """The values of the parameters the query uses (DuckDB refuses any extra)."""
        used: set[str] = set(self._statement(cursor, query).named_parameters)
        missing = sorted(used - set(params))
        if missing:
            raise missing_parameter(missing[0], params)
        return {name: params[name] for name in used}


def _walk(node: Any, ctes: frozenset[str], found: set[str]) -> None:
    """Collect base tables from DuckDB's JSON parse tree, skipping names of CTEs in scope."""
    if isinstance(node, list):
        for item in node:
            _walk(item, ctes, found)
        return
    if not isinstance(node, dict):
        return
    cte_map = node.get("cte_map")
    if isinstance(cte_map, dict) and cte_map.get("map"):
        scope = set(ctes)
        for entry in cte_map["map"]:
            key = str(entry.get("key", "")).lower()
            body = entry.get("value", {})
            recursive = body.get("query", {}).get("node", {}).get("type") == "RECURSIVE_CTE_NODE"
            _walk(body, frozenset(scope | {key}) if recursive else frozenset(scope), found)
            scope.add(key)
        ctes = frozenset(scope)
    if node.get("type") == "BASE_TABLE":
        parts = [node.get("catalog_name", ""), node.get("schema_name", ""), node["table_name"]]
        if parts[0] or parts[1] or parts[2].lower() not in ctes:
            found.add(".".join(p for p in parts if p))
        return
    for key, value in node.items():
        if key != "cte_map":
            _walk(value, ctes, found)


def _translate(exc: duckdb.Error, query: str, schemas: Mapping[str, pa.Schema]) -> SqlError:
    text = str(exc)
    match = _LINE.search(text)
    line = int(match.group(1)) if match else None
    first = text.split("\n", 1)[0]
    if isinstance(exc, duckdb.ParserException):
        return syntax_error(first.removeprefix("Parser Error: "), line)
    if isinstance(exc, duckdb.CatalogException) and (found := _TABLE.search(text)):
        return unknown_table(found.group(1).strip('"'), schemas, line)
    if isinstance(exc, duckdb.BinderException) and (found := _COLUMN.search(text)):
        return unknown_column(found.group(1), schemas, line)
    if isinstance(exc, duckdb.InvalidInputException) and (found := _PARAMS.search(text)):
        return missing_parameter(found.group(1).split(",")[0].strip(), (), line)
    return SqlError(f"DuckDB refused the query: {first}", problem=SqlProblem.OTHER, line=line)
