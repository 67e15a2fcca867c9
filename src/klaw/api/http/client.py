"""``HttpClient``: the typed commands sent to a Klaw HTTP API (``klaw api``, ``klaw dev``).

Each command becomes a request to its ``/api/v1`` route, as the command table says
(:mod:`klaw.protocol.table`); the JSON answer is decoded into the
reply Struct the route returns (the same tagged Struct the Flight server sends). A
problem+json answer is raised as the KlawError subclass its ``code`` names, with its
``fields`` (:mod:`klaw.protocol.errors`); ``429`` is retried after its ``Retry-After``, a
bounded number of times. The HTTP API has no route for the worker commands (Heartbeat,
CompleteAttempt, FailAttempt): those raise :class:`NotOverHttpError`; asset rows come as a
JSON preview (``PreviewRows``), whole snapshots only over Arrow Flight.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import Any, Final

import httpx
import msgspec

from klaw.errors import (
    AuthError,
    KlawError,
    RemoteError,
    ServerUnavailableError,
    rebuild,
)
from klaw.protocol import (
    MAX_EVENTS_WAIT,
    CancelRun,
    Command,
    ErrorReply,
    EventsReply,
    ListEvents,
    Ping,
    PongReply,
    Reply,
    RunReply,
    SubmitRun,
    from_parts,
    from_reply,
    long_poll,
    table,
)

MAX_RETRIES: Final = 3  # 429 answers retried per request before giving up
MAX_RETRY_AFTER: Final = 60.0  # seconds: a longer Retry-After is waited this long
FOLLOW_WAIT: Final = 1.0  # seconds the API may hold one long poll of SubmitRun(wait=True)
AFTER_ALL: Final = 2**62  # a seq after every event: only the run's end answers such a wait
_START_HINT: Final = (
    "Start one in the project with `klaw api` or `klaw dev`, or point --url / KLAW_URL at a "
    "running one."
)

_reply_decoder: Final[msgspec.json.Decoder[Reply]] = msgspec.json.Decoder(Reply)


def api_url(url: str) -> str:
    """``host:port`` as ``http://host:port``; a URL with a scheme as it is (no trailing /)."""
    url = url.strip().rstrip("/")
    return url if "://" in url else f"http://{url}"


