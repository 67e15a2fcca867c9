"""The errors of Klaw's MCP server: a call that needs a person's confirmation."""

from __future__ import annotations

from klaw.errors import KlawError


class ConfirmationRequiredError(KlawError):
    """The tool needs a person's confirmation, and the client cannot ask for one (it offers
    no elicitation)."""


class ConfirmationDeclinedError(KlawError):
    """The person asked to confirm the call did not."""
