"""The Ray executor: each stage attempt runs as a Ray task, on a local Ray or on a cluster.

Data moves through Ray's object store, never through this process. A task returns its outcome
and its value as two objects; the runner's value store holds the value's ``ObjectRef``, and a
downstream task receives its upstream refs as arguments, which Ray resolves where it runs.
Asset snapshots are committed by the worker that ran the stage. Ray calls back when an
outcome is ready (``ObjectRef.future()``), and the callback delivers it: no thread waits and
nothing polls; the driver never fetches a value.

Ray retries nothing (``max_retries=0``): retries are the runner's. A stop force-cancels the
task, which kills its worker process; a worker that dies under a stage gives a retryable
failure. A stage with a timeout is reported loading when it is submitted (Ray does not tell
the driver when a task begins), so the I/O bound covers its wait for a worker; the worker
tells a small actor (the phase board, made on first use) when the stage's function starts and
when its snapshot is stored, and the driver takes those notes as they come (one call pending
at a time, answered when there are notes: nothing polls). The stage's own timeout starts when
its function does.

Workers import stage modules by name: each attempt carries the driver's ``sys.path``, which a
worker adds to its own before it loads the stage. Those paths must exist on every node (one
machine, or a shared file system).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import pickle
import socket
import sys
import threading
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import ray
from ray import exceptions as ray_errors

from klaw import telemetry
from klaw.authoring.resources import Resources
from klaw.authoring.stage import StageDef
from klaw.errors import ConfigError
from klaw.execution.executor import Deliver
from klaw.execution.invoke import invoke
from klaw.execution.lease import LeaseKeeper
from klaw.execution.local import stopped_outcome
from klaw.execution.task import AssetStoreFactory, Outcome, Phase, Started, Task
from klaw.execution.values import ValueStore

_CONNECT_TIMEOUT = 5.0  # seconds to reach a cluster's address before giving up
_STORES_KEPT = 4  # asset-store factories a worker process keeps open (one per executor)

Ref = ray.ObjectRef[Any]


@dataclass(slots=True)
class _Flight:
    task: Task
    value: Ref
    abandoned: bool = False


class RayExecutor:
    """Runs attempts as Ray tasks: on the cluster at ``address``, on the Ray this process is
    already connected to, or else on a local Ray it starts (and stops on :meth:`close`).
    ``max_workers`` bounds the attempts in flight (default: the cluster's CPUs)."""

    def __init__(
        self,
        assets: AssetStoreFactory,
        max_workers: int | None = None,
        address: str | None = None,
        leases: LeaseKeeper | None = None,
    ) -> None:
        self._assets = assets
        self._leases = leases
        self._max_workers = max_workers
        self._address = address
        self._size = max_workers or 1
        self._context = b""  # what every attempt carries: this executor's id, paths, assets
        self._lock = threading.Condition()
        self._flights: dict[Ref, _Flight] = {}  # outcome ref -> attempt
        self._refs: dict[tuple[str, int], Ref] = {}  # task key -> outcome ref
        self._stopping: set[tuple[str, int]] = set()
        self._remotes: dict[str, Any] = {}  # stage -> remote function, or why it cannot run
        self._nodes: list[dict[str, float]] = []
        self._deliver: Deliver | None = None
        self._values: ValueStore | None = None
        self._board: Any = None  # the phase board actor, made for the first timed stage
        self._taking: Ref | None = None  # the driver's pending call for the board's notes
        self._started = False
        self._closed = False

    @property
    def capacity(self) -> int:
        return self._size

    def open(self, deliver: Deliver, values: ValueStore) -> None:
        self._deliver, self._values = deliver, values
        try:
            self._context = pickle.dumps(
                (uuid.uuid4().hex, _code_path(), (self._assets, self._leases))
            )
        except Exception as exc:
            raise ConfigError(
                f"The asset store factory {self._assets!r} cannot be sent to Ray workers: {exc}"
            ) from None
        self._started = _connect(self._address)
        self._nodes = _nodes()
        cpus = sum(node.get("CPU", 0.0) for node in self._nodes)
        # Ray queues and places tasks itself: keep a few per CPU in flight so a worker never
        # waits for the runner (a submitted task counts as running)
        self._size = self._max_workers or max(4, 4 * int(cpus))

    def submit(self, task: Task) -> None:
        deliver, values = self._deliver, self._values
        assert deliver is not None and values is not None
        stage = task.stage
        remote = self._remotes.get(stage.name)
        if remote is None:
            remote = self._remotes[stage.name] = self._remote_for(stage)
        if isinstance(remote, str):  # no node can run it: fail now rather than wait forever
            _fail(deliver, task, remote)
            return
        names = tuple(i.upstream for i in task.inputs if i.ref is None)
        board = self._phase_board() if stage.timeout is not None else None
        try:
            payload = pickle.dumps((task, names), pickle.HIGHEST_PROTOCOL)
            outcome, value = remote.remote(
                self._context, payload, board, *(values.get(n) for n in names)
            )
        except Exception as exc:  # params that cannot be pickled, or Ray refused the task
            error = f"{type(exc).__name__}: {exc}"
            _fail(deliver, task, f"Stage {stage.name!r} could not be sent to Ray: {error}")
            return
        if stage.timeout is not None:  # before the waiter knows of it, so before its outcome
            deliver(Started(stage.name, task.attempt, task.token))
        with self._lock:
            self._flights[outcome] = _Flight(task, value)
            self._refs[task.key] = outcome
        # Ray calls back when the outcome is ready: no thread waits, nothing polls
        outcome.future().add_done_callback(functools.partial(self._done, outcome))

    def _phase_board(self) -> Any:
        """The actor timed attempts report their phases to, started on first use."""
        with self._lock:
            board, made = self._board, False
            if board is None:
                board = self._board = _board_actor().remote()
                made = True
        if made:
            self._take_notes()
        return board

    def _take_notes(self) -> None:
        with self._lock:
            if self._closed or self._board is None:
                return
            self._taking = self._board.take.remote()
            taking = self._taking
        taking.future().add_done_callback(self._noted)

    def _noted(self, future: Any) -> None:
        """Ray's callback with the board's notes: each is a timed attempt entering a phase."""
        deliver = self._deliver
        if self._closed or deliver is None or future.exception() is not None:
            return  # the board goes away with the executor
        for stage, attempt, token, phase in future.result():
            deliver(Started(stage, attempt, token, Phase(phase)))
        self._take_notes()

    def _remote_for(self, stage: StageDef) -> Any:
        """The remote function with the stage's resources, or the reason it cannot run."""
        res = stage.resources
        wanted = _request(res)
        if not any(_fits(wanted, node) for node in self._nodes):
            self._nodes = _nodes()  # the cluster may have grown since
            if not any(_fits(wanted, node) for node in self._nodes):
                return _unsatisfiable(stage.name, res, wanted, self._nodes)
        try:  # one remote function per distinct request: per-call ``.options()`` costs
            return _remote_attempt(res.cpus, res.gpus, res.memory, tuple(res.custom.items()))
        except (ValueError, TypeError) as exc:
            return f"Stage {stage.name!r}: Ray does not accept its resources ({res}): {exc}"

    def _done(self, ref: Ref, future: Any) -> None:
        """Ray's callback for a finished outcome (runs on a Ray thread): deliver it."""
        deliver, values = self._deliver, self._values
        assert deliver is not None and values is not None
        with self._lock:
            flight = self._flights.pop(ref, None)
            if flight is None:
                return
            key = flight.task.key
            if self._refs.get(key) is ref:
                del self._refs[key]
            stopping = key in self._stopping
            self._stopping.discard(key)
            if not self._flights:
                self._lock.notify_all()
        error = future.exception()
        outcome = future.result() if error is None else _lost(flight, error, stopping)
        if flight.abandoned:
            return
        if outcome.ok and flight.task.keep_value:
            values.put(flight.task.stage.name, flight.value)
        deliver(outcome)

    def stop(self, task: Task) -> None:
        with self._lock:
            ref = self._refs.get(task.key)
            if ref is None or task.key in self._stopping:
                return
            self._stopping.add(task.key)
        ray.cancel(ref, force=True)  # kills the worker; the waiter then sees it cancelled

    def abandon(self, task: Task) -> None:
        with self._lock:
            ref = self._refs.pop(task.key, None)
            if ref is not None:
                self._flights[ref].abandoned = True  # the waiter drops it when it ends

    def close(self) -> None:
        with self._lock:
            self._closed = True
            refs = list(self._flights)
        for ref in refs:
            with contextlib.suppress(Exception):
                ray.cancel(ref, force=True)
        with self._lock:  # let the cancelled attempts report before Ray goes away
            self._lock.wait_for(lambda: not self._flights, timeout=10)
        with self._lock:
            self._flights.clear()
            self._refs.clear()
            board, self._board, self._taking = self._board, None, None
        if board is not None:
            with contextlib.suppress(Exception):
                ray.kill(board)
        if self._started:  # a local Ray it started stops; a cluster it joined stays up
            self._started = False
            ray.shutdown()


def _fail(deliver: Deliver, task: Task, error: str) -> None:
    """End an attempt that never reached Ray, for good (a retry would fail the same way)."""
    now = time.time()
    deliver(Outcome(task.stage.name, task.attempt, task.token, now, now, error, retryable=False))


def _lost(flight: _Flight, exc: BaseException, stopping: bool) -> Outcome:
    """An outcome that says how Ray lost the attempt."""
    task = flight.task
    if stopping or isinstance(exc, ray_errors.TaskCancelledError):
        return stopped_outcome(task)
    name, now = task.stage.name, time.time()
    if isinstance(exc, ray_errors.RayTaskError):  # raised before the stage could start
        cause = exc.cause if isinstance(exc.cause, BaseException) else exc
        text = str(cause).removeprefix("System error: ")
        error = f"Stage {name!r} could not start in a Ray worker: {text.split(chr(10))[0]}"
        return Outcome(name, task.attempt, task.token, now, now, error, text, retryable=False)
    first = str(exc).strip().split("\n", 1)[0]
    error = f"Ray worker died while running stage {name!r} ({type(exc).__name__}: {first})"
    return Outcome(name, task.attempt, task.token, now, now, error, lost=True)


# -- connecting ------------------------------------------------------------------------------


def _connect(address: str | None) -> bool:
    """Connect this process to Ray; True when it started or joined one itself (and so should
    shut it down). A Ray this process already uses is kept as it is."""
    if address:
        _check_reachable(address)
    if ray.is_initialized():
        return False
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.WARNING}
    if not address:
        ray.init(include_dashboard=False, **quiet)
        return True
    try:
        ray.init(address=address, **quiet)
    except Exception as exc:
        raise ConfigError(
            f"Could not join the Ray cluster at {address!r}: {type(exc).__name__}: {exc}",
            hint="Check KLAW_EXECUTOR__RAY_ADDRESS (host:port of the head's GCS, usually port "
            "6379).",
        ) from None
    return True