class HttpClient:
    """A connection to one Klaw HTTP API. Nothing is sent until the first call."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float | None = 30.0,
        retries: int = MAX_RETRIES,
        on_retry: Callable[[str], None] | None = None,
    ) -> None:
        """``timeout``: seconds a request may take (a cancel's wait comes on top);
        ``retries``: how often a 429 is retried; ``on_retry``: told each retry (default:
        a line on stderr)."""
        self.url = api_url(url)
        self.retries = retries
        self._token = token
        self._on_retry = on_retry or _say
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout)

    def __repr__(self) -> str:  # never the token
        return f"HttpClient({self.url!r})"

    def __enter__(self) -> HttpClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def execute(self, cmd: Command) -> Reply:
        """Send one command to its route; its reply. An error is raised as the one it names."""
        if isinstance(cmd, Ping):
            return self._ping()
        if isinstance(cmd, SubmitRun) and cmd.wait:
            return self._submit_and_wait(cmd)
        method, path, query, body = table.request(cmd)
        extra = 0.0
        if isinstance(cmd, CancelRun):
            extra = cmd.wait
        elif isinstance(cmd, ListEvents):
            extra = min(cmd.wait, MAX_EVENTS_WAIT)
        reply = _reply_decoder.decode(
            self._send(type(cmd).__name__, method, path, query, body, extra)
        )
        if isinstance(reply, ErrorReply):
            raise from_reply(reply)
        return reply

    def _ping(self) -> PongReply:
        """The HTTP API has no Ping: ``/health`` says it answers, ``/openapi.json`` which Klaw
        it is. It does not say which project it serves, so ``project`` is its URL."""
        self._send("Ping", "GET", "/health", {}, None)
        info = msgspec.json.decode(self._send("Ping", "GET", "/openapi.json", {}, None))
        version = str(info.get("info", {}).get("version", "")) if isinstance(info, dict) else ""
        return PongReply(klaw_version=version, project=self.url)

    def _submit_and_wait(self, cmd: SubmitRun) -> Reply:
        """SubmitRun(wait=True): start it, then wait for its end (long polls of its events
        route, each answered when the run ends or after ``FOLLOW_WAIT`` seconds)."""
        started = self.execute(msgspec.structs.replace(cmd, wait=False))
        if not isinstance(started, RunReply):
            return started
        run_id = started.run.run_id
        while True:
            now = self.execute(long_poll(run_id, AFTER_ALL, FOLLOW_WAIT))
            if not isinstance(now, EventsReply) or now.run.state.terminal:
                return RunReply(run=now.run) if isinstance(now, EventsReply) else now

    def _send(
        self,
        what: str,
        method: str,
        path: str,
        query: dict[str, Any],
        body: Any,
        extra_timeout: float = 0.0,
    ) -> bytes:
        """The body of a 2xx answer, after retrying 429s; a KlawError for anything else."""
        timeout = self._http.timeout
        if extra_timeout and timeout.read is not None:
            timeout = httpx.Timeout(timeout.connect, read=timeout.read + extra_timeout)
        params = {k: v for k, v in query.items() if v is not None and v != []}
        attempt = 0
        while True:
            try:
                response = self._http.request(
                    method,
                    path,
                    params=params,
                    content=None if body is None else msgspec.json.encode(body),
                    headers={"Content-Type": "application/json"} if body is not None else None,
                    timeout=timeout,
                )
            except httpx.TimeoutException:
                raise RemoteError(
                    f"{what} on the Klaw API at {self.url} did not answer in time.",
                    hint="Check that the server is not stuck, or retry.",
                ) from None
            except httpx.TransportError as exc:
                raise ServerUnavailableError(
                    f"No Klaw API answers at {self.url} ({exc}).", hint=_START_HINT
                ) from None
            if response.status_code == 429 and attempt < self.retries:
                attempt += 1
                wait = _retry_after(response.headers.get("Retry-After"))
                self._on_retry(
                    f"The Klaw API at {self.url} is rate limiting {what}; retrying in "
                    f"{wait:g} s ({attempt}/{self.retries})."
                )
                time.sleep(wait)
                continue
            if response.is_success:
                return response.content
            raise self._error(what, response)

    def _error(self, what: str, response: httpx.Response) -> KlawError:
        """The KlawError a problem+json answer names (a RemoteError for anything else)."""
        try:
            problem = msgspec.json.decode(response.content)
        except msgspec.DecodeError:
            problem = None
        if isinstance(problem, dict) and isinstance(problem.get("code"), str):
            hint = problem.get("hint")
            fields = problem.get("fields")
            error = from_parts(
                problem["code"],
                str(problem.get("detail") or problem.get("title") or problem["code"]),
                hint if isinstance(hint, str) else None,
                fields if isinstance(fields, dict) else None,
            )
            if isinstance(error, AuthError):  # the same class, saying which API refused
                message = f"The Klaw API at {self.url} refused the call: {error.message}"
                error = rebuild(type(error), message, error.hint, error.field_values())
            return error
        return RemoteError(
            f"{what} failed on the Klaw API at {self.url}: HTTP {response.status_code}.",
            hint="Is this the URL of a Klaw API? Check the server's log.",
        )


def _retry_after(value: str | None) -> float:
    """Seconds of a Retry-After header (delta-seconds; anything else: one second)."""
    try:
        seconds = float(value) if value is not None else 1.0
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _say(message: str) -> None:
    sys.stderr.write(f"note: {message}\n")
    sys.stderr.flush()
