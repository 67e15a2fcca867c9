"""What a stage asks of the machine, and how it is retried."""

from __future__ import annotations

from dataclasses import dataclass, field

from klaw.errors import DefinitionError


@dataclass(frozen=True, slots=True)
class Resources:
    """Resources a stage needs: CPUs, GPUs, memory in bytes, and named custom resources."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory: int | None = None
    custom: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, value in (("cpus", self.cpus), ("gpus", self.gpus)):
            if value < 0:
                raise DefinitionError(f"Resources.{name} is {value}; it must be 0 or more.")
        if self.memory is not None and self.memory <= 0:
            raise DefinitionError(f"Resources.memory is {self.memory}; give bytes, more than 0.")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failing stage is retried: ``retries`` more attempts, waiting
    ``delay * backoff**(n-1)`` seconds (at most ``max_delay``) before retry ``n``.

    Exceptions that subclass :class:`klaw.NonRetryableError`, and errors in what a stage
    returns, are never retried.
    """

    retries: int = 0
    delay: float = 1.0
    backoff: float = 2.0
    max_delay: float = 300.0

    def __post_init__(self) -> None:
        if self.retries < 0:
            raise DefinitionError(f"retries is {self.retries}; it must be 0 or more.")
        if self.delay < 0 or self.backoff < 1 or self.max_delay < 0:
            raise DefinitionError(
                "A retry policy needs delay >= 0, backoff >= 1 and max_delay >= 0; "
                f"got delay={self.delay}, backoff={self.backoff}, max_delay={self.max_delay}."
            )

    def wait_before(self, retry: int) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        return float(min(self.max_delay, self.delay * self.backoff ** (retry - 1)))


NO_RETRY = RetryPolicy()
