"""A task's state and ``evolve``, the fold step that replay, snapshots and time travel share."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from core.domain.contracts import DomainEvent, UnknownEvent
from core.domain.decider import with_changes, with_changes_to
from core.domain.errors import UnexpectedEvent
from core.domain.serialization import from_json_value, to_json_value
from core.domain.task.events import (
    Priority,
    TaskAssigned,
    TaskCancelled,
    TaskCompleted,
    TaskDeadLettered,
    TaskFailed,
    TaskLeaseRenewed,
    TaskProgressed,
    TaskRequeued,
    TaskRetryScheduled,
    TaskStarted,
    TaskSubmitted,
    TaskTimedOut,
)

__all__ = ["TASK_STATE_SCHEMA_VERSION", "TaskState", "TaskStatus", "evolve"]

TASK_STATE_SCHEMA_VERSION = 1


class TaskStatus(enum.Enum):
    UNSUBMITTED = "unsubmitted"
    PENDING = "pending"
    ASSIGNED = "assigned"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    TIMED_OUT = "timed_out"
    RETRY_SCHEDULED = "retry_scheduled"
    CANCELLED = "cancelled"
    DEAD_LETTERED = "dead_lettered"


@dataclasses.dataclass(frozen=True, slots=True)
class TaskState:
    """Everything a task decision needs; JSON-ready through ``to_json`` for snapshots.

    ``fencing_token`` counts every assignment the task ever had and never goes back, so a
    writer whose lease was taken over always carries a smaller token than the current one.
    ``attempt`` counts assignments against ``max_attempts`` and restarts at 0 when an operator
    requeues a dead-lettered task; the token does not, which is why the two are kept apart.
    """

    STATE_SCHEMA_VERSION: ClassVar[int] = TASK_STATE_SCHEMA_VERSION

    task_id: str = ""
    status: TaskStatus = TaskStatus.UNSUBMITTED
    handler: str = ""
    payload: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    queue: str = ""
    priority: Priority = Priority.NORMAL
    max_attempts: int = 0
    attempt: int = 0
    fencing_token: int = 0
    assignee: str | None = None
    lease_expires_at: datetime | None = None
    retry_not_before: datetime | None = None
    progress: float = 0.0
    result: Mapping[str, Any] | None = None
    error: str | None = None
    reason: str | None = None
    updated_at: datetime | None = None
    requires: tuple[str, ...] = ()  # capabilities a worker must offer to run it
    ordering_key: str | None = None  # tasks with the same key run one at a time, in order
    callback: Mapping[str, Any] | None = None  # told when the task ends (api.callbacks)

    def to_json(self) -> dict[str, Any]:
        return to_json_value(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TaskState:
        return from_json_value(cls, data)


# Progress reports and lease renewals are most of a long task stream, so their copies are built
# once, ahead of the fold (see ``with_changes_to``).
_progressed = with_changes_to(TaskState, "progress", "updated_at")
_lease_renewed = with_changes_to(TaskState, "lease_expires_at", "updated_at")


def evolve(state: TaskState, event: DomainEvent | UnknownEvent) -> TaskState:
    """The state after ``event``. Facts are applied as recorded, without re-checking rules."""
    # Progress reports and lease renewals are most of a long task stream: match them first.
    match event:
        case TaskProgressed():
            return _progressed(state, event.percent, event.at)
        case TaskLeaseRenewed():
            return _lease_renewed(state, event.lease_expires_at, event.at)
        case TaskSubmitted():
            return _submitted(event)
        case TaskAssigned():
            return with_changes(
                state,
                status=TaskStatus.ASSIGNED,
                assignee=event.assignee,
                fencing_token=event.fencing_token,
                attempt=event.attempt,
                lease_expires_at=event.lease_expires_at,
                retry_not_before=None,
                progress=0.0,
                error=None,
                updated_at=event.at,
            )
        case TaskStarted():
            return with_changes(state, status=TaskStatus.RUNNING, updated_at=event.at)
        case TaskCompleted():
            return _ended(state, TaskStatus.COMPLETED, event.at, result=event.result, progress=100.0)
        case TaskFailed():
            return _ended(state, TaskStatus.FAILED, event.at, error=event.error)
        case TaskTimedOut():
            return _ended(state, TaskStatus.TIMED_OUT, event.at, error="lease expired")
        case _:
            return _after_attempt(state, event)


def _after_attempt(state: TaskState, event: DomainEvent | UnknownEvent) -> TaskState:
    match event:
        case TaskRetryScheduled():
            return with_changes(
                state,
                status=TaskStatus.RETRY_SCHEDULED,
                assignee=None,
                retry_not_before=event.not_before,
                updated_at=event.at,
            )
        case TaskCancelled():
            return _ended(state, TaskStatus.CANCELLED, event.at, reason=event.reason)
        case TaskDeadLettered():
            return _ended(state, TaskStatus.DEAD_LETTERED, event.at, reason=event.reason)
        case TaskRequeued():
            return with_changes(
                state,
                status=TaskStatus.PENDING,
                assignee=None,
                attempt=0,
                error=None,
                reason=None,
                updated_at=event.at,
            )
        case UnknownEvent():
            return state
        case _:
            raise UnexpectedEvent("task", type(event).__name__)


def _submitted(event: TaskSubmitted) -> TaskState:
    return TaskState(
        task_id=event.task_id,
        status=TaskStatus.PENDING,
        handler=event.handler,
        payload=event.payload,
        queue=event.queue,
        priority=event.priority,
        max_attempts=event.max_attempts,
        requires=event.requires,
        ordering_key=event.ordering_key,
        callback=event.callback,
        updated_at=event.at,
    )


def _ended(state: TaskState, status: TaskStatus, at: datetime, **changes: Any) -> TaskState:
    """An attempt ended or the task left the flow: the lease no longer protects anyone."""
    return with_changes(state, status=status, lease_expires_at=None, updated_at=at, **changes)
