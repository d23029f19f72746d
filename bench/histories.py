"""Valid task histories of any length, made by the real deciders: what replay benchmarks and tests load.

A history is SubmitTask, AssignTask, StartTask, then progress reports and lease renewals in
turn, so every event is one the task decider accepts and ``evolve`` folds for real.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from core.domain import DOMAIN_EVENTS, TASK, DomainEvent
from core.domain.task import AssignTask, RenewTaskLease, ReportTaskProgress, StartTask, SubmitTask
from core.events import NewEvent
from core.ports import EventLog

__all__ = ["T0", "append_history", "task_commands", "task_events"]

T0 = datetime(2026, 1, 1, tzinfo=UTC)
METADATA = {"tenant_id": "acme", "actor": "bench"}


def task_commands(task_id: str, length: int) -> Iterator[Any]:
    """Commands whose events make a task history of exactly ``length`` events (>= 1)."""
    now = T0
    yield SubmitTask(task_id, "echo", now, {"message": "m" * 64})
    if length >= 2:
        yield AssignTask(task_id, "worker-1", now + timedelta(minutes=5), now)
    if length >= 3:
        yield StartTask(task_id, 1, now)
    for i in range(length - 3):
        now += timedelta(milliseconds=10)
        if i % 2:
            yield RenewTaskLease(task_id, 1, now + timedelta(minutes=5), now)
        else:
            yield ReportTaskProgress(task_id, 1, float(i % 100), now, "step")


def task_events(task_id: str, length: int) -> list[DomainEvent]:
    """The ``length`` events of a valid task history, decided one command at a time."""
    state, events = TASK.initial_state, []
    for command in task_commands(task_id, length):
        for event in TASK.decide(command, state):
            state = TASK.evolve(state, event)
            events.append(event)
    return events


async def append_history(log: EventLog, task_id: str, length: int, chunk: int = 1_000) -> str:
    """Append a ``length``-event task history to ``task-<task_id>``; returns the stream id."""
    stream_id = TASK.stream_id(task_id)
    encoded = [DOMAIN_EVENTS.encode(e, METADATA) for e in task_events(task_id, length)]
    for start in range(0, len(encoded), chunk):
        batch: list[NewEvent] = encoded[start : start + chunk]
        await log.append(stream_id, batch, expected_version=start)
    return stream_id
