"""Route handlers derived from the command table: for a command whose request is its path and
query fields (most of them), the handler, its parameters and their OpenAPI documentation come
from the command's Struct and its :mod:`klaw.protocol.table` entry, so adding such a command is
its definition, its table entry and its dispatcher handler.

A field's type becomes the parameter's (``tuple[X, ...]`` a repeatable query parameter), its
``msgspec.Meta`` bounds the parameter's (``ge``, ``le``, ...), its default the parameter's, and
its wire name the parameter's alias. The values are read back into the command by
``msgspec.convert``, which checks them once more.
"""

from __future__ import annotations

import inspect
import types
import typing
from collections.abc import Callable
from typing import Annotated, Any, Final, Union

import msgspec
from fastapi import Path, Query, Response

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
    cls: type[msgspec.Struct], http: Http, respond: Callable[[dict[str, Any]], Response]
) -> Callable[..., Response]:
    """A FastAPI endpoint taking ``cls``'s path and query fields (as ``http`` sends them) and
    answering ``respond(fields)``, the fields by name (the caller makes the command)."""
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in msgspec.structs.fields(cls)}
    params = [
        inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=Annotated[str, Path()])
        for name in http.path_fields
    ]
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

    def endpoint(**values: Any) -> Response:
        return respond(values)

    endpoint.__signature__ = inspect.Signature(params, return_annotation=Response)  # type: ignore[attr-defined]
    endpoint.__name__ = http.name
    endpoint.__doc__ = inspect.cleandoc(cls.__doc__ or "") or None
    return endpoint
