"""What the long-running commands share (``klaw server``, ``klaw api``, ``klaw dev``): waiting
for SIGINT/SIGTERM, running uvicorn on a thread, and the HTTP API's authenticator."""

from __future__ import annotations

import signal
import socket
import sys
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Final

from klaw.errors import ConfigError

if TYPE_CHECKING:
    from klaw.api.http import Authenticator
    from klaw.api.http.tokens import ChainAuthenticator
    from klaw.service.orchestrator import Orchestrator

STARTUP_WAIT: Final = 60.0  # seconds uvicorn may take to bind


class StopSignals:
    """Waits for SIGINT or SIGTERM. gRPC's threads may be the ones the kernel hands a signal
    to, which would not wake a main thread blocked on a lock; Python's wakeup fd is written
    whichever thread receives it, so the main thread waits on that instead."""

    SIGNALS = (signal.SIGINT, signal.SIGTERM)

    def __enter__(self) -> StopSignals:
        self._reader, self._writer = socket.socketpair()
        self._writer.setblocking(False)
        self._previous_fd = signal.set_wakeup_fd(self._writer.fileno(), warn_on_full_buffer=False)
        self._previous = {sig: signal.signal(sig, _ignore) for sig in self.SIGNALS}
        return self

    def wait(self) -> int:
        """Block until one of the signals arrives; its number."""
        while True:
            for number in self._reader.recv(64):
                if number in self.SIGNALS:
                    return number

    def __exit__(self, *exc_info: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(self._previous_fd)
        self._reader.close()
        self._writer.close()


def _ignore(signum: int, frame: FrameType | None) -> None:
    """A Python-level handler, so the signal is written to the wakeup fd and nothing else."""


def bound_port(server: object, thread: threading.Thread) -> int:
    """The port uvicorn listens on, once it does; ConfigError when it could not start."""
    import uvicorn

    assert isinstance(server, uvicorn.Server)
    deadline = time.monotonic() + STARTUP_WAIT
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        raise ConfigError(
            f"The HTTP API could not listen on {server.config.host}:{server.config.port}.",
            hint="Is the port in use? Pick another with --port (0: any free one).",
        )
    port: int = server.servers[0].sockets[0].getsockname()[1]
    return port


def split_list(text: str) -> list[str]:
    """The parts of a comma-separated setting."""
    return [part.strip() for part in text.split(",") if part.strip()]


def api_authenticator(orch: Orchestrator) -> ChainAuthenticator:
    """Static tokens (KLAW_API_TOKENS), then stored tokens, then OIDC JWTs (when configured).
    ConfigError when no way in exists: no static token, no live stored token, no issuer."""
    from klaw.api.http import StaticTokenAuthenticator
    from klaw.api.http.tokens import ChainAuthenticator, StoredTokenAuthenticator
    from klaw.service.tokens import has_live_token

    settings = orch.settings
    static = StaticTokenAuthenticator.parse(
        settings.api_tokens.get_secret_value() if settings.api_tokens else ""
    )
    chain: list[Authenticator] = [static] if len(static) else []
    chain.append(StoredTokenAuthenticator(orch.metadata))
    if settings.oidc_issuer:
        from klaw.api.http.oidc import JwtAuthenticator

        jwt_auth = JwtAuthenticator.from_settings(settings)
        if jwt_auth is not None:
            chain.append(jwt_auth)
    elif not len(static) and not has_live_token(orch.metadata):
        raise ConfigError(
            "No API tokens: KLAW_API_TOKENS is not set and the metadata database holds no live "
            "token; the API would refuse every call.",
            hint="Make a token with `klaw tokens create --role admin --name NAME`, or set "
            "KLAW_API_TOKENS=admin:<token>[,viewer:<token>...] (or KLAW_OIDC_ISSUER and "
            "KLAW_OIDC_AUDIENCE to accept JWTs).",
        )
    return ChainAuthenticator(chain)


def report_load_errors(orch: Orchestrator) -> None:
    """Say on stderr which workflow modules could not be loaded (a serving command goes on
    with the others)."""
    names = orch.workflow_names()
    for error in orch.load_errors.values():
        hint = f"\n  hint: {error.hint}" if error.hint else ""
        sys.stderr.write(f"error: {error.message}{hint}\n")
    if orch.load_errors:
        served = ", ".join(names) or "none"
        sys.stderr.write(f"Serving the other workflows: {served}\n")
        sys.stderr.flush()
