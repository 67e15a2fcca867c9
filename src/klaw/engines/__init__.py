"""Compute engines behind one small Protocol (Arrow in, Arrow out): DuckDB, DataFusion, Polars
and plain Python. Each adapter module is the only one that imports its library, and is
imported only when its engine is first asked for."""

from __future__ import annotations

import importlib
import threading

from klaw.engines.engine import Engine as Engine
from klaw.engines.engine import closest
from klaw.errors import EngineError as EngineError
from klaw.errors import SqlError as SqlError
from klaw.errors import SqlProblem as SqlProblem

__all__ = ["Engine", "EngineError", "SqlError", "SqlProblem", "engine_names", "get_engine"]

# name -> (adapter module, class, the package that provides the library)
_ADAPTERS: dict[str, tuple[str, str, str]] = {
    "datafusion": ("klaw.engines.datafusion", "DataFusionEngine", "datafusion"),
    "duckdb": ("klaw.engines.duckdb", "DuckDBEngine", "duckdb"),
    "polars": ("klaw.engines.polars", "PolarsEngine", "polars"),
    "python": ("klaw.engines.python", "PythonEngine", "klaw"),
}
_engines: dict[str, Engine] = {}
_lock = threading.Lock()


def engine_names() -> tuple[str, ...]:
    """The names ``get_engine`` knows."""
    return tuple(sorted(_ADAPTERS))


def get_engine(name: str) -> Engine:
    """The engine called ``name`` (one per process, created on first use)."""
    engine = _engines.get(name)
    if engine is not None:
        return engine
    if name not in _ADAPTERS:
        near = closest(name, _ADAPTERS)
        guess = f"; did you mean {near[0]!r}?" if near else "."
        raise EngineError(
            f"Unknown engine {name!r}{guess} The engines are: {', '.join(engine_names())}.",
            hint="Pick one of the engines listed.",
        )
    module_name, class_name, package = _ADAPTERS[name]
    with _lock:
        if name not in _engines:
            try:
                module = importlib.import_module(module_name)
            except ImportError as exc:
                raise EngineError(
                    f"Engine {name!r} needs the Python package {package!r}, which could not be "
                    f"imported ({exc}).",
                    hint=f"Install it: pip install {package}",
                ) from None
            _engines[name] = getattr(module, class_name)()
    return _engines[name]
