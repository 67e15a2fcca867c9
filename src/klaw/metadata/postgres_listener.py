"""``PostgresListener``: one ``LISTEN`` connection per database (and schema) in this process.

Every transaction of ``PostgresMetadataStore`` that writes a run's events, attempts or logs
also runs :data:`NOTIFY` for the runs it wrote (payload: the run id). Postgres delivers a
notification only once its transaction has committed, so a follower woken by one always finds
the rows. The channel is the schema's (:func:`channel`): stores of other schemas of the same
database are not woken.

A listener is a daemon thread on a connection of its own that fans each notification out to
the waiters of its run (a :class:`~klaw.metadata.wakeups.Wakeups`). When the connection is
lost it reconnects (backing off up to :data:`MAX_BACKOFF` seconds) and, once listening again,
wakes every waiter to re-check the database: what was committed while nobody listened is not
missed. While it is not listening, waiters fall back to polling every
:data:`DISCONNECTED_POLL` seconds. Stores share the listener of their URL (:func:`acquire`,
:func:`release`); the last one to release it stops it.
"""

from __future__ import annotations

import hashlib
import select
import socket
import threading
from typing import Any, Final

import psycopg
from psycopg import sql

from klaw.metadata.wakeups import Wakeups
from klaw.observability import get_logger

NOTIFY: Final = "SELECT pg_notify(%s, run_id) FROM unnest(%s::text[]) AS run_id"
DISCONNECTED_POLL: Final = 0.5  # seconds between re-checks while the listener is not listening
RECHECK: Final = 30.0  # seconds between re-checks while listening (a safety net only)
MAX_BACKOFF: Final = 2.0  # longest pause between two reconnection attempts
_PREFIX: Final = "klaw_events"
_MAX_CHANNEL: Final = 63  # bytes: Postgres identifiers (NAMEDATALEN - 1)
_KEEPALIVE: Final = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
}  # a peer gone silently is found dead in about 25 s

_log: Final = get_logger(__name__)


def channel(schema: str | None) -> str:
    """The notification channel of a schema's runs (``klaw_events:<schema>``; hashed when
    that would be longer than a Postgres identifier)."""
    name = f"{_PREFIX}:{schema or 'public'}"
    if len(name.encode()) > _MAX_CHANNEL:
        name = f"{_PREFIX}:{hashlib.sha256(name.encode()).hexdigest()[:32]}"
    return name


class PostgresListener:
    """Listens on a schema's channel and wakes the waiters of each run notified."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.wakeups = Wakeups()
        self._stop = threading.Event()
        self._listening = threading.Event()
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self.backend_pid: int | None = None  # of the listening connection, while it listens

    @property
    def listening(self) -> bool:
        return self._listening.is_set()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="klaw-pg-listener", daemon=True)
            self._thread.start()

    def wait_listening(self, timeout: float) -> bool:
        """Wait until the listener listens (at most ``timeout`` seconds); whether it does."""
        return self._listening.wait(timeout)

    def stop(self) -> None:
        self._stop.set()
        self._wake_w.send(b"x")
        if self._thread is not None:
            self._thread.join(timeout=5.0)
        self._wake_r.close()
        self._wake_w.close()

    def _run(self) -> None:
        backoff = 0.05
        warned = False  # once per outage, not once per attempt
        while not self._stop.is_set():
            try:
                with psycopg.connect(self.url, autocommit=True, **self._options()) as conn:
                    row = conn.execute("SELECT current_schema()").fetchone()
                    name = channel(None if row is None else row[0])
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(name)))
                    self.backend_pid = conn.info.backend_pid
                    self._listening.set()
                    self.wakeups.notify_all()  # re-check: writes while nobody listened
                    backoff, warned = 0.05, False
                    self._listen(conn)
            except Exception as exc:  # the thread lives on: it reconnects
                if not self._stop.is_set() and not warned:
                    warned = True
                    _log.warning(
                        "metadata listener is not connected; followers of runs poll until it is",
                        error=str(exc),
                        retry_s=MAX_BACKOFF,
                    )
            finally:
                self.backend_pid = None
                if self._listening.is_set():
                    self._listening.clear()
                    self.wakeups.notify_all()  # waiters fall back to polling
            if self._stop.wait(backoff):
                return
            backoff = min(backoff * 2, MAX_BACKOFF)

    def _options(self) -> dict[str, Any]:
        from psycopg.conninfo import conninfo_to_dict

        given = conninfo_to_dict(self.url)
        options = {k: v for k, v in _KEEPALIVE.items() if k not in given}
        if "connect_timeout" not in given:
            options["connect_timeout"] = 10
        return options

    def _listen(self, conn: psycopg.Connection[Any]) -> None:
        """Fan notifications out until the connection fails or the listener is stopped."""
        sockets = [conn.fileno(), self._wake_r.fileno()]
        while not self._stop.is_set():
            ready, _, _ = select.select(sockets, [], [])
            if self._wake_r.fileno() in ready:
                return
            run_ids = [n.payload for n in conn.notifies(timeout=0)]
            if run_ids:
                self.wakeups.notify(run_ids)
            if conn.broken or conn.closed:
                raise psycopg.OperationalError("the listening connection closed")


_lock: Final = threading.Lock()
_listeners: dict[str, tuple[PostgresListener, int]] = {}


def acquire(url: str) -> PostgresListener:
    """The running listener of ``url`` in this process (started on first use)."""
    with _lock:
        found, users = _listeners.get(url, (None, 0))
        if found is None:
            found = PostgresListener(url)
            found.start()
        _listeners[url] = (found, users + 1)
        return found


def release(listener: PostgresListener) -> None:
    """One user less of ``listener``; the last one stops it."""
    with _lock:
        found, users = _listeners.get(listener.url, (None, 0))
        if found is not listener:
            return
        if users > 1:
            _listeners[listener.url] = (found, users - 1)
            return
        del _listeners[listener.url]
    listener.stop()
