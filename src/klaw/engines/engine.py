"""The engine seam: a native library that runs Arrow in, Arrow out.

An engine runs SQL over named Arrow tables (``sql``), says which tables a query reads
(``tables_read``), plans a query against table schemas without data (``check``), and moves
values between Arrow and its own frames without copying where Arrow allows (``from_arrow``,
``to_arrow``). Each adapter module is the only one that imports its library.

Problems with a query are raised as :class:`SqlError`, which says what kind of problem it is,
the unknown name (table, column or parameter) and the line of the query, so callers can name
the file and line the query came from.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

# re-exported: the errors live in klaw.errors, the adapters import them from here
from klaw.errors import EngineError as EngineError  # noqa: PLC0414
from klaw.errors import SqlError as SqlError  # noqa: PLC0414
from klaw.errors import SqlProblem as SqlProblem  # noqa: PLC0414

if TYPE_CHECKING:
    import pyarrow as pa


@runtime_checkable
class Engine(Protocol):
    """A compute engine: Arrow tables in, an Arrow table out."""

    name: str

    def sql(
        self, query: str, tables: Mapping[str, pa.Table], params: Mapping[str, Any]
    ) -> pa.Table:
        """Run one SELECT ``query`` over ``tables`` (visible by name) with ``params`` bound as
        query parameters (never formatted into the text). Raises :class:`SqlError`."""
        ...

    def tables_read(self, query: str) -> set[str]:
        """The tables ``query`` reads, by name (CTE names and table functions excluded).
        Raises :class:`SqlError` when the query does not parse."""
        ...

    def check(
        self, query: str, schemas: Mapping[str, pa.Schema], params: Mapping[str, Any]
    ) -> pa.Schema:
        """Parse and plan ``query`` against empty tables of ``schemas``; the schema of its
        result. Raises :class:`SqlError` naming the unknown table, column or parameter."""
        ...

    def from_arrow(self, table: pa.Table) -> Any:
        """The engine's own frame over ``table`` (no copy where Arrow allows)."""
        ...

    def to_arrow(self, value: Any) -> pa.Table:
        """An Arrow table of ``value`` (the engine's frame, or any tabular value)."""
        ...


def closest(name: str, candidates: Iterable[str]) -> list[str]:
    """Up to three of ``candidates`` that look like ``name`` (case ignored), best first."""
    by_lower: dict[str, str] = {}
    for candidate in candidates:
        by_lower.setdefault(candidate.lower(), candidate)
    found = difflib.get_close_matches(name.lower(), list(by_lower), n=3, cutoff=0.6)
    return [by_lower[f] for f in found]


def _did_you_mean(names: list[str]) -> str:
    return f"; did you mean {' or '.join(repr(n) for n in names)}?" if names else ""


def _columns(schemas: Mapping[str, pa.Schema], limit: int = 12) -> str:
    if not schemas:
        return "no tables are read"
    parts = []
    for table, schema in sorted(schemas.items()):
        names = list(schema.names)
        shown = ", ".join(names[:limit]) + (
            f", … ({len(names)} in all)" if len(names) > limit else ""
        )
        parts.append(f"{table}({shown})")
    return "the tables read have " + "; ".join(parts)


def unknown_table(name: str, known: Iterable[str], line: int | None = None) -> SqlError:
    known = sorted(known)
    message = f"table {name!r} is not known" + _did_you_mean(closest(name, known))
    if not known:
        message += " (no tables are known)"
    return SqlError(
        message,
        problem=SqlProblem.TABLE,
        name=name,
        line=line,
        hint="An SQL stage reads the results of other stages of its workflow by stage name.",
    )


def require_tables(read: Iterable[str], schemas: Mapping[str, Any]) -> set[str]:
    """The tables a query reads, after checking each has a schema (``unknown_table`` if not)."""
    tables = set(read)
    for table_name in sorted(tables):
        if table_name not in schemas:
            raise unknown_table(table_name, schemas)
    return tables


def unknown_column(
    name: str, schemas: Mapping[str, pa.Schema], line: int | None = None
) -> SqlError:
    columns = [c for schema in schemas.values() for c in schema.names]
    near = _did_you_mean(closest(name.rsplit(".", maxsplit=1)[-1], columns))
    return SqlError(
        f"column {name!r} does not exist{near} ({_columns(schemas)})",
        problem=SqlProblem.COLUMN,
        name=name,
        line=line,
        hint="Fix the column name in the SQL, or the stage that produces the table.",
    )


def missing_parameter(name: str, given: Iterable[str], line: int | None = None) -> SqlError:
    given = sorted(given)
    have = f"the params are {', '.join(given)}" if given else "the stage has no params"
    return SqlError(
        f"query parameter ${name} has no value ({have}){_did_you_mean(closest(name, given))}",
        problem=SqlProblem.PARAMETER,
        name=name,
        line=line,
        hint="Give the stage a params model with that field (params_model=...).",
    )


def syntax_error(detail: str, line: int | None = None) -> SqlError:
    return SqlError(
        f"SQL does not parse: {detail}",
        problem=SqlProblem.SYNTAX,
        line=line,
        hint="Fix the SQL syntax at that line.",
    )


def not_one_select(detail: str) -> SqlError:
    return SqlError(
        f"an SQL stage runs exactly one SELECT query; {detail}",
        problem=SqlProblem.STATEMENT,
        hint="Keep one SELECT per stage (in workflow.sql, start each with `-- name: <stage>`).",
    )


def line_of(query: str, offset: int) -> int:
    """The 1-based line of character ``offset`` in ``query``."""
    return query.count("\n", 0, max(0, offset)) + 1
