"""What the runner hands an executor, and what comes back. Only references cross: a stage's
inputs are named by upstream stage (value held by the executor) or by asset snapshot."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

import msgspec

from klaw.authoring.stage import StageDef
from klaw.ids import AssetRef
from klaw.metadata.records import LogRecord

if TYPE_CHECKING:
    from klaw.storage.store import AssetStore

AssetStoreFactory = Callable[[], "AssetStore"]


@dataclass(frozen=True, slots=True)
class InputRef:
    """Where one parameter's value comes from: the upstream stage's value in the executor's
    value store, or (when ``ref`` is set) a stored asset snapshot."""

    param: str
    upstream: str
    type: str
    ref: AssetRef | None = None


class Observed(msgspec.Struct, frozen=True):
    """What an attempt needs to be traced and its lineage told: its workflow, the W3C
    context (``traceparent``) of its run's span, and the telemetry settings a process that
    runs it (a process or Ray worker) configures itself with. Only set when telemetry is on."""

    workflow: str
    trace: dict[str, str]
    settings: dict[str, Any] | None = None


class Task(msgspec.Struct, frozen=True):
    """One attempt handed to an executor (a msgspec Struct: made once per attempt, so cheap)."""

    run_id: str
    stage: StageDef
    attempt: int
    token: str
    inputs: tuple[InputRef, ...]
    params: Any = None  # the validated params model instance, when the stage takes one
    keep_value: bool = True  # False when no downstream stage needs the value
    lease_until: float | None = None  # epoch seconds: the lease as granted at submit
    observed: Observed | None = None  # telemetry on: how to trace it

    @property
    def key(self) -> tuple[str, int]:
        return (self.stage.name, self.attempt)


class Phase(Enum):
    """The parts of an attempt the runner times separately. A stage's ``timeout`` covers only
    ``RUN`` (its own function); ``LOAD`` (reading its inputs) and ``COMMIT`` (storing its
    snapshot) are bounded by the ``stage_io_timeout`` setting instead."""

    LOAD = "load"
    RUN = "run"
    COMMIT = "commit"


class Started(msgspec.Struct, frozen=True):
    """Sent as an attempt of a stage with a timeout enters a phase, so each clock starts when
    that phase does (not while a worker process is still starting)."""

    stage: str
    attempt: int
    token: str
    phase: Phase = Phase.LOAD


class Outcome(msgspec.Struct):
    """How an attempt ended. ``error`` is set when it did not succeed (a msgspec Struct:
    made once per attempt, so cheap)."""

    stage: str
    attempt: int
    token: str
    started_at: float
    ended_at: float
    error: str | None = None
    traceback: str | None = None
    retryable: bool = True
    stopped: bool = False  # ended by a cancel or timeout that Klaw asked for
    lost: bool = False  # the worker died or the lease was lost: retried as a new attempt
    asset_key: str | None = None
    snapshot: int | None = None
    rows: int | None = None
    bytes: int | None = None
    logs: list[LogRecord] = msgspec.field(default_factory=list)
    value: Any = None  # process executors only: the value travels back to the parent's store
    load_s: float | None = None  # seconds spent reading and converting inputs (when it had any)
    commit_s: float | None = None  # seconds spent storing the asset snapshot (when it did)
    schema: list[tuple[str, str]] | None = None  # telemetry on: the snapshot's (column, type)

    @property
    def ok(self) -> bool:
        return self.error is None
