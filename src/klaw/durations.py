"""Durations as people write them on the command line: ``30s``, ``15m``, ``1.5h``, ``7d``,
``2w`` (a number alone is seconds). One grammar for every flag that takes one."""

from __future__ import annotations

import math
import re
from typing import Final

from klaw.errors import ConfigError

_DURATION: Final = re.compile(r"(\d+(?:\.\d+)?|\.\d+)\s*([smhdw]?)", re.IGNORECASE)
UNITS: Final = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
EXAMPLES: Final = "30s, 15m, 1.5h, 7d or 2w"


def parse_duration(text: str, *, flag: str, allow_zero: bool = False) -> float:
    """Seconds of ``text``. A ConfigError naming ``flag`` (``--older-than``) when it is not a
    duration, or is zero and ``allow_zero`` is not set (zero makes no sense for that flag)."""
    found = _DURATION.fullmatch(text.strip())
    seconds = float(found.group(1)) * UNITS[found.group(2).lower()] if found else math.nan
    if not math.isfinite(seconds):
        raise ConfigError(
            f"{flag} {text!r} is not a duration.",
            hint=f"Write a number and a unit (s, m, h, d or w), for example {EXAMPLES}.",
        )
    if seconds == 0 and not allow_zero:
        raise ConfigError(
            f"{flag} {text!r} is zero.", hint=f"Give a duration above zero, like {EXAMPLES}."
        )
    return seconds
