"""Mixed domain traffic: agents, tasks and conversations, decided by the real deciders and
appended at a target rate, for projection tests and benchmarks.

A scenario is one worker agent's day: it registers and comes online, takes three tasks
(submitted, assigned to it, started, a progress report, then completed, or failed for every
third), exchanges a message with an operator (sent, delivered, acknowledged) and goes offline:
21 events over 5 streams. Every fourth scenario also trains: a run stream of three epochs (a
decision, a seed transition, a checkpoint each) as the training loop's flusher writes them,
14 events more. Every event carries the metadata command handling writes (tenant,
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

from core.domain import AGENT, CONVERSATION, TASK, CommandContext, Decider, DomainEvent
from core.domain.agent import BringAgentOnline, RegisterAgent, TakeAgentOffline
from core.domain.conversation.commands import AcknowledgeMessage, DeliverMessage, SendMessage
from core.domain.registry import DOMAIN_EVENTS
from core.domain.task import AssignTask, CompleteTask, ReportTaskProgress, StartTask, SubmitTask
from core.domain.task.commands import FailTask
from core.events import ExpectedVersion, NewEvent, StreamAppend
from core.ports import EventLog
from core.triad.events import (
    CheckpointSaved,
    DecisionMade,
    EpochCompleted,
    RunCompleted,
    RunStarted,
    SeedStageChanged,
    SeedSummary,
    run_stream_id,
)

__all__ = ["Driven", "Step", "drive", "load", "scenario"]

T0 = datetime(2026, 1, 1, tzinfo=UTC)


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


def scenario(key: str, tenant: str = "acme", *, trains: bool = False) -> list[Step]:
    """One worker's scenario (21 events, 21 appends; 14 events in 5 appends more if it
    ``trains``), in a valid order."""
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
    if trains:
        steps.extend(_run(f"r{key}", tenant))
    steps.append(s.step(AGENT, agent, TakeAgentOffline(key, at), worker, None))
    return steps


def _run(run_id: str, tenant: str) -> list[Step]:
    """A three-epoch run: RunStarted, then each boundary's events in one append, then the end."""
    seeds = (SeedSummary(0, "TRAINING", "conv", 0.5, 1, 1, None, None),)
    batches: list[list[DomainEvent]] = [[RunStarted(run_id, "cpu", 1000, (), 3, 64, 0, 18.0, 0.03, 1)]]
    for epoch in range(3):
        batches.append(
            [
                DecisionMade(epoch + 1, epoch, "GERMINATE", {"slot": 0}, "policy", "plateau"),
                SeedStageChanged(0, "DORMANT", "GERMINATED", epoch, "germinate", "conv"),
                EpochCompleted(epoch, 32 * (epoch + 1), 0.9, 0.6, 1.0, 0.5, 0.03, 1.0, seeds, {}),
                CheckpointSaved(epoch, f"ckpt-{epoch:06d}.pt", f"{epoch:x}".rjust(64, "0"), 1000),
            ]
        )
    batches.append([RunCompleted(run_id, 3, False, 0.9, 0.6, 0.5, 0.1, (), {}, 0, 0, {}, None)])
    stream, metadata = run_stream_id(run_id), {"tenant_id": tenant, "actor": "tolaria", "run_id": run_id}
    steps, version = [], 0
    for batch in batches:
        steps.append(Step(stream, tuple(DOMAIN_EVENTS.encode(e, metadata) for e in batch), version))
        version += len(batch)
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
    keys = ((i, f"{prefix}{i}") for i in (range(scenarios) if scenarios is not None else itertools.count()))
    started = time.perf_counter()
    deadline = started + seconds if seconds is not None else None
    pacer = _Pacer(rate, started)
    counts = [0, 0]

    async def lane() -> None:
        for n, key in keys:
            for step in scenario(key, trains=n % 4 == 0):
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


async def load(
    log: EventLog,
    prefix: str,
    scenarios: int | None = None,
    *,
    seconds: float | None = None,
    rate: float | None = None,
    concurrency: int = 64,
) -> Driven:
    """Append scenarios as whole units until ``scenarios`` have run or ``seconds`` have passed,
    at most ``rate`` events per second overall: each scenario is one atomic multi-stream append
    of its five streams (the log order within a stream is kept; between streams it differs
    from ``drive``'s interleaving). One producer process reaches about three times the event
    rate of ``drive``'s one-append-per-command, which is what a benchmark at thousands of
    events per second needs on a small machine."""
    started = time.perf_counter()
    deadline = started + seconds if seconds is not None else None
    pacer = _Pacer(rate, started)
    keys = iter(range(scenarios) if scenarios is not None else itertools.count())
    counts = [0, 0]

    async def lane() -> None:
        for n in keys:
            appends = _by_stream(scenario(f"{prefix}{n}", trains=n % 4 == 0))
            events = sum(len(a.events) for a in appends)
            await pacer.wait(events)
            if deadline is not None and time.perf_counter() >= deadline:
                return
            await log.append_multi(appends)
            counts[0] += events
            counts[1] += 1

    await asyncio.gather(*(lane() for _ in range(concurrency)))
    return Driven(counts[0], counts[1], time.perf_counter() - started)


def _by_stream(steps: list[Step]) -> list[StreamAppend]:
    events: dict[str, list[NewEvent]] = {}
    for step in steps:
        events.setdefault(step.stream_id, []).extend(step.events)
    return [StreamAppend(stream, tuple(e), ExpectedVersion.NO_STREAM) for stream, e in events.items()]
