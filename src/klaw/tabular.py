"""Tabular values: recognise what a stage returned, turn it into Arrow, hand it on in the form
the next stage asks for. Arrow is the common form; conversions avoid copies where Arrow allows.

Nothing heavy is imported unless a value of that library is actually seen.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa


_KINDS: dict[type, str | None] = {}  # by type: a stage's result is looked at several times


def _kind(value: Any) -> str | None:
    cls = type(value)
    if cls in _KINDS:
        return _KINDS[cls]
    kind = _classify(cls)
    if len(_KINDS) < 1024:
        _KINDS[cls] = kind
    return kind


def _classify(cls: type) -> str | None:
    module, name = cls.__module__, cls.__name__
    if module.startswith("pyarrow"):
        if name == "Table":
            return "arrow"
        if name == "RecordBatch":
            return "arrow_batch"
        if name == "RecordBatchReader":
            return "arrow_reader"
    elif module.startswith("polars"):
        if name == "DataFrame":
            return "polars"
        if name == "LazyFrame":
            return "polars_lazy"
    elif module.startswith(("duckdb", "_duckdb")) and name == "DuckDBPyRelation":
        return "duckdb"
    elif module.startswith("pandas") and name == "DataFrame":
        return "pandas"
    return None


def is_tabular(value: Any) -> bool:
    return _kind(value) is not None


def describe(value: Any) -> str:
    """A short name of a value's type for error messages."""
    cls = type(value)
    return f"{cls.__module__}.{cls.__qualname__}" if cls.__module__ != "builtins" else cls.__name__


def materialise(value: Any) -> Any:
    """Make a returned value independent of where it was produced: a DuckDB relation (bound to
    a connection) or an Arrow stream becomes an Arrow table; a LazyFrame is collected.
    Anything else is returned as it is."""
    kind = _kind(value)
    if kind == "duckdb":
        return value.to_arrow_table()
    if kind == "arrow_reader":
        return value.read_all()
    if kind == "polars_lazy":
        return value.collect()
    return value


def to_arrow(value: Any) -> pa.Table:
    """Arrow table of a tabular value, without copying where Arrow allows.
    Raises ``TypeError`` for values that are not tabular."""
    kind = _kind(value)
    if kind == "arrow":
        return value
    if kind == "polars":
        return value.to_arrow()
    if kind == "polars_lazy":
        return value.collect().to_arrow()
    if kind == "arrow_batch":
        import pyarrow as pa

        return pa.Table.from_batches([value])
    if kind in ("duckdb", "arrow_reader"):
        return materialise(value)
    if kind == "pandas":
        import pyarrow as pa

        return pa.Table.from_pandas(value, preserve_index=False)
    raise TypeError(f"{describe(value)} is not tabular")


def convert(value: Any, target: str) -> Any:
    """Hand ``value`` to a parameter that asked for ``target`` (an ``InputType`` value)."""
    if target == "any":
        return value
    kind = _kind(value)
    if target == "arrow":
        return to_arrow(value)
    if target == "polars":
        if kind == "polars":
            return value
        import polars as pl

        return pl.from_arrow(to_arrow(value))
    if target == "polars_lazy":
        if kind == "polars_lazy":
            return value
        return convert(value, "polars").lazy()
    return value


def measure(value: Any) -> tuple[int | None, int | None]:
    """(rows, bytes) of a tabular value, or (None, None)."""
    kind = _kind(value)
    if kind in ("arrow", "arrow_batch"):
        return value.num_rows, value.nbytes
    if kind == "polars":
        return value.height, int(value.estimated_size())
    return None, None
