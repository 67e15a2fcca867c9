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

from klaw.errors import AuthError, KlawError
from klaw.observability import get_logger
from klaw.protocol import ErrorReply, decode_reply, encode, error_reply, internal_reply

_log: Final = get_logger(__name__)


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
    reply = internal_reply(
        f"Internal error in {where}: {type(exc).__name__}: {exc}",
        "This is a bug in Klaw; the server log has the traceback.",
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
