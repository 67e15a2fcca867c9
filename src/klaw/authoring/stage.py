"""Stages and assets: the decorators and the definition they produce."""

from __future__ import annotations

import inspect
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, overload

from klaw.authoring.resources import NO_RETRY, Resources, RetryPolicy
from klaw.errors import DefinitionError

NAME_PATTERN = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")


class StageKind(StrEnum):
    ASSET = "asset"  # result stored as a versioned dataset
    STAGE = "stage"  # result handed on, not stored


class InputType(StrEnum):
    """What form a stage wants an upstream value in (from its parameter annotation)."""

    ANY = "any"  # exactly what the upstream returned
    ARROW = "arrow"  # pyarrow.Table
    POLARS = "polars"  # polars.DataFrame
    POLARS_LAZY = "polars_lazy"  # polars.LazyFrame


@dataclass(frozen=True, slots=True)
class StageInput:
    param: str  # the function parameter that receives it
    upstream: str  # the stage that produces it
    type: InputType = InputType.ANY


@dataclass(frozen=True, slots=True)
class StageDef:
    """A stage of a workflow: a function, where its inputs come from, and how to run it."""

    name: str
    fn: Callable[..., Any]
    kind: StageKind
    inputs: tuple[StageInput, ...] = ()
    after: tuple[str, ...] = ()  # ordering-only dependencies (``deps=``): nothing is passed
    params_arg: str | None = None
    params_model: type[Any] | None = None
    retry: RetryPolicy = NO_RETRY
    timeout: float | None = None
    resources: Resources = field(default_factory=Resources)
    tags: frozenset[str] = frozenset()
    key: str | None = None  # asset key; the stage name unless given
    description: str = ""
    upstream: tuple[str, ...] = ()  # every stage this one depends on, inputs first, no repeats

    @property
    def asset_key(self) -> str | None:
        return (self.key or self.name) if self.kind is StageKind.ASSET else None

    @property
    def location(self) -> str:
        """``file:line`` where the stage's function is defined."""
        code = getattr(self.fn, "__code__", None)
        if code is None:
            return "<unknown>"
        return f"{code.co_filename}:{code.co_firstlineno}"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Call the underlying function directly (handy in unit tests of user code)."""
        return self.fn(*args, **kwargs)

    def __reduce__(self) -> tuple[Any, ...]:
        # Sent to a worker process field by field when the function pickles by reference (a
        # module-level function, or a callable object such as an SQL stage's query); a
        # decorated function, whose module attribute is this stage, is looked up by name.
        if not inspect.isfunction(self.fn) or _importable(self.fn):
            from dataclasses import fields

            values = {f.name: getattr(self, f.name) for f in fields(self)}
            model = self.params_model
            if model is not None and not _importable(model):
                values["params_model"] = None  # made at load time; workers need only the values
            return (StageDef, tuple(values.values()))
        code = getattr(self.fn, "__code__", None)
        file = code.co_filename if code is not None else None
        return (_lookup_stage, (self.fn.__module__, self.fn.__qualname__, self.name, file))


def _importable(fn: Any) -> bool:
    """Whether pickle can send a function or class by reference: its module attribute is it."""
    module = sys.modules.get(fn.__module__)
    obj: Any = module
    for part in fn.__qualname__.split("."):
        obj = getattr(obj, part, None)
    return obj is fn


def _lookup_stage(module: str, qualname: str, name: str, file: str | None = None) -> StageDef:
    """Find a stage again in a worker process: by its function's qualified name, else among
    the module's stages, lists of stages and workflows. A module that is not importable by
    name (a folder workflow's workflow.py) is loaded from its file."""
    import importlib
    import importlib.util
    import sys

    if module not in sys.modules and file is not None and module.startswith("klaw_folder_"):
        spec = importlib.util.spec_from_file_location(module, file)
        if spec is not None and spec.loader is not None:
            loaded = importlib.util.module_from_spec(spec)
            sys.modules[module] = loaded
            spec.loader.exec_module(loaded)
    mod = importlib.import_module(module)
    obj: Any = mod
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
    if isinstance(obj, StageDef) and obj.name == name:
        return obj
    for value in vars(mod).values():
        candidates = getattr(value, "stages", value)
        if isinstance(candidates, StageDef):
            candidates = (candidates,)
        if isinstance(candidates, list | tuple):
            for item in candidates:
                if isinstance(item, StageDef) and item.name == name:
                    return item
    raise DefinitionError(
        f"Stage {name!r} could not be found again in module {module} by a worker process.",
        hint="Define stages (or the list or workflow that holds them) at module level so "
        "process workers can import them.",
    )


def _input_type(annotation: Any) -> InputType:
    if not isinstance(annotation, type):
        return InputType.ANY
    module, name = annotation.__module__, annotation.__name__
    if module.startswith("polars"):
        if name == "DataFrame":
            return InputType.POLARS
        if name == "LazyFrame":
            return InputType.POLARS_LAZY
    if module.startswith("pyarrow") and name == "Table":
        return InputType.ARROW
    return InputType.ANY


def _is_params_model(annotation: Any) -> bool:
    pydantic = sys.modules.get("pydantic")
    return (
        pydantic is not None
        and isinstance(annotation, type)
        and issubclass(annotation, pydantic.BaseModel)
    )


def _build(
    fn: Callable[..., Any],
    kind: StageKind,
    *,
    name: str | None,
    deps: Iterable[str | StageDef],
    inputs: Mapping[str, str | StageDef] | None,
    retries: int | RetryPolicy,
    timeout: float | None,
    resources: Resources | None,
    tags: Iterable[str],
    key: str | None,
) -> StageDef:
    if isinstance(fn, StageDef):
        raise DefinitionError(f"Stage {fn.name!r} is decorated twice ({fn.location}).")
    if not callable(fn):
        raise DefinitionError(f"@klaw.{kind.value} needs a function, got {type(fn).__name__}.")
    stage_name = name or fn.__name__
    where = _where(fn)
    if not NAME_PATTERN.match(stage_name):
        raise DefinitionError(
            f"Stage name {stage_name!r} ({where}) is not valid: use letters, digits and "
            "underscores, starting with a letter or underscore, at most 63 characters."
        )
    if key is not None and not NAME_PATTERN.match(key):
        raise DefinitionError(f"Asset key {key!r} of stage {stage_name!r} ({where}) is not valid.")
    parameters = _parameters(fn)
    explicit = {param: _stage_name(up) for param, up in (inputs or {}).items()}
    unknown = set(explicit) - {name for name, _, _ in parameters}
    if unknown:
        raise DefinitionError(
            f"Stage {stage_name!r} ({where}) maps inputs {sorted(unknown)} that are not "
            f"parameters of {fn.__name__}()."
        )
    stage_inputs: list[StageInput] = []
    params_arg: str | None = None
    params_model: type[Any] | None = None
    namespace = getattr(fn, "__globals__", {})
    for param_name, raw, variadic in parameters:
        annotation = _resolve(raw, namespace)
        if variadic:
            raise DefinitionError(
                f"Stage {stage_name!r} ({where}) takes *{param_name}; list its inputs as named "
                "parameters so Klaw can tell which stages it depends on."
            )
        if _is_params_model(annotation):
            if params_arg is not None:
                raise DefinitionError(
                    f"Stage {stage_name!r} ({where}) takes two params models "
                    f"({params_arg!r} and {param_name!r}); merge them into one."
                )
            params_arg, params_model = param_name, annotation
            continue
        if param_name == "params":
            if isinstance(annotation, str):
                raise DefinitionError(
                    f"Stage {stage_name!r} ({where}): the annotation {annotation!r} of "
                    "'params' cannot be resolved.",
                    hint="Define the params model at module level, above the stage.",
                )
            raise DefinitionError(
                f"Stage {stage_name!r} ({where}): the parameter 'params' must be annotated with "
                "a pydantic BaseModel subclass (for example `params: RevenueParams`)."
            )
        source = explicit.get(param_name, param_name)
        stage_inputs.append(StageInput(param_name, source, _input_type(annotation)))
    policy = retries if isinstance(retries, RetryPolicy) else RetryPolicy(retries=retries)
    if timeout is not None and timeout <= 0:
        raise DefinitionError(f"Stage {stage_name!r} ({where}) has timeout={timeout}; use > 0.")
    after = tuple(_stage_name(d) for d in deps)
    upstream = tuple(dict.fromkeys([*(i.upstream for i in stage_inputs), *after]))
    return StageDef(
        name=stage_name,
        fn=fn,
        kind=kind,
        inputs=tuple(stage_inputs),
        after=after,
        upstream=upstream,
        params_arg=params_arg,
        params_model=params_model,
        retry=policy,
        timeout=timeout,
        resources=resources or Resources(),
        tags=frozenset(tags),
        key=key,
        description=inspect.cleandoc(fn.__doc__ or ""),
    )


_EMPTY = inspect.Parameter.empty
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)
_CO_VARARGS, _CO_VARKEYWORDS = inspect.CO_VARARGS, inspect.CO_VARKEYWORDS


