"""An agent's state and ``evolve``, the fold step that replay, snapshots and time travel share."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from core.domain.agent.events import (
    AgentBeliefsUpdated,
    AgentDeregistered,
    AgentFailed,
    AgentRecovered,
    AgentRegistered,
    AgentWentOffline,
    AgentWentOnline,
)
from core.domain.contracts import DomainEvent, UnknownEvent
from core.domain.decider import with_changes
from core.domain.errors import UnexpectedEvent
from core.domain.serialization import from_json_value, to_json_value

__all__ = ["AGENT_STATE_SCHEMA_VERSION", "AgentState", "AgentStatus", "Beliefs", "evolve"]

AGENT_STATE_SCHEMA_VERSION = 1


class AgentStatus(enum.Enum):
    UNREGISTERED = "unregistered"
    OFFLINE = "offline"
    ONLINE = "online"
    FAILED = "failed"
    DEREGISTERED = "deregistered"


@dataclasses.dataclass(frozen=True, slots=True)
class Beliefs:
    """A reference to the agent's current belief tensors in blob storage."""

    digest: str
    size_bytes: int
    version: int


@dataclasses.dataclass(frozen=True, slots=True)
class AgentState:
    STATE_SCHEMA_VERSION: ClassVar[int] = AGENT_STATE_SCHEMA_VERSION

    agent_id: str = ""
    status: AgentStatus = AgentStatus.UNREGISTERED
    name: str = ""
    capabilities: tuple[str, ...] = ()
    beliefs: Beliefs | None = None
    reason: str | None = None
    updated_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return to_json_value(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AgentState:
        return from_json_value(cls, data)


def evolve(state: AgentState, event: DomainEvent | UnknownEvent) -> AgentState:
    """The state after ``event``. Facts are applied as recorded, without re-checking rules."""
    match event:
        case AgentRegistered():
            return AgentState(
                agent_id=event.agent_id,
                status=AgentStatus.OFFLINE,
                name=event.name,
                capabilities=event.capabilities,
                updated_at=event.at,
            )
        case AgentWentOnline() | AgentRecovered():
            return with_changes(state, status=AgentStatus.ONLINE, reason=None, updated_at=event.at)
        case AgentWentOffline():
            return with_changes(state, status=AgentStatus.OFFLINE, reason=event.reason, updated_at=event.at)
        case AgentFailed():
            return with_changes(state, status=AgentStatus.FAILED, reason=event.reason, updated_at=event.at)
        case AgentBeliefsUpdated():
            beliefs = Beliefs(event.digest, event.size_bytes, event.version)
            return with_changes(state, beliefs=beliefs, updated_at=event.at)
        case AgentDeregistered():
            return with_changes(
                state, status=AgentStatus.DEREGISTERED, reason=event.reason, updated_at=event.at
            )
        case UnknownEvent():
            return state
        case _:
            raise UnexpectedEvent("agent", type(event).__name__)
