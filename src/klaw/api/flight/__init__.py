"""Klaw over Arrow Flight: the server (``klaw server``), its bearer-token auth, and
``klaw.Client``. Typed commands travel as MessagePack in ``DoAction``; asset data as Arrow
record batches in ``DoGet`` / ``DoPut``. See ``docs/server.md``.

The names load on first use, so a program that only uses the client never imports the server
(and the orchestrator behind it)."""

import typing as _typing

if _typing.TYPE_CHECKING:
    from klaw.api.flight.auth import TokenSet as TokenSet
    from klaw.api.flight.client import Client as Client
    from klaw.api.flight.server import RunningServer as RunningServer
    from klaw.api.flight.server import serve as serve

_LAZY = {
    "Client": "klaw.api.flight.client",
    "RunningServer": "klaw.api.flight.server",
    "TokenSet": "klaw.api.flight.auth",
    "serve": "klaw.api.flight.server",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'klaw.api.flight' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = ["Client", "RunningServer", "TokenSet", "serve"]
