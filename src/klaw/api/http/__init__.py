"""Klaw's HTTP API: a thin FastAPI translation of the typed commands, with bearer auth and
roles. Needs the ``server`` extra (fastapi, uvicorn)."""

from klaw.api.http.app import create_app as create_app
from klaw.api.http.auth import Authenticator as Authenticator
from klaw.api.http.auth import ForbiddenError as ForbiddenError
from klaw.api.http.auth import Principal as Principal
from klaw.api.http.auth import Role as Role
from klaw.api.http.auth import StaticTokenAuthenticator as StaticTokenAuthenticator
from klaw.api.http.routes import ROLES as ROLES

__all__ = [
    "ROLES",
    "Authenticator",
    "ForbiddenError",
    "Principal",
    "Role",
    "StaticTokenAuthenticator",
    "create_app",
]
