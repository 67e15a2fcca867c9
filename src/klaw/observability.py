"""Klaw's own structured logs (structlog), with run and stage ids bound by the runner.

structlog is imported on the first message that passes the level, so a quiet ``klaw run``
never pays for it.
"""

from __future__ import annotations

import logging
import sys
from typing import Any

from klaw import telemetry

_LEVELS = logging.getLevelNamesMapping()
_config: dict[str, Any] = {"level": logging.WARNING, "format": "console", "ready": False}


def configure_logging(level: str = "warning", fmt: str = "console") -> None:
    """Send Klaw's logs to stderr at ``level``, as coloured lines or as JSON."""
    _config.update(level=_LEVELS.get(level.upper(), logging.WARNING), format=fmt, ready=False)


def _structlog() -> Any:
    import structlog

    if not _config["ready"]:
        renderer: Any = (
            structlog.processors.JSONRenderer()
            if _config["format"] == "json"
            else structlog.dev.ConsoleRenderer(
                colors=bool(sys.__stderr__ and sys.__stderr__.isatty())
            )
        )
        structlog.configure(
            processors=[
                structlog.processors.add_log_level,
                structlog.processors.TimeStamper(fmt="iso", utc=True),
                renderer,
            ],
            wrapper_class=structlog.make_filtering_bound_logger(_config["level"]),
            logger_factory=structlog.PrintLoggerFactory(file=sys.__stderr__),
            cache_logger_on_first_use=False,
        )
        _config["ready"] = True
    return structlog


class Logger:
    """A bound logger that defers importing structlog until a message is actually emitted."""

    __slots__ = ("_context", "_name")

    def __init__(self, name: str, context: dict[str, Any] | None = None) -> None:
        self._name = name
        self._context = context or {}

    def bind(self, **values: Any) -> Logger:
        return Logger(self._name, {**self._context, **values})

    def _emit(self, level: int, method: str, event: str, values: dict[str, Any]) -> None:
        if level < _config["level"]:
            return
        logger = _structlog().get_logger(self._name)
        ids = telemetry.ids()  # inside a span: the record names its trace
        if ids is not None:
            values = {**self._context, **values, "trace_id": ids[0], "span_id": ids[1]}
        else:
            values = {**self._context, **values}
        getattr(logger, method)(event, logger=self._name, **values)
        if telemetry.ACTIVE.logger is not None:
            telemetry.log(method, event, {"logger": self._name, **values})

    def debug(self, event: str, **values: Any) -> None:
        self._emit(logging.DEBUG, "debug", event, values)

    def info(self, event: str, **values: Any) -> None:
        self._emit(logging.INFO, "info", event, values)

    def warning(self, event: str, **values: Any) -> None:
        self._emit(logging.WARNING, "warning", event, values)

    def error(self, event: str, **values: Any) -> None:
        self._emit(logging.ERROR, "error", event, values)


def get_logger(name: str) -> Logger:
    return Logger(name)
