"""``Idempotency-Key`` for ``POST /runs``: a retried submit gets the run the first one made.

Keys are kept in memory, per principal, for ``ttl`` seconds (``api_idempotency_ttl``); they do
not survive a restart of the server, and each server process has its own. A key is bound to the
SHA-256 of the request's body: the same key with another body is a conflict (409), and so is a
repeat that arrives while the first request with the key is still being answered.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from fastapi import FastAPI, Request, Response

from klaw.api.http.problems import problem
from klaw.errors import KlawError
from klaw.service.commands import RunReply

HEADER: Final = "Idempotency-Key"
MAX_KEY: Final = 255


class IdempotencyError(KlawError):
    """An ``Idempotency-Key`` that cannot be honoured (HTTP 409; 422 when malformed)."""

    status = 409


class MalformedKeyError(IdempotencyError):
    status = 422


@dataclass
class _Entry:
    fingerprint: str
    expires: float
    run_id: str | None = None  # None while the first request is being answered


def fingerprint(body: Any) -> str:
    """SHA-256 of ``body`` as canonical JSON (keys sorted)."""
    return hashlib.sha256(msgspec.json.encode(body, order="sorted")).hexdigest()


class IdempotencyKeys:
    """Keys per principal, each bound to a body fingerprint and, once done, a run id.
    Thread-safe; ``clock`` is injectable."""

    def __init__(self, ttl: float, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl = ttl
        self._clock = clock
        self._lock = threading.Lock()
        # (subject, key) -> entry, in order of creation (and so of expiry: the ttl is fixed)
        self._entries: OrderedDict[tuple[str, str], _Entry] = OrderedDict()

    def begin(self, subject: str, key: str, body: str) -> str | None:
        """Claim ``key`` of ``subject`` for a body of fingerprint ``body``: the run id when a
        request with the key already made one, None when this request is the first (then
        :meth:`finish` or :meth:`abandon` it)."""
        if not key or len(key) > MAX_KEY or not key.isprintable():
            raise MalformedKeyError(
                f"The {HEADER} header must be 1 to {MAX_KEY} printable characters.",
                hint="Send a fresh random value (a UUID) for each distinct submit.",
            )
        with self._lock:
            now = self._clock()
            while self._entries:
                first = next(iter(self._entries.values()))
                if first.expires > now:
                    break
                self._entries.popitem(last=False)
            entry = self._entries.get((subject, key))
            if entry is None:
                self._entries[(subject, key)] = _Entry(body, now + self.ttl)
                return None
            same, run_id = entry.fingerprint == body, entry.run_id
        if not same:
            raise IdempotencyError(
                f"The {HEADER} {key!r} was already used with a different request body.",
                hint="Use a new key for a different submit, or resend the same body.",
            )
        if run_id is None:
            raise IdempotencyError(
                f"A request with the {HEADER} {key!r} is still being answered.",
                hint="Retry shortly; the reply will be the run it made.",
            )
        return run_id

    def finish(self, subject: str, key: str, run_id: str) -> None:
        with self._lock:
            entry = self._entries.get((subject, key))
            if entry is not None:
                entry.run_id = run_id

    def abandon(self, subject: str, key: str) -> None:
        """Forget ``key`` (its first request failed): a retry with it may try again."""
        with self._lock:
            self._entries.pop((subject, key), None)


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, IdempotencyError)
    return problem(exc.status, type(exc).__name__, exc.message, hint=exc.hint)


def install(app: FastAPI) -> None:
    """Answer :class:`IdempotencyError` as problem+json."""
    app.add_exception_handler(IdempotencyError, _refused)


def submit_once(
    keys: IdempotencyKeys,
    subject: str,
    key: str,
    body: Any,
    submit: Callable[[], RunReply],
    get: Callable[[str], RunReply],
) -> tuple[RunReply, bool]:
    """The run ``submit`` makes for the first request with ``key``, and whether it was made now
    (a repeat gets the run as it stands, through ``get``)."""
    previous = keys.begin(subject, key, fingerprint(body))
    if previous is not None:
        return get(previous), False
    try:
        created = submit()
    except BaseException:
        keys.abandon(subject, key)
        raise
    keys.finish(subject, key, created.run.run_id)
    return created, True