def _parameters(fn: Callable[..., Any]) -> list[tuple[str, Any, bool]]:
    """``fn``'s parameters in signature order: (name, annotation, variadic). A plain function
    is read from its code object (``inspect.signature`` costs ~20 µs a call, much of what the
    decorator costs); anything else (a callable object, a wrapped or partial function) goes
    through ``inspect.signature``."""
    code = getattr(fn, "__code__", None)
    if (
        code is None
        or not inspect.isfunction(fn)
        or hasattr(fn, "__wrapped__")
        or hasattr(fn, "__signature__")
    ):
        return [
            (p.name, p.annotation, p.kind in _VARIADIC)
            for p in inspect.signature(fn).parameters.values()
        ]
    notes = fn.__annotations__
    names = code.co_varnames
    positional, keyword = code.co_argcount, code.co_kwonlyargcount
    found = [(n, notes.get(n, _EMPTY), False) for n in names[:positional]]
    at = positional + keyword
    if code.co_flags & _CO_VARARGS:
        found.append((names[at], notes.get(names[at], _EMPTY), True))
        at += 1
    found += [(n, notes.get(n, _EMPTY), False) for n in names[positional : positional + keyword]]
    if code.co_flags & _CO_VARKEYWORDS:
        found.append((names[at], notes.get(names[at], _EMPTY), True))
    return found


