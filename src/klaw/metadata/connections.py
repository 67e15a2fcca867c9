"""Connections of closed SQLite metadata stores, kept open for the next store of the same file
in this process.

``klaw.run`` in a loop opens and closes a store per run. Closing the last connection to a WAL
database checkpoints it and deletes its WAL, and the next open makes the WAL again: about half
of a one-stage run's set-up. A closed store's connection is parked here instead (one per file,
a few files at most) and handed to the next store that opens the same file from the same
process; the parked ones are closed (and the database checkpointed) at exit.

Nothing committed depends on this: every write was committed before its store closed, and a
WAL left behind is recovered by whoever opens the file next. A connection is reused only by
the process that opened it (not across a fork), only while its file is the same one (not
deleted or replaced: same device and inode), and never inside a transaction.
"""

from __future__ import annotations

import atexit
import os
import sqlite3
import threading
from pathlib import Path

KEPT = 4  # files whose connection is kept at most (the oldest is closed first)

_lock = threading.Lock()
_parked: dict[str, tuple[sqlite3.Connection, int, tuple[int, int]]] = {}  # path -> conn, pid, id


def _identity(path: Path) -> tuple[int, int] | None:
    try:
        found = os.stat(path)
    except OSError:
        return None
    return found.st_dev, found.st_ino


def take(path: Path) -> sqlite3.Connection | None:
    """The parked connection to ``path``, if this process parked one and the file is still
    the one it opened; None otherwise (the caller opens a new one)."""
    with _lock:
        found = _parked.pop(str(path), None)
    if found is None:
        return None
    conn, pid, identity = found
    if pid == os.getpid() and _identity(path) == identity:
        return conn
    if pid == os.getpid():
        conn.close()  # another file now: this one is of no use
    return None  # made before a fork: the child must not touch it, not even to close it


def park(path: Path, conn: sqlite3.Connection) -> None:
    """Keep ``conn`` (of a store being closed) for the next store of ``path``; closed now
    when it cannot be kept."""
    identity = _identity(path)
    if identity is None or conn.in_transaction:
        conn.close()
        return
    with _lock:
        old = _parked.pop(str(path), None)
        _parked[str(path)] = (conn, os.getpid(), identity)
        evicted = [old] if old is not None else []
        while len(_parked) > KEPT:
            evicted.append(_parked.pop(next(iter(_parked))))
    for other, pid, _ in evicted:
        if pid == os.getpid():
            other.close()


def close_all() -> None:
    """Close every parked connection of this process (each checkpoints its database)."""
    with _lock:
        parked = list(_parked.values())
        _parked.clear()
    for conn, pid, _ in parked:
        if pid == os.getpid():
            conn.close()


atexit.register(close_all)
