"""Commands about API tokens for ``klaw api``: tokens create, list, revoke. They act on the
metadata database of the project on this machine (where ``klaw api`` looks tokens up), so they
refuse to run with ``--server`` / ``KLAW_SERVER``. A token is shown once, when it is made; the
database keeps only the SHA-256 of its secret."""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING, Annotated, Any

import typer

from klaw.cli.app import STATE, OutputOpt, app
from klaw.cli.backend import refuse_remote
from klaw.cli.output import Format, console, emit_json, table, when

if TYPE_CHECKING:
    from klaw.metadata.records import TokenRecord
    from klaw.metadata.store import TokenStore

tokens_app = typer.Typer(
    help="API tokens for `klaw api`: create, list and revoke them.", no_args_is_help=True
)
app.add_typer(tokens_app, name="tokens")


def _store(command: str) -> TokenStore:
    refuse_remote(STATE.server or STATE.url, command)
    return STATE.orchestrator().metadata


def _public(record: TokenRecord, now: float) -> dict[str, Any]:
    """What may be shown of a token: never its secret nor the secret's hash."""
    if record.revoked_at is not None:
        state = "revoked"
    elif not record.live(now):
        state = "expired"
    else:
        state = "active"
    return {
        "id": record.token_id,
        "name": record.name,
        "role": record.role,
        "state": state,
        "created_at": record.created_at,
        "expires_at": record.expires_at,
        "revoked_at": record.revoked_at,
        "last_used_at": record.last_used_at,
    }


@tokens_app.command("create")
def tokens_create(
    role: Annotated[
        str, typer.Option("--role", help="viewer, operator, approver or admin.", show_default=False)
    ],
    name: Annotated[
        str, typer.Option("--name", help="Who or what uses it (ci, alice).", show_default=False)
    ],
    expires: Annotated[
        str | None,
        typer.Option(
            "--expires",
            help="Valid for this long: 45s, 90m, 1.5h, 30d, 2w (default: until revoked).",
        ),
    ] = None,
    output: OutputOpt = Format.TABLE,
) -> None:
    """Make a token with a role. It is printed once: store it now, it cannot be shown again."""
    from klaw.durations import parse_duration
    from klaw.service.tokens import create_token, parse_role

    label = parse_role(role)
    expires_in = None if expires is None else parse_duration(expires, flag="--expires")
    issued = create_token(
        _store("klaw tokens create"), name=name, role=label, expires_in=expires_in
    )
    if output is Format.JSON:
        emit_json({**_public(issued.record, time.time()), "token": issued.token})
        return
    record = issued.record
    until = "until revoked" if record.expires_at is None else f"until {when(record.expires_at)}"
    sys.stdout.write(f"{issued.token}\n")
    sys.stdout.flush()
    console().print(
        f"token {record.token_id} ({record.name}, role {record.role}) is valid {until}; it is "
        "shown only now. Send it as 'Authorization: Bearer <token>'; "
        f"revoke it with `klaw tokens revoke {record.token_id}`.",
        highlight=False,
    )


@tokens_app.command("list")
def tokens_list(output: OutputOpt = Format.TABLE) -> None:
    """List tokens: id, name, role, state and times (never a secret)."""
    now = time.time()
    found = [_public(record, now) for record in _store("klaw tokens list").list_tokens()]
    if output is Format.JSON:
        emit_json(found)
        return
    if not found:
        console().print(
            "no API tokens: make one with `klaw tokens create --role viewer --name NAME`",
            highlight=False,
        )
        return
    table(
        "API tokens",
        ["id", "name", "role", "state", "created", "expires", "last used"],
        [
            [
                t["id"],
                t["name"],
                t["role"],
                t["state"],
                when(t["created_at"]),
                when(t["expires_at"]),
                when(t["last_used_at"]),
            ]
            for t in found
        ],
    )


@tokens_app.command("revoke")
def tokens_revoke(
    token_id: Annotated[
        str, typer.Argument(metavar="ID", help="The token's id (klaw tokens list).")
    ],
    output: OutputOpt = Format.TABLE,
) -> None:
    """Revoke a token: `klaw api` refuses it from its next request on."""
    from klaw.service.tokens import revoke_token

    record = revoke_token(_store("klaw tokens revoke"), token_id)
    if output is Format.JSON:
        emit_json(_public(record, time.time()))
        return
    console().print(
        f"token {record.token_id} ({record.name}) is revoked since {when(record.revoked_at)}",
        highlight=False,
    )
