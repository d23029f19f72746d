"""Mixed domain traffic: agents, tasks and conversations, decided by the real deciders and
appended at a target rate, for projection tests and benchmarks.

A scenario is one worker agent's day: it registers and comes online, takes three tasks
(submitted, assigned to it, started, a progress report, then completed, or failed for every
third), exchanges a message with an operator (sent, delivered, acknowledged) and goes offline:
21 events over 5 streams. Every event carries the metadata command handling writes (tenant,
actor, command, correlation and causation ids), so the audit index sees real traffic. Lanes run
scenarios concurrently; a stream's events are appended in order with their expected version.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from core.domain import AGENT, CONVERSATION, TASK, CommandContext, Decider
from core.domain.agent import BringAgentOnline, RegisterAgent, TakeAgentOffline
from core.domain.conversation.commands import AcknowledgeMessage, DeliverMessage, SendMessage
from core.domain.registry import DOMAIN_EVENTS
from core.domain.task import AssignTask, CompleteTask, ReportTaskProgress, StartTask, SubmitTask
from core.domain.task.commands import FailTask
from core.events import NewEvent
from core.ports import EventLog

__all__ = ["EVENTS_PER_SCENARIO", "Driven", "Step", "drive", "scenario"]

T0 = datetime(2026, 1, 1, tzinfo=UTC)
EVENTS_PER_SCENARIO = 21


@dataclass(frozen=True, slots=True)
class Step:
    """One append: ``events`` to ``stream_id``, which is at ``expected`` before it."""

    stream_id: str
    events: tuple[NewEvent, ...]
    expected: int


@dataclass(frozen=True, slots=True)
class Driven:
    events: int
    appends: int
    seconds: float


class _Streams:
    """Folds each stream's state as commands are decided, and encodes their events."""

    def __init__(self, tenant: str) -> None:
        self._tenant = tenant
        self._state: dict[str, Any] = {}
        self._version: dict[str, int] = {}
        self._commands = itertools.count()

    def step(
        self, decider: Decider[Any, Any], stream_id: str, command: Any, actor: str, cause: str | None
    ) -> Step:
        state = self._state.get(stream_id, decider.initial_state)
        events = decider.decide(command, state)
        command_id = f"{stream_id}:{next(self._commands)}"
        context = CommandContext(self._tenant, actor, command_id, causation_id=cause)
        metadata = context.metadata(command_id, type(command).__name__)
        encoded = tuple(DOMAIN_EVENTS.encode(e, metadata) for e in events)
        expected = self._version.get(stream_id, 0)
        self._state[stream_id] = decider.fold(events, state)
        self._version[stream_id] = expected + len(encoded)
        return Step(stream_id, encoded, expected)


def scenario(key: str, tenant: str = "acme") -> list[Step]:
    """The 21 events of one worker's scenario, as 21 appends in a valid order."""
    s, at = _Streams(tenant), T0
    agent, worker = AGENT.stream_id(key), f"w{key}"
    steps = [s.step(AGENT, agent, RegisterAgent(key, f"worker {key}", ("cpu",), at), worker, None)]
    steps.append(s.step(AGENT, agent, BringAgentOnline(key, at), worker, None))
    for n in range(3):
        task_id = f"{key}t{n}"
        stream, lease = TASK.stream_id(task_id), at + timedelta(minutes=5)
        submitted = s.step(TASK, stream, SubmitTask(task_id, "echo", at, {"n": n}), "api", None)
        cause = submitted.events[0].metadata["command_id"]
        steps.append(submitted)
        steps.append(s.step(TASK, stream, AssignTask(task_id, key, lease, at), "dispatcher", cause))
        steps.append(s.step(TASK, stream, StartTask(task_id, 1, at), worker, cause))
        steps.append(s.step(TASK, stream, ReportTaskProgress(task_id, 1, 50.0, at, "half"), worker, cause))
        end = FailTask(task_id, 1, "boom", at) if n == 2 else CompleteTask(task_id, 1, at, {"ok": n})
        steps.append(s.step(TASK, stream, end, worker, cause))
    conversation = CONVERSATION.stream_id(f"c{key}")
    steps.append(
        s.step(CONVERSATION, conversation, SendMessage(f"c{key}", worker, "operator", at), worker, None)
    )
    steps.append(s.step(CONVERSATION, conversation, DeliverMessage(f"c{key}", 1, at), "bus", None))
    steps.append(s.step(CONVERSATION, conversation, AcknowledgeMessage(f"c{key}", 1, at), "operator", None))
    steps.append(s.step(AGENT, agent, TakeAgentOffline(key, at), worker, None))
    return steps


async def drive(
    log: EventLog,
    prefix: str,
    *,
    scenarios: int | None = None,
    seconds: float | None = None,
    rate: float | None = None,
    lanes: int = 16,
    on_append: Callable[[Step], None] | None = None,
) -> Driven:
    """Append scenarios ``prefix``-0, -1, ... on ``lanes`` concurrent lanes until ``scenarios``
    have run or ``seconds`` have passed, at most ``rate`` events per second overall."""
    keys = (f"{prefix}{i}" for i in (range(scenarios) if scenarios is not None else itertools.count()))
    started = time.perf_counter()
    deadline = started + seconds if seconds is not None else None
    pacer = _Pacer(rate, started)
    counts = [0, 0]

    async def lane() -> None:
        for key in keys:
            for step in scenario(key):
                if deadline is not None and time.perf_counter() >= deadline:
                    return
                await pacer.wait(len(step.events))
                await log.append(step.stream_id, step.events, step.expected)
                counts[0] += len(step.events)
                counts[1] += 1
                if on_append is not None:
                    on_append(step)

    await asyncio.gather(*(lane() for _ in range(lanes)))
    return Driven(counts[0], counts[1], time.perf_counter() - started)


class _Pacer:
    """Holds callers back so that no more than ``rate`` events per second go out on average."""

    def __init__(self, rate: float | None, started: float) -> None:
        self._rate = rate
        self._next = started

    async def wait(self, events: int) -> None:
        if self._rate is None:
            return
        slot, self._next = self._next, max(self._next, time.perf_counter()) + events / self._rate
        delay = slot - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
