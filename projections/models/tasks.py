"""The task board: every task by tenant, status, queue and priority, with its holder, attempts,
lease, retry time, progress and outcome. Read it through the ``task_board`` view, or with
``tasks`` (a keyset page) and ``task`` here.

A row is the task's state as the domain folds it: each event goes through the task
aggregate's own ``evolve`` (``core.domain.task.state``), and the state's fields are written to
the row, so the board can never disagree with the task about its status (exactly the
aggregate's ``TaskStatus`` values), attempt, fencing token, lease or error.
``not_before`` is the state's ``retry_not_before``. The row adds what the state does not keep:

- ``tenant_id``: the tenant of the ``TaskSubmitted`` event;
- ``submitted_at``; ``started_at``: when the latest attempt started (cleared when a new one is
  assigned, or the task is requeued); ``finished_at``: when it became completed, cancelled or
  dead-lettered (cleared by a requeue);
- ``version``: the task stream's version; ``updated_position``: the log position of its latest event.

The payload and the result are not on the board: they can be large, and the stream has them.
An event of a task whose submission this generation never saw is ignored.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from core.domain.registry import DOMAIN_EVENTS
from core.domain.task.events import (
    TASK_EVENTS,
    Priority,
    TaskAssigned,
    TaskRequeued,
    TaskStarted,
    TaskSubmitted,
)
from core.domain.task.state import TaskState, TaskStatus, evolve
from core.events import RecordedEvent
from projections.models.pages import fetch_page
from projections.models.rows import Row, RowTable, touched

__all__ = ["TaskBoard", "TaskRow", "task", "tasks"]

COLUMNS = (
    "task_id",
    "tenant_id",
    "status",
    "queue",
    "priority",
    "handler",
    "assignee",
    "attempt",
    "max_attempts",
    "fencing_token",
    "lease_expires_at",
    "not_before",
    "progress",
    "error",
    "reason",
    "submitted_at",
    "started_at",
    "finished_at",
    "updated_at",
    "version",
    "updated_position",
)
TABLE = RowTable("task_board_rows", "task_id", COLUMNS)

_TASK_TYPES = frozenset(c.TYPE for c in TASK_EVENTS)
_FINISHED = frozenset({TaskStatus.COMPLETED, TaskStatus.CANCELLED, TaskStatus.DEAD_LETTERED})


class TaskBoard:
    name = "task_board"
    version = 1
    categories = ("task",)
    tables = (TABLE.name,)

    async def apply(self, conn: asyncpg.Connection, generation: int, events: Sequence[RecordedEvent]) -> None:
        ids = {_task_id(e) for e in events if e.type in _TASK_TYPES}
        rows = await TABLE.fetch(conn, generation, "task_id = ANY($2)", list(ids))
        states = {task_id: _state_of(row) for task_id, row in rows.items()}
        changed: list[str] = []
        for recorded in events:
            if recorded.type in _TASK_TYPES and _fold(rows, states, recorded):
                changed.append(_task_id(recorded))
        for task_id in changed:
            rows[task_id].update(_columns_of(states[task_id]))
        await TABLE.upsert(conn, generation, touched(rows, changed))


def _task_id(recorded: RecordedEvent) -> str:
    return recorded.stream_id.split("-", 1)[1]


def _fold(rows: dict[Any, Row], states: dict[str, TaskState], recorded: RecordedEvent) -> bool:
    """Fold one event into its task's state and row; False if the task is not on the board."""
    event = DOMAIN_EVENTS.read(recorded)
    task_id = _task_id(recorded)
    if isinstance(event, TaskSubmitted):
        rows[task_id] = _submitted_row(task_id, recorded.tenant_id, event.at)
        states[task_id] = TaskState()
    elif task_id not in rows:
        return False
    state = evolve(states[task_id], event)
    row = rows[task_id]
    if isinstance(event, TaskStarted):
        row["started_at"] = event.at
    elif isinstance(event, TaskAssigned | TaskRequeued):
        row["started_at"] = None
    row["finished_at"] = state.updated_at if state.status in _FINISHED else None
    row["version"] = recorded.stream_version
    row["updated_position"] = recorded.global_position
    states[task_id] = state
    return True


def _submitted_row(task_id: str, tenant_id: str | None, at: datetime) -> Row:
    return {"task_id": task_id, "tenant_id": tenant_id, "submitted_at": at, "started_at": None}


def _columns_of(state: TaskState) -> Row:
    """The row's columns that mirror the task's state."""
    return {
        "status": state.status.value,
        "queue": state.queue,
        "priority": state.priority.value,
        "handler": state.handler,
        "assignee": state.assignee,
        "attempt": state.attempt,
        "max_attempts": state.max_attempts,
        "fencing_token": state.fencing_token,
        "lease_expires_at": state.lease_expires_at,
        "not_before": state.retry_not_before,
        "progress": state.progress,
        "error": state.error,
        "reason": state.reason,
        "updated_at": state.updated_at,
    }


def _state_of(row: Row) -> TaskState:
    """The task's state as the row holds it (all but the payload and the result)."""
    return TaskState(
        task_id=row["task_id"],
        status=TaskStatus(row["status"]),
        handler=row["handler"],
        queue=row["queue"],
        priority=Priority(row["priority"]),
        max_attempts=row["max_attempts"],
        attempt=row["attempt"],
        fencing_token=row["fencing_token"],
        assignee=row["assignee"],
        lease_expires_at=row["lease_expires_at"],
        retry_not_before=row["not_before"],
        progress=row["progress"],
        error=row["error"],
        reason=row["reason"],
        updated_at=row["updated_at"],
    )


# -- reading -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TaskRow:
    """One task on the board (see the module docstring for what each time means)."""

    task_id: str
    tenant_id: str | None
    status: TaskStatus
    queue: str
    priority: Priority
    handler: str
    assignee: str | None
    attempt: int
    max_attempts: int
    fencing_token: int
    lease_expires_at: datetime | None
    not_before: datetime | None
    progress: float
    error: str | None
    reason: str | None
    submitted_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    updated_at: datetime
    version: int
    updated_position: int

    @property
    def cursor(self) -> tuple[datetime, str]:
        """What ``tasks(after=...)`` takes to continue after this row."""
        return (self.submitted_at, self.task_id)

    @classmethod
    def of(cls, record: asyncpg.Record) -> TaskRow:
        values = dict(record)
        values["status"] = TaskStatus(values["status"])
        values["priority"] = Priority(values["priority"])
        return cls(**values)


async def tasks(
    conn: asyncpg.Connection,
    *,
    tenant_id: str | None = None,
    status: TaskStatus | None = None,
    queue: str | None = None,
    priority: Priority | None = None,
    handler: str | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int = 100,
) -> list[TaskRow]:
    """Tasks in submission order (then by id), filtered by whichever of tenant, status, queue,
    priority and handler (the task's type) are given; ``after`` is the last row's ``cursor`` of
    the previous page."""
    filters = {
        "tenant_id": tenant_id,
        "status": None if status is None else status.value,
        "queue": queue,
        "priority": None if priority is None else priority.value,
        "handler": handler,
    }
    records = await fetch_page(
        conn, "task_board", COLUMNS, filters, ("submitted_at", "task_id"), after, limit
    )
    return [TaskRow.of(r) for r in records]


async def task(conn: asyncpg.Connection, task_id: str) -> TaskRow | None:
    record = await conn.fetchrow(f"SELECT {', '.join(COLUMNS)} FROM task_board WHERE task_id = $1", task_id)  # noqa: S608
    return None if record is None else TaskRow.of(record)