def _check_reachable(address: str) -> None:
    """Fail fast on an address nothing listens on (``ray.init`` would retry for minutes)."""
    target = address.removeprefix("ray://")
    if target in {"auto", "local"}:
        return
    host, _, port = target.rpartition(":")
    if not host or not port.isdigit():
        raise ConfigError(
            f"Ray address {address!r} is not host:port.",
            hint="Set KLAW_EXECUTOR__RAY_ADDRESS to the head node's host:port, e.g. 10.0.0.5:6379.",
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=_CONNECT_TIMEOUT).close()
    except OSError as exc:
        raise ConfigError(
            f"Cannot reach the Ray cluster at {address!r}: {exc.strerror or exc}.",
            hint="Start the cluster (`ray start --head`) or fix KLAW_EXECUTOR__RAY_ADDRESS; "
            "unset it to "
            "run stages on a local Ray.",
        ) from None


def _code_path() -> tuple[str, ...]:
    return tuple(dict.fromkeys(os.path.abspath(p) if p else os.getcwd() for p in sys.path))


# -- resources -------------------------------------------------------------------------------


def _nodes() -> list[dict[str, float]]:
    nodes: list[dict[str, Any]] = ray.nodes()  # type: ignore[no-untyped-call]
    return [dict(node["Resources"]) for node in nodes if node.get("Alive")]


