"""The one boundary where user code runs: resolve inputs, call the stage, capture its output,
check and store what it returned. Runs inside the executor (a worker thread or process)."""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from typing import Any

from klaw import tabular, telemetry
from klaw.authoring.secrets import mask, secret_values
from klaw.authoring.sql import SqlQuery
from klaw.authoring.stage import StageKind
from klaw.errors import NonRetryableError, OutputError
from klaw.execution.capture import capture
from klaw.execution.lease import LeaseKeeper, LeaseLostError
from klaw.execution.task import AssetStoreFactory, Outcome, Phase, Task
from klaw.execution.values import ValueStore
from klaw.failpoints import failpoint

OnPhase = Callable[[Phase], None]


class StageStopped(BaseException):
    """Raised inside a stage's thread to stop it (cancel or timeout). A BaseException, so a
    stage's own ``except Exception`` does not swallow it."""


def invoke(
    task: Task,
    values: ValueStore,
    assets: AssetStoreFactory,
    leases: LeaseKeeper | None = None,
    on_phase: OnPhase | None = None,
) -> Outcome:
    """Run one stage attempt. Never raises for a failure of user code: the outcome says how
    the attempt ended, with the user's traceback kept. With ``leases``, the attempt's lease is
    renewed while it runs and checked before its snapshot is committed. ``on_phase`` is told
    when the stage's function is called (``RUN``) and when its snapshot is stored
    (``COMMIT``); the time spent loading inputs and committing is kept on the outcome. With
    telemetry on (``task.observed``), the attempt is a span of its run's trace and its
    OpenLineage events are sent."""
    if task.observed is not None:
        return _observed(task, values, assets, leases, on_phase)
    return _attempt(task, values, assets, leases, on_phase)


def _sql_tables(task: Task, values: ValueStore) -> dict[str, tuple[str, list[str] | None]]:
    """An SQL stage's tables, by the name its statement gives them: the asset (or stage) each
    comes from and, when its value is an Arrow table here, its columns (for column lineage
    of ``SELECT *``)."""
    import pyarrow as pa

    found: dict[str, tuple[str, list[str] | None]] = {}
    for i in task.inputs:
        value = values.get(i.upstream) if i.ref is None and values.has(i.upstream) else None
        columns = value.schema.names if isinstance(value, pa.Table) else None
        found[i.param] = (i.ref.key if i.ref is not None else i.upstream, columns)
    return found


def _attempt(
    task: Task,
    values: ValueStore,
    assets: AssetStoreFactory,
    leases: LeaseKeeper | None,
    on_phase: OnPhase | None,
) -> Outcome:
    if leases is None:
        return _invoke(task, values, assets, None, on_phase)
    try:
        leases.hold(task)
    except LeaseLostError as exc:  # given up before it began: the runner drops this outcome
        now = time.time()
        leases.release(task)
        return Outcome(task.stage.name, task.attempt, task.token, now, now, exc.message, lost=True)
    try:
        return _invoke(task, values, assets, leases, on_phase)
    finally:
        leases.release(task)


def _observed(
    task: Task,
    values: ValueStore,
    assets: AssetStoreFactory,
    leases: LeaseKeeper | None,
    on_phase: OnPhase | None,
) -> Outcome:
    """The attempt inside a span (``stage NAME``, a child of its run's), between its
    OpenLineage START and COMPLETE / FAIL events."""
    observed = task.observed
    assert observed is not None
    if observed.settings is not None and telemetry.ACTIVE.configured is None:
        telemetry.adopt(observed.settings)  # a stage process or Ray worker: trace here too
    stage = task.stage
    lineage = telemetry.ACTIVE.lineage
    inputs = [(i.ref.key if i.ref is not None else i.upstream, None) for i in task.inputs]
    workflow, run_id, name = observed.workflow, task.run_id, stage.name
    if lineage is not None:
        lineage.emit("START", workflow, run_id, name, task.attempt, time.time(), inputs=inputs)
    attributes = {
        "klaw.run_id": task.run_id,
        "klaw.workflow": observed.workflow,
        "klaw.stage": stage.name,
        "klaw.attempt": task.attempt,
        "klaw.stage.kind": stage.kind.value,
    }
    traced = (
        telemetry.span(f"stage {stage.name}", attributes, observed.trace)
        if observed.trace
        else nullcontext()
    )
    with traced as span:
        outcome = _attempt(task, values, assets, leases, on_phase)
        if telemetry.ACTIVE.logger is not None:  # in the attempt's span: they name its trace
            for record in outcome.logs:
                telemetry.log(
                    record.level or ("warning" if record.stream == "stderr" else "info"),
                    record.line,
                    {
                        "klaw.run_id": task.run_id,
                        "klaw.stage": stage.name,
                        "klaw.attempt": task.attempt,
                        "log.iostream": record.stream,
                    },
                    record.ts,
                )
        if span is not None:
            from opentelemetry.trace import Status, StatusCode

            for key, value in (
                ("klaw.asset", outcome.asset_key),
                ("klaw.snapshot", outcome.snapshot),
                ("klaw.rows", outcome.rows),
                ("klaw.bytes", outcome.bytes),
            ):
                if value is not None:
                    span.set_attribute(key, value)
            if outcome.error is not None:
                span.set_status(Status(StatusCode.ERROR, outcome.error))
    if lineage is not None:
        fn = stage.fn
        lineage.emit(
            "COMPLETE" if outcome.ok else "FAIL",
            workflow,
            run_id,
            name,
            task.attempt,
            outcome.ended_at,
            inputs=inputs,
            output=(outcome.asset_key, outcome.snapshot) if outcome.snapshot is not None else None,
            schema=outcome.schema,
            rows=outcome.rows,
            size=outcome.bytes,
            sql=fn.query if isinstance(fn, SqlQuery) else None,
            sql_tables=_sql_tables(task, values) if isinstance(fn, SqlQuery) else None,
            engine=fn.engine if isinstance(fn, SqlQuery) else None,
            error=outcome.error,
        )
    return outcome


