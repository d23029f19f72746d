"""``/v1/agents`` and ``/v1/streams``: register and deregister agents, list them; any stream's
events and its state at a version, a position or a time. All as the key's tenant."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field

from api.contract.v1 import ErrorBody, EventView
from api.http.auth import requires
from api.http.errors import ERRORS
from api.http.services import Services, services, stream_or_404
from api.http.tasks import event_view
from core.domain import AGENT, CommandContext, handle
from core.domain.agent import DeregisterAgent, RegisterAgent
from core.domain.loading import AtPosition, AtTime, AtVersion, Target
from core.domain.serialization import to_json_value
from eventstore.apikeys import Principal
from projections.models.agents import AgentRow, agents
from projections.time_travel import state_at

__all__ = ["agents_router", "streams_router"]

agents_router = APIRouter(prefix="/v1/agents", tags=["agents"])
streams_router = APIRouter(prefix="/v1/streams", tags=["streams"])

NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "not found for this tenant"}
}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "the agent's state refuses it"}
}
Svc = Annotated[Services, Depends(services)]
AgentWriter = Annotated[Principal, Depends(requires("agents:write"))]
Reader = Annotated[Principal, Depends(requires("tasks:read"))]
Auditor = Annotated[Principal, Depends(requires("audit:read"))]


class AgentRegistration(BaseModel):
    model_config = ConfigDict(extra="forbid")

    agent_id: str = Field(min_length=1, max_length=190, pattern=r"^[A-Za-z0-9_.:@=+-]+$")
    name: str = Field(min_length=1, max_length=200)
    capabilities: list[str] = Field(default_factory=list, max_length=64)


class AgentView(BaseModel):
    agent_id: str
    name: str
    status: str
    capabilities: list[str]
    version: int


class AgentList(BaseModel):
    agents: list[dict[str, Any]]
    cursor: str | None


class StateView(BaseModel):
    stream_id: str
    version: int
    state: dict[str, Any]


def _context(principal: Principal) -> CommandContext:
    return CommandContext(principal.tenant_id, principal.actor)


@agents_router.post("", status_code=201, response_model=AgentView, responses={**ERRORS, **CONFLICT})
async def register(body: AgentRegistration, principal: AgentWriter, svc: Svc) -> AgentView:
    stream = AGENT.stream_id(body.agent_id)
    theirs = await svc.store.read_stream(stream, to_version=1)
    if theirs and theirs[0].tenant_id != principal.tenant_id:
        raise HTTPException(409, f"agent id {body.agent_id} is taken")
    command = RegisterAgent(body.agent_id, body.name, tuple(body.capabilities), datetime.now(UTC))
    handled = await handle(svc.store, stream, command, AGENT, _context(principal))
    state = handled.state
    return AgentView(
        agent_id=body.agent_id,
        name=state.name,
        status=state.status.value,
        capabilities=list(state.capabilities),
        version=handled.version,
    )


@agents_router.get("", response_model=AgentList, responses=ERRORS)
async def list_agents(
    principal: Reader, svc: Svc, after: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 100
) -> AgentList:
    """The agent registry (a read model), in id order; pass the last id back as ``after``."""
    async with svc.as_tenant(principal.tenant_id) as conn:
        rows = await agents(
            conn, tenant_id=principal.tenant_id, after=(after,) if after else None, limit=limit
        )
    return AgentList(agents=[_row(r) for r in rows], cursor=rows[-1].agent_id if len(rows) == limit else None)


def _row(row: AgentRow) -> dict[str, Any]:
    found: dict[str, Any] = to_json_value(row)
    return found


@agents_router.get("/{agent_id}", response_model=StateView, responses={**ERRORS, **NOT_FOUND})
async def get_agent(agent_id: str, principal: Reader, svc: Svc) -> StateView:
    """The agent as its stream folds it now."""
    return await _state(svc, principal, AGENT.stream_id(agent_id), None)


@agents_router.delete("/{agent_id}", response_model=StateView, responses={**ERRORS, **NOT_FOUND, **CONFLICT})
async def deregister(
    agent_id: str, principal: AgentWriter, svc: Svc, reason: str = "deregistered"
) -> StateView:
    stream = AGENT.stream_id(agent_id)
    await svc.first_event(principal.tenant_id, stream)
    handled = await handle(
        svc.store, stream, DeregisterAgent(agent_id, reason, datetime.now(UTC)), AGENT, _context(principal)
    )
    return StateView(stream_id=stream, version=handled.version, state=to_json_value(handled.state))


@streams_router.get("/{stream_id}/events", response_model=list[EventView], responses={**ERRORS, **NOT_FOUND})
async def stream_events(
    stream_id: str,
    principal: Auditor,
    svc: Svc,
    from_version: Annotated[int, Query(ge=1)] = 1,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 1000,
) -> list[EventView]:
    """A stream's events from ``from_version``, at most ``limit``."""
    reader = svc.store.as_tenant(principal.tenant_id)
    events = await reader.read_stream(stream_or_404(stream_id), from_version, from_version + limit - 1)
    if not events and from_version == 1:
        raise HTTPException(404, f"no stream {stream_id}")
    return [event_view(e) for e in events]


@streams_router.get("/{stream_id}/state", response_model=StateView, responses={**ERRORS, **NOT_FOUND})
async def stream_state(
    stream_id: str,
    principal: Auditor,
    svc: Svc,
    version: Annotated[int | None, Query(ge=0)] = None,
    position: Annotated[int | None, Query(ge=0)] = None,
    at: datetime | None = None,
) -> StateView:
    """The stream's state now, or at a version, a global position or a time (one of them)."""
    given = [t for t in (version, position, at) if t is not None]
    if len(given) > 1:
        raise HTTPException(422, "give one of version, position and at")
    target: Target | None = None
    if version is not None:
        target = AtVersion(version)
    elif position is not None:
        target = AtPosition(position)
    elif at is not None:
        target = AtTime(at if at.tzinfo else at.replace(tzinfo=UTC))
    return await _state(svc, principal, stream_id, target)


async def _state(svc: Services, principal: Principal, stream_id: str, target: Target | None) -> StateView:
    await svc.first_event(principal.tenant_id, stream_id)
    loaded = await state_at(svc.store, None, stream_id, target)  # 422 for a stream with no aggregate
    return StateView(stream_id=stream_id, version=loaded.version, state=to_json_value(loaded.state))
