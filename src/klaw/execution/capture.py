"""Capture what a stage prints and logs, per stage attempt, while other stages run beside it.

``sys.stdout`` and ``sys.stderr`` are replaced once by proxies that send each write to the
attempt running on the current thread (or to the real stream when none is). A handler on the
root logger does the same for ``logging`` records.
"""

from __future__ import annotations

import io
import logging
import sys
import threading
import time
from typing import Any, TextIO

from klaw.authoring.secrets import mask
from klaw.metadata.records import LogRecord

_local = threading.local()
_install_lock = threading.Lock()
_installed = False


class AttemptLog:
    """The captured lines of one stage attempt."""

    __slots__ = ("attempt", "partial", "records", "run_id", "secrets", "stage")

    def __init__(
        self, run_id: str, stage: str, attempt: int, secrets: tuple[str, ...] = ()
    ) -> None:
        self.run_id, self.stage, self.attempt = run_id, stage, attempt
        self.secrets = secrets  # values shown as *** in every line kept
        self.records: list[LogRecord] = []
        self.partial: dict[str, str] = {}

    def add(self, stream: str, line: str, level: str | None = None) -> None:
        if self.secrets:
            line = mask(line, self.secrets)
        self.records.append(
            LogRecord(
                run_id=self.run_id,
                stage=self.stage,
                attempt=self.attempt,
                stream=stream,
                ts=time.time(),
                line=line,
                level=level,
            )
        )

    def write(self, stream: str, text: str) -> None:
        buffered = self.partial.pop(stream, "") + text
        *lines, rest = buffered.split("\n")
        for line in lines:
            self.add(stream, line)
        if rest:
            self.partial[stream] = rest

    def flush_partial(self) -> None:
        if not self.partial:
            return
        for stream, rest in self.partial.items():
            self.add(stream, rest)
        self.partial.clear()


class _StreamProxy(io.TextIOBase):
    def __init__(self, name: str, real: TextIO) -> None:
        self._name = name
        self._real = real

    def write(self, text: str) -> int:
        sink: AttemptLog | None = getattr(_local, "sink", None)
        if sink is None:
            return self._real.write(text)
        sink.write(self._name, text)
        return len(text)

    def flush(self) -> None:
        if getattr(_local, "sink", None) is None:
            self._real.flush()

    def isatty(self) -> bool:
        return getattr(_local, "sink", None) is None and self._real.isatty()

    def fileno(self) -> int:
        return self._real.fileno()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self._real, "encoding", "utf-8")

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


class _LogHandler(logging.Handler):
    def emit(self, record: logging.LogRecord) -> None:
        sink: AttemptLog | None = getattr(_local, "sink", None)
        if sink is None:
            return
        try:
            message = self.format(record)
        except Exception:  # a broken format string must not fail the stage
            message = str(record.msg)
        for line in message.split("\n"):
            sink.add("log", line, record.levelname)


def install() -> None:
    """Put the proxies and the log handler in place. Cheap when they already are; puts the
    proxies back when something (a test runner, a notebook) swapped the streams since."""
    global _installed  # noqa: PLW0603  (one process-wide installation)
    if isinstance(sys.stdout, _StreamProxy) and isinstance(sys.stderr, _StreamProxy):
        return
    with _install_lock:
        if not isinstance(sys.stdout, _StreamProxy):
            sys.stdout = _StreamProxy("stdout", sys.stdout)
        if not isinstance(sys.stderr, _StreamProxy):
            sys.stderr = _StreamProxy("stderr", sys.stderr)
        if _installed:
            return
        handler = _LogHandler(level=logging.NOTSET)
        handler.setFormatter(logging.Formatter("%(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        if root.level > logging.INFO or root.level == logging.NOTSET:
            root.setLevel(logging.INFO)
        _installed = True


class capture:
    """Collect the current thread's output into the yielded log until the block ends, with
    each of ``secrets`` shown as ``***``. (A class, not ``@contextmanager``: entered once per
    stage attempt, so kept cheap.)"""

    __slots__ = ("_log",)

    def __init__(
        self, run_id: str, stage: str, attempt: int, secrets: tuple[str, ...] = ()
    ) -> None:
        install()
        self._log = AttemptLog(run_id, stage, attempt, secrets)

    def __enter__(self) -> AttemptLog:
        _local.sink = self._log
        return self._log

    def __exit__(self, *exc: object) -> None:
        _local.sink = None
        self._log.flush_partial()
