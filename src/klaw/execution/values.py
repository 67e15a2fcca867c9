"""Values handed between stages in memory, held until their last consumer is done."""

from __future__ import annotations

import threading
from typing import Any

_MISSING = object()


class ValueStore:
    """Stage results by stage name. The runner decides when a value is released; the store
    only holds it. Thread-safe: workers put and get while the runner releases."""

    def __init__(self) -> None:
        self._values: dict[str, Any] = {}
        self._lock = threading.Lock()

    def put(self, stage: str, value: Any) -> None:
        with self._lock:
            self._values[stage] = value

    def get(self, stage: str) -> Any:
        with self._lock:
            value = self._values.get(stage, _MISSING)
        if value is _MISSING:
            raise KeyError(stage)
        return value

    def has(self, stage: str) -> bool:
        return stage in self._values

    def release(self, stage: str) -> None:
        with self._lock:
            self._values.pop(stage, None)

    def __len__(self) -> int:
        return len(self._values)
