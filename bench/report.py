"""The report: one row per figure (Klaw's next to its floor), printed as a table or as JSON."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Unit(StrEnum):
    SECONDS = "s"  # a wall time, printed in µs, ms or s as fits
    PER_STAGE = "s/stage"  # seconds per stage (or per task), printed in µs
    BYTES = "B"  # printed in MiB
    BYTES_PER_STAGE = "B/stage"  # printed in KiB
    ROWS_PER_SECOND = "rows/s"  # a throughput, printed in M rows/s; higher is faster
    BYTES_PER_SECOND = "B/s"  # a throughput, printed in GB/s; higher is faster


class Basis(StrEnum):
    """What a target limits: Klaw's own figure, or Klaw's figure over the floor's."""

    KLAW = "klaw"
    RATIO = "ratio"


@dataclass(frozen=True, slots=True)
class Target:
    limit: float
    basis: Basis
    strict: bool = False  # "<" rather than "<="
    at_least: bool = False  # ">=": a throughput that must reach the limit

    def met(self, klaw: float, ratio: float | None) -> bool | None:
        value = klaw if self.basis is Basis.KLAW else ratio
        if value is None or math.isnan(value):
            return None
        if self.at_least:
            return value >= self.limit
        return value < self.limit if self.strict else value <= self.limit


@dataclass(slots=True)
class Row:
    """One line of the table. ``floor`` is the same work without Klaw, measured in this run."""

    workload: str
    label: str
    unit: Unit
    klaw: float
    floor: float | None = None
    floor_label: str = ""
    target: Target | None = None
    notes: dict[str, Any] = field(default_factory=dict)

    @property
    def ratio(self) -> float | None:
        """Klaw's cost over the floor's: for a throughput, the floor's figure over Klaw's (so
        that, as for times, above 1 means Klaw takes longer)."""
        if self.floor is None or self.floor <= 0:
            return None
        if self.unit in (Unit.ROWS_PER_SECOND, Unit.BYTES_PER_SECOND):
            return self.floor / self.klaw if self.klaw > 0 else None
        return self.klaw / self.floor

    @property
    def verdict(self) -> str:
        if self.target is None:
            return "info"
        met = self.target.met(self.klaw, self.ratio)
        if met is None:
            return "n/a"
        return "PASS" if met else "FAIL"


def quantity(value: float | None, unit: Unit) -> str:
    """A figure in the scale that reads best (µs per stage, ms or s, MiB)."""
    if value is None:
        return "-"
    if unit is Unit.BYTES:
        return f"{value / 2**20:,.1f} MiB"
    if unit is Unit.BYTES_PER_STAGE:
        return f"{value / 2**10:,.2f} KiB"
    if unit is Unit.ROWS_PER_SECOND:
        return f"{value / 1e6:,.2f} M rows/s"
    if unit is Unit.BYTES_PER_SECOND:
        return f"{value / 1e9:,.2f} GB/s"
    if unit is Unit.PER_STAGE or abs(value) < 1e-3:
        micro = value * 1e6
        return f"{micro:,.2f} µs" if abs(micro) < 10 else f"{micro:,.1f} µs"
    if abs(value) < 1.0:
        return f"{value * 1e3:,.1f} ms"
    return f"{value:,.2f} s"


def target_text(target: Target | None, unit: Unit) -> str:
    if target is None:
        return "-"
    sign = "≥" if target.at_least else "<" if target.strict else "≤"
    if target.basis is Basis.RATIO:
        return f"{sign} {target.limit:g}×"
    return f"{sign} {quantity(target.limit, unit)}"


def table(rows: list[Row]) -> str:
    """The rows as an aligned text table."""
    header = ("workload", "Klaw", "floor", "ratio", "target", "verdict")
    lines: list[tuple[str, ...]] = [header]
    for row in rows:
        floor = quantity(row.floor, row.unit)
        if row.floor is not None and row.floor_label:
            floor = f"{floor} ({row.floor_label})"
        ratio = row.ratio
        lines.append(
            (
                f"{row.workload} {row.label}",
                quantity(row.klaw, row.unit),
                floor,
                "-" if ratio is None else f"{ratio:,.2f}×",
                target_text(row.target, row.unit),
                row.verdict,
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    right = {1, 2, 3}  # numbers align right

    def render(line: tuple[str, ...]) -> str:
        cells = [
            cell.rjust(widths[i]) if i in right else cell.ljust(widths[i])
            for i, cell in enumerate(line)
        ]
        return " | ".join(cells).rstrip()

    rule = "-+-".join("-" * w for w in widths)
    return "\n".join([render(lines[0]), rule, *(render(line) for line in lines[1:])])


def to_json(rows: list[Row], meta: dict[str, Any]) -> str:
    """Every row with its raw figures (seconds, bytes) and verdict, plus run metadata."""
    out = []
    for row in rows:
        item = asdict(row)
        item["unit"] = row.unit.value
        item["target"] = (
            None
            if row.target is None
            else {
                "limit": row.target.limit,
                "basis": row.target.basis.value,
                "strict": row.target.strict,
            }
        )
        item["ratio"] = row.ratio
        item["verdict"] = row.verdict
        out.append(item)
    return json.dumps({"meta": meta, "results": out}, indent=2, default=str)
