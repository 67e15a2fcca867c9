"""Threads parked for reuse (klaw.execution.threads)."""

from __future__ import annotations

import contextvars
import os
import threading

import pytest

from klaw.execution import threads

_seen: contextvars.ContextVar[str] = contextvars.ContextVar("seen", default="unset")


def test_a_thread_whose_work_returned_runs_the_next_work() -> None:
    first: list[threading.Thread] = []
    threads.start(lambda: first.append(threading.current_thread()), "klaw-test").join(5)
    second: list[threading.Thread] = []
    assert threads.start(lambda: second.append(threading.current_thread()), "klaw-test").join(5)
    assert first[0] is second[0]  # the same thread, parked in between


def test_each_work_gets_a_fresh_context_and_its_name() -> None:
    names: list[str] = []

    def set_it() -> None:
        _seen.set("first")

    def read_it() -> None:
        names.append(f"{threading.current_thread().name}:{_seen.get()}")

    threads.start(set_it, "klaw-one").join(5)
    threads.start(read_it, "klaw-two").join(5)
    assert names == ["klaw-two:unset"]


def test_work_that_raises_ends_its_thread_and_the_next_gets_another() -> None:
    failed: list[threading.Thread] = []
    errors: list[type[BaseException] | None] = []
    hook = threading.excepthook

    def boom() -> None:
        failed.append(threading.current_thread())
        raise RuntimeError("boom")

    threading.excepthook = lambda args: errors.append(args.exc_type)
    try:
        assert threads.start(boom, "klaw-test").join(5)
        failed[0].join(5)  # the thread ends, its error reported
    finally:
        threading.excepthook = hook
    assert errors == [RuntimeError]
    after: list[threading.Thread] = []
    threads.start(lambda: after.append(threading.current_thread()), "klaw-test").join(5)
    assert after and after[0] is not failed[0] and not failed[0].is_alive()


def test_join_times_out_while_the_work_runs() -> None:
    release = threading.Event()
    started = threads.start(release.wait, "klaw-test")
    assert not started.join(0.01)
    release.set()
    assert started.join(5)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_its_own_threads() -> None:
    threads.start(lambda: None, "klaw-test").join(5)  # one parked in this process
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: a parked thread of the parent would never run this
        ok = threads.start(lambda: os.write(write, b"ok"), "klaw-test").join(5)
        os._exit(0 if ok else 1)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 2) == b"ok"
    assert os.waitstatus_to_exitcode(status) == 0
