"""The MessagePack codec of commands and replies. :func:`decode` refuses bad input with a
:class:`~klaw.errors.CommandError` subclass whose message names the command and field; its
class name is the stable error code."""

from __future__ import annotations

import difflib
import re
from typing import Final

import msgspec

from klaw.errors import (
    CommandTooLargeError,
    InvalidCommandError,
    MalformedCommandError,
    UnknownCommandError,
    UnsupportedVersionError,
)
from klaw.protocol.commands import COMMANDS, VERSIONS, Command
from klaw.protocol.replies import Reply

MAX_COMMAND_BYTES: Final = 1024 * 1024  # 1 MiB: commands carry references, never data

_encoder: Final = msgspec.msgpack.Encoder()
_command_decoder: Final[msgspec.msgpack.Decoder[Command]] = msgspec.msgpack.Decoder(Command)
_reply_decoder: Final[msgspec.msgpack.Decoder[Reply]] = msgspec.msgpack.Decoder(Reply)
_AT = re.compile(r" - at `\$\.?([^`]*)`$")
_MISSING = re.compile(r"missing required field `([^`]*)`")


def encode(value: Command | Reply) -> bytes:
    """MessagePack bytes of a command (or a reply)."""
    return _encoder.encode(value)


def decode(data: bytes) -> Command:
    """The command in ``data``; a :class:`CommandError` subclass names what is wrong."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedCommandError(
            f"A command must be MessagePack bytes, not {type(data).__name__}."
        )
    if len(data) > MAX_COMMAND_BYTES:
        raise CommandTooLargeError(
            f"Command of {len(data)} bytes is over the limit of {MAX_COMMAND_BYTES} bytes.",
            hint="Commands carry references (asset key, snapshot id), never data.",
        )
    try:
        raw = msgspec.msgpack.decode(data)
    except msgspec.DecodeError as exc:
        raise MalformedCommandError(
            f"Command is not valid MessagePack: {exc}.",
            hint="Build commands with klaw.protocol.encode.",
        ) from None
    tag = raw.get("type") if isinstance(raw, dict) else None
    if not isinstance(tag, str):
        raise MalformedCommandError(
            "A command must be a MessagePack map with a string field 'type' naming the "
            f"command; got {type(raw).__name__}"
            + (" without 'type'." if isinstance(raw, dict) else "."),
            field="type",
            hint=f"Commands: {', '.join(COMMANDS)}.",
        )
    if tag not in COMMANDS:
        close = difflib.get_close_matches(tag, list(COMMANDS), n=3)
        raise UnknownCommandError(
            f"Unknown command {tag!r}" + (f"; did you mean {', '.join(close)}?" if close else "."),
            command=tag,
            field="type",
            hint=f"Commands: {', '.join(COMMANDS)}.",
        )
    version = raw.get("version", 1)
    known = VERSIONS[tag]
    if type(version) is int and version > known:
        raise UnsupportedVersionError(
            f"{tag} version {version} is newer than this Klaw supports (version {known}).",
            command=tag,
            field="version",
            hint="Upgrade Klaw on this side, or send the older version.",
        )
    try:
        return _command_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise _invalid(tag, str(exc)) from None


def decode_reply(data: bytes) -> Reply:
    """The reply in ``data`` (the client side of :meth:`Dispatcher.handle`)."""
    try:
        return _reply_decoder.decode(data)
    except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
        raise MalformedCommandError(f"Reply could not be decoded: {exc}.") from None


def _invalid(tag: str, detail: str) -> InvalidCommandError:
    field: str | None = None
    at = _AT.search(detail)
    if at is not None:
        field = at.group(1) or None
        detail = detail[: at.start()]
    missing = _MISSING.search(detail)
    if missing is not None:
        field = ".".join(filter(None, (field, missing.group(1))))
    where = f", field {field!r}" if field else ""
    return InvalidCommandError(
        f"Invalid {tag} command{where}: {detail}.",
        command=tag,
        field=field,
        hint=f"See the fields of klaw.protocol.{tag}.",
    )
