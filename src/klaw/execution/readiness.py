"""Readiness: the pure state machine that decides what may run next.

No clock, no I/O, no threads: feed it what happened (a stage started, succeeded, failed,
was cancelled) and it answers with the transitions that follow. Any executor can drive it,
and it can be tested on its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import NamedTuple

from klaw.states import RunState, StageState

# members bound once: attribute access on an Enum class costs a descriptor call per use
PENDING = StageState.PENDING
READY = StageState.READY
RUNNING = StageState.RUNNING
SUCCEEDED = StageState.SUCCEEDED
FAILED = StageState.FAILED
RETRYING = StageState.RETRYING
SKIPPED = StageState.SKIPPED
UPSTREAM_FAILED = StageState.UPSTREAM_FAILED
CANCELLED = StageState.CANCELLED


class Transition(NamedTuple):
    """A stage entering a state (a NamedTuple: made several times per stage, so cheap)."""

    stage: str
    state: StageState
    attempt: int


class Readiness:
    """Stage states of one run.

    ``upstream`` maps every planned stage to the planned stages it waits for; ``retries``
    gives each stage's retry budget; ``done`` names stages already satisfied (reused from an
    earlier run), which count as succeeded and are never started; ``attempts_before`` gives
    the attempt number a stage's attempts continue from (a run taken over after a crash);
    ``downstream``, when given, is the inverse of ``upstream`` (saves making it again).
    An attempt that was *lost* (its worker died or its lease expired) is retried without
    using the stage's retry budget, up to ``MAX_LOST`` times.
    """

    MAX_LOST = 3

    def __init__(
        self,
        upstream: Mapping[str, tuple[str, ...]],
        retries: Mapping[str, int],
        *,
        fail_fast: bool = False,
        done: frozenset[str] = frozenset(),
        attempts_before: Mapping[str, int] | None = None,
        downstream: Mapping[str, Sequence[str]] | None = None,
    ) -> None:
        self._upstream = upstream
        if downstream is None:  # else given: the inverse of ``upstream``, already made
            made: dict[str, list[str]] = {name: [] for name in upstream}
            for name, ups in upstream.items():
                for up in ups:
                    made[up].append(name)
            downstream = made
        self._downstream: Mapping[str, Sequence[str]] = downstream
        self._retries = retries
        self._fail_fast = fail_fast
        self.state: dict[str, StageState] = {}
        self.attempt: dict[str, int] = dict.fromkeys(upstream, 0)
        if attempts_before:
            self.attempt.update({k: v for k, v in attempts_before.items() if k in upstream})
        # attempts that do not count against the retry budget: earlier ones, and lost ones
        self._free: dict[str, int] = dict(self.attempt)
        self._lost: dict[str, int] = {}
        self._waiting: dict[str, int] = {}
        self._open = 0  # stages not yet terminal
        self._failed = False
        self._cancelled = False
        for name in upstream:
            if name in done:
                self.state[name] = SUCCEEDED
            else:
                self.state[name] = PENDING
                self._open += 1
        for name, ups in upstream.items():
            self._waiting[name] = sum(1 for up in ups if self.state[up] is not SUCCEEDED)

    # -- queries -----------------------------------------------------------------------------
    @property
    def finished(self) -> bool:
        return self._open == 0

    @property
    def run_state(self) -> RunState:
        if not self.finished:
            return RunState.RUNNING
        if self._cancelled:
            return RunState.CANCELLED
        return RunState.FAILED if self._failed else RunState.SUCCEEDED

    def remaining_retries(self, stage: str) -> int:
        return self._retries.get(stage, 0) - (self.attempt[stage] - 1 - self._free[stage])

    # -- events ------------------------------------------------------------------------------
    def start(self) -> list[Transition]:
        """The stages that are ready at the beginning of the run."""
        return [
            self._ready(name)
            for name, st in self.state.items()
            if st is PENDING and self._waiting[name] == 0
        ]

    def started(self, stage: str) -> Transition:
        self._expect(stage, READY)
        self.state[stage] = RUNNING
        return Transition(stage, RUNNING, self.attempt[stage])

    def succeeded(self, stage: str) -> list[Transition]:
        """The stage succeeded; returns its transition and the stages it made ready."""
        self._expect(stage, RUNNING)
        out = [self._end(stage, SUCCEEDED)]
        if self._cancelled or (self._fail_fast and self._failed):
            return out
        for down in self._downstream[stage]:
            self._waiting[down] -= 1
            if self._waiting[down] == 0 and self.state[down] is PENDING:
                out.append(self._ready(down))
        return out

    def failed(
        self, stage: str, *, retryable: bool = True, state: StageState = FAILED
    ) -> list[Transition]:
        """The attempt failed (``FAILED``) or ran out of time (``TIMED_OUT``). Returns
        ``RETRYING`` when the stage has retries left, otherwise its final state and
        ``UPSTREAM_FAILED`` for everything downstream (and with fail-fast, ``SKIPPED`` for
        every stage not yet started)."""
        self._expect(stage, RUNNING)
        if retryable and not self._cancelled and self.remaining_retries(stage) > 0:
            self.state[stage] = RETRYING
            return [Transition(stage, RETRYING, self.attempt[stage])]
        self._failed = True
        out = [self._end(stage, state)]
        out.extend(self._fail_downstream(stage))
        if self._fail_fast:
            out.extend(self._skip_unstarted())
        return out

    def lost(self, stage: str) -> list[Transition]:
        """The attempt was lost (worker gone, lease expired): it goes back to ``RETRYING`` as
        a new attempt, without using a retry, unless it was lost ``MAX_LOST`` times."""
        self._expect(stage, RUNNING)
        lost = self._lost[stage] = self._lost.get(stage, 0) + 1
        if lost <= self.MAX_LOST and not self._cancelled:
            self._free[stage] += 1
            self.state[stage] = RETRYING
            return [Transition(stage, RETRYING, self.attempt[stage])]
        return self.failed(stage, retryable=False)

    def retry_due(self, stage: str) -> Transition:
        """A retrying stage's wait is over: it is ready again as a new attempt."""
        self._expect(stage, RETRYING)
        return self._ready(stage)

    def stopped(self, stage: str) -> Transition:
        """A running stage was stopped by a cancel."""
        self._expect(stage, RUNNING)
        return self._end(stage, CANCELLED)

    def cancel(self) -> list[Transition]:
        """Cancel the run: every stage not started or waiting to retry ends ``CANCELLED``.
        Running stages stay running until the executor reports them stopped."""
        self._cancelled = True
        return [
            self._end(name, CANCELLED)
            for name, st in list(self.state.items())
            if st in (PENDING, READY, RETRYING)
        ]

    # -- internals ---------------------------------------------------------------------------
    def _ready(self, stage: str) -> Transition:
        self.attempt[stage] += 1
        self.state[stage] = READY
        return Transition(stage, READY, self.attempt[stage])

    def _end(self, stage: str, state: StageState) -> Transition:
        self.state[stage] = state
        self._open -= 1
        return Transition(stage, state, self.attempt[stage])

    def _fail_downstream(self, stage: str) -> list[Transition]:
        out = []
        stack = list(self._downstream[stage])
        while stack:
            down = stack.pop()
            if self.state[down] is PENDING:
                out.append(self._end(down, UPSTREAM_FAILED))
                stack.extend(self._downstream[down])
        return out

    def _skip_unstarted(self) -> list[Transition]:
        return [
            self._end(name, SKIPPED)
            for name, st in list(self.state.items())
            if st in (PENDING, READY, RETRYING)
        ]

    def _expect(self, stage: str, state: StageState) -> None:
        if self.state[stage] is not state:
            raise ValueError(f"stage {stage!r} is {self.state[stage].value}, not {state.value}")
