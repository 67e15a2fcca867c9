"""Errors across the wire: a KlawError raised on the server becomes a Flight error whose message
is Klaw's (with its hint) and whose ``extra_info`` is the MessagePack :class:`ErrorReply`; the
client turns that back into the KlawError subclass its code names. Nothing else crosses: a bug
on the server is logged there with its traceback and reaches the client as one sentence.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, Final

from pyarrow import flight

from klaw import errors
from klaw.api.flight import tickets
from klaw.errors import AuthError, GraphError, KlawError, RemoteError
from klaw.observability import get_logger
from klaw.service import commands
from klaw.service.commands import ErrorReply, decode_reply, encode, error_reply

_log: Final = get_logger(__name__)


class UnknownActionError(KlawError):
    """A Flight call this server does not offer (an unknown action type, DoExchange)."""


def to_flight(exc: KlawError) -> Exception:
    """The Flight error that carries ``exc`` to the client."""
    text = exc.message if exc.hint is None else f"{exc.message} (hint: {exc.hint})"
    extra = encode(error_reply(exc))
    error: Exception
    if isinstance(exc, AuthError):
        error = flight.FlightUnauthenticatedError(text, extra_info=extra)
    else:
        error = flight.FlightServerError(text, extra_info=extra)
    return error


def internal(exc: BaseException, where: str) -> Exception:
    """A bug: logged here with its traceback, one sentence for the client."""
    _log.error("flight call failed", method=where, error=repr(exc), exc_info=True)
    reply = ErrorReply(
        code="InternalError",
        message=f"Internal error in {where}: {type(exc).__name__}: {exc}",
        hint="This is a bug in Klaw; the server log has the traceback.",
    )
    error: Exception = flight.FlightInternalError(
        f"{reply.message} ({reply.hint})", extra_info=encode(reply)
    )
    return error


@contextlib.contextmanager
def guarded(where: str) -> Iterator[None]:
    """Let only Flight errors out of a Flight method (a Python exception would send the
    server's traceback to the client)."""
    try:
        yield
    except flight.FlightError:
        raise
    except KlawError as exc:
        raise to_flight(exc) from None
    except Exception as exc:
        raise internal(exc, where) from None


# -- the client side -------------------------------------------------------------------------
def _known() -> dict[str, type[KlawError]]:
    found: dict[str, type[KlawError]] = {}
    for module in (errors, commands, tickets):
        for name, value in vars(module).items():
            if isinstance(value, type) and issubclass(value, KlawError):
                found[name] = value
    found[UnknownActionError.__name__] = UnknownActionError
    return found


_KNOWN: Final = _known()


def from_reply(reply: ErrorReply) -> KlawError:
    """The KlawError an ErrorReply stands for: the class its code names when this Klaw has it,
    else a :class:`RemoteError` that keeps the code."""
    cls = _KNOWN.get(reply.code)
    exc: KlawError | None = None
    if cls is not None:
        try:
            if issubclass(cls, GraphError):
                exc = cls([reply.message], hint=reply.hint)
            else:
                exc = cls(reply.message, hint=reply.hint)
        except TypeError:  # a class with a constructor of its own: keep the code instead
            exc = None
    if exc is None:
        exc = RemoteError(reply.message, hint=reply.hint)
        exc.code = reply.code
    return exc


def reply_of(exc: Any) -> ErrorReply | None:
    """The ErrorReply a Klaw server put in a Flight error, if there is one."""
    extra = getattr(exc, "extra_info", None)
    if not extra:
        return None
    try:
        reply = decode_reply(bytes(extra))
    except KlawError:
        return None
    return reply if isinstance(reply, ErrorReply) else None
