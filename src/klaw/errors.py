"""Klaw's error families. Every message names the thing and says what to do."""

from __future__ import annotations


class KlawError(Exception):
    """Root of every error Klaw raises on purpose.

    ``hint`` is the sentence that tells the user what to do next; the CLI prints it under the
    message. ``exit_code`` is what the CLI exits with (2: usage or definition error).
    """

    exit_code = 2

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message}\n  hint: {self.hint}"


class DefinitionError(KlawError):
    """A workflow, stage or asset is defined wrongly (bad decorator use, bad params model)."""


class GraphError(DefinitionError):
    """The stages do not form a valid graph: a cycle, an unknown dependency, a duplicate name.

    ``problems`` lists every problem found, so one ``klaw validate`` reports them all.
    """

    def __init__(self, problems: list[str], *, hint: str | None = None) -> None:
        if len(problems) == 1:
            message = problems[0]
        else:
            message = f"{len(problems)} problems:\n" + "\n".join(f"  - {p}" for p in problems)
        super().__init__(message, hint=hint)
        self.problems = problems


class SelectionError(KlawError):
    """A ``--select`` expression is malformed or matches nothing."""


class ParamsError(KlawError):
    """Run parameters failed validation against the workflow's params models."""


class ConfigError(KlawError):
    """Project or settings configuration is missing or malformed (``klaw.toml``, env vars)."""


class SecretNotFoundError(ConfigError):
    """A secret a run's params refer to (``klaw.Secret``) is in none of the places Klaw looks."""


class ProjectImportError(ConfigError):
    """A workflow module named by the project failed to import."""


class UserCodeError(KlawError):
    """User code raised. ``user_traceback`` keeps the user's own traceback text."""

    exit_code = 1

    def __init__(self, message: str, *, user_traceback: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.user_traceback = user_traceback


class OutputError(UserCodeError):
    """A stage returned something Klaw cannot store or pass on (for example, not tabular)."""


class NonRetryableError(Exception):
    """Raise from a stage to fail it at once, without using its remaining retries."""


class StorageError(KlawError):
    """The asset store failed or was asked for something it does not hold."""


class AssetNotFoundError(StorageError):
    """An asset key or snapshot does not exist."""


class MetadataError(KlawError):
    """The metadata store failed, is on an unknown schema, or lacks a record."""


class RunNotFoundError(MetadataError):
    """No run has the given id."""


class RunConflictError(MetadataError):
    """A run cannot start because the workflow's concurrency limit is reached."""


class StaleAttemptError(MetadataError):
    """A report from a stage attempt that is no longer the current one (its lease expired or
    it was given up): refused, so nothing of it is kept."""


class MetadataUnavailableError(MetadataError):
    """The metadata database cannot be reached (down, restarting, network): worth retrying."""


class AuthError(KlawError):
    """Authentication or authorisation failed."""


class RemoteError(KlawError):
    """A Klaw server answered with an error this client has no class for, or failed to answer.
    ``code`` is the server's error code (its KlawError class name), when it sent one."""

    code: str | None = None


class ServerUnavailableError(RemoteError):
    """No Klaw server answers at the address the client was given."""


class ScheduleNotFoundError(MetadataError):
    """No schedule has the given name (a schedule is named after its workflow)."""
