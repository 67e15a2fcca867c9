"""What the long-running commands share (``klaw server``, ``klaw api``, ``klaw dev``): the
:class:`ServingHost` that starts and stops what they serve in one order, waiting for
SIGINT/SIGTERM, and the HTTP API's authenticator."""

from __future__ import annotations

import signal
import socket
import sys
import threading
import time
from types import FrameType
from typing import TYPE_CHECKING, Any, Final

from klaw import metrics
from klaw.errors import ConfigError

if TYPE_CHECKING:
    from fastapi import FastAPI

    from klaw.api.flight.server import RunningServer
    from klaw.api.http import Authenticator
    from klaw.api.http.login import LoginCodes
    from klaw.api.http.tokens import ChainAuthenticator
    from klaw.service.orchestrator import Orchestrator
    from klaw.triggers import TriggerService

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


def api_authenticator(orch: Orchestrator) -> ChainAuthenticator:
    """Static tokens (KLAW_HTTP__TOKENS), then stored tokens, then OIDC JWTs (when configured).
    ConfigError when no way in exists: no static token, no live stored token, no issuer."""
    from klaw.api.http import StaticTokenAuthenticator
    from klaw.api.http.tokens import ChainAuthenticator, StoredTokenAuthenticator
    from klaw.service.tokens import has_live_token

    settings = orch.settings
    static = StaticTokenAuthenticator.parse([t.get_secret_value() for t in settings.http.tokens])
    chain: list[Authenticator] = [static] if len(static) else []
    chain.append(StoredTokenAuthenticator(orch.metadata))
    if settings.http.oidc.issuer:
        from klaw.api.http.oidc import JwtAuthenticator

        jwt_auth = JwtAuthenticator.from_settings(settings)
        if jwt_auth is not None:
            chain.append(jwt_auth)
    elif not len(static) and not has_live_token(orch.metadata):
        raise ConfigError(
            "No API tokens: KLAW_HTTP__TOKENS is not set and the metadata database holds no live "
            "token; the API would refuse every call.",
            hint="Make a token with `klaw tokens create --role admin --name NAME`, or set "
            "KLAW_HTTP__TOKENS=admin:<token>[,viewer:<token>...] (or KLAW_HTTP__OIDC__ISSUER and "
            "KLAW_HTTP__OIDC__AUDIENCE to accept JWTs).",
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


class ServingHost:
    """What ``klaw server``, ``klaw api`` and ``klaw dev`` serve, started and stopped in one
    order. ``start`` keeps user code out of this process, then starts Flight (``flight``
    host/port), the HTTP API (``http`` host/port), recovery of runs a dead server left
    (``recover``), the cron triggers (``triggers``) and, in development, the reloader
    (``reload``); ``stop`` stops them the other way round, cancelling the runs it drives."""

    def __init__(
        self,
        orch: Orchestrator,
        *,
        flight: tuple[str, int] | None = None,
        http: tuple[str, int] | None = None,
        recover: bool = False,
        triggers: bool = False,
        reload: bool = False,
    ) -> None:
        self.orch = orch
        self._flight_at, self._http_at = flight, http
        self._recover, self._triggers, self._reload = recover, triggers, reload
        self.flight: RunningServer | None = None
        self.web: FastAPI | None = None
        self.http_url: str | None = None
        self.logins: LoginCodes | None = None  # the HTTP API's one-time login codes
        self.recovered: list[str] = []
        self._uvicorn: Any = None
        self._thread: threading.Thread | None = None
        self._ticker: TriggerService | None = None
        self._watcher: Any = None

    def start(self) -> ServingHost:
        orch = self.orch
        orch.check_lake()  # a lake in object storage is reachable before serving
        if self._http_at is not None:  # /metrics counts what this process and its workers do
            metrics.share(orch.settings.home)
        orch.isolate_user_code()  # runs and workflow imports happen in child processes
        report_load_errors(orch)  # a module that fails at import is named; the rest served
        settings = orch.settings
        if self._flight_at is not None:
            from klaw.api.flight.auth import TokenSet
            from klaw.api.flight.server import serve

            tokens = TokenSet.from_settings(settings, orch.project.root)
            host, port = self._flight_at
            self.flight = serve(orch, host=host, port=port, tokens=tokens)
        if self._http_at is not None:
            self._start_http(*self._http_at)
        if self._recover:
            self.recovered = [run.run_id for run in orch.recover()]
        if self._triggers:
            from klaw.triggers import TriggerService

            self._ticker = TriggerService(orch)
            self._ticker.start()
        if self._reload:
            from klaw.cli.reloader import Reloader

            self._watcher = Reloader(orch)
            self._watcher.start()
        return self

    def _start_http(self, host: str, port: int) -> None:
        import uvicorn

        from klaw.api.http import create_app
        from klaw.api.http.login import LoginCodes

        settings = self.orch.settings
        self.logins = LoginCodes()
        self.web = create_app(
            self.orch,
            api_authenticator(self.orch),
            allowed_hosts=settings.http.allowed_hosts,
            cors_origins=settings.http.cors_origins,
            logins=self.logins,
        )
        self._uvicorn = uvicorn.Server(
            uvicorn.Config(
                self.web,
                host=host,
                port=port,
                log_level="warning",
                timeout_graceful_shutdown=max(1, int(settings.executor.stop_grace)),
            )
        )
        # uvicorn off the main thread installs no signal handlers; the main thread waits
        self._thread = threading.Thread(target=self._uvicorn.run, name="klaw-http", daemon=True)
        self._thread.start()
        where = f"[{host}]" if ":" in host else host
        self.http_url = f"http://{where}:{bound_port(self._uvicorn, self._thread)}"

    def stop(self) -> None:
        grace = self.orch.settings.executor.stop_grace
        if self._watcher is not None:
            self._watcher.stop()
        if self._ticker is not None:
            self._ticker.stop()
        if self._uvicorn is not None:
            self._uvicorn.should_exit = True
        self.orch.shutdown(wait=grace)  # cancel the runs it drives, let them end
        if self.flight is not None:
            self.flight.stop()
        if self._thread is not None:
            self._thread.join(timeout=grace + 5.0)
        self.orch.shutdown(wait=grace)  # any started while it was stopping
        if self._http_at is not None:
            metrics.unshare()
