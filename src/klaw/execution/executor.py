"""The executor seam: where stage attempts run. The runner does not know which one it drives."""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

from klaw.execution.task import Outcome, Started, Task
from klaw.execution.values import ValueStore

Deliver = Callable[[Outcome | Started], None]


class Executor(Protocol):
    @property
    def capacity(self) -> int:
        """How many attempts may run at once."""

    def open(self, deliver: Deliver, values: ValueStore) -> None:
        """Start workers. Every submitted task ends with exactly one ``deliver(outcome)``,
        called from any thread; a task whose stage has a timeout first delivers ``Started``
        as it enters each phase (``LOAD`` when it begins, ``RUN`` when the stage's function is
        called, ``COMMIT`` when its snapshot is stored), so the runner times the function
        alone. Stage values are kept in ``values``."""

    def submit(self, task: Task) -> None: ...

    def stop(self, task: Task) -> None:
        """Stop a running attempt; its outcome arrives with ``stopped=True``."""

    def abandon(self, task: Task) -> None:
        """Give up on an attempt that did not stop in time: free its slot; anything it
        delivers later is ignored by the runner (its token is stale)."""

    def close(self) -> None:
        """Stop every worker and wait for them (stopping what still runs)."""


@runtime_checkable
class InlineExecutor(Protocol):
    """An executor that can also run an attempt on the caller's own thread. The runner uses it
    when one stage is ready and nothing else runs (a chain), saving two thread hand-offs."""

    def run_here(self, task: Task) -> Outcome:
        """Run ``task`` on this thread; ``stop(task)`` from any thread still stops it."""
