"""Rendering: JSON for programs (``--output json``), rich tables for people."""

from __future__ import annotations

import datetime as dt
import sys
from collections.abc import Sequence
from enum import Enum, StrEnum
from typing import Any

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


def error_console() -> Any:
    from rich.console import Console

    return Console(stderr=True)
