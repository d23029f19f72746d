"""API key authentication: ``Authorization: Bearer chr_...``. Missing or bad key 401, missing
scope 403; a resource of another tenant is 404, decided where it is looked up."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import structlog
from fastapi import Depends, HTTPException, Request

from api.http.services import Services, services
from eventstore.apikeys import Principal

__all__ = ["requires"]


def _token(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else None


def requires(scope: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency giving the request's principal, who must hold ``scope``."""

    async def principal(request: Request, svc: Annotated[Services, Depends(services)]) -> Principal:
        found = await svc.keys.authenticate(_token(request))
        if found is None:
            raise HTTPException(401, "missing or invalid API key", headers={"WWW-Authenticate": "Bearer"})
        if not found.may(scope):
            raise HTTPException(403, f"this key lacks the scope {scope}")
        request.state.principal = found
        # Every line logged while answering names who asked (contextvars: this request only).
        structlog.contextvars.bind_contextvars(
            tenant_id=found.tenant_id, actor=found.actor, key_id=found.key_id
        )
        return found

    return principal
