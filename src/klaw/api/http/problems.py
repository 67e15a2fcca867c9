"""Errors as ``application/problem+json`` (RFC 9457).

Every error body is ``{"type", "title", "status", "detail", "code"}``, plus ``hint`` when there
is one and ``fields`` when the error has any (``{"problems": [...]}`` for a ``GraphError``,
``{"retry_after": 3}`` for a ``RateLimitedError``). ``code`` is stable: the KlawError class
name (``RunNotFoundError``), or ``InvalidRequest`` for a request FastAPI could not read, or
``InternalError``. A Klaw client rebuilds the error's own class from code, detail, hint and
fields (:mod:`klaw.protocol.errors`).
"""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPStatus
from typing import Any, Final

import msgspec
from fastapi import FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from klaw.errors import (
    ApprovalError,
    AssetNotFoundError,
    AuthError,
    CommandError,
    DefinitionError,
    ForbiddenError,
    IdempotencyError,
    KeyInProgressError,
    KlawError,
    MalformedKeyError,
    MetadataUnavailableError,
    ParamsError,
    PromotionError,
    RateLimitedError,
    ReadOnlyVersionError,
    RunConflictError,
    RunNotFoundError,
    ScheduleNotFoundError,
    SelectionError,
    StaleAttemptError,
    VersionBundleError,
    VersionNotFoundError,
    WorkflowNotFoundError,
)
from klaw.observability import get_logger

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
    VersionNotFoundError: 404,
    ReadOnlyVersionError: 409,
    PromotionError: 409,
    ApprovalError: 403,
    VersionBundleError: 422,
    StaleAttemptError: 409,
    MetadataUnavailableError: 503,
    RateLimitedError: 429,
    MalformedKeyError: 422,
    KeyInProgressError: 409,
    IdempotencyError: 409,
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
    fields: Mapping[str, Any] | None = None,
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
    if fields:
        body["fields"] = dict(fields)
    return Response(msgspec.json.encode(body), status, headers=headers, media_type=MEDIA_TYPE)


def problem_of(exc: KlawError, headers: Mapping[str, str] | None = None) -> Response:
    """The problem+json answer of ``exc``: its status, code, message, hint and fields."""
    status = status_of(exc)
    if status == 401:
        headers = {"WWW-Authenticate": "Bearer", **(headers or {})}
    return problem(
        status,
        type(exc).__name__,
        exc.message,
        hint=exc.hint,
        fields=exc.field_values(),
        headers=headers,
    )


async def _klaw_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, KlawError)
    return problem_of(exc)


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
