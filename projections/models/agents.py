"""The agent registry: every agent's status, capabilities, when it was last seen, and the task
it holds now. Read it through the ``agent_registry`` view.

An agent's row follows its own stream (registered, online, offline, failed, recovered, beliefs
updated, deregistered); ``last_seen_at`` is the time of its latest event. ``current_task``
follows the task streams: a task assigned to the agent becomes its current task, and stops
being it when that task completes, fails, times out, is cancelled, dead-lettered, requeued or
scheduled for a retry. An assignment to an id that is not a registered agent is ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from core.domain.agent.events import (
    AgentBeliefsUpdated,
    AgentDeregistered,
    AgentFailed,
    AgentRecovered,
    AgentRegistered,
    AgentWentOffline,
    AgentWentOnline,
)
from core.domain.agent.state import AgentStatus
from core.domain.contracts import DomainEvent
from core.domain.registry import DOMAIN_EVENTS
from core.domain.task.events import (
    TaskAssigned,
    TaskCancelled,
    TaskCompleted,
    TaskDeadLettered,
    TaskFailed,
    TaskRequeued,
    TaskRetryScheduled,
    TaskTimedOut,
)
from core.events import RecordedEvent
from projections.models.pages import fetch_page
from projections.models.rows import Row, RowTable, touched

__all__ = ["AgentRegistry", "AgentRow", "agent", "agents"]

TABLE = RowTable(
    "agent_registry_rows",
    "agent_id",
    (
        "agent_id",
        "tenant_id",
        "name",
        "status",
        "capabilities",
        "registered_at",
        "last_seen_at",
        "current_task",
        "beliefs_digest",
        "status_reason",
        "version",
        "updated_position",
    ),
)

_STATUS: dict[type[DomainEvent], str] = {
    AgentWentOnline: "online",
    AgentWentOffline: "offline",
    AgentFailed: "failed",
    AgentRecovered: "online",
    AgentDeregistered: "deregistered",
}
_TASK_ENDS = frozenset(
    c.TYPE
    for c in (
        TaskCompleted,
        TaskFailed,
        TaskTimedOut,
        TaskCancelled,
        TaskDeadLettered,
        TaskRequeued,
        TaskRetryScheduled,
    )
)
_AGENT_TYPES = frozenset(
    c.TYPE
    for c in (
        AgentRegistered,
        AgentWentOnline,
        AgentWentOffline,
        AgentFailed,
        AgentRecovered,
        AgentBeliefsUpdated,
        AgentDeregistered,
    )
)


class AgentRegistry:
    name = "agent_registry"
    version = 1
    categories = ("agent", "task")
    tables = (TABLE.name,)

    async def apply(self, conn: asyncpg.Connection, generation: int, events: Sequence[RecordedEvent]) -> None:
        agents, tasks = _keys(events)
        rows = await TABLE.fetch(
            conn, generation, "agent_id = ANY($2) OR current_task = ANY($3)", list(agents), list(tasks)
        )
        holders = {row["current_task"]: key for key, row in rows.items() if row["current_task"]}
        changed: list[str] = []
        for recorded in events:
            if recorded.type in _AGENT_TYPES:
                agent_id = _agent_event(rows, recorded)
            elif recorded.type == TaskAssigned.TYPE:
                agent_id = _assigned(rows, holders, recorded)
            elif recorded.type in _TASK_ENDS:
                agent_id = _task_ended(rows, holders, _task_id(recorded))
            else:
                continue
            if agent_id is not None:
                changed.append(agent_id)
        await TABLE.upsert(conn, generation, touched(rows, changed))


def _keys(events: Sequence[RecordedEvent]) -> tuple[set[str], set[str]]:
    """The agents a batch names directly, and the tasks whose holders it may change."""
    agents: set[str] = set()
    tasks: set[str] = set()
    for recorded in events:
        if recorded.type in _AGENT_TYPES:
            agents.add(recorded.stream_id.split("-", 1)[1])
        elif recorded.type == TaskAssigned.TYPE:
            agents.add(str(recorded.data["assignee"]))
        elif recorded.type in _TASK_ENDS:
            tasks.add(_task_id(recorded))
    return agents, tasks


def _task_id(recorded: RecordedEvent) -> str:
    return recorded.stream_id.split("-", 1)[1]


def _agent_event(rows: dict[Any, Row], recorded: RecordedEvent) -> str | None:
    event = DOMAIN_EVENTS.read(recorded)
    if isinstance(event, AgentRegistered):
        rows[event.agent_id] = {
            "agent_id": event.agent_id,
            "tenant_id": recorded.tenant_id,
            "name": event.name,
            "status": "offline",
            "capabilities": list(event.capabilities),
            "registered_at": event.at,
            "last_seen_at": event.at,
            "current_task": None,
            "beliefs_digest": None,
            "status_reason": None,
            "version": recorded.stream_version,
            "updated_position": recorded.global_position,
        }
        return event.agent_id
    row = rows.get(recorded.stream_id.split("-", 1)[1])
    if row is None:  # an agent whose registration this generation never saw: nothing to follow
        return None
    if isinstance(event, AgentBeliefsUpdated):
        row["beliefs_digest"] = event.digest
    elif type(event) in _STATUS:
        row["status"] = _STATUS[type(event)]
        row["status_reason"] = getattr(event, "reason", None)
    row["last_seen_at"] = getattr(event, "at", row["last_seen_at"])
    row["version"] = recorded.stream_version
    row["updated_position"] = recorded.global_position
    return str(row["agent_id"])


def _assigned(rows: dict[Any, Row], holders: dict[str, str], recorded: RecordedEvent) -> str | None:
    event = DOMAIN_EVENTS.read(recorded)
    assert isinstance(event, TaskAssigned)
    row = rows.get(event.assignee)
    if row is None:
        return None
    _task_ended(rows, holders, event.task_id)  # an earlier holder of a reassigned task lets go
    row["current_task"] = event.task_id
    row["updated_position"] = recorded.global_position
    holders[event.task_id] = event.assignee
    return event.assignee


def _task_ended(rows: dict[Any, Row], holders: dict[str, str], task_id: str) -> str | None:
    holder = holders.pop(task_id, None)
    if holder is None or holder not in rows or rows[holder]["current_task"] != task_id:
        return None
    rows[holder]["current_task"] = None
    return holder


# -- reading -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AgentRow:
    """One agent in the registry; ``last_seen_at`` is the time of its latest own event."""

    agent_id: str
    tenant_id: str | None
    name: str
    status: AgentStatus
    capabilities: tuple[str, ...]
    registered_at: datetime
    last_seen_at: datetime
    current_task: str | None
    beliefs_digest: str | None
    status_reason: str | None
    version: int
    updated_position: int

    @property
    def cursor(self) -> tuple[str]:
        """What ``agents(after=...)`` takes to continue after this row."""
        return (self.agent_id,)

    @classmethod
    def of(cls, record: asyncpg.Record) -> AgentRow:
        values = dict(record)
        values["status"] = AgentStatus(values["status"])
        values["capabilities"] = tuple(values["capabilities"])
        return cls(**values)


async def agents(
    conn: asyncpg.Connection,
    *,
    tenant_id: str | None = None,
    status: AgentStatus | None = None,
    after: tuple[str] | None = None,
    limit: int = 100,
) -> list[AgentRow]:
    """Agents in id order, filtered by tenant and status when given; ``after`` is the last
    row's ``cursor`` of the previous page."""
    filters = {"tenant_id": tenant_id, "status": None if status is None else status.value}
    records = await fetch_page(conn, "agent_registry", TABLE.columns, filters, ("agent_id",), after, limit)
    return [AgentRow.of(r) for r in records]


async def agent(conn: asyncpg.Connection, agent_id: str) -> AgentRow | None:
    record = await conn.fetchrow(
        f"SELECT {', '.join(TABLE.columns)} FROM agent_registry WHERE agent_id = $1",  # noqa: S608
        agent_id,
    )
    return None if record is None else AgentRow.of(record)
