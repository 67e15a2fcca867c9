"""``Idempotency-Key`` for ``POST /runs``: a retried submit gets the run the first one made.

Keys are kept in the metadata store (:class:`~klaw.metadata.store.IdempotencyStore`), per
principal, for ``ttl`` seconds (``api_idempotency_ttl``): they survive a restart of the server
and are shared by every API process on the same database. A key is bound to the SHA-256 of the
request's body: the same key with another body is a conflict (409). A repeat that arrives while
the first request with the key is still being answered, in this process or another, is a 409
with ``Retry-After``; of requests racing with one key exactly one makes the run. A claim whose
request died before making its run (a crashed server) is taken over after ``pending``
seconds, so the key is not stuck until it expires.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections.abc import Callable
from typing import Any, Final

import msgspec
from fastapi import FastAPI, Request, Response

from klaw.api.http.problems import problem_of
from klaw.errors import IdempotencyError, KeyInProgressError, MalformedKeyError
from klaw.metadata.records import IdempotencyRecord
from klaw.metadata.store import IdempotencyStore
from klaw.protocol import RunReply

HEADER: Final = "Idempotency-Key"
MAX_KEY: Final = 255
PENDING: Final = 60.0  # seconds a claim may take to make its run before it can be taken over


def fingerprint(body: Any, subject: str, key: str) -> str:
    """HMAC-SHA-256 of ``body`` as canonical JSON (keys sorted), keyed by the principal and
    the Idempotency-Key: the same body under two keys (or of two callers) gives unrelated
    fingerprints, so a stored one says nothing about bodies elsewhere and cannot be looked up
    in a table of hashes of likely bodies."""
    salt = f"klaw-idempotency\0{subject}\0{key}".encode()
    return hmac.new(salt, msgspec.json.encode(body, order="sorted"), hashlib.sha256).hexdigest()


class IdempotencyKeys:
    """Keys per principal in ``store``, each bound to a body fingerprint and, once done, a run
    id. ``clock`` (epoch seconds: other processes share the keys) is injectable."""

    def __init__(
        self,
        store: IdempotencyStore,
        ttl: float,
        *,
        pending: float = PENDING,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.store = store
        self.ttl = ttl
        self.pending = min(pending, ttl)
        self._clock = clock

    def begin(self, subject: str, key: str, body: str) -> IdempotencyRecord | str:
        """Claim ``key`` of ``subject`` for a body of fingerprint ``body``: the run id when a
        request with the key already made one, else this request's claim (then
        :meth:`finish` or :meth:`abandon` it)."""
        if not key or len(key) > MAX_KEY or not key.isprintable():
            raise MalformedKeyError(
                f"The {HEADER} header must be 1 to {MAX_KEY} printable characters.",
                hint="Send a fresh random value (a UUID) for each distinct submit.",
            )
        now = self._clock()
        claim = IdempotencyRecord(
            subject=subject,
            key=key,
            fingerprint=body,
            claim=secrets.token_hex(16),
            created_at=now,
            expires_at=now + self.ttl,
            pending_until=now + self.pending,
        )
        held = self.store.begin_key(claim)
        if held is None:
            return claim
        if held.fingerprint != body:
            raise IdempotencyError(
                f"The {HEADER} {key!r} was already used with a different request body.",
                hint="Use a new key for a different submit, or resend the same body.",
            )
        if held.run_id is None:
            raise KeyInProgressError(
                f"A request with the {HEADER} {key!r} is still being answered.",
                hint="Retry shortly (after the seconds of Retry-After); the reply will be the "
                "run it made.",
            )
        return held.run_id

    def finish(self, claim: IdempotencyRecord, run_id: str) -> None:
        self.store.finish_key(claim, run_id)

    def abandon(self, claim: IdempotencyRecord) -> None:
        """Give the key up (its first request failed): a retry with it may try again."""
        self.store.abandon_key(claim)


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, IdempotencyError)
    headers = {"Retry-After": "1"} if isinstance(exc, KeyInProgressError) else None
    return problem_of(exc, headers=headers)


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
    claim = keys.begin(subject, key, fingerprint(body, subject, key))
    if isinstance(claim, str):
        return get(claim), False
    try:
        created = submit()
    except BaseException:
        keys.abandon(claim)
        raise
    keys.finish(claim, created.run.run_id)
    return created, True
