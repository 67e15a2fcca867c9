"""Process signals for an in-process run: the caller that runs a run on the main thread (``klaw
run``, ``klaw.run``, a run worker) owns SIGINT and SIGTERM, and hands them to the runner."""

from __future__ import annotations

import itertools
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from klaw.execution.runner import Runner

SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextmanager
def cancel_on_signals(runner: Runner) -> Iterator[None]:
    """While the block runs, Ctrl-C and SIGTERM cancel ``runner``'s run (a second signal gives
    up what has not stopped yet). Only the main thread can own signals: elsewhere this
    installs nothing (cancel the run with :meth:`Runner.cancel`)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    presses = itertools.count(1)

    def on_signal(signum: int, frame: FrameType | None) -> None:
        if next(presses) == 1:
            runner.cancel()
        else:
            runner.force()

    previous = {sig: signal.signal(sig, on_signal) for sig in SIGNALS}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