def _invoke(
    task: Task,
    values: ValueStore,
    assets: AssetStoreFactory,
    leases: LeaseKeeper | None,
    on_phase: OnPhase | None,
) -> Outcome:
    stage = task.stage
    started = time.time()
    outcome = Outcome(stage.name, task.attempt, task.token, started, started)
    secrets = secret_values(task.params) if task.params is not None else ()
    with capture(task.run_id, stage.name, task.attempt, secrets) as log:
        try:
            clock = time.perf_counter()
            kwargs = _arguments(task, values, assets)
            if task.inputs:
                outcome.load_s = time.perf_counter() - clock
            if on_phase is not None:
                on_phase(Phase.RUN)
            result = stage.fn(**kwargs)
            result = tabular.materialise(result)
            if stage.kind is StageKind.ASSET:
                if on_phase is not None:
                    on_phase(Phase.COMMIT)
                clock = time.perf_counter()
                _store(task, result, outcome, assets, leases)
                outcome.commit_s = time.perf_counter() - clock
            else:
                outcome.rows, outcome.bytes = tabular.measure(result)
            if task.keep_value:
                values.put(stage.name, result)
        except StageStopped:
            outcome.error = "stopped"
            outcome.stopped = True
        except OutputError as exc:
            outcome.error = exc.message
            outcome.retryable = False
        except LeaseLostError as exc:
            outcome.error = exc.message
            outcome.lost = True
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                outcome.error = f"{type(exc).__name__} raised in stage"
            else:
                outcome.error = f"{type(exc).__name__}: {exc}"
            outcome.traceback = mask(_user_traceback(exc), secrets)
            outcome.retryable = not isinstance(exc, NonRetryableError)
            for line in outcome.traceback.rstrip("\n").split("\n"):
                log.add("stderr", line, "ERROR")
    if secrets and outcome.error is not None:
        outcome.error = mask(outcome.error, secrets)
    outcome.ended_at = time.time()
    outcome.logs = log.records
    return outcome


def _arguments(task: Task, values: ValueStore, assets: AssetStoreFactory) -> dict[str, Any]:
    kwargs: dict[str, Any] = {}
    for item in task.inputs:
        if item.ref is not None:
            failpoint(f"read_input:{item.ref.key}")  # fault tests: a slow lake, for one asset
            value: Any = assets().read(item.ref.key, item.ref.snapshot)
        else:
            value = values.get(item.upstream)
        kwargs[item.param] = tabular.convert(value, item.type)
    if task.stage.params_arg is not None:
        kwargs[task.stage.params_arg] = task.params
    return kwargs


def _store(
    task: Task,
    result: Any,
    outcome: Outcome,
    assets: AssetStoreFactory,
    leases: LeaseKeeper | None,
) -> None:
    stage = task.stage
    if not tabular.is_tabular(result):
        raise OutputError(
            f"Asset stage {stage.name!r} ({stage.location}) returned "
            f"{tabular.describe(result)}, which is not tabular. Return a pyarrow Table, a Polars "
            "DataFrame or a DuckDB relation, or declare it with @klaw.stage if its result "
            "should not be stored."
        )
    table = tabular.to_arrow(result)
    key = stage.asset_key
    assert key is not None
    outcome.asset_key = key
    if leases is not None:  # a fenced attempt commits nothing
        leases.check(task)
    if task.observed is None or not task.observed.trace:
        outcome.snapshot = assets().commit(
            key, table, run_id=task.run_id, stage=stage.name, attempt=task.attempt
        )
    else:
        with telemetry.span(f"commit {key}", {"klaw.asset": key, "db.system": "ducklake"}) as span:
            outcome.snapshot = assets().commit(
                key, table, run_id=task.run_id, stage=stage.name, attempt=task.attempt
            )
            if span is not None:
                span.set_attribute("klaw.snapshot", outcome.snapshot)
    if task.observed is not None:  # for the lineage event's schema facet
        outcome.schema = [(field.name, str(field.type)) for field in table.schema]
    outcome.rows, outcome.bytes = table.num_rows, table.nbytes


def _user_traceback(exc: BaseException) -> str:
    """The traceback from the first frame of user code (Klaw's own frames dropped)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_frame.f_globals.get("__name__", "").startswith("klaw."):
        tb = tb.tb_next
    return "".join(traceback.format_exception(type(exc), exc, tb))
