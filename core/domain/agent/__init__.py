"""The agent aggregate: registered with capabilities, online or offline, failed, recovered, gone."""

from __future__ import annotations

from core.domain.agent.commands import (
    AgentCommand,
    BringAgentOnline,
    DeregisterAgent,
    MarkAgentFailed,
    RecoverAgent,
    RegisterAgent,
    TakeAgentOffline,
    UpdateAgentBeliefs,
)
from core.domain.agent.decide import ALLOWED, decide
from core.domain.agent.events import (
    AGENT_EVENTS,
    AGENT_UPCASTERS,
    AgentBeliefsUpdated,
    AgentDeregistered,
    AgentEvent,
    AgentFailed,
    AgentRecovered,
    AgentRegistered,
    AgentWentOffline,
    AgentWentOnline,
)
from core.domain.agent.state import AGENT_STATE_SCHEMA_VERSION, AgentState, AgentStatus, Beliefs, evolve
from core.domain.decider import Decider

__all__ = [
    "AGENT",
    "AGENT_EVENTS",
    "AGENT_STATE_SCHEMA_VERSION",
    "AGENT_UPCASTERS",
    "ALLOWED",
    "AgentBeliefsUpdated",
    "AgentCommand",
    "AgentDeregistered",
    "AgentEvent",
    "AgentFailed",
    "AgentRecovered",
    "AgentRegistered",
    "AgentState",
    "AgentStatus",
    "AgentWentOffline",
    "AgentWentOnline",
    "Beliefs",
    "BringAgentOnline",
    "DeregisterAgent",
    "MarkAgentFailed",
    "RecoverAgent",
    "RegisterAgent",
    "TakeAgentOffline",
    "UpdateAgentBeliefs",
    "decide",
    "evolve",
]

AGENT: Decider[AgentCommand, AgentState] = Decider(
    category="agent",
    initial_state=AgentState(),
    decide=decide,
    evolve=evolve,
    state_schema_version=AGENT_STATE_SCHEMA_VERSION,
    state_to_json=AgentState.to_json,
    state_from_json=AgentState.from_json,
)