_resolved: dict[tuple[int, str], Any] = {}


def _resolve(annotation: Any, namespace: dict[str, Any]) -> Any:
    """Evaluate a string annotation (``from __future__ import annotations``) in the function's
    module, once per module and string; one that cannot be evaluated yet stays a string."""
    if not isinstance(annotation, str):
        return annotation
    key = (id(namespace), annotation)
    found = _resolved.get(key, _resolved)
    if found is _resolved:
        try:
            found = eval(annotation, namespace)
        except Exception:
            return annotation
        _resolved[key] = found
    return found


def _stage_name(ref: str | StageDef) -> str:
    return ref.name if isinstance(ref, StageDef) else ref


def _where(fn: Callable[..., Any]) -> str:
    code = getattr(fn, "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code else repr(fn)


class StageDecorator:
    """``@klaw.asset`` and ``@klaw.stage``: use bare or with options."""

    def __init__(self, kind: StageKind, doc: str) -> None:
        self.kind = kind
        self.__doc__ = doc

    @overload
    def __call__(self, fn: Callable[..., Any], /) -> StageDef: ...
    @overload
    def __call__(
        self,
        /,
        *,
        name: str | None = None,
        deps: Iterable[str | StageDef] = (),
        inputs: Mapping[str, str | StageDef] | None = None,
        retries: int | RetryPolicy = 0,
        timeout: float | None = None,
        resources: Resources | None = None,
        tags: Iterable[str] = (),
        key: str | None = None,
    ) -> Callable[[Callable[..., Any]], StageDef]: ...

    def __call__(
        self,
        fn: Callable[..., Any] | None = None,
        /,
        *,
        name: str | None = None,
        deps: Iterable[str | StageDef] = (),
        inputs: Mapping[str, str | StageDef] | None = None,
        retries: int | RetryPolicy = 0,
        timeout: float | None = None,
        resources: Resources | None = None,
        tags: Iterable[str] = (),
        key: str | None = None,
    ) -> StageDef | Callable[[Callable[..., Any]], StageDef]:
        kind = self.kind
        if key is not None and kind is not StageKind.ASSET:
            raise DefinitionError("key= is for assets; a plain stage's result is not stored.")

        def build(f: Callable[..., Any]) -> StageDef:
            return _build(
                f,
                kind,
                name=name,
                deps=tuple(deps),
                inputs=inputs,
                retries=retries,
                timeout=timeout,
                resources=resources,
                tags=tuple(tags),
                key=key,
            )

        return build(fn) if fn is not None else build


asset = StageDecorator(
    StageKind.ASSET,
    """Declare an asset: a stage whose result is stored as a versioned dataset.

    Use bare (``@klaw.asset``) or with options (``@klaw.asset(retries=2, timeout=60)``).
    Parameters named after other stages receive their results; a parameter annotated with a
    pydantic model receives the run's params. The function must return a pyarrow Table, a
    Polars DataFrame or a DuckDB relation.
    """,
)
stage = StageDecorator(
    StageKind.STAGE,
    "Declare a stage whose result is handed to downstream stages but not stored.",
)
