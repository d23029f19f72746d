"""``/v1/conversations`` and ``/v1/runs``: send and read messages; list training runs and
their epochs. All as the key's tenant; lists read the read models."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from api.contract.v1 import ErrorBody
from api.http.auth import requires
from api.http.errors import ERRORS
from api.http.services import Services, services
from core.domain import CONVERSATION, CommandContext, handle
from core.domain.conversation import SendMessage
from core.domain.serialization import to_json_value
from eventstore.apikeys import Principal
from projections.models.conversations import conversation
from projections.models.runs import run, run_epochs, runs

__all__ = ["conversations_router", "runs_router"]

conversations_router = APIRouter(prefix="/v1/conversations", tags=["conversations"])
runs_router = APIRouter(prefix="/v1/runs", tags=["runs"])
Svc = Annotated[Services, Depends(services)]
Sender = Annotated[Principal, Depends(requires("agents:write"))]
Reader = Annotated[Principal, Depends(requires("tasks:read"))]
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "not found for this tenant"}
}


class Message(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sender: str = Field(min_length=1, max_length=190)
    recipient: str = Field(min_length=1, max_length=190)
    body: dict[str, Any] = Field(default_factory=dict)
    correlation_id: str | None = None
    causation_id: str | None = None


class Sent(BaseModel):
    conversation_id: str
    sequence: int
    message_id: str


class Rows(BaseModel):
    items: list[dict[str, Any]]


@conversations_router.post(
    "/{conversation_id}/messages", status_code=201, response_model=Sent, responses={**ERRORS, **NOT_FOUND}
)
async def send(conversation_id: str, body: Message, principal: Sender, svc: Svc) -> Sent:
    """Send a message; the conversation numbers it. The body is personal data of its sender
    (sealed at rest, forgettable: docs/compliance.md)."""
    stream = CONVERSATION.stream_id(conversation_id)
    first = await svc.store.read_stream(stream, to_version=1)
    if first and first[0].tenant_id != principal.tenant_id:
        raise HTTPException(404, f"no conversation {conversation_id}")
    at = datetime.now(UTC)
    command = SendMessage(
        conversation_id, body.sender, body.recipient, at, body.body, body.correlation_id, body.causation_id
    )
    context = CommandContext(principal.tenant_id, principal.actor)
    handled = await handle(svc.store, stream, command, CONVERSATION, context)
    sent: Any = handled.events[0]  # MessageSent
    return Sent(conversation_id=conversation_id, sequence=sent.sequence, message_id=sent.message_id)


@conversations_router.get("/{conversation_id}/messages", response_model=Rows, responses=ERRORS)
async def messages(
    conversation_id: str,
    principal: Reader,
    svc: Svc,
    after: Annotated[int, Query(ge=0)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> Rows:
    """The conversation's messages in order, after sequence ``after`` (a read model)."""
    async with svc.as_tenant(principal.tenant_id) as conn:
        rows = await conversation(conn, conversation_id, after=after, limit=limit)
    return Rows(items=[to_json_value(r) for r in rows])


@runs_router.get("", response_model=Rows, responses=ERRORS)
async def list_runs(principal: Reader, svc: Svc, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> Rows:
    async with svc.as_tenant(principal.tenant_id) as conn:
        rows = await runs(conn, tenant_id=principal.tenant_id, limit=limit)
    return Rows(items=[to_json_value(r) for r in rows])


@runs_router.get("/{run_id}/epochs", response_model=Rows, responses={**ERRORS, **NOT_FOUND})
async def epochs(run_id: str, principal: Reader, svc: Svc, include_abandoned: bool = False) -> Rows:
    """A run's epochs in order (with ``include_abandoned``, those a resume re-ran too)."""
    async with svc.as_tenant(principal.tenant_id) as conn:
        if await run(conn, run_id) is None:
            raise HTTPException(404, f"no run {run_id}")
        rows = await run_epochs(conn, run_id, include_abandoned=include_abandoned)
    return Rows(items=[to_json_value(r) for r in rows])