def _request(res: Resources) -> dict[str, float]:
    return {"CPU": res.cpus, "GPU": res.gpus, "memory": float(res.memory or 0), **res.custom}


def _fits(wanted: dict[str, float], node: dict[str, float]) -> bool:
    return all(node.get(k, 0.0) >= v for k, v in wanted.items() if v > 0)


def _unsatisfiable(
    name: str, res: Resources, wanted: dict[str, float], nodes: list[dict[str, float]]
) -> str:
    asked = [f"cpus={res.cpus:g}"]
    if res.gpus:
        asked.append(f"gpus={res.gpus:g}")
    if res.memory:
        asked.append(f"memory={res.memory / 1e9:.3g} GB")
    asked += [f"{k}={v:g}" for k, v in res.custom.items()]
    keys = ["CPU", "GPU", *(k for k in wanted if k not in {"CPU", "GPU", "memory"})]
    offers = [
        ", ".join(
            [f"{k}={node.get(k, 0.0):g}" for k in keys]
            + [f"memory={node.get('memory', 0.0) / 1e9:.3g} GB"]
        )
        for node in nodes[:5]
    ]
    return (
        f"Stage {name!r} asks for {', '.join(asked)}, which no node of the Ray cluster can "
        f"provide (nodes: {'; '.join(offers) or 'none alive'}). Lower the stage's "
        "resources=, or add a node that has them."
    )


