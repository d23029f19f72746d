"""Every error, mapped to its status code in one place; every body is ``ErrorBody``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from core.domain.errors import CommandRefused, InvalidCommand
from core.errors import ConcurrencyError, InvalidInput, RetriableError
from projections.audit import AuditIndexNotBuilt

__all__ = ["ERRORS", "install"]

# The statuses a route may answer besides its success, for the OpenAPI document.
ERRORS: dict[int | str, dict[str, Any]] = {
    401: {"description": "missing or invalid API key"},
    403: {"description": "the key lacks the scope"},
    413: {"description": "the request body is over the event size limit (1 MiB by default)"},
    422: {"description": "the request is invalid; `field` names what"},
    503: {"description": "the database or Redis is away; retry after Retry-After seconds"},
}


def _body(
    status: int, error: str, field: str | None = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": error, "field": field}, status_code=status, headers=headers)


# Domain and store errors by status: bad input, refused by the state, lost a race.
_STATUSES: tuple[tuple[type[Exception], int], ...] = (
    (InvalidInput, 422),
    (InvalidCommand, 422),
    (CommandRefused, 409),
    (ConcurrencyError, 409),
)


def install(app: FastAPI) -> None:
    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        return _body(exc.status_code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0]
        where = [str(p) for p in first.get("loc", ()) if p not in ("body", "query", "header", "path")]
        field = ".".join(where) or None
        return _body(422, f"{field or 'request'}: {first.get('msg', 'invalid')}", field)

    def answer(status: int) -> Callable[[Request, Exception], Awaitable[JSONResponse]]:
        async def handler(_: Request, exc: Exception) -> JSONResponse:
            return _body(status, str(exc))

        return handler

    for error, status in _STATUSES:
        app.add_exception_handler(error, answer(status))

    @app.exception_handler(AuditIndexNotBuilt)
    async def no_index(_: Request, exc: AuditIndexNotBuilt) -> JSONResponse:
        return _body(503, str(exc), headers={"Retry-After": "5"})

    @app.exception_handler(RetriableError)
    async def away(_: Request, exc: RetriableError) -> JSONResponse:
        return _body(503, str(exc), headers={"Retry-After": "1"})
