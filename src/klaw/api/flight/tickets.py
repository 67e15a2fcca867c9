"""What names data on Klaw's Flight server: tickets (``DoGet``), descriptors (``GetFlightInfo``,
``GetSchema``, ``DoPut``) and the receipt ``DoPut`` sends back.

A ticket is MessagePack of :class:`AssetTicket`, ``{"key": "orders", "snapshot": 3}``
(``snapshot`` left out or nil: the latest). A descriptor is a path: ``[key]`` or
``[key, snapshot]`` with the snapshot id in decimal. Bad input raises :class:`TicketError`,
whose message names the field and says how to build a good one.
"""

from __future__ import annotations

from typing import Final

import msgspec

from klaw.errors import TicketError

MAX_TICKET_BYTES: Final = 64 * 1024


class AssetTicket(msgspec.Struct, frozen=True, kw_only=True):
    """One snapshot of one asset: the latest when ``snapshot`` is None."""

    key: str
    snapshot: int | None = None


class PutReceipt(msgspec.Struct, frozen=True, kw_only=True):
    """What ``DoPut`` answers (as the PutResult's app metadata): the snapshot it committed."""

    key: str
    snapshot: int
    rows: int


class FlightMeta(msgspec.Struct, frozen=True, kw_only=True):
    """The app metadata of a FlightInfo: which snapshot it describes and when it was made."""

    key: str
    snapshot: int
    committed_at: float
    snapshots: int  # how many snapshots the asset has


_encoder: Final = msgspec.msgpack.Encoder()
_ticket_decoder: Final = msgspec.msgpack.Decoder(AssetTicket)
_receipt_decoder: Final = msgspec.msgpack.Decoder(PutReceipt)
_meta_decoder: Final = msgspec.msgpack.Decoder(FlightMeta)
_HINT: Final = (
    'A ticket is MessagePack of {"key": "<asset>", "snapshot": <id or nil>}; take it from '
    "GetFlightInfo, or build it with klaw.api.flight.tickets.encode_ticket."
)


def encode_ticket(key: str, snapshot: int | None = None) -> bytes:
    return _encoder.encode(AssetTicket(key=key, snapshot=snapshot))


def decode_ticket(data: bytes) -> AssetTicket:
    if len(data) > MAX_TICKET_BYTES:
        raise TicketError(
            f"Ticket of {len(data)} bytes is over the limit of {MAX_TICKET_BYTES} bytes.",
            hint=_HINT,
        )
    try:
        return _ticket_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise TicketError(f"Ticket is not valid: {_field_message(str(exc))}.", hint=_HINT) from None
    except msgspec.DecodeError as exc:
        raise TicketError(f"Ticket is not Klaw MessagePack: {exc}.", hint=_HINT) from None


def encode_receipt(receipt: PutReceipt) -> bytes:
    return _encoder.encode(receipt)


def decode_receipt(data: bytes) -> PutReceipt:
    try:
        return _receipt_decoder.decode(data)
    except msgspec.DecodeError as exc:
        raise TicketError(
            f"The server's DoPut answer could not be decoded: {exc}.",
            hint="Use a client of the same Klaw version as the server.",
        ) from None


def encode_meta(meta: FlightMeta) -> bytes:
    return _encoder.encode(meta)


def decode_meta(data: bytes) -> FlightMeta | None:
    """The metadata of a Klaw FlightInfo; None when it has none (another server's)."""
    try:
        return _meta_decoder.decode(data) if data else None
    except msgspec.DecodeError:
        return None


def descriptor_path(path: list[bytes] | None) -> AssetTicket:
    """The asset (and snapshot) a path descriptor ``[key]`` or ``[key, snapshot]`` names."""
    hint = (
        "Describe an asset with a path descriptor: FlightDescriptor.for_path(key) or "
        "for_path(key, str(snapshot))."
    )
    parts = list(path or [])
    if not 1 <= len(parts) <= 2:
        raise TicketError(
            f"A descriptor path has 1 or 2 parts (key, snapshot); got {len(parts)}.", hint=hint
        )
    try:
        texts = [bytes(part).decode() for part in parts]
    except UnicodeDecodeError:
        raise TicketError("The descriptor path is not UTF-8 text.", hint=hint) from None
    if len(texts) == 1:
        return AssetTicket(key=texts[0])
    key, snapshot = texts
    if not snapshot.isdecimal():
        raise TicketError(
            f"The snapshot part of the descriptor path for asset {key!r} must be a snapshot id "
            f"in decimal; got {snapshot!r}.",
            hint=f"`klaw assets show {key}` lists its snapshot ids.",
        )
    return AssetTicket(key=key, snapshot=int(snapshot))


def _field_message(detail: str) -> str:
    """msgspec's ``Expected `int | null`, got `str` - at `$.snapshot``` as a sentence that
    names the field."""
    marker = " - at `$."
    if marker in detail:
        text, field = detail.split(marker, 1)
        return f"field {field.rstrip('`')!r}: {text}"
    return detail
