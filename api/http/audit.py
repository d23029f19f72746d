"""``/v1/audit``: the audit trail of the key's tenant (query, export), proofs that an event is
in the signed log, the latest checkpoint, and the verification of a stream's chain.

Queries run under the tenant's row-level security with the tenant forced into the filter, so
a cursor or a filter can never reach another tenant's events; personal fields come back
opened, or redacted once their subject was forgotten."""

from __future__ import annotations

import io
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, Depends, HTTPException, Query
from fastapi.responses import PlainTextResponse, StreamingResponse
from pydantic import BaseModel

from api.contract.v1 import ErrorBody
from api.http.auth import requires
from api.http.errors import ERRORS
from api.http.services import Services, services
from eventstore.apikeys import Principal
from eventstore.audit.keys import known_verifiers
from eventstore.audit.proofs import inclusion_document
from eventstore.audit.verify import verify_stream
from eventstore.log.bulk import event_json
from eventstore.tenancy import as_tenant
from projections import audit

__all__ = ["router"]

router = APIRouter(prefix="/v1/audit", tags=["audit"])
Svc = Annotated[Services, Depends(services)]
Auditor = Annotated[Principal, Depends(requires("audit:read"))]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "not found for this tenant"}
}


class AuditEvents(BaseModel):
    events: list[dict[str, Any]]
    cursor: str
    more: bool


class Verified(BaseModel):
    ok: bool
    events: int
    sealed: int
    unsealed: int
    breaks: list[str]


def _tenant_filter(
    principal: Auditor,
    actor: str | None = None,
    type: Annotated[list[str] | None, Query()] = None,
    stream: str | None = None,
    category: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    correlation: str | None = None,
    caused_by: str | None = None,
) -> audit.AuditFilter:
    return audit.AuditFilter(
        actor=actor,
        tenant_id=principal.tenant_id,  # forced: a filter never reaches another tenant
        types=tuple(type or ()),
        stream_id=stream,
        category=category,
        since=since,
        until=until,
        correlation_id=correlation,
        caused_by=caused_by,
    )


Filter = Annotated[audit.AuditFilter, Depends(_tenant_filter)]


@router.get("/events", response_model=AuditEvents, responses=ERRORS)
async def query(
    principal: Auditor,
    flt: Filter,
    svc: Svc,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> AuditEvents:
    """A page of the tenant's events matching the filter, in log order; pass ``cursor`` back."""
    async with svc.as_tenant(principal.tenant_id) as conn:
        page = await audit.query(
            conn, None if cursor else flt, cursor=cursor, limit=limit, privacy=svc.store.privacy
        )
    return AuditEvents(events=[event_json(e) for e in page.events], cursor=page.cursor, more=page.more)


@router.get(
    "/export",
    responses={
        **ERRORS,
        200: {"description": "every match, as JSON Lines or CSV", "content": {"text/csv": {}}},
    },
)
async def export(
    principal: Auditor, flt: Filter, svc: Svc, format: Literal["jsonl", "csv"] = "jsonl"
) -> StreamingResponse:
    """Every matching event, streamed a page at a time."""
    fmt = audit.ExportFormat(format)

    async def pages() -> AsyncIterator[bytes]:
        cursor: str | None = None
        header = True
        while True:
            async with svc.as_tenant(principal.tenant_id) as conn:
                page = await audit.query(
                    conn, None if cursor else flt, cursor=cursor, limit=1000, privacy=svc.store.privacy
                )
            sink = io.StringIO()
            write = audit.event_writer(sink, fmt)
            text = sink.getvalue() if header else ""  # the CSV header, once
            sink.seek(0)
            sink.truncate()
            header = False
            for event in page.events:
                write(event)
            yield (text + sink.getvalue()).encode()
            if not page.more:
                return
            cursor = page.cursor

    media = "application/x-ndjson" if format == "jsonl" else "text/csv"
    return StreamingResponse(pages(), media_type=media)


@router.get("/proofs/{event_id}", responses={**ERRORS, **NOT_FOUND})
async def proof(event_id: UUID, principal: Auditor, svc: Svc, size: int | None = None) -> dict[str, Any]:
    """The inclusion proof of an event against a signed checkpoint (the latest by default),
    to check offline with `chronicle audit check` or the ten-line script in docs/compliance.md."""
    async with svc.pool.acquire() as conn:
        async with as_tenant(conn, principal.tenant_id):
            visible = await conn.fetchval("SELECT 1 FROM all_events WHERE event_id = $1", event_id)
        if not visible:
            raise HTTPException(404, f"no event {event_id}")
        return await inclusion_document(conn, event_id, size)


@router.get("/checkpoint", response_class=PlainTextResponse, responses={**ERRORS, **NOT_FOUND})
async def checkpoint(principal: Auditor, svc: Svc) -> PlainTextResponse:
    """The latest signed checkpoint (a C2SP signed note): keep it outside the database."""
    async with svc.pool.acquire() as conn:
        note = await conn.fetchval("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1")
    if note is None:
        raise HTTPException(404, "no checkpoint has been signed yet")
    return PlainTextResponse(str(note))


@router.get("/verify/{stream_id}", response_model=Verified, responses={**ERRORS, **NOT_FOUND})
async def verify(stream_id: str, principal: Auditor, svc: Svc) -> Verified:
    """Walk one of the tenant's streams: its chain, and each sealed event's proof."""
    await svc.first_event(principal.tenant_id, stream_id)
    async with svc.pool.acquire() as conn:
        report = await verify_stream(conn, stream_id, await known_verifiers(conn))
    return Verified(
        ok=report.ok,
        events=report.events,
        sealed=report.sealed,
        unsealed=report.unsealed,
        breaks=[str(b) for b in report.breaks],
    )
