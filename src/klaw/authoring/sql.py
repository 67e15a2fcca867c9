"""SQL stages: a query over the results of other stages, run by DuckDB, DataFusion or Polars.

    revenue = klaw_sql(
        "SELECT day, sum(amount) AS revenue FROM orders WHERE amount >= $min_amount GROUP BY day",
        name="revenue",
        params_model=RevenueParams,
    )

Every table the query reads (CTE names aside) is the result of the stage of that name, handed
to the engine as an Arrow table; those tables are the stage's inputs, so its dependencies come
from the SQL. Params are bound as query parameters, never formatted into the text: ``$field``
with DuckDB and DataFusion; with Polars (which has no parameters) the one-row table ``params``.
An SQL stage's function is a :class:`SqlQuery`, which holds only text, so it pickles as it is
to process workers; calling the stage (``revenue(orders=table)``) runs the query.

A ``workflow.sql`` file holds one or more named statements::

    -- a comment before the first statement is fine
    -- name: orders_clean
    SELECT * FROM orders WHERE amount > 0;

    -- name: revenue
    SELECT day, sum(amount) AS revenue FROM orders_clean GROUP BY day;

A statement starts on the line after ``-- name: <stage>`` and ends at the next ``-- name:``
line or the end of the file; trailing semicolons are dropped. The name follows the rules of
stage names. Before the first ``-- name:`` there may only be comments and blank lines.

SQL that does not parse does not stop a stage being defined (so one ``klaw validate`` reports
every problem); :func:`check_sql_stage` reports it, and so does running the stage.
"""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from klaw import telemetry
from klaw.authoring.resources import Resources, RetryPolicy
from klaw.authoring.stage import NAME_PATTERN, InputType, StageDef, StageInput, StageKind
from klaw.engines import EngineError, SqlError, SqlProblem, get_engine
from klaw.engines.engine import closest
from klaw.errors import DefinitionError, SqlSchemaError, SqlStageError

if TYPE_CHECKING:
    import pyarrow as pa

