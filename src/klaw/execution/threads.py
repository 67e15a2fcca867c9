"""Threads kept for reuse within a process.

Starting a thread hands the GIL to it and back before ``start`` returns: about a millisecond
on a busy machine, and a run starts a recorder and up to ``max_workers`` workers. A thread
whose work has returned waits here, parked, for the next piece of work (the next run's
workers and recorder) instead of exiting. Work that raises ends its thread, as it would a
plain ``threading.Thread``; work that never returns (an abandoned stage) keeps its thread.
"""

from __future__ import annotations

import contextvars
import os
import queue
import threading
from collections.abc import Callable

MAX_PARKED = 64  # idle threads kept; more than this exit when their work returns


class Started:
    """Work handed to a thread: :meth:`join` waits for it to return."""

    __slots__ = ("_done",)

    def __init__(self) -> None:
        self._done = threading.Event()

    def join(self, timeout: float | None = None) -> bool:
        """Wait until the work has returned (or raised); False if ``timeout`` ran out."""
        return self._done.wait(timeout)


_Job = tuple[Callable[[], object], str, Started]
_parked: list[queue.SimpleQueue[_Job]] = []  # a stack: the thread parked last works next
_lock = threading.Lock()


def _forget_parked() -> None:
    """In a forked child only the forking thread exists: the parked ones are not there."""
    global _lock  # noqa: PLW0603  (the parent's lock may have been held at the fork)
    _lock = threading.Lock()
    _parked.clear()


os.register_at_fork(after_in_child=_forget_parked)


def start(work: Callable[[], object], name: str) -> Started:
    """Run ``work`` on a parked daemon thread, or on a new one when none is parked. Each
    piece of work runs in a fresh ``contextvars`` context, so nothing carries over."""
    started = Started()
    with _lock:
        inbox = _parked.pop() if _parked else None
    if inbox is None:
        inbox = queue.SimpleQueue()
        threading.Thread(target=_park, args=(inbox,), name=name, daemon=True).start()
    inbox.put((work, name, started))
    return started


def _park(inbox: queue.SimpleQueue[_Job]) -> None:
    me = threading.current_thread()
    while True:
        work, name, started = inbox.get()
        me.name = name
        try:
            contextvars.Context().run(work)
        except BaseException:  # the thread ends (the error is reported by threading.excepthook)
            started._done.set()
            raise
        with _lock:  # parked before the join returns: the next run finds it
            stay = len(_parked) < MAX_PARKED
            if stay:
                _parked.append(inbox)
        started._done.set()
        if not stay:
            return
