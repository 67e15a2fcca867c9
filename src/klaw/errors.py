"""Klaw's errors: one tree, one registry. Every message names the thing and says what to do.

The tree (``x``: a family worth catching; ``+`` / ``-``: its members)::

    * KlawError
      x DefinitionError             a workflow, stage or asset is defined wrongly
        + GraphError                  cycle, unknown dependency, duplicate (fields: problems)
        + WorkflowNotFoundError       no workflow of the project has that name
        + EngineError                 an engine is unknown, not installed, or cannot do it
        + SqlError                    a query the engine refused (fields: problem, name, line)
      x SelectionError              a --select expression is malformed or matches nothing
      x ParamsError                 run parameters failed validation
      x ConfigError                 klaw.toml, settings or environment
        + SecretNotFoundError         a klaw.Secret is in none of the places Klaw looks
        + ProjectImportError          a workflow module failed to import
      x UserCodeError               user code raised (fields: user_traceback)
        + OutputError                 a stage returned something Klaw cannot store
        + SqlStageError               an SQL stage failed while it ran
          - SqlSchemaError              ... because the SQL does not fit its tables
      x StorageError                the asset store
        + AssetNotFoundError
      x MetadataError               the metadata store
        + RunNotFoundError
        + ScheduleNotFoundError
        + RunConflictError            the workflow's concurrency limit is reached
        + StaleAttemptError           a report from an attempt that is no longer current
        + LeaseLostError              the attempt's lease was given up
        + MetadataUnavailableError    the database cannot be reached (worth retrying)
      x AuthError                   no token, or one that is not accepted
        + ForbiddenError              the caller's role is too low (HTTP 403)
      x CommandError                a command could not be decoded (fields: command, field)
        + MalformedCommandError       not MessagePack, or not a map with a ``type``
        + CommandTooLargeError
        + UnknownCommandError
        + InvalidCommandError         a field is missing, of the wrong type or out of range
        + UnsupportedVersionError
      x IdempotencyError            an Idempotency-Key that cannot be honoured
        + MalformedKeyError
        + KeyInProgressError
      x RateLimitedError            too many requests (fields: retry_after)
      x TicketError                 a Flight ticket or descriptor names no asset
      x UnknownActionError          a Flight call this server does not offer
      x RemoteError                 a server's error this client has no class for (fields: code)
        + ServerUnavailableError      no server answers at that address
      x LifecycleError              a pipeline version change that is not allowed
        + VersionNotFoundError        no such version (or approval request)
        + ReadOnlyVersionError        the version is in uat, prod or retired
        + PromotionError              a promotion that skips an environment, or is refused
        + ApprovalError               an approval the caller may not give
        + VersionBundleError          a bundle with a bad hash, signature or format
        + GitSyncError                a git repository that cannot be followed
      x ConfirmationError           an MCP tool call that needs a person's confirmation
        + ConfirmationRequiredError   ... and the client cannot ask for one
        + ConfirmationDeclinedError   ... and the person did not confirm
      x NotOverHttpError            a command with no route in the HTTP API
      x UnexpectedReplyError        a reply of the wrong kind
    * NonRetryableError             (not a KlawError) raise from a stage to skip its retries

Every subclass of :class:`KlawError` is registered by its class name when it is defined
(:func:`error_class`), and every one is built the same way, ``Cls(message, *, hint=None,
**fields)``: its *fields* are the keyword-only parameters of its constructor (other than
``hint``), each kept as the attribute of that name. So an error crosses a process or the wire
as ``(code, message, hint, fields)`` and comes back as its own class (``klaw.protocol.errors``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from enum import StrEnum
from types import MappingProxyType
from typing import Any, ClassVar, Final

_CLASSES: dict[str, type[KlawError]] = {}


class KlawError(Exception):
    """Root of every error Klaw raises on purpose.

    ``hint`` is the sentence that tells the user what to do next; the CLI prints it under the
    message. ``exit_code`` is what the CLI exits with (2: usage or definition error).
    ``fields`` names the attributes that travel with the error (see the module docstring).
    """

    exit_code = 2
    fields: ClassVar[tuple[str, ...]] = ()

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        code = cls.__init__.__code__
        first = code.co_argcount
        kwonly = code.co_varnames[first : first + code.co_kwonlyargcount]
        cls.fields = tuple(name for name in kwonly if name != "hint")
        _register(cls)

    def __str__(self) -> str:
        return self.message if self.hint is None else f"{self.message}\n  hint: {self.hint}"

    def __reduce__(self) -> tuple[Any, ...]:  # pickled as (class, message, hint, fields)
        args = (type(self), self.message, self.hint, self.field_values())
        return (rebuild, args, self.__dict__)

    def field_values(self) -> dict[str, Any]:
        """The error's fields, by name."""
        return {name: getattr(self, name) for name in self.fields}