_NAME_LINE = re.compile(r"^\s*--\s*name\s*:(.*)$", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class SqlQuery:
    """The function of an SQL stage: runs ``query`` on ``engine`` over the tables it is
    given as keyword arguments (by table name), with ``params`` bound."""

    stage: str
    query: str
    engine: str = "duckdb"
    source: str | None = None  # the file the SQL came from, for messages
    line: int = 1  # the line of that file where the query starts
    problem: str | None = None  # why the SQL did not parse when the stage was defined

    @property
    def location(self) -> str:
        return self.where(None)

    def where(self, line: int | None) -> str:
        """``file:line`` of line ``line`` of the query (its first line when None)."""
        return f"{self.source or '<sql>'}:{self.line + (line or 1) - 1}"

    @property
    def __code__(self) -> types.CodeType:
        # Messages place a stage by its function's code (StageDef.location): name the SQL's
        # file and line. The query is among the constants, so the code differs per query.
        code = compile(repr((self.engine, self.query)), self.source or "<sql>", "eval")
        return code.replace(co_firstlineno=self.line, co_name=self.stage)

    def __call__(self, params: Any = None, **tables: Any) -> pa.Table:
        engine = get_engine(self.engine)
        arrow = {name: engine.to_arrow(value) for name, value in tables.items()}
        try:
            if telemetry.ACTIVE.tracer is None:
                return engine.sql(self.query, arrow, _param_values(params))
            with telemetry.span(f"query {self.stage}", self._span_attributes(tables)):
                return engine.sql(self.query, arrow, _param_values(params))
        except SqlError as exc:
            message = f"SQL stage {self.stage!r} ({self.error_location(exc)}): {exc.message}"
            if exc.problem is SqlProblem.OTHER:
                raise SqlStageError(message, hint=exc.hint) from None
            if exc.problem is SqlProblem.COLUMN:
                message += "; an upstream stage returned a different schema than the SQL expects"
            raise SqlSchemaError(message, hint=exc.hint) from None

    def _span_attributes(self, tables: dict[str, Any]) -> dict[str, Any]:
        """The engine query's span: OpenTelemetry's database conventions, and Klaw's own."""
        return {
            "db.system.name": self.engine,
            "db.operation.name": "SELECT",
            "db.query.summary": f"SELECT {' '.join(sorted(tables))}".strip(),
            "db.query.text": self.query[:4096],
            "klaw.stage": self.stage,
            "code.file.path": self.source,
            "code.line.number": self.line,
        }

    def error_location(self, exc: SqlError) -> str:
        """``file:line`` of what the engine refused (found by name when it gave no line)."""
        return self.where(exc.line or _line_naming(self.query, exc.name))


def klaw_sql(
    query: str,
    *,
    name: str,
    engine: str = "duckdb",
    kind: StageKind | str = StageKind.ASSET,
    params_model: type[Any] | None = None,
    deps: Iterable[str | StageDef] = (),
    retries: int | RetryPolicy = 0,
    timeout: float | None = None,
    resources: Resources | None = None,
    tags: Iterable[str] = (),
    key: str | None = None,
    description: str | None = None,
    source: str | None = None,
    line: int = 1,
) -> StageDef:
    """Declare an SQL stage (an asset unless ``kind="stage"``) that runs ``query``.

    ``source`` and ``line`` say where the query was written, for messages. Options are those
    of ``@klaw.asset``; ``params_model`` is a pydantic model whose fields the query reads as
    parameters."""
    if source is None:  # written in Python: messages point at the call
        caller = sys._getframe(1)
        source, line = caller.f_code.co_filename, caller.f_lineno
    where = f"{source}:{line}"
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise DefinitionError(
            f"SQL stage name {name!r} ({where}) is not valid: use letters, digits and "
            "underscores, starting with a letter or underscore, at most 63 characters."
        )
    label = f"SQL stage {name!r} ({where})"
    try:
        stage_kind = StageKind(kind)
    except ValueError:
        raise DefinitionError(f"{label} has kind={kind!r}; use 'asset' or 'stage'.") from None
    if not isinstance(query, str) or not query.strip():
        raise DefinitionError(f"{label} has no SQL.", hint="Give it one SELECT query.")
    if key is not None and (stage_kind is not StageKind.ASSET or not NAME_PATTERN.match(key)):
        raise DefinitionError(f"{label}: key={key!r} is only for assets, and must be a valid name.")
    if timeout is not None and timeout <= 0:
        raise DefinitionError(f"{label} has timeout={timeout}; use > 0.")
    if params_model is not None and not _is_model(params_model):
        raise DefinitionError(
            f"{label}: params_model must be a pydantic BaseModel subclass, got {params_model!r}."
        )
    problem: str | None = None
    tables: set[str] = set()
    try:
        tables = get_engine(engine).tables_read(query)
    except SqlError as exc:
        problem = exc.message
    except EngineError as exc:
        raise DefinitionError(f"{label}: {exc.message}", hint=exc.hint) from None
    if "params" in {t.lower() for t in tables}:
        raise DefinitionError(
            f"{label} reads a table named 'params', which is the name of the stage's params.",
            hint="Rename the stage that produces it.",
        )
    inputs = tuple(StageInput(t, t, InputType.ARROW) for t in sorted(tables))
    after = tuple(d.name if isinstance(d, StageDef) else d for d in deps)
    return StageDef(
        name=name,
        fn=SqlQuery(name, query, engine, source, line, problem),
        kind=stage_kind,
        inputs=inputs,
        after=after,
        upstream=tuple(dict.fromkeys([*(i.upstream for i in inputs), *after])),
        params_arg="params" if params_model is not None else None,
        params_model=params_model,
        retry=retries if isinstance(retries, RetryPolicy) else RetryPolicy(retries=retries),
        timeout=timeout,
        resources=resources or Resources(),
        tags=frozenset(tags),
        key=key,
        description=description if description is not None else _leading_comment(query),
    )


def parse_sql_file(text: str, path: str | Path) -> list[tuple[str, str, int]]:
    """The named statements of a ``workflow.sql`` file: ``(name, query, line)``, where
    ``line`` is the file line the query starts on. Raises ``DefinitionError`` listing every
    problem, each with the file and line."""
    problems: list[str] = []
    found: list[tuple[str, int, list[str]]] = []  # name, line of its marker, body lines
    seen: dict[str, int] = {}
    before: list[tuple[int, str]] = []
    for number, raw in enumerate(text.splitlines(), start=1):
        marker = _NAME_LINE.match(raw)
        if marker is None:
            if found:
                found[-1][2].append(raw)
            elif raw.strip() and not raw.strip().startswith("--"):
                before.append((number, raw))
            continue
        stage_name = marker.group(1).strip()
        if not stage_name:
            problems.append(f"{path}:{number}: '-- name:' needs a stage name after it.")
        elif not NAME_PATTERN.match(stage_name):
            problems.append(
                f"{path}:{number}: {stage_name!r} is not a valid stage name: use letters, "
                "digits and underscores, starting with a letter or underscore."
            )
        elif stage_name in seen:
            problems.append(
                f"{path}:{number}: the name {stage_name!r} is used twice (first at line "
                f"{seen[stage_name]}); give each statement its own name."
            )
        else:
            seen[stage_name] = number
        found.append((stage_name, number, []))
    if before:
        number, raw = before[0]
        problems.append(
            f"{path}:{number}: SQL before the first '-- name:' line ({raw.strip()[:40]!r}); "
            "start each statement with a line '-- name: <stage>'."
        )
    if not found and not before:
        problems.append(f"{path}: no statements; start each with a line '-- name: <stage>'.")
    result: list[tuple[str, str, int]] = []
    for stage_name, number, body in found:
        blank = next((i for i, text_line in enumerate(body) if text_line.strip()), len(body))
        query = "\n".join(body[blank:]).rstrip()
        while query.endswith(";"):
            query = query[:-1].rstrip()
        if not any(ln.strip() and not ln.strip().startswith("--") for ln in query.splitlines()):
            label = repr(stage_name) if stage_name else "after it"
            problems.append(f"{path}:{number}: the statement {label} is empty.")
        elif stage_name:
            result.append((stage_name, query, number + 1 + blank))
    if problems:
        head = problems[0] if len(problems) == 1 else f"{len(problems)} problems in {path}:"
        body_text = "" if len(problems) == 1 else "\n" + "\n".join(f"  - {p}" for p in problems)
        raise DefinitionError(head + body_text)
    return result


def load_sql_file(path: str | Path, **options: Any) -> list[StageDef]:
    """The SQL stages of a ``workflow.sql`` file; ``options`` are given to every
    :func:`klaw_sql` (engine, kind, params_model, retries, ...)."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DefinitionError(f"Cannot read SQL file {file}: {exc}.") from None
    return [
        klaw_sql(query, name=name, source=str(file), line=line, **options)
        for name, query, line in parse_sql_file(text, file)
    ]


def check_sql_stage(stage: StageDef, upstream_schemas: Mapping[str, pa.Schema | None]) -> list[str]:
    """Problems with an SQL stage's query, found by planning it against empty tables of the
    upstream schemas (``None``: not known before running; the key set is every stage the
    workflow has). Each problem names the file, line, stage and the unknown table or column
    with the closest names. A stage that is not an SQL stage has none."""
    return _check(stage, upstream_schemas)[0]


def check_sql_stages(
    stages: Iterable[StageDef], known_schemas: Mapping[str, pa.Schema | None] | None = None
) -> list[str]:
    """Problems with every SQL stage of a workflow's ``stages``. The schema an SQL stage's
    query produces is handed to the SQL stages that read it; ``known_schemas`` gives the
    schemas of other tables known beforehand (stored assets, also of other workflows; None
    when the table exists but its schema is not known yet)."""
    return check_sql_workflow(stages, known_schemas).problems


@dataclass(frozen=True, slots=True)
class SqlChecks:
    """What checking a workflow's SQL stages found. ``problems`` make it invalid;
    ``unchecked`` names each statement that could not be checked and why (a warning);
    ``schemas`` holds the result schema of each SQL stage that could be derived."""

    problems: list[str]
    unchecked: list[str]
    schemas: dict[str, pa.Schema]


def check_sql_workflow(
    stages: Iterable[StageDef],
    known_schemas: Mapping[str, pa.Schema | None] | None = None,
    producers: Mapping[str, str] | None = None,
) -> SqlChecks:
    """Like :func:`check_sql_stages`, and also says which statements could not be checked:
    those reading a table whose schema is not known (``producers`` describes who makes each
    table of another workflow, for that message)."""
    by_name = {s.name: s for s in stages}
    known = dict(known_schemas or {})
    schemas: dict[str, pa.Schema | None] = {n: known.get(n) for n in by_name} | {
        n: v for n, v in known.items() if n not in by_name
    }
    done: set[str] = set()
    problems: list[str] = []
    unchecked: list[str] = []
    derived: dict[str, pa.Schema] = {}
    failed: set[str] = set()

    def visit(stage: StageDef, path: frozenset[str]) -> None:
        if stage.name in done or stage.name in path:  # a cycle is the graph's to report
            return
        for item in stage.inputs:
            upstream = by_name.get(item.upstream)
            if upstream is not None and isinstance(upstream.fn, SqlQuery):
                visit(upstream, path | {stage.name})
        found, schema = _check(stage, schemas)
        problems.extend(found)
        if schema is not None:
            derived[stage.name] = schema
        elif found:
            failed.add(stage.name)
        else:
            unknown = [i.upstream for i in stage.inputs if schemas.get(i.upstream) is None]
            if failed.intersection(unknown):  # reads a statement with a problem: that says it
                failed.add(stage.name)
            elif unknown:
                unchecked.append(_unchecked(stage, unknown[0], by_name, producers or {}))
        schemas[stage.name] = schemas[stage.name] or schema
        done.add(stage.name)

    for stage in by_name.values():
        if isinstance(stage.fn, SqlQuery):
            visit(stage, frozenset())
    return SqlChecks(problems, unchecked, derived)


def _unchecked(
    stage: StageDef, table: str, by_name: Mapping[str, StageDef], producers: Mapping[str, str]
) -> str:
    """Why ``stage``'s statement could not be checked: ``table``'s schema is not known."""
    sql = stage.fn
    assert isinstance(sql, SqlQuery)
    upstream = by_name.get(table)
    if upstream is None:
        made = f" ({producers[table]})" if table in producers else ""
        why = f"asset {table!r} has no snapshot yet and its producer's schema is not known{made}"
    elif isinstance(upstream.fn, SqlQuery):
        why = f"SQL stage {table!r}, which it reads, could not be checked either"
    elif upstream.kind is StageKind.ASSET:
        why = (
            f"asset {upstream.asset_key!r} has no snapshot yet and its producer's schema is not "
            f"known (stage {table!r} is Python)"
        )
    else:
        why = f"stage {table!r} stores nothing, so its schema is known only once it runs"
    return (
        f"SQL stage {stage.name!r} ({sql.location}) is unchecked: {why}. It is checked when it "
        "runs; run the producer once for `klaw validate` to check it against the snapshot."
    )


def _check(
    stage: StageDef, upstream_schemas: Mapping[str, pa.Schema | None]
) -> tuple[list[str], pa.Schema | None]:
    sql = stage.fn
    if not isinstance(sql, SqlQuery):
        return [], None
    label = f"SQL stage {stage.name!r}"
    if sql.problem is not None:
        try:  # parse again for the line of the problem
            get_engine(sql.engine).tables_read(sql.query)
        except SqlError as exc:
            return [f"{label} ({sql.error_location(exc)}): {exc.message}"], None
        return [f"{label} ({sql.location}): {sql.problem}"], None
    tables = [i.upstream for i in stage.inputs]
    problems = []
    for table in tables:
        if table not in upstream_schemas:
            near = closest(table, [n for n in upstream_schemas if n != stage.name])
            guess = f"; did you mean {' or '.join(repr(n) for n in near)}?" if near else "."
            where = sql.where(_line_naming(sql.query, table))
            problems.append(
                f"{label} ({where}) reads table {table!r}, which no stage of the workflow "
                f"produces{guess}"
            )
    known = {t: upstream_schemas.get(t) for t in tables}
    if problems or any(schema is None for schema in known.values()):
        return problems, None
    try:
        schema = get_engine(sql.engine).check(
            sql.query,
            {t: s for t, s in known.items() if s is not None},
            _sample_params(stage.params_model),
        )
    except SqlError as exc:
        return [f"{label} ({sql.error_location(exc)}): {exc.message}"], None
    return [], schema


def _param_values(params: Any) -> dict[str, Any]:
    if params is None:
        return {}
    if isinstance(params, Mapping):
        return {k: _bindable(v) for k, v in params.items()}
    if callable(getattr(params, "model_dump", None)):
        return {k: _bindable(getattr(params, k)) for k in type(params).model_fields}
    raise DefinitionError(
        f"SQL stage params must be a pydantic model or a mapping, got {params!r}."
    )


def _bindable(value: Any) -> Any:
    """A param as SQL binds it: a secret's value (an unresolved one, as when validating, is
    ``NULL``), a nested model as a mapping."""
    from pydantic import SecretBytes, SecretStr

    from klaw.authoring.secrets import Secret

    if isinstance(value, Secret):
        return value.get_secret_value() if value.resolved else None
    if isinstance(value, SecretStr | SecretBytes):
        return value.get_secret_value()
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump()
    return value


def _sample_params(model: type[Any] | None) -> dict[str, Any]:
    """Values to plan with: each field's default, or NULL when it has none."""
    if model is None:
        return {}
    values: dict[str, Any] = {}
    for field_name, info in model.model_fields.items():
        required = info.is_required()
        default = None if required else info.get_default(call_default_factory=True)
        values[field_name] = _bindable(default)
    return values


def _is_model(annotation: Any) -> bool:
    from pydantic import BaseModel

    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _line_naming(query: str, name: str | None) -> int | None:
    """The line of the query where ``name`` first appears as a word (for messages)."""
    if not name:
        return None
    match = re.search(rf"(?<![\w$]){re.escape(name)}(?!\w)", query, re.IGNORECASE)
    return query.count("\n", 0, match.start()) + 1 if match else None


def _leading_comment(query: str) -> str:
    lines = []
    for raw in query.strip().splitlines():
        if not raw.strip().startswith("--"):
            break
        lines.append(raw.strip()[2:].strip())
    return "\n".join(lines).strip()
