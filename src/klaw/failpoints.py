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
import re
import signal
import time
from typing import Final

_ENV: Final = "KLAW_FAILPOINTS"
_SLEEP: Final = re.compile(r"sleep\((\d+(?:\.\d*)?)\)")
# name -> (seconds to sleep, or None to die; the once-file, if any); read once, on first use
_armed: dict[str, dict[str, tuple[float | None, str | None]]] = {}


def _points() -> dict[str, tuple[float | None, str | None]]:
    points = _armed.get(_ENV)
    if points is None:
        points = {}
        for item in os.environ.get(_ENV, "").split(","):
            spec, _, once = item.strip().partition("@")
            name, _, action = spec.partition("=")
            sleep = _SLEEP.fullmatch(action.strip())
            if name:
                points[name] = (float(sleep[1]) / 1000 if sleep else None, once or None)
        _armed[_ENV] = points
    return points


def failpoint(name: str) -> None:
    """Kill this process now (or sleep, for ``name=sleep(MS)``) if the failpoint ``name`` is
    armed."""
    points = _points()
    if name not in points:
        return
    sleep, once = points[name]
    if sleep is not None:
        time.sleep(sleep)
        return
    if once is not None:
        try:  # O_EXCL: exactly one process wins the file, and only that one dies
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return
    os.kill(os.getpid(), signal.SIGKILL)
