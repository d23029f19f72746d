"""Version 1 of the job contract: what a client sends and gets back, and what a worker reads.

Requests refuse unknown fields (a typo is a 422 naming it, not a silently ignored option).
A change that breaks a client goes into ``v2`` beside this module; ``v1`` stays as it is.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "BulkFilter",
    "BulkResult",
    "ErrorBody",
    "EventView",
    "TaskAccepted",
    "TaskList",
    "TaskSubmission",
    "TaskView",
    "WorkerList",
    "WorkerView",
]

VERSION = 1
Priority = Literal["high", "normal", "low"]


class TaskSubmission(BaseModel):
    """``POST /v1/tasks``."""

    model_config = ConfigDict(extra="forbid")

    type: str = Field(
        min_length=1, max_length=128, pattern=r"^[A-Za-z][A-Za-z0-9_.:-]*$", description="the handler's name"
    )
    payload: dict[str, Any] = Field(
        default_factory=dict, description="the handler's arguments, any JSON object"
    )
    priority: Priority = "normal"
    max_attempts: int = Field(default=3, ge=1, le=100)
    requires: list[str] = Field(
        default_factory=list,
        max_length=16,
        description="capabilities a worker must offer to run it (a worker's --capabilities)",
    )
    ordering_key: str | None = Field(
        default=None,
        min_length=1,
        max_length=190,
        description="tasks of your tenant with the same key run one at a time, in submission order",
    )
    callback: dict[str, str] | None = Field(
        default=None,
        description='told when the task ends: {"url": "https://..."} (a signed POST) or {"topic": "name"}',
    )


class TaskAccepted(BaseModel):
    """The answer to a submission: where to watch the task."""

    task_id: str
    status: str
    status_url: str


class TaskView(BaseModel):
    """A task as its own stream folds it now."""

    task_id: str
    tenant_id: str | None
    type: str
    status: str
    priority: Priority
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    requires: list[str] = Field(default_factory=list)
    ordering_key: str | None = None
    assignee: str | None
    result: dict[str, Any] | None
    error: str | None
    version: int
    submitted_at: datetime | None
    updated_at: datetime | None


class TaskList(BaseModel):
    """A keyset page of the task board; pass ``cursor`` back for the next one."""

    tasks: list[TaskView]
    cursor: str | None


class BulkFilter(BaseModel):
    """Which of the tenant's tasks a bulk cancel or retry touches (all of them when empty)."""

    model_config = ConfigDict(extra="forbid")

    status: (
        Literal["pending", "assigned", "running", "failed", "timed_out", "retry_scheduled", "dead_lettered"]
        | None
    ) = None
    priority: Priority | None = None
    type: str | None = Field(
        default=None, min_length=1, max_length=200, description="the task type (handler)"
    )
    reason: str = Field(default="cancelled in bulk", min_length=1, max_length=500)


class BulkResult(BaseModel):
    matched: int
    changed: int
    refused: int


class EventView(BaseModel):
    """One event of a stream's history, with its metadata (tenant, actor, correlation,
    causation and trace ids)."""

    version: int
    position: int
    type: str
    data: dict[str, Any]
    actor: str | None
    recorded_at: datetime
    event_id: str | None = None
    metadata: dict[str, Any] = Field(default_factory=dict)


class WorkerView(BaseModel):
    """A worker (a task's assignee) and the tasks it holds now. A lease renewal is the task's
    latest event (``TaskLeaseRenewed``), so ``last_heartbeat`` is the newest ``updated_at`` of
    its tasks on the board."""

    worker: str
    tasks: list[str]
    last_heartbeat: datetime
    lease_expires_at: datetime | None


class WorkerList(BaseModel):
    workers: list[WorkerView]


class ErrorBody(BaseModel):
    """Every error: what was wrong, and the field at fault where there is one."""

    error: str
    field: str | None = None