def _register(cls: type[KlawError]) -> None:
    """Keep ``cls`` under its name. Two Klaw classes of one name are a bug; a class defined
    outside Klaw never hides one of Klaw's (re-defining the same class, a reload, replaces)."""
    known = _CLASSES.get(cls.__name__)
    if (
        known is not None
        and _is_klaw(known)
        and (known.__qualname__, known.__module__)
        != (
            cls.__qualname__,
            cls.__module__,
        )
    ):
        if _is_klaw(cls):
            raise TypeError(
                f"Two KlawError classes are named {cls.__name__}: {known.__module__} and "
                f"{cls.__module__}; error codes are class names, so rename one."
            )
        return
    _CLASSES[cls.__name__] = cls


def _is_klaw(cls: type) -> bool:
    return cls.__module__ == "klaw" or cls.__module__.startswith("klaw.")


def error_class(code: str) -> type[KlawError] | None:
    """The KlawError subclass an error code (its class name) names; None when none does."""
    return _CLASSES.get(code)


def error_classes() -> Mapping[str, type[KlawError]]:
    """Every registered KlawError class by code (a read-only view)."""
    return MappingProxyType(_CLASSES)


def rebuild(
    cls: type[KlawError], message: str, hint: str | None, fields: Mapping[str, Any]
) -> KlawError:
    """``cls`` made again from its message, hint and fields (unknown fields are dropped)."""
    known = {name: fields[name] for name in cls.fields if name in fields}
    return cls(message, hint=hint, **known)


_CLASSES[KlawError.__name__] = KlawError


# -- definitions -----------------------------------------------------------------------------
class DefinitionError(KlawError):
    """A workflow, stage or asset is defined wrongly (bad decorator use, bad params model)."""


class GraphError(DefinitionError):
    """The stages do not form a valid graph: a cycle, an unknown dependency, a duplicate name.

    ``problems`` lists every problem found, so one ``klaw validate`` reports them all; build
    one from them with :meth:`of`.
    """

    def __init__(
        self, message: str, *, problems: Sequence[str] = (), hint: str | None = None
    ) -> None:
        super().__init__(message, hint=hint)
        self.problems = list(problems) or [message]

    @classmethod
    def of(cls, problems: Sequence[str], *, hint: str | None = None) -> GraphError:
        """The error listing ``problems`` (its message: the one, or all of them)."""
        if len(problems) == 1:
            message = problems[0]
        else:
            message = f"{len(problems)} problems:\n" + "\n".join(f"  - {p}" for p in problems)
        return cls(message, problems=problems, hint=hint)


class WorkflowNotFoundError(DefinitionError):
    """A command named no workflow of the project."""


class EngineError(DefinitionError):
    """An engine is unknown, not installed, or asked for something it does not do."""


class SqlProblem(StrEnum):
    SYNTAX = "syntax"  # the query does not parse
    STATEMENT = "statement"  # not exactly one SELECT
    TABLE = "table"  # reads a table that is not there
    COLUMN = "column"  # names a column no table read has
    PARAMETER = "parameter"  # a query parameter without a value
    OTHER = "other"  # anything else the engine refused


