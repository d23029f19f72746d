"""Task event contracts and the upcasters from their older schema versions."""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from core.domain.contracts import DomainEvent, Upcaster

__all__ = [
    "TASK_EVENTS",
    "TASK_UPCASTERS",
    "Priority",
    "TaskAssigned",
    "TaskCancelled",
    "TaskCompleted",
    "TaskDeadLettered",
    "TaskEvent",
    "TaskFailed",
    "TaskLeaseRenewed",
    "TaskProgressed",
    "TaskRequeued",
    "TaskRetryScheduled",
    "TaskStarted",
    "TaskSubmitted",
    "TaskTimedOut",
    "upcast_task_submitted_v1",
    "upcast_task_submitted_v2",
]


class Priority(enum.Enum):
    """The dispatch band; each has its own queue stream in Redis."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"


@dataclass(frozen=True, slots=True)
class TaskSubmitted(DomainEvent):
    """A task entered the system. v2 replaced v1's free-form ``name`` and 0-9 priority; v3
    added ``requires``, the capabilities a worker must offer to run it; ``ordering_key``:
    tasks of one tenant with the same key run one at a time, in submission order; and
    ``callback``: ``{"url": ...}`` or ``{"topic": ...}``, told when the task ends."""

    TYPE: ClassVar[str] = "TaskSubmitted"
    SCHEMA_VERSION: ClassVar[int] = 3

    task_id: str
    handler: str
    payload: Mapping[str, Any]
    queue: str
    priority: Priority
    max_attempts: int
    at: datetime
    requires: tuple[str, ...] = ()
    ordering_key: str | None = None
    callback: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class TaskAssigned(DomainEvent):
    """A worker or agent holds the task until ``lease_expires_at``, under ``fencing_token``."""

    TYPE: ClassVar[str] = "TaskAssigned"
    SCHEMA_VERSION: ClassVar[int] = 1

    task_id: str
    assignee: str
    fencing_token: int
    attempt: int
    lease_expires_at: datetime
    at: datetime


@dataclass(frozen=True, slots=True)
class TaskStarted(DomainEvent):
    TYPE: ClassVar[str] = "TaskStarted"
    SCHEMA_VERSION: ClassVar[int] = 1

    task_id: str
    fencing_token: int
    at: datetime


@dataclass(frozen=True, slots=True)
class TaskLeaseRenewed(DomainEvent):
    """The holder's heartbeat pushed the lease out; the fencing token is unchanged."""

    TYPE: ClassVar[str] = "TaskLeaseRenewed"
    SCHEMA_VERSION: ClassVar[int] = 1

    task_id: str
    fencing_token: int
    lease_expires_at: datetime
    at: datetime


@dataclass(frozen=True, slots=True)
class TaskProgressed(DomainEvent):
    TYPE: ClassVar[str] = "TaskProgressed"
    SCHEMA_VERSION: ClassVar[int] = 1

    task_id: str
    fencing_token: int
    percent: float
    note: str
    at: datetime


@dataclass(frozen=True, slots=True)
class TaskCompleted(DomainEvent):
    TYPE: ClassVar[str] = "TaskCompleted"
    SCHEMA_VERSION: ClassVar[int] = 1

    task_id: str
    fencing_token: int
    result: Mapping[str, Any]
    at: datetime


@dataclass(frozen=True, slots=True)
class TaskFailed(DomainEvent):
    TYPE: ClassVar[str] = "TaskFailed"
    SCHEMA_VERSION: ClassVar[int] = 1

    task_id: str
    fencing_token: int
    error: str
    at: datetime


@dataclass(frozen=True, slots=True)
class TaskTimedOut(DomainEvent):
    """The lease under ``fencing_token`` expired before the holder finished."""

    TYPE: ClassVar[str] = "TaskTimedOut"
    SCHEMA_VERSION: ClassVar[int] = 1

    task_id: str
    fencing_token: int
    lease_expired_at: datetime
    at: datetime


@dataclass(frozen=True, slots=True)
class TaskRetryScheduled(DomainEvent):
    """Attempt number ``attempt`` may be assigned from ``not_before`` on (back-off)."""

    TYPE: ClassVar[str] = "TaskRetryScheduled"
    SCHEMA_VERSION: ClassVar[int] = 1

    task_id: str
    attempt: int
    not_before: datetime
    at: datetime


@dataclass(frozen=True, slots=True)
class TaskCancelled(DomainEvent):
    TYPE: ClassVar[str] = "TaskCancelled"
    SCHEMA_VERSION: ClassVar[int] = 1

    task_id: str
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class TaskDeadLettered(DomainEvent):
    TYPE: ClassVar[str] = "TaskDeadLettered"
    SCHEMA_VERSION: ClassVar[int] = 1

    task_id: str
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class TaskRequeued(DomainEvent):
    """An operator took the task out of the dead letters with a fresh budget of attempts."""

    TYPE: ClassVar[str] = "TaskRequeued"
    SCHEMA_VERSION: ClassVar[int] = 1

    task_id: str
    at: datetime


TaskEvent = (
    TaskSubmitted
    | TaskAssigned
    | TaskStarted
    | TaskLeaseRenewed
    | TaskProgressed
    | TaskCompleted
    | TaskFailed
    | TaskTimedOut
    | TaskRetryScheduled
    | TaskCancelled
    | TaskDeadLettered
    | TaskRequeued
)

TASK_EVENTS: tuple[type[DomainEvent], ...] = (
    TaskSubmitted,
    TaskAssigned,
    TaskStarted,
    TaskLeaseRenewed,
    TaskProgressed,
    TaskCompleted,
    TaskFailed,
    TaskTimedOut,
    TaskRetryScheduled,
    TaskCancelled,
    TaskDeadLettered,
    TaskRequeued,
)

# v1 took a 0-9 urgency where 9 was most urgent; v2 dispatches by band. The cut-offs are the
# ones the v1 worker used to pick its Redis stream, so an upcast task lands where it did.
_V1_HIGH_FROM = 7
_V1_NORMAL_FROM = 3
# v1 workers retried every task three times; v2 makes the budget explicit per task.
_V1_MAX_ATTEMPTS = 3
_V1_QUEUE = "default"


def upcast_task_submitted_v1(data: Mapping[str, Any]) -> dict[str, Any]:
    """TaskSubmitted v1 {task_id, name, payload, priority: 0-9, submitted_at} to v2."""
    urgency = data["priority"]
    if not isinstance(urgency, int) or isinstance(urgency, bool):
        raise TypeError(f"v1 priority must be an int, got {urgency!r}")
    if urgency >= _V1_HIGH_FROM:
        band = Priority.HIGH
    elif urgency >= _V1_NORMAL_FROM:
        band = Priority.NORMAL
    else:
        band = Priority.LOW
    return {
        "task_id": data["task_id"],
        "handler": data["name"],
        "payload": data.get("payload") or {},
        "queue": _V1_QUEUE,
        "priority": band.value,
        "max_attempts": _V1_MAX_ATTEMPTS,
        "at": data["submitted_at"],
    }


def upcast_task_submitted_v2(data: Mapping[str, Any]) -> dict[str, Any]:
    """TaskSubmitted v2 to v3: a task submitted before v3 requires nothing and has no order."""
    return {**data, "requires": [], "ordering_key": None, "callback": None}


TASK_UPCASTERS: tuple[Upcaster, ...] = (
    Upcaster("TaskSubmitted", 1, upcast_task_submitted_v1),
    Upcaster("TaskSubmitted", 2, upcast_task_submitted_v2),
)
