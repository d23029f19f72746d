"""Start-up recovery: rebuild the live agents and the in-flight tasks from the log, and time it.

Nothing about agents or tasks survives a restart except the log, so a process that schedules
work (a reaper of expired leases, a dispatcher) first folds every agent and task stream. It is
one ordered pass over the two categories with ``read_all`` (pages by position, one index range
scan), keeping one state per stream, then a filter. Its time is reported, because it is the
floor of how fast a restarted process can serve.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import structlog

from core.domain.agent import AGENT, AgentState, AgentStatus
from core.domain.contracts import EventRegistry
from core.domain.decider import Decider
from core.domain.registry import DOMAIN_EVENTS
from core.domain.task import TASK, TaskState, TaskStatus
from core.ports import EventLog

__all__ = ["IN_FLIGHT", "Recovered", "recover"]

log = structlog.get_logger(__name__)

# A task is in flight until it completes, is cancelled or is dead-lettered; a failed or timed
# out task still waits for a retry or a dead-letter decision, so it is in flight too.
IN_FLIGHT = frozenset(
    {
        TaskStatus.PENDING,
        TaskStatus.ASSIGNED,
        TaskStatus.RUNNING,
        TaskStatus.FAILED,
        TaskStatus.TIMED_OUT,
        TaskStatus.RETRY_SCHEDULED,
    }
)
PROGRESS_EVERY = 5000  # a call per event would cost the fold more than the bar is worth
_GONE = frozenset({AgentStatus.UNREGISTERED, AgentStatus.DEREGISTERED})


@dataclass(frozen=True, slots=True)
class Recovered:
    """What start-up recovery rebuilt, keyed by stream id, and what it cost."""

    agents: Mapping[str, AgentState]
    tasks: Mapping[str, TaskState]
    events: int
    position: int  # the last global position folded in; tail the log from position + 1
    seconds: float


async def recover(
    events: EventLog,
    registry: EventRegistry = DOMAIN_EVENTS,
    progress: Callable[[int], None] | None = None,
) -> Recovered:
    """Fold every agent and task stream; keep the agents not deregistered and the tasks in flight.

    ``progress(position)`` is called every ``PROGRESS_EVERY`` events with the last one folded.
    """
    started = time.perf_counter()
    deciders: dict[str, Decider[Any, Any]] = {AGENT.category: AGENT, TASK.category: TASK}
    states: dict[str, Any] = {}
    count = position = 0
    read = registry.read
    async for recorded in events.read_all(categories=list(deciders)):
        decider = deciders[recorded.stream_id.split("-", 1)[0]]
        state = states.get(recorded.stream_id, decider.initial_state)
        states[recorded.stream_id] = decider.evolve(state, read(recorded, lenient=True))
        count += 1
        position = recorded.global_position
        if progress is not None and count % PROGRESS_EVERY == 0:
            progress(position)
    agents = {s: a for s, a in states.items() if isinstance(a, AgentState) and a.status not in _GONE}
    tasks = {s: t for s, t in states.items() if isinstance(t, TaskState) and t.status in IN_FLIGHT}
    seconds = time.perf_counter() - started
    log.info("recovery.done", agents=len(agents), tasks=len(tasks), events=count, seconds=round(seconds, 3))
    return Recovered(agents, tasks, count, position, seconds)
