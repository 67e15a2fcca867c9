"""Failpoints: named places where a fault test can make Klaw die on purpose.

``KLAW_FAILPOINTS=after_create_run,before_lake_commit`` makes the process kill itself with
SIGKILL whenever it reaches one of the named points, so crash recovery can be tested at exactly
the moment that matters (as FoundationDB and TiKV do). ``name@/path/to/file`` fires only once
across processes: the first process to get there creates the file and dies; the others find it
and go on. Unset, a failpoint costs one dictionary lookup. The variable is read on first use,
never at import.
"""

from __future__ import annotations

import os
import signal
from typing import Final

_ENV: Final = "KLAW_FAILPOINTS"
_armed: dict[str, dict[str, str | None]] = {}  # read once per process, on first use


def _points() -> dict[str, str | None]:
    points = _armed.get(_ENV)
    if points is None:
        points = {}
        for item in os.environ.get(_ENV, "").split(","):
            name, _, once = item.strip().partition("@")
            if name:
                points[name] = once or None
        _armed[_ENV] = points
    return points


def failpoint(name: str) -> None:
    """Kill this process now if the failpoint ``name`` is armed."""
    points = _points()
    if name not in points:
        return
    once = points[name]
    if once is not None:
        try:  # O_EXCL: exactly one process wins the file, and only that one dies
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    os.kill(os.getpid(), signal.SIGKILL)
