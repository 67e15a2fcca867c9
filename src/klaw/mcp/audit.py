"""Every MCP call, recorded through one function: :func:`record`.

Each call (a tool, a resource read, a prompt) is one structlog record ``mcp.call`` naming the
caller, the tool, its arguments (long values cut) and the outcome (``ok``, ``dry_run``,
``refused``, ``declined``, ``error``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from klaw.observability import get_logger

_log: Final = get_logger("klaw.mcp")
MAX_VALUE: Final = 200  # characters of one argument's value kept in the record


def record(
    caller: str, tool: str, arguments: Mapping[str, Any], outcome: str, **detail: Any
) -> None:
    """Record one MCP call: who (``caller``), what (``tool`` and its ``arguments``), and how
    it ended (``outcome``, with ``detail`` such as the error code or the run id)."""
    _log.info(
        "mcp.call",
        caller=caller,
        tool=tool,
        arguments={name: _short(value) for name, value in arguments.items()},
        outcome=outcome,
        **detail,
    )


def _short(value: Any) -> Any:
    if isinstance(value, bool | int | float) or value is None:
        return value
    text = value if isinstance(value, str) else repr(value)
    return text if len(text) <= MAX_VALUE else f"{text[:MAX_VALUE]}... ({len(text)} characters)"
