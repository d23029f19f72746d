"""Every error, mapped to its status code in one place; every body is ``ErrorBody``."""

from __future__ import annotations

from collections.abc import Mapping
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
    422: {"description": "the request is invalid; `field` names what"},
    503: {"description": "the database or Redis is away; retry after Retry-After seconds"},
}


def _body(
    status: int, error: str, field: str | None = None, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": error, "field": field}, status_code=status, headers=headers)


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

    @app.exception_handler(InvalidInput)
    async def invalid_input(_: Request, exc: InvalidInput) -> JSONResponse:
        return _body(422, str(exc))

    @app.exception_handler(InvalidCommand)
    async def invalid_command(_: Request, exc: InvalidCommand) -> JSONResponse:
        return _body(422, str(exc))

    @app.exception_handler(CommandRefused)
    async def refused(_: Request, exc: CommandRefused) -> JSONResponse:
        return _body(409, str(exc))

    @app.exception_handler(ConcurrencyError)
    async def conflict(_: Request, exc: ConcurrencyError) -> JSONResponse:
        return _body(409, str(exc))

    @app.exception_handler(AuditIndexNotBuilt)
    async def no_index(_: Request, exc: AuditIndexNotBuilt) -> JSONResponse:
        return _body(503, str(exc), headers={"Retry-After": "5"})

    @app.exception_handler(RetriableError)
    async def away(_: Request, exc: RetriableError) -> JSONResponse:
        return _body(503, str(exc), headers={"Retry-After": "1"})
