"""Errors on the wire: a KlawError as an :class:`ErrorReply` ``(code, message, hint, fields)``
and back. The code is the class name; :func:`klaw.errors.error_class` knows every class (the
registry fills itself as classes are defined), so the client raises the class the server
raised, fields and all. A code this side has no class for (a newer server) comes back as a
:class:`~klaw.errors.RemoteError` that keeps it."""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import suppress
from typing import Any

from klaw.errors import INTERNAL, KlawError, RemoteError, error_class, rebuild
from klaw.protocol.replies import ErrorReply


def error_reply(exc: KlawError) -> ErrorReply:
    """The reply that carries ``exc``."""
    return ErrorReply(
        code=type(exc).__name__, message=exc.message, hint=exc.hint, fields=exc.field_values()
    )


def internal_reply(message: str, hint: str) -> ErrorReply:
    """The reply for a bug on the server (it has no class: the client gets a RemoteError)."""
    return ErrorReply(code=INTERNAL, message=message, hint=hint)


def from_reply(reply: ErrorReply) -> KlawError:
    """The KlawError an ErrorReply stands for."""
    return from_parts(reply.code, reply.message, reply.hint, reply.fields)


def from_parts(
    code: str, message: str, hint: str | None, fields: Mapping[str, Any] | None = None
) -> KlawError:
    """The KlawError of class ``code`` (a RemoteError keeping ``code`` when this Klaw has no
    such class, or the fields do not fit it)."""
    cls = error_class(code)
    if cls is not None:
        with suppress(TypeError, ValueError):  # fields of another version: keep the code
            return rebuild(cls, message, hint, fields or {})
    return RemoteError(message, code=code, hint=hint)
