"""Route handlers derived from the command table: for a command whose request is its path and
query fields (most of them), the handler, its parameters and their OpenAPI documentation come
from the command's Struct and its :mod:`klaw.protocol.table` entry, so adding such a command is
its definition, its table entry and its dispatcher handler.

A field's type becomes the parameter's (``tuple[X, ...]`` a repeatable query parameter), its
``msgspec.Meta`` bounds the parameter's (``ge``, ``le``, ...), its default the parameter's, and
its wire name the parameter's alias. Body fields are read from the request's JSON object
(documented in OpenAPI by the command's JSON Schema, restricted to them). The values are read
back into the command by ``msgspec.convert``, which checks them once more.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Final, Union

import msgspec
from fastapi import Path, Query, Request, Response
from starlette.concurrency import run_in_threadpool

from klaw.errors import InvalidCommandError
from klaw.protocol.table import Http

_BOUNDS: Final = ("ge", "gt", "le", "lt", "min_length", "max_length", "pattern", "description")


def _plain(hint: Any) -> tuple[Any, dict[str, Any]]:
    """The type FastAPI reads for a field typed ``hint``, and the bounds of its Meta."""
    bounds: dict[str, Any] = {}
    if typing.get_origin(hint) is Annotated:
        base, *extras = typing.get_args(hint)
        for meta in extras:
            if isinstance(meta, msgspec.Meta):
                bounds.update({k: v for k in _BOUNDS if (v := getattr(meta, k, None)) is not None})
        return _plain(base)[0], bounds
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1:
            base, bounds = _plain(args[0])
            return base | None, bounds
    if origin is tuple:
        item, *rest = typing.get_args(hint)
        if rest == [Ellipsis]:
            return list[_plain(item)[0]] | None, bounds  # type: ignore[misc]
    return hint, bounds


def handler(
    cls: type[msgspec.Struct],
    http: Http,
    respond: Callable[[dict[str, Any], Any], Response],
    principal: Any,
) -> Callable[..., Any]:
    """A FastAPI endpoint taking ``cls``'s path, query and body fields (as ``http`` sends
    them) and answering ``respond(fields, who)``: the fields by name (the caller makes the
    command) and the principal the ``principal`` dependency found."""
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in msgspec.structs.fields(cls)}
    params = []
    for name in http.path_fields:
        base, bounds = _plain(hints[name])
        path = Path(**bounds)
        params.append(
            inspect.Parameter(
                name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[base, path]
            )
        )
    for name in http.query:
        field = fields[name]
        base, bounds = _plain(hints[name])
        wire = http.names.get(name)
        default: Any = inspect.Parameter.empty
        if field.default is not msgspec.NODEFAULT:
            default = field.default
        elif field.default_factory is not msgspec.NODEFAULT:
            default = None  # an empty collection: not sent
        query = Query(alias=wire, **bounds) if wire else Query(**bounds)
        params.append(
            inspect.Parameter(
                name,
                inspect.Parameter.KEYWORD_ONLY,
                annotation=Annotated[base, query],
                default=default,
            )
        )

    params.append(
        inspect.Parameter("klaw_principal", inspect.Parameter.KEYWORD_ONLY, default=principal)
    )
    endpoint: Callable[..., Any]
    if http.body:
        params.append(
            inspect.Parameter("request", inspect.Parameter.KEYWORD_ONLY, annotation=Request)
        )

        async def with_body(**values: Any) -> Response:
            request: Request = values.pop("request")
            who = values.pop("klaw_principal")
            fields = {**await _body(request, cls, http), **values}
            return await run_in_threadpool(respond, fields, who)

        endpoint = with_body
    else:

        def without_body(**values: Any) -> Response:
            who = values.pop("klaw_principal")
            return respond(values, who)

        endpoint = without_body
    endpoint.__signature__ = inspect.Signature(params, return_annotation=Response)  # type: ignore[union-attr]
    endpoint.__name__ = http.name
    endpoint.__doc__ = inspect.cleandoc(cls.__doc__ or "") or None
    return endpoint


async def _body(request: Request, cls: type[msgspec.Struct], http: Http) -> dict[str, Any]:
    """The body fields of ``cls`` from the request's JSON object (by their wire names)."""
    raw = await request.body()
    try:
        found = msgspec.json.decode(raw) if raw.strip() else {}
    except msgspec.DecodeError as exc:
        raise InvalidCommandError(
            f"The body of {request.method} {request.url.path} is not JSON: {exc}.",
            command=cls.__name__,
            hint="Send a JSON object (Content-Type: application/json).",
        ) from None
    if not isinstance(found, dict):
        raise InvalidCommandError(
            f"The body of {request.method} {request.url.path} must be a JSON object.",
            command=cls.__name__,
            hint=f"Its fields: {', '.join(http.body)}.",
        )
    wire = {http.names.get(f, f): f for f in http.body}
    unknown = sorted(set(found) - set(wire))
    if unknown:
        raise InvalidCommandError(
            f"Unknown field(s) {', '.join(unknown)} in the body of {cls.__name__}.",
            command=cls.__name__,
            hint=f"Its fields: {', '.join(wire)}.",
        )
    return {wire[k]: v for k, v in found.items()}


def body_schema(cls: type[msgspec.Struct], http: Http) -> dict[str, Any]:
    """The OpenAPI request body of a command's body fields: its JSON Schema, restricted to
    them (nested Structs are left as any JSON, so the schema stands alone)."""
    _, components = msgspec.json.schema_components([cls], ref_template="#/$defs/{name}")
    component = components.get(cls.__name__, {})
    properties = component.get("properties", {})
    chosen = {http.names.get(f, f): _standalone(properties.get(f, {})) for f in http.body}
    required = [http.names.get(f, f) for f in component.get("required", ()) if f in http.body]
    body = {"type": "object", "properties": chosen, "additionalProperties": False}
    if required:
        body["required"] = required
    return {
        "requestBody": {
            "required": bool(required),
            "content": {"application/json": {"schema": body}},
        }
    }


def _standalone(schema: Any) -> Any:
    """``schema`` with any reference to another component replaced by 'any JSON'."""
    if isinstance(schema, dict):
        if "$ref" in schema:
            return {}
        return {k: _standalone(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [_standalone(v) for v in schema]
    return schema