class SqlError(DefinitionError):
    """A query the engine refused. ``line`` counts from the query's first line (1)."""

    def __init__(
        self,
        message: str,
        *,
        problem: SqlProblem | str = SqlProblem.OTHER,
        name: str | None = None,
        line: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        known = problem in SqlProblem.__members__.values()
        self.problem = SqlProblem(problem) if known else SqlProblem.OTHER
        self.name = name
        self.line = line


class SelectionError(KlawError):
    """A ``--select`` expression is malformed or matches nothing."""


class ParamsError(KlawError):
    """Run parameters failed validation against the workflow's params models."""


# -- configuration ---------------------------------------------------------------------------
class ConfigError(KlawError):
    """Project or settings configuration is missing or malformed (``klaw.toml``, env vars)."""


class SecretNotFoundError(ConfigError):
    """A secret a run's params refer to (``klaw.Secret``) is in none of the places Klaw looks."""


class ProjectImportError(ConfigError):
    """A workflow module named by the project failed to import."""


# -- user code -------------------------------------------------------------------------------
class NonRetryableError(Exception):
    """Raise from a stage to fail it at once, without using its remaining retries."""


class UserCodeError(KlawError):
    """User code raised. ``user_traceback`` keeps the user's own traceback text."""

    exit_code = 1

    def __init__(self, message: str, *, user_traceback: str = "", hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.user_traceback = user_traceback


class OutputError(UserCodeError):
    """A stage returned something Klaw cannot store or pass on (for example, not tabular)."""


class SqlStageError(UserCodeError):
    """An SQL stage failed while it ran; the message names the stage, file and line."""


class SqlSchemaError(SqlStageError, NonRetryableError):
    """The SQL does not fit the tables it was given (an unknown table, column or parameter,
    or SQL that does not parse): retrying cannot help."""


# -- stores ----------------------------------------------------------------------------------
class StorageError(KlawError):
    """The asset store failed or was asked for something it does not hold."""


class AssetNotFoundError(StorageError):
    """An asset key or snapshot does not exist."""


class MetadataError(KlawError):
    """The metadata store failed, is on an unknown schema, or lacks a record."""


class RunNotFoundError(MetadataError):
    """No run has the given id."""


class ScheduleNotFoundError(MetadataError):
    """No schedule has the given name (a schedule is named after its workflow)."""


class RunConflictError(MetadataError):
    """A run cannot start because the workflow's concurrency limit is reached."""


class StaleAttemptError(MetadataError):
    """A report from a stage attempt that is no longer the current one (its lease expired or
    it was given up): refused, so nothing of it is kept."""


class LeaseLostError(MetadataError):
    """The attempt's lease was given up: another attempt has (or will have) the stage."""


class MetadataUnavailableError(MetadataError):
    """The metadata database cannot be reached (down, restarting, network): worth retrying."""


# -- callers ---------------------------------------------------------------------------------
class AuthError(KlawError):
    """Authentication or authorisation failed."""


class ForbiddenError(AuthError):
    """The caller is known, but their role is below what the route needs (HTTP 403)."""


class CommandError(KlawError):
    """A command could not be decoded. ``command`` and ``field`` name what was wrong."""

    def __init__(
        self,
        message: str,
        *,
        command: str | None = None,
        field: str | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.command = command
        self.field = field


class MalformedCommandError(CommandError):
    """The bytes are not MessagePack, or not a map with a ``type`` field."""


class CommandTooLargeError(CommandError):
    """The encoded command is over ``klaw.protocol.MAX_COMMAND_BYTES``."""


class UnknownCommandError(CommandError):
    """The ``type`` field names no command."""


class InvalidCommandError(CommandError):
    """A field is missing, of the wrong type or out of range."""


class UnsupportedVersionError(CommandError):
    """The command's version is newer than this Klaw knows."""


class IdempotencyError(KlawError):
    """An ``Idempotency-Key`` that cannot be honoured (HTTP 409)."""


class MalformedKeyError(IdempotencyError):
    """The ``Idempotency-Key`` header is empty, too long or not printable (HTTP 422)."""


class KeyInProgressError(IdempotencyError):
    """The first request with the key is still being answered (409 with ``Retry-After``)."""


class RateLimitedError(KlawError):
    """Too many requests: ``retry_after`` is the whole seconds until one more is allowed."""

    def __init__(self, message: str, *, retry_after: int = 1, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.retry_after = retry_after


class TicketError(KlawError):
    """A ticket or descriptor does not name an asset (snapshot) the way Klaw expects."""


class UnknownActionError(KlawError):
    """A Flight call this server does not offer (an unknown action type, DoExchange)."""


# -- the client side -------------------------------------------------------------------------
class RemoteError(KlawError):
    """A Klaw server answered with an error this client has no class for, or failed to answer.
    ``code`` is the server's error code (its KlawError class name), when it sent one."""

    def __init__(self, message: str, *, code: str | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code


class ServerUnavailableError(RemoteError):
    """No Klaw server answers at the address the client was given."""


class LifecycleError(KlawError):
    """A change of pipeline versions, environments or approvals that is not allowed."""


class VersionNotFoundError(LifecycleError):
    """No such version of the workflow, or no such approval request."""


class ReadOnlyVersionError(LifecycleError):
    """The version is in uat, prod or retired: it cannot be changed, replaced or deleted."""


class PromotionError(LifecycleError):
    """A promotion, demotion or retirement the lifecycle refuses (it skips an environment,
    another is pending, the request was rejected, ...)."""


class ApprovalError(LifecycleError):
    """An approval the caller may not give (the requester, no approver role, not listed)."""


class VersionBundleError(LifecycleError):
    """A version bundle whose hash, signature or format does not check."""


class GitSyncError(LifecycleError):
    """A git repository that cannot be read or followed."""


class ConfirmationError(KlawError):
    """An MCP tool call that needs a person's confirmation did not get it."""


class ConfirmationRequiredError(ConfirmationError):
    """The tool needs a person's confirmation, and the client cannot ask for one (it offers
    no elicitation)."""


class ConfirmationDeclinedError(ConfirmationError):
    """The person asked to confirm the call did not."""


class NotOverHttpError(KlawError):
    """The command (or asset rows) has no route in the HTTP API."""


class UnexpectedReplyError(KlawError):
    """The other side answered a command with a reply of the wrong kind."""


INTERNAL: Final = "InternalError"  # the code of a bug on the server (no class: never rebuilt)
