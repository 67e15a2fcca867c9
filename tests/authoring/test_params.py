"""Params: JSON Schema, validation with errors that name the field."""

from __future__ import annotations

import pytest
from pydantic import BaseModel, Field

import klaw
from klaw.authoring.params import (
    dump_params,
    params_schema,
    parse_assignments,
    resolve_params,
)
from klaw.errors import DefinitionError, ParamsError


class Revenue(BaseModel):
    min_rows: int = Field(100, ge=0)
    region: str = "EU"


class Other(BaseModel):
    region: str = "EU"
    verbose: bool = False


@klaw.stage
def one(params: Revenue) -> None: ...


@klaw.stage
def two(params: Other) -> None: ...


WF = klaw.workflow("w", [one, two])


def test_schema_merges_models() -> None:
    schema = params_schema(WF)
    assert set(schema["properties"]) == {"min_rows", "region", "verbose"}
    assert schema["properties"]["min_rows"]["minimum"] == 0
    assert schema["additionalProperties"] is False


def test_values_are_validated_and_shared() -> None:
    resolved = resolve_params(WF, parse_assignments(["min_rows=5", "region=US"]))
    assert resolved[Revenue] == Revenue(min_rows=5, region="US")
    assert resolved[Other].region == "US"
    assert dump_params(resolved) == {"min_rows": 5, "region": "US", "verbose": False}


def test_invalid_value_names_the_field() -> None:
    with pytest.raises(ParamsError, match=r"min_rows: .*integer.*'abc'"):
        resolve_params(WF, {"min_rows": "abc"})
    with pytest.raises(ParamsError, match="min_rows: .*greater than or equal"):
        resolve_params(WF, {"min_rows": -1})


def test_unknown_key_suggests_close_names() -> None:
    with pytest.raises(ParamsError, match="did you mean min_rows"):
        resolve_params(WF, {"min_row": 1})


def test_malformed_assignment() -> None:
    with pytest.raises(ParamsError, match="key=value"):
        parse_assignments(["novalue"])
    assert parse_assignments(["xs=[1,2]", "s=text", "b=true"]) == {
        "xs": [1, 2],
        "s": "text",
        "b": True,
    }


class A(BaseModel):
    x: int = 1


class B(BaseModel):
    x: str = "a"


def test_conflicting_field_types_are_a_definition_error() -> None:
    @klaw.stage
    def f(params: A) -> None: ...

    @klaw.stage
    def g(params: B) -> None: ...

    with pytest.raises(DefinitionError, match="'x' is declared by A and B"):
        params_schema(klaw.workflow("w", [f, g]))


def test_unresolvable_params_annotation_says_where_to_define_it() -> None:
    class Local(BaseModel):
        x: int = 1

    with pytest.raises(DefinitionError, match="cannot be resolved"):

        @klaw.stage
        def f(params: Local) -> None: ...