# -- in the worker ---------------------------------------------------------------------------

_contexts: OrderedDict[bytes, tuple[AssetStoreFactory, LeaseKeeper | None]] = OrderedDict()


@functools.cache
def _remote_attempt(
    cpus: float, gpus: float, memory: int | None, custom: tuple[tuple[str, float], ...]
) -> Any:
    """The Ray task for one resource request, made on first use (importing this module
    starts nothing)."""
    options: dict[str, Any] = {"num_returns": 2, "max_retries": 0, "num_cpus": cpus}
    if gpus:
        options["num_gpus"] = gpus
    if memory:
        options["memory"] = memory
    if custom:
        options["resources"] = dict(custom)
    return ray.remote(**options)(_attempt)


def _attempt(context: bytes, payload: bytes, board: Any, *inputs: Any) -> tuple[Outcome, Any]:
    """Run one attempt in a Ray worker: ``inputs`` are the upstream values, resolved by Ray;
    a timed attempt tells ``board`` (the phase board) when its function starts and ends."""
    assets, leases = _worker_context(context)
    task, names = pickle.loads(payload)  # after the paths are in place: it imports the stage
    values = ValueStore()
    for name, value in zip(names, inputs, strict=True):
        values.put(name, value)
    on_phase = None if board is None else functools.partial(_note, board, task)
    outcome = invoke(task, values, assets, leases, on_phase)
    value = values.get(task.stage.name) if task.keep_value and outcome.ok else None
    if task.observed is not None:
        telemetry.flush()  # a Ray worker may be stopped with the cluster before its next batch
    return outcome, value


def _note(board: Any, task: Task, phase: Phase) -> None:
    """Tell the phase board (fire and forget: the calls of one worker arrive in order)."""
    board.note.remote(task.stage.name, task.attempt, task.token, phase.value)


class _PhaseBoard:
    """A Ray actor (async) that collects the phase notes of timed attempts until the driver
    takes them: ``take`` answers as soon as there is at least one note."""

    def __init__(self) -> None:
        self._notes: list[tuple[str, int, str, str]] = []
        self._posted = asyncio.Event()

    async def note(self, stage: str, attempt: int, token: str, phase: str) -> None:
        self._notes.append((stage, attempt, token, phase))
        self._posted.set()

    async def take(self) -> list[tuple[str, int, str, str]]:
        await self._posted.wait()
        self._posted.clear()
        notes, self._notes = self._notes, []
        return notes


@functools.cache
def _board_actor() -> Any:
    """The phase board as a Ray actor class, made on first use; it takes no CPU."""
    return ray.remote(num_cpus=0, max_restarts=0)(_PhaseBoard)


def _worker_context(context: bytes) -> tuple[AssetStoreFactory, LeaseKeeper | None]:
    """The asset-store factory and lease keeper of the executor that sent ``context``, kept by
    this worker process so it opens its stores once, not once per task (the oldest ones are
    closed). The first time, the driver's paths are added to this process's."""
    found = _contexts.get(context)
    if found is not None:
        _contexts.move_to_end(context)
        return found
    paths: tuple[str, ...]
    pair: tuple[AssetStoreFactory, LeaseKeeper | None]
    _, paths, pair = pickle.loads(context)
    sys.path.extend(p for p in paths if p not in sys.path)
    _contexts[context] = pair
    while len(_contexts) > _STORES_KEPT:
        _, (old, keeper) = _contexts.popitem(last=False)
        close = getattr(old, "close", None)
        if callable(close):
            close()
        if keeper is not None:
            keeper.close()
    return pair
