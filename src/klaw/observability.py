"""Klaw's own structured logs (structlog), with run and stage ids bound by the runner."""

from __future__ import annotations

import logging
import sys


def configure_logging(level: str = "warning", fmt: str = "console") -> None:
    """Send Klaw's logs to stderr at ``level``, as coloured lines or as JSON."""
    import structlog

    numeric = logging.getLevelNamesMapping().get(level.upper(), logging.WARNING)
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer()
        if fmt == "json"
        else structlog.dev.ConsoleRenderer(colors=sys.stderr.isatty())
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.PrintLoggerFactory(file=sys.__stderr__),
        cache_logger_on_first_use=True,
    )
