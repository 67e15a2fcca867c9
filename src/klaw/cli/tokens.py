"""Commands about API tokens for ``klaw api``: tokens create, list, revoke. They are typed
commands (``CreateToken``, ``ListTokens``, ``RevokeToken``): on the project's metadata database
here, or, with ``--server`` / ``--url``, on a server's (over HTTP they need the admin role). A
token is shown once, when it is made; the database keeps only the SHA-256 of its secret."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Annotated, Any

import msgspec
import typer

from klaw.cli.app import STATE, OutputOpt, app
from klaw.cli.backend import ask
from klaw.cli.output import Format, console, emit_json, table, when

if TYPE_CHECKING:
    from klaw.protocol import TokenView

tokens_app = typer.Typer(
    help="API tokens for `klaw api`: create, list and revoke them.", no_args_is_help=True
)
app.add_typer(tokens_app, name="tokens")


def _public(view: TokenView) -> dict[str, Any]:
    return msgspec.to_builtins(view)  # type: ignore[no-any-return]


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
    from klaw.protocol import CreateToken, TokenReply
    from klaw.service.tokens import parse_role

    label = parse_role(role)
    expires_in = None if expires is None else parse_duration(expires, flag="--expires")
    cmd = CreateToken(name=name, role=label, expires_in=expires_in)
    issued = ask(STATE.backend(), cmd, TokenReply)
    view = issued.token
    if output is Format.JSON:
        emit_json({**_public(view), "token": issued.secret})
        return
    until = "until revoked" if view.expires_at is None else f"until {when(view.expires_at)}"
    sys.stdout.write(f"{issued.secret}\n")
    sys.stdout.flush()
    console().print(
        f"token {view.id} ({view.name}, role {view.role}) is valid {until}; it is "
        "shown only now. Send it as 'Authorization: Bearer <token>'; "
        f"revoke it with `klaw tokens revoke {view.id}`.",
        highlight=False,
    )


@tokens_app.command("list")
def tokens_list(output: OutputOpt = Format.TABLE) -> None:
    """List tokens: id, name, role, state and times (never a secret)."""
    from klaw.protocol import ListTokens, TokensReply

    found = [_public(t) for t in ask(STATE.backend(), ListTokens(), TokensReply).tokens]
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
    from klaw.protocol import RevokeToken, TokenReply

    view = ask(STATE.backend(), RevokeToken(token_id=token_id), TokenReply).token
    if output is Format.JSON:
        emit_json(_public(view))
        return
    console().print(
        f"token {view.id} ({view.name}) is revoked since {when(view.revoked_at)}",
        highlight=False,
    )
