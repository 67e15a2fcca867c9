"""Server-Sent Events: a run's events and log lines as one ``text/event-stream``.

The stream reads the metadata store through the typed commands (``ListEvents`` after the last
event ``seq`` sent, ``ReadLogPage`` after the last line sent: only new rows are read) and, when
nothing is new, waits for the run's next write (``Orchestrator.wait_run``: woken by Postgres
``NOTIFY``, or by a commit of this process, or SQLite's bounded poll), so an event or line is
sent as soon as it is committed. Reads and waits run in worker threads of their own
(:data:`MAX_WAITING` at most, apart from the threads of the other routes), so a client
connection is one async generator. Messages:

* an event: ``id: <seq>``, ``event: <kind>``, ``data: <the event as JSON>``;
* a log line: ``id: <seq>:<log seq>`` (the last event seq sent, and the line's seq),
  ``event: log``, ``data: <the line as JSON>``;
* ``: keep-alive`` comments when nothing was sent for ``keepalive`` seconds;
* ``event: error`` (data ``{"code", "detail"}``, no id) when the store fails mid-stream; the
  stream ends and the client may resume from the last id it got.

It ends once the run has ended and its last event and lines are sent. A client resumes with the
``Last-Event-ID`` header (or ``?after=<seq>``): events after that seq, and log lines after the
log seq when the id has one (after a bare event seq, the lines are sent again from the start).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Final, TypeVar

import anyio
import anyio.to_thread
import msgspec
from anyio.lowlevel import RunVar

from klaw.errors import InvalidCommandError, KlawError
from klaw.metadata.records import EventRecord, LogRecord
from klaw.protocol import (
    EventsReply,
    ListEvents,
    LogsReply,
    ReadLogPage,
)
from klaw.service.dispatcher import Dispatcher

MEDIA_TYPE: Final = "text/event-stream"
KEEPALIVE: Final = 15.0
MAX_WAITING: Final = 256  # threads that may wait for runs' writes at once (streams, long polls)

T = TypeVar("T")
_waiting: RunVar[anyio.CapacityLimiter] = RunVar("klaw_waiting")


async def in_waiting_thread(fn: Callable[..., T], *args: object) -> T:
    """``fn(*args)`` in a worker thread of the waiting pool (per event loop), which the other
    routes' threads never queue behind. A cancelled caller (the client went away) returns at
    once; the thread ends with its wait."""
    try:
        limiter = _waiting.get()
    except LookupError:
        limiter = anyio.CapacityLimiter(MAX_WAITING)
        _waiting.set(limiter)
    return await anyio.to_thread.run_sync(fn, *args, limiter=limiter, abandon_on_cancel=True)


HEADERS: Final = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


@dataclass(frozen=True)
class Cursor:
    """Where a stream resumes: after event ``seq`` and after log line ``log_seq``."""

    seq: int = 0
    log_seq: int = 0

    @classmethod
    def parse(cls, last_event_id: str | None, after: int | None) -> Cursor:
        """The cursor of a ``Last-Event-ID`` header (it wins) or an ``after`` query value."""
        if last_event_id is None or not last_event_id.strip():
            return cls(seq=after or 0)
        seq, _, log_seq = last_event_id.strip().partition(":")
        try:
            cursor = cls(int(seq), int(log_seq or 0))
        except ValueError:
            cursor = cls(-1)
        if cursor.seq < 0 or cursor.log_seq < 0:
            raise InvalidCommandError(
                f"Last-Event-ID {last_event_id!r} is not an id this stream sent.",
                command="ListEvents",
                hint="Send the id of the last message received: <seq> or <seq>:<log seq>.",
            )
        return cursor


def event_message(event: EventRecord) -> bytes:
    data = msgspec.json.encode(event).decode()
    return f"id: {event.seq}\nevent: {event.kind}\ndata: {data}\n\n".encode()


def log_message(seq: int, line: LogRecord) -> bytes:
    data = msgspec.json.encode(msgspec.structs.asdict(line)).decode()
    return f"id: {seq}:{line.seq}\nevent: log\ndata: {data}\n\n".encode()


def first_events(dispatcher: Dispatcher, run_id: str, cursor: Cursor) -> EventsReply:
    """The events after ``cursor``: raises (RunNotFoundError...) before a stream starts."""
    found = dispatcher.execute(ListEvents(run_id=run_id, after_seq=cursor.seq))
    assert isinstance(found, EventsReply)
    return found


async def stream(
    dispatcher: Dispatcher,
    run_id: str,
    cursor: Cursor,
    first: EventsReply,
    *,
    keepalive: float = KEEPALIVE,
) -> AsyncIterator[bytes]:
    """The messages of run ``run_id`` after ``cursor``, starting with ``first`` (the reply of
    :func:`first_events`), until the run has ended."""
    seq, log_seq = cursor.seq, cursor.log_seq
    reply = first
    try:
        lines = await in_waiting_thread(_new_lines, dispatcher, run_id, log_seq)
    except KlawError as exc:
        yield b"".join(event_message(e) for e in reply.events) + error_message(exc)
        return
    while True:
        out = [event_message(e) for e in reply.events]
        if reply.events:
            seq = reply.events[-1].seq
        for line in lines:
            out.append(log_message(seq, line))
            log_seq = line.seq
        if out:
            yield b"".join(out)
        if reply.run.state.terminal:  # read before the lines: no line comes after the end
            return
        try:
            reply, lines = await in_waiting_thread(
                _next, dispatcher, run_id, seq, log_seq, keepalive
            )
        except KlawError as exc:
            yield error_message(exc)
            return
        if not (reply.events or lines or reply.run.state.terminal):
            yield b": keep-alive\n\n"  # nothing for ``keepalive`` seconds


def error_message(exc: KlawError) -> bytes:
    """The last message of a stream a KlawError ended: the client may resume from its last id."""
    data = msgspec.json.encode({"code": type(exc).__name__, "detail": exc.message}).decode()
    return f"event: error\ndata: {data}\n\n".encode()


def _next(
    dispatcher: Dispatcher, run_id: str, seq: int, log_seq: int, timeout: float
) -> tuple[EventsReply, list[LogRecord]]:
    """The events after ``seq`` and lines after ``log_seq``, once there are some or the run
    has ended (empty after ``timeout`` seconds)."""
    found: list[tuple[EventsReply, list[LogRecord]]] = []

    def arrived() -> bool:
        reply = _events(dispatcher, run_id, seq)  # the run is read before the lines
        lines = _new_lines(dispatcher, run_id, log_seq)
        found[:] = [(reply, lines)]
        return bool(reply.events or lines) or reply.run.state.terminal

    dispatcher.orchestrator.wait_run(run_id, arrived, timeout)
    return found[-1]


def _events(dispatcher: Dispatcher, run_id: str, seq: int) -> EventsReply:
    found = dispatcher.execute(ListEvents(run_id=run_id, after_seq=seq))
    assert isinstance(found, EventsReply)
    return found


def _new_lines(dispatcher: Dispatcher, run_id: str, log_seq: int) -> list[LogRecord]:
    found = dispatcher.execute(ReadLogPage(run_id=run_id, after_seq=log_seq))
    assert isinstance(found, LogsReply)
    return sorted(found.logs, key=lambda line: line.seq)  # by seq: the cursor moves forward
