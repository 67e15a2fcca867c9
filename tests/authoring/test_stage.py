"""The decorators and what they record."""

from __future__ import annotations

import pickle
from typing import Any

import polars as pl
import pyarrow as pa
import pytest
from pydantic import BaseModel

import klaw
from klaw.authoring.stage import InputType, StageKind
from klaw.errors import DefinitionError


class P(BaseModel):
    n: int = 1


@klaw.asset(retries=2, timeout=5, tags=["x"], resources=klaw.Resources(cpus=2))
def enriched(orders: pl.DataFrame, customers: pa.Table, other: object, params: P) -> None:
    """Orders joined to customers."""


def test_inputs_types_params_and_options() -> None:
    s = enriched
    assert s.kind is StageKind.ASSET and s.asset_key == "enriched"
    assert [(i.param, i.upstream, i.type) for i in s.inputs] == [
        ("orders", "orders", InputType.POLARS),
        ("customers", "customers", InputType.ARROW),
        ("other", "other", InputType.ANY),
    ]
    assert s.params_arg == "params" and s.params_model is P
    assert s.retry.retries == 2 and s.timeout == 5
    assert s.resources.cpus == 2 and s.tags == {"x"}
    assert s.description == "Orders joined to customers."


def test_explicit_inputs_deps_and_key() -> None:
    @klaw.asset(inputs={"data": "raw"}, deps=["setup"], key="clean", name="cleaner")
    def f(data: object) -> None: ...

    assert f.name == "cleaner" and f.asset_key == "clean"
    assert f.upstream == ("raw", "setup")


def test_plain_stage_is_not_an_asset_and_calls_through() -> None:
    @klaw.stage
    def add(x: int, y: int) -> int:
        return x + y

    assert add.asset_key is None
    assert add(1, 2) == 3


def _noop(y: object = None) -> None: ...


def _star(*args: object) -> None: ...


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: klaw.stage(name="bad name")(lambda: None), "not valid"),
        (lambda: klaw.stage(timeout=0)(_noop), "timeout=0"),
        (lambda: klaw.stage(retries=-1)(_noop), "retries is -1"),
        (lambda: klaw.stage(inputs={"nope": "x"})(_noop), "not parameters"),
        (lambda: klaw.stage(_star), r"\*args"),
        (lambda: klaw.stage(key="k"), "key= is for assets"),
        (lambda: klaw.stage(klaw.stage(_noop)), "decorated twice"),
        (lambda: klaw.Resources(cpus=-1), "cpus is -1"),
    ],
)
def test_definition_errors(make: object, match: str) -> None:
    with pytest.raises(DefinitionError, match=match):
        make()  # type: ignore[operator]


def test_params_parameter_needs_a_model() -> None:
    with pytest.raises(DefinitionError, match="pydantic BaseModel"):

        @klaw.stage
        def f(params: dict) -> None: ...  # type: ignore[type-arg]


def test_stage_pickles_by_reference() -> None:
    assert pickle.loads(pickle.dumps(enriched)) is enriched


def test_workflow_rejects_non_stages() -> None:
    with pytest.raises(DefinitionError, match="not a stage"):
        klaw.workflow("w", [lambda: None])  # type: ignore[list-item]
    with pytest.raises(DefinitionError, match="not valid"):
        klaw.workflow("bad name", [])


def test_retry_backoff() -> None:
    policy = klaw.RetryPolicy(retries=5, delay=1, backoff=3, max_delay=10)
    assert [policy.wait_before(n) for n in (1, 2, 3, 4)] == [1, 3, 9, 10]


def _shapes() -> list[object]:
    import functools

    def full(x, y: int, /, z: str = "", *args: int, k: float, m=2, **kw: str) -> None: ...  # type: ignore[no-untyped-def]

    def none() -> None: ...

    def keyword_only(*, q: int) -> None: ...

    def star(p, *a): ...  # type: ignore[no-untyped-def]

    class Call:
        def __call__(self, u: int) -> None: ...

    @functools.wraps(full)
    def wrapped(*args: object, **kw: object) -> None: ...

    return [
        full,
        none,
        keyword_only,
        star,
        Call(),
        wrapped,
        functools.partial(full, 1),
        lambda t, s=3: 0,
    ]


@pytest.mark.parametrize("fn", _shapes())
def test_parameters_read_from_the_code_object_match_inspect_signature(fn: Any) -> None:
    import inspect

    from klaw.authoring.stage import _parameters

    expected = [
        (p.name, p.annotation, p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD))
        for p in inspect.signature(fn).parameters.values()
    ]
    assert _parameters(fn) == expected
