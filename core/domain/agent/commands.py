"""Agent commands. Each checks its own shape when built; the decider checks it against the state."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from core.domain.errors import InvalidCommand
from core.domain.validation import check_aware, check_id, check_text

__all__ = [
    "AgentCommand",
    "BringAgentOnline",
    "DeregisterAgent",
    "MarkAgentFailed",
    "RecoverAgent",
    "RegisterAgent",
    "TakeAgentOffline",
    "UpdateAgentBeliefs",
]

# Content addresses name their hash so a later change of algorithm stays readable.
_DIGEST = re.compile(r"sha256:[0-9a-f]{64}")


def _check_base(command: object, agent_id: str, at: datetime) -> None:
    name = type(command).__name__
    check_id(name, "agent_id", agent_id)
    check_aware(name, "at", at)


@dataclass(frozen=True, slots=True)
class RegisterAgent:
    agent_id: str
    name: str
    capabilities: tuple[str, ...]
    at: datetime

    def __post_init__(self) -> None:
        _check_base(self, self.agent_id, self.at)
        check_text("RegisterAgent", "name", self.name)
        given: object = self.capabilities  # a str would pass as a tuple of one-letter names
        if not isinstance(given, tuple):
            raise InvalidCommand("RegisterAgent", "capabilities must be a tuple of strings")
        for capability in self.capabilities:
            check_text("RegisterAgent", "each capability", capability)


@dataclass(frozen=True, slots=True)
class BringAgentOnline:
    agent_id: str
    at: datetime

    def __post_init__(self) -> None:
        _check_base(self, self.agent_id, self.at)


@dataclass(frozen=True, slots=True)
class TakeAgentOffline:
    agent_id: str
    at: datetime
    reason: str = "shutdown"

    def __post_init__(self) -> None:
        _check_base(self, self.agent_id, self.at)
        check_text("TakeAgentOffline", "reason", self.reason)


@dataclass(frozen=True, slots=True)
class MarkAgentFailed:
    agent_id: str
    reason: str
    at: datetime

    def __post_init__(self) -> None:
        _check_base(self, self.agent_id, self.at)
        check_text("MarkAgentFailed", "reason", self.reason)


@dataclass(frozen=True, slots=True)
class RecoverAgent:
    agent_id: str
    at: datetime

    def __post_init__(self) -> None:
        _check_base(self, self.agent_id, self.at)


@dataclass(frozen=True, slots=True)
class UpdateAgentBeliefs:
    """Point the agent at a tensor blob already stored under ``digest`` (``sha256:<hex>``)."""

    agent_id: str
    digest: str
    size_bytes: int
    at: datetime

    def __post_init__(self) -> None:
        _check_base(self, self.agent_id, self.at)
        if not isinstance(self.digest, str) or not _DIGEST.fullmatch(self.digest):
            raise InvalidCommand(
                "UpdateAgentBeliefs", f"digest must be 'sha256:<64 hex>', got {self.digest!r}"
            )
        if not isinstance(self.size_bytes, int) or isinstance(self.size_bytes, bool) or self.size_bytes < 0:
            raise InvalidCommand("UpdateAgentBeliefs", "size_bytes must be an int >= 0")


@dataclass(frozen=True, slots=True)
class DeregisterAgent:
    agent_id: str
    reason: str
    at: datetime

    def __post_init__(self) -> None:
        _check_base(self, self.agent_id, self.at)
        check_text("DeregisterAgent", "reason", self.reason)


AgentCommand = (
    RegisterAgent
    | BringAgentOnline
    | TakeAgentOffline
    | MarkAgentFailed
    | RecoverAgent
    | UpdateAgentBeliefs
    | DeregisterAgent
)
