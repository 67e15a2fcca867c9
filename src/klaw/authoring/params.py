"""Run parameters: pydantic models declared by stages, validated once per run."""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable, Mapping
from typing import Any

from klaw.authoring.secrets import redact, redacted_path
from klaw.authoring.workflow import Workflow
from klaw.errors import DefinitionError, ParamsError


def parse_assignments(items: Iterable[str]) -> dict[str, Any]:
    """Turn ``["k=v", ...]`` into a dict. A value that parses as JSON (a number, ``true``,
    a list, an object, a quoted string) is taken as that JSON value, otherwise as text."""
    result: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ParamsError(
                f"--param {item!r} is not of the form key=value.",
                hint="Write for example --param min_rows=100 --param region=EU.",
            )
        try:
            result[key] = json.loads(raw)
        except ValueError:
            result[key] = raw
    return result


def fields_of(workflow: Workflow) -> dict[str, tuple[type[Any], Any]]:
    """Every params field of the workflow: name -> (model, field info). A field declared by
    two models must agree on its type."""
    fields: dict[str, tuple[type[Any], Any]] = {}
    for model in workflow.params_models:
        for name, info in model.model_fields.items():
            if name in fields and fields[name][1].annotation != info.annotation:
                other = fields[name][0].__name__
                raise DefinitionError(
                    f"Workflow {workflow.name!r}: params field {name!r} is declared by "
                    f"{other} and {model.__name__} with different types.",
                    hint="Give the field one type, or rename one of them.",
                )
            fields.setdefault(name, (model, info))
    return fields


def params_schema(workflow: Workflow) -> dict[str, Any]:
    """One JSON Schema for all params of a workflow (for forms and validation)."""
    properties: dict[str, Any] = {}
    required: list[str] = []
    defs: dict[str, Any] = {}
    fields_of(workflow)  # raises on conflicting declarations
    for model in workflow.params_models:
        schema = model.model_json_schema()
        defs.update(schema.pop("$defs", {}))
        for name, prop in schema.get("properties", {}).items():
            properties.setdefault(name, prop)
        required.extend(r for r in schema.get("required", []) if r not in required)
    result: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": f"{workflow.name} params",
        "type": "object",
        "properties": properties,
        "additionalProperties": False,
    }
    if required:
        result["required"] = required
    if defs:
        result["$defs"] = defs
    return result


def resolve_params(workflow: Workflow, values: Mapping[str, Any]) -> dict[type[Any], Any]:
    """Validate ``values`` against every params model of the workflow; return one instance per
    model. Unknown keys and invalid values raise ``ParamsError`` naming the field."""
    fields = fields_of(workflow)
    unknown = [k for k in values if k not in fields]
    if unknown:
        key = unknown[0]
        close = difflib.get_close_matches(key, list(fields), n=3)
        known = ", ".join(sorted(fields)) or "none"
        raise ParamsError(
            f"Workflow {workflow.name!r} has no param {key!r}"
            + (f"; did you mean {', '.join(close)}?" if close else f" (params: {known})."),
            hint=f"See `klaw schema {workflow.name}` for the params and their types.",
        )
    for key, value in values.items():
        where = redacted_path(value, key)
        if where is not None:
            raise ParamsError(
                f"Param {where!r} of workflow {workflow.name!r} is a secret that was given by "
                "value (a SecretStr), so it was not stored with the run; give it again.",
                hint=f"Pass --param {key}=... again, or declare it as klaw.Secret and pass a "
                f"reference (--param {key}=secret:NAME) that Klaw resolves on every run.",
            )
    if not workflow.params_models:
        return {}
    import pydantic

    resolved: dict[type[Any], Any] = {}
    for model in workflow.params_models:
        mine = {k: v for k, v in values.items() if k in model.model_fields}
        try:
            resolved[model] = model.model_validate(mine)
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in err['loc']) or model.__name__}: {err['msg']}"
                + (
                    f" (got {err['input']!r})"
                    if "input" in err and err["loc"] and not _secret_field(model, err["loc"])
                    else ""
                )
                for err in exc.errors()
            )
            raise ParamsError(
                f"Params of workflow {workflow.name!r} are not valid: {problems}.",
                hint=f"Pass them with --param name=value; `klaw schema {workflow.name}` "
                "shows what is allowed.",
            ) from None
    return resolved


def dump_params(resolved: Mapping[type[Any], Any]) -> dict[str, Any]:
    """The validated params as one JSON-ready dict (recorded with the run). A ``klaw.Secret``
    is written as its reference (``secret:NAME``); a ``SecretStr``/``SecretBytes`` given by
    value as ``{"$redacted": true}`` (left out when it kept its default): never a value."""
    merged: dict[str, Any] = {}
    for instance in resolved.values():
        merged.update(redact(instance, instance.model_dump(mode="json")))
    return merged


def _secret_field(model: type[Any], loc: tuple[Any, ...]) -> bool:
    """Whether ``loc`` is in a field declared as a secret (its input is never echoed)."""
    info = model.model_fields.get(str(loc[0]))
    return info is not None and "Secret" in str(info.annotation)
