"""Rendering: JSON for programs (``--output json``), rich tables for people.

rich is imported only where it draws something: tables, and lines to a terminal. A ``klaw run``
whose output goes to a file or a pipe (or is ``--output json``) prints plain text and never
loads it.
"""

from __future__ import annotations

import datetime as dt
import os
import sys
from collections.abc import Sequence
from enum import Enum, StrEnum
from typing import Any, TextIO

import msgspec

from klaw.errors import KlawError


class Format(StrEnum):
    TABLE = "table"
    JSON = "json"


def emit_json(value: Any) -> None:
    sys.stdout.write(msgspec.json.encode(value, enc_hook=_enc).decode() + "\n")


def _enc(value: Any) -> Any:
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, KlawError):
        return {"error": type(value).__name__, "message": value.message, "hint": value.hint}
    return str(value)


def when(ts: float | None) -> str:
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.2f} s"
    return f"{value / 60:.1f} min"


def size(value: int | None) -> str:
    if value is None:
        return "-"
    step = 1024.0
    amount = float(value)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if amount < step:
            return f"{amount:.0f} {unit}" if unit == "B" else f"{amount:.1f} {unit}"
        amount /= step
    return f"{amount:.1f} TiB"


STATE_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "timed_out": "red",
    "upstream_failed": "yellow",
    "cancelled": "magenta",
    "skipped": "dim",
    "running": "cyan",
    "retrying": "yellow",
    "queued": "dim",
    "ready": "dim",
    "pending": "dim",
}


def styled(state: str) -> str:
    style = STATE_STYLE.get(state, "")
    return f"[{style}]{state}[/{style}]" if style else state


def table(title: str | None, columns: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    grid = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        grid.add_column(column)
    for row in rows:
        grid.add_row(*(str(c) for c in row))
    Console().print(grid)


def console() -> Any:
    from rich.console import Console

    return Console()


def is_terminal(stream: TextIO | None = None) -> bool:
    """Whether ``stream`` (stdout by default) shows colours and live displays, as rich decides
    it: its environment overrides (``TTY_COMPATIBLE``, ``FORCE_COLOR``) are left to rich;
    otherwise ``isatty()``, without importing rich."""
    err = stream is sys.stderr
    if "TTY_COMPATIBLE" in os.environ or "FORCE_COLOR" in os.environ:
        return bool((error_console() if err else console()).is_terminal)
    target = sys.stderr if err else (stream or sys.stdout)
    try:
        return target.isatty()
    except (AttributeError, ValueError):  # no isatty, or closed
        return False


class Lines:
    """Lines for people on stdout (or stderr): through rich on a terminal, with colours; plain
    text otherwise, rich not imported. Text given to :meth:`print` holds no markup except what
    :meth:`state` and :meth:`styled` return; anything else shown goes through :meth:`text`."""

    def __init__(self, *, stderr: bool = False) -> None:
        self.stream = sys.stderr if stderr else sys.stdout
        self.terminal = is_terminal(self.stream)
        self._rich: Any = None
        if self.terminal:
            self._rich = error_console() if stderr else console()

    @property
    def rich(self) -> Any:
        """The rich console (a terminal only)."""
        return self._rich

    def state(self, state: str) -> str:
        """A run or stage state, coloured on a terminal."""
        return styled(state) if self.terminal else state

    def text(self, text: str) -> str:
        """Text shown as it is (rich markup in it escaped on a terminal)."""
        if not self.terminal:
            return text
        from rich.markup import escape

        return escape(text)

    def styled(self, text: str, style: str) -> str:
        """``text`` in ``style`` on a terminal (plain elsewhere); ``text`` is escaped."""
        return f"[{style}]{self.text(text)}[/{style}]" if self.terminal else text

    def print(self, text: str) -> None:
        if self._rich is not None:
            self._rich.print(text)
        else:
            self.stream.write(text + "\n")


def error_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)
