"""Failpoints: named places where a fault test can make Klaw die on purpose.

``KLAW_FAILPOINTS=after_create_run,before_lake_commit`` makes the process kill itself with
SIGKILL the first time it reaches one of the named points, so crash recovery can be tested
at exactly the moment that matters (as FoundationDB and TiKV do). Unset, a failpoint costs one
dictionary lookup. The variable is read on first use, never at import.
"""

from __future__ import annotations

import os
import signal
from typing import Final

_ENV: Final = "KLAW_FAILPOINTS"
_armed: dict[str, frozenset[str]] = {}  # read once per process, on first use


def failpoint(name: str) -> None:
    """Kill this process now if the failpoint ``name`` is armed."""
    armed = _armed.get(_ENV)
    if armed is None:
        raw = os.environ.get(_ENV, "")
        armed = _armed[_ENV] = frozenset(p.strip() for p in raw.split(",") if p.strip())
    if name in armed:
        os.kill(os.getpid(), signal.SIGKILL)
