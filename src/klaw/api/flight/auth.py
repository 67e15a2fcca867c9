"""Bearer tokens: which ones the server accepts, and the middleware that checks every call.

Several tokens are valid at once, so they can be rotated: add the new one, move clients over,
remove the old one. Fixed tokens come from ``KLAW_FLIGHT__TOKENS`` (comma-separated); a token file
(``KLAW_FLIGHT__TOKENS_FILE``: one token a line, ``#`` starts a comment) is re-read as soon as it
changes, without a restart. Tokens are compared in constant time (``hmac.compare_digest`` of
their SHA-256 digests, against every accepted token) and never logged.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Final

from pyarrow import flight

from klaw.errors import ConfigError
from klaw.observability import get_logger
from klaw.settings import KlawSettings

_log: Final = get_logger(__name__)

# A file changed twice within the file system's timestamp granularity can keep its size and
# mtime; while its mtime is this recent, it is read again on every check (cheap: it is small).
_RECENT_S: Final = 2.0
MISSING_TOKEN_HINT: Final = (
    "Send the header 'authorization: Bearer <token>' (klaw.Client reads KLAW_TOKEN) with one "
    "of the tokens the server accepts (KLAW_FLIGHT__TOKENS or KLAW_FLIGHT__TOKENS_FILE on the "
    "server)"
)


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def parse_token_file(text: str) -> list[str]:
    """The tokens of a token file: one a line; blank lines and ``#`` comments are skipped."""
    found = []
    for line in text.splitlines():
        token = line.split("#", 1)[0].strip()
        if token:
            found.append(token)
    return found


class TokenSet:
    """The tokens a server accepts now: ``tokens`` plus those of ``file`` as it is now."""

    def __init__(self, tokens: Iterable[str] = (), file: Path | None = None) -> None:
        self._fixed = tuple(_digest(t) for t in tokens)
        self.file = file
        self._lock = threading.Lock()
        self._stamp: tuple[int, int, int, int] | None = None
        self._from_file: tuple[bytes, ...] = ()
        self._recent = False
        if file is not None:
            self._reload()

    @classmethod
    def from_settings(cls, settings: KlawSettings, root: Path | None = None) -> TokenSet:
        """``settings.flight.tokens`` and ``settings.flight.tokens_file`` (relative to
        ``root``). Refuses (ConfigError) a token file that cannot be read, and having no token at
        all."""
        fixed = [t.get_secret_value().strip() for t in settings.flight.tokens]
        fixed = [t for t in fixed if t]
        file = settings.flight.tokens_file
        if file is not None and not file.is_absolute() and root is not None:
            file = root / file
        if file is not None and not file.is_file():
            raise ConfigError(
                f"The token file {str(file)!r} (KLAW_FLIGHT__TOKENS_FILE) does not exist.",
                hint="Create it with one token a line, or point KLAW_FLIGHT__TOKENS_FILE at it.",
            )
        tokens = cls(fixed, file)
        if not tokens.count():
            where = f" and {str(file)!r} holds none" if file is not None else ""
            raise ConfigError(
                f"No tokens: KLAW_FLIGHT__TOKENS is not set{where}; the server would refuse "
                "every call.",
                hint="Set KLAW_FLIGHT__TOKENS=<token>[,<token>...] or "
                "KLAW_FLIGHT__TOKENS_FILE=<file>; make a "
                "token with: python -c 'import secrets; print(secrets.token_urlsafe(32))'.",
            )
        return tokens

    def __repr__(self) -> str:  # never the tokens themselves
        file = f", file={str(self.file)!r}" if self.file is not None else ""
        return f"TokenSet({len(self._fixed)} fixed{file})"

    def count(self) -> int:
        """How many tokens are accepted right now."""
        self._refresh()
        return len(self._fixed) + len(self._from_file)

    def accepts(self, token: str) -> bool:
        """Whether ``token`` is one of the accepted tokens; the time taken does not depend on
        which one matched, or how much of one did."""
        self._refresh()
        given = _digest(token)
        matched = False
        for known in self._fixed + self._from_file:
            matched |= hmac.compare_digest(given, known)
        return matched

    def _refresh(self) -> None:
        """Re-read the file when its stat changed. This stays a stat per call rather than a
        ``watchfiles`` watcher (which ``klaw dev`` uses for source files) on purpose: a watcher
        sees a change only after its debounce (50 ms at best, on its own thread per server),
        so a call right after a rotation would still pass with the token just removed, while
        one ``stat`` (about a microsecond) makes the very next call see the file as it is. It
        also needs no inotify, which network file systems (NFS, some secret mounts) lack, and
        follows a Kubernetes secret's symlink swap like any other replacement of the file."""
        if self.file is None:
            return
        try:
            st = os.stat(self.file)
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        except OSError:
            stamp = None
        if stamp != self._stamp or self._recent:
            self._reload()

    def _reload(self) -> None:
        assert self.file is not None
        with self._lock:
            try:
                st = os.stat(self.file)
                text = self.file.read_text()
            except (OSError, UnicodeDecodeError) as exc:
                if self._stamp is not None:  # was readable: say so once
                    _log.warning("token file unreadable", file=str(self.file), error=str(exc))
                self._stamp, self._from_file, self._recent = None, (), False
                return
            stamp = (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
            if stamp != self._stamp:
                _log.info("token file read", file=str(self.file))
            self._from_file = tuple(_digest(t) for t in parse_token_file(text))
            self._stamp = stamp
            self._recent = time.time() - st.st_mtime_ns / 1e9 < _RECENT_S


def bearer_token(headers: dict[str, list[Any]]) -> str | None:
    """The token of an ``authorization: Bearer <token>`` header, if there is one."""
    for value in headers.get("authorization", []):
        text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
        scheme, _, token = text.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
    return None


class BearerAuth(flight.ServerMiddlewareFactory):  # type: ignore[misc]
    """Refuses every Flight call without an accepted bearer token (before the method runs)."""

    def __init__(self, tokens: TokenSet) -> None:
        super().__init__()
        self.tokens = tokens

    def start_call(self, info: Any, headers: dict[str, list[Any]]) -> Authenticated:
        token = bearer_token(headers)
        name = getattr(info.method, "name", str(info.method))  # DO_GET -> DoGet
        method = "".join(part.capitalize() for part in name.split("_"))
        if token is None:
            _log.info("call refused: no bearer token", method=method)
            raise flight.FlightUnauthenticatedError(
                f"Klaw server: {method} needs a bearer token, and none was sent. "
                + MISSING_TOKEN_HINT
            )
        if not self.tokens.accepts(token):
            _log.info("call refused: token not accepted", method=method)
            raise flight.FlightUnauthenticatedError(
                f"Klaw server: the bearer token sent with {method} is not accepted. "
                + MISSING_TOKEN_HINT
            )
        return Authenticated(f"flight:{_digest(token).hex()[:12]}")


class Authenticated(flight.ServerMiddleware):  # type: ignore[misc]
    """Who made a call (``context.get_middleware("auth")``): ``subject`` names their token
    by its digest, never the token itself."""

    def __init__(self, subject: str) -> None:
        super().__init__()
        self.subject = subject
