"""Timing: wall-clock samples with ``time.perf_counter``, one warm-up, medians.

Klaw and its floors are sampled interleaved (Klaw, floor, Klaw, floor, ...), so that load from
elsewhere on the machine falls on both alike and the ratio stays meaningful.
"""

from __future__ import annotations

import gc
import statistics
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Samples:
    """Wall times in seconds of repeated calls (warm-ups are not among them)."""

    seconds: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def best(self) -> float:
        return min(self.seconds)


@dataclass(frozen=True, slots=True)
class Case:
    """Something to time. ``setup`` runs before every call, outside the timed region."""

    fn: Callable[[], object]
    setup: Callable[[], object] | None = None


def _once(case: Case) -> float:
    if case.setup is not None:
        case.setup()
    gc.collect()  # between calls, never inside one: no sample pays for the previous garbage
    start = time.perf_counter()
    case.fn()
    return time.perf_counter() - start


def interleaved(cases: Mapping[str, Case], repeat: int, *, warmup: int = 1) -> dict[str, Samples]:
    """Time every case ``repeat`` times, round-robin, after ``warmup`` untimed rounds."""
    times: dict[str, list[float]] = {name: [] for name in cases}
    for i in range(warmup + max(1, repeat)):
        for name, case in cases.items():
            elapsed = _once(case)
            if i >= warmup:
                times[name].append(elapsed)
    return {name: Samples(tuple(t)) for name, t in times.items()}
