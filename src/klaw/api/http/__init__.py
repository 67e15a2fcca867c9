"""Klaw's HTTP API: a thin FastAPI translation of the typed commands, with bearer auth and
roles. Needs the ``server`` extra (fastapi, uvicorn).

The names load on first use, so a program that only uses the client
(:mod:`klaw.api.http.client`) never imports the app (and the service behind it)."""

import typing as _typing

if _typing.TYPE_CHECKING:
    from klaw.api.http.app import create_app as create_app
    from klaw.api.http.auth import Authenticator as Authenticator
    from klaw.api.http.auth import Principal as Principal
    from klaw.api.http.auth import Role as Role
    from klaw.api.http.auth import StaticTokenAuthenticator as StaticTokenAuthenticator
    from klaw.api.http.routes import ROLES as ROLES
    from klaw.errors import ForbiddenError as ForbiddenError

_LAZY = {
    "ROLES": "klaw.api.http.routes",
    "Authenticator": "klaw.api.http.auth",
    "ForbiddenError": "klaw.errors",
    "Principal": "klaw.api.http.auth",
    "Role": "klaw.api.http.auth",
    "StaticTokenAuthenticator": "klaw.api.http.auth",
    "create_app": "klaw.api.http.app",
}


def __getattr__(name: str) -> object:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'klaw.api.http' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)


__all__ = [
    "ROLES",
    "Authenticator",
    "ForbiddenError",
    "Principal",
    "Role",
    "StaticTokenAuthenticator",
    "create_app",
]
