"""Errors as ``application/problem+json`` (RFC 9457).

Every error body is ``{"type", "title", "status", "detail", "code"}`` (plus ``hint`` when
there is one). ``code`` is stable: the KlawError class name (``RunNotFoundError``), or
``InvalidRequest`` for a request FastAPI could not read, or ``InternalError``.
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Final

import msgspec
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from klaw.api.http.auth import ForbiddenError
from klaw.errors import (
    AssetNotFoundError,
    AuthError,
    DefinitionError,
    KlawError,
    MetadataUnavailableError,
    ParamsError,
    RunConflictError,
    RunNotFoundError,
    ScheduleNotFoundError,
    SelectionError,
    StaleAttemptError,
)
from klaw.observability import get_logger
from klaw.service.commands import CommandError, WorkflowNotFoundError

_log: Final = get_logger(__name__)

MEDIA_TYPE: Final = "application/problem+json"

# The most specific class that matches (in the error's MRO) decides; KlawError is the default.
STATUS: Final[dict[type[KlawError], int]] = {
    ForbiddenError: 403,
    AuthError: 401,
    RunNotFoundError: 404,
    ScheduleNotFoundError: 404,
    AssetNotFoundError: 404,
    WorkflowNotFoundError: 404,
    RunConflictError: 409,
    StaleAttemptError: 409,
    MetadataUnavailableError: 503,
    CommandError: 422,
    ParamsError: 422,
    SelectionError: 422,
    DefinitionError: 400,
    KlawError: 400,
}

_HTTP_CODES: Final = {404: "RouteNotFound", 405: "MethodNotAllowed"}


def status_of(exc: KlawError) -> int:
    for cls in type(exc).__mro__:
        if cls in STATUS:
            return STATUS[cls]
    return 400


def problem(
    status: int,
    code: str,
    detail: str,
    *,
    hint: str | None = None,
    headers: Mapping[str, str] | None = None,
) -> Response:
    body: dict[str, Any] = {
        "type": f"urn:klaw:error:{code}",
        "title": HTTPStatus(status).phrase,
        "status": status,
        "detail": detail,
        "code": code,
    }
    if hint is not None:
        body["hint"] = hint
    return Response(msgspec.json.encode(body), status, headers=headers, media_type=MEDIA_TYPE)


async def _klaw_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, KlawError)
    status = status_of(exc)
    headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
    return problem(status, type(exc).__name__, exc.message, hint=exc.hint, headers=headers)


async def _invalid_request(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, RequestValidationError)
    parts = []
    for error in exc.errors():
        where = ".".join(str(p) for p in error.get("loc", ()))
        parts.append(f"{where}: {error.get('msg', 'invalid')}")
    detail = "The request is not valid: " + "; ".join(parts) + "."
    return problem(
        422, "InvalidRequest", detail, hint="See /openapi.json for what each route takes."
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, StarletteHTTPException)
    code = _HTTP_CODES.get(exc.status_code, "HTTPError")
    return problem(exc.status_code, code, str(exc.detail), headers=exc.headers)


async def _unexpected(request: Request, exc: Exception) -> Response:
    _log.error("request failed", path=request.url.path, error=repr(exc), exc_info=exc)
    return problem(
        500,
        "InternalError",
        "Internal error; the server log has the details.",
        hint="This is a bug in Klaw; please report it with the server log.",
    )


def install(app: FastAPI) -> None:
    """Make every error of ``app`` a problem+json response."""
    app.add_exception_handler(KlawError, _klaw_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
