"""Agent event contracts and the upcasters from their older schema versions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from core.domain.contracts import DomainEvent, Upcaster

__all__ = [
    "AGENT_EVENTS",
    "AGENT_UPCASTERS",
    "AgentBeliefsUpdated",
    "AgentDeregistered",
    "AgentEvent",
    "AgentFailed",
    "AgentRecovered",
    "AgentRegistered",
    "AgentWentOffline",
    "AgentWentOnline",
    "upcast_agent_registered_v1",
]


@dataclass(frozen=True, slots=True)
class AgentRegistered(DomainEvent):
    """An agent joined with what it can do. v2 made ``capabilities`` a list instead of a CSV string."""

    TYPE: ClassVar[str] = "AgentRegistered"
    SCHEMA_VERSION: ClassVar[int] = 2

    agent_id: str
    name: str
    capabilities: tuple[str, ...]
    at: datetime


@dataclass(frozen=True, slots=True)
class AgentWentOnline(DomainEvent):
    TYPE: ClassVar[str] = "AgentWentOnline"
    SCHEMA_VERSION: ClassVar[int] = 1

    agent_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class AgentWentOffline(DomainEvent):
    TYPE: ClassVar[str] = "AgentWentOffline"
    SCHEMA_VERSION: ClassVar[int] = 1

    agent_id: str
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class AgentFailed(DomainEvent):
    TYPE: ClassVar[str] = "AgentFailed"
    SCHEMA_VERSION: ClassVar[int] = 1

    agent_id: str
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class AgentRecovered(DomainEvent):
    TYPE: ClassVar[str] = "AgentRecovered"
    SCHEMA_VERSION: ClassVar[int] = 1

    agent_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class AgentBeliefsUpdated(DomainEvent):
    """The agent's beliefs are now the tensor blob ``digest``; the event never holds tensors.

    The payload lives in content-addressed blob storage (safetensors, deduplicated by digest),
    so a replay stays as cheap as reading a short string, and the same beliefs stored twice
    cost one blob. ``version`` counts the agent's belief updates.
    """

    TYPE: ClassVar[str] = "AgentBeliefsUpdated"
    SCHEMA_VERSION: ClassVar[int] = 1

    agent_id: str
    digest: str
    size_bytes: int
    version: int
    at: datetime


@dataclass(frozen=True, slots=True)
class AgentDeregistered(DomainEvent):
    TYPE: ClassVar[str] = "AgentDeregistered"
    SCHEMA_VERSION: ClassVar[int] = 1

    agent_id: str
    reason: str
    at: datetime


AgentEvent = (
    AgentRegistered
    | AgentWentOnline
    | AgentWentOffline
    | AgentFailed
    | AgentRecovered
    | AgentBeliefsUpdated
    | AgentDeregistered
)

AGENT_EVENTS: tuple[type[DomainEvent], ...] = (
    AgentRegistered,
    AgentWentOnline,
    AgentWentOffline,
    AgentFailed,
    AgentRecovered,
    AgentBeliefsUpdated,
    AgentDeregistered,
)


def upcast_agent_registered_v1(data: Mapping[str, Any]) -> dict[str, Any]:
    """AgentRegistered v1 {agent_id, name, capabilities: "a, b", at} to v2 (a sorted list).

    v1 stored capabilities as one comma-separated string; v2 keeps them as the sorted,
    de-duplicated list that RegisterAgent produces today, so both forms fold alike.
    """
    raw = data["capabilities"]
    if not isinstance(raw, str):
        raise TypeError(f"v1 capabilities must be a string, got {raw!r}")
    capabilities = sorted({part.strip() for part in raw.split(",") if part.strip()})
    return {
        "agent_id": data["agent_id"],
        "name": data["name"],
        "capabilities": capabilities,
        "at": data["at"],
    }


AGENT_UPCASTERS: tuple[Upcaster, ...] = (Upcaster("AgentRegistered", 1, upcast_agent_registered_v1),)
