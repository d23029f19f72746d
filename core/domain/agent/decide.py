"""The agent state machine: which command is allowed in which status, and what it records.

    unregistered --register--> offline <--online / offline--> online
    online --fail--> failed --recover--> online
    offline | online | failed --deregister--> deregistered (final: a new agent takes a new id)
    offline | online --update beliefs--> same status, new belief digest

A failed agent may not update its beliefs: whatever it computed while failing is suspect, and
recovery comes first.
"""

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
from core.domain.agent.events import (
    AgentBeliefsUpdated,
    AgentDeregistered,
    AgentEvent,
    AgentFailed,
    AgentRecovered,
    AgentRegistered,
    AgentWentOffline,
    AgentWentOnline,
)
from core.domain.agent.state import AgentState, AgentStatus
from core.domain.errors import IllegalTransition
from core.domain.validation import check_same_aggregate

__all__ = ["ALLOWED", "decide"]

_S = AgentStatus

# The state machine as data: the statuses in which each command is allowed.
ALLOWED: dict[type[AgentCommand], frozenset[AgentStatus]] = {
    RegisterAgent: frozenset({_S.UNREGISTERED}),
    BringAgentOnline: frozenset({_S.OFFLINE}),
    TakeAgentOffline: frozenset({_S.ONLINE}),
    MarkAgentFailed: frozenset({_S.ONLINE}),
    RecoverAgent: frozenset({_S.FAILED}),
    UpdateAgentBeliefs: frozenset({_S.OFFLINE, _S.ONLINE}),
    DeregisterAgent: frozenset({_S.OFFLINE, _S.ONLINE, _S.FAILED}),
}


def decide(command: AgentCommand, state: AgentState) -> list[AgentEvent]:
    """The events ``command`` produces in ``state``; raises a CommandRefused if it may not run."""
    name = type(command).__name__
    check_same_aggregate(name, command.agent_id, state.agent_id)
    if state.status not in ALLOWED[type(command)]:
        raise IllegalTransition("agent", command.agent_id, state.status.value, name)
    match command:
        case RegisterAgent():
            capabilities = tuple(sorted(set(command.capabilities)))
            return [AgentRegistered(command.agent_id, command.name, capabilities, command.at)]
        case BringAgentOnline():
            return [AgentWentOnline(command.agent_id, command.at)]
        case TakeAgentOffline():
            return [AgentWentOffline(command.agent_id, command.reason, command.at)]
        case MarkAgentFailed():
            return [AgentFailed(command.agent_id, command.reason, command.at)]
        case RecoverAgent():
            return [AgentRecovered(command.agent_id, command.at)]
        case UpdateAgentBeliefs():
            return _beliefs_updated(command, state)
        case DeregisterAgent():
            return [AgentDeregistered(command.agent_id, command.reason, command.at)]


def _beliefs_updated(command: UpdateAgentBeliefs, state: AgentState) -> list[AgentEvent]:
    # Blobs are content-addressed: the same digest is the same tensors, so there is nothing
    # new to record and a heartbeat that re-sends its beliefs costs no event.
    if state.beliefs is not None and state.beliefs.digest == command.digest:
        return []
    version = 1 if state.beliefs is None else state.beliefs.version + 1
    return [AgentBeliefsUpdated(command.agent_id, command.digest, command.size_bytes, version, command.at)]
