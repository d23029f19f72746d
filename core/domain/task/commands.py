"""Task commands. Each checks its own shape when built; the decider checks it against the state.

Every command carries ``at``, the time the caller observed: deciders never read a clock, so a
decision replays the same way in a test, a retry or a time-travel session.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.domain.errors import InvalidCommand
from core.domain.task.events import Priority
from core.domain.validation import check_aware, check_id, check_text

__all__ = [
    "AssignTask",
    "CancelTask",
    "ClaimTask",
    "CompleteTask",
    "DeadLetterTask",
    "FailTask",
    "RenewTaskLease",
    "ReportTaskProgress",
    "RequeueTask",
    "ScheduleTaskRetry",
    "StartTask",
    "SubmitTask",
    "TaskCommand",
    "TimeOutTask",
]


def _check_base(command: object, task_id: str, at: datetime) -> None:
    name = type(command).__name__
    check_id(name, "task_id", task_id)
    check_aware(name, "at", at)


def _check_token(command: object, token: int) -> None:
    if not isinstance(token, int) or isinstance(token, bool) or token < 1:
        raise InvalidCommand(type(command).__name__, f"fencing_token must be an int >= 1, got {token!r}")


def _check_lease(command: object, lease_expires_at: datetime, at: datetime) -> None:
    name = type(command).__name__
    check_aware(name, "lease_expires_at", lease_expires_at)
    if lease_expires_at <= at:
        raise InvalidCommand(name, "lease_expires_at must be later than at")


_TOPIC = re.compile(r"[A-Za-z0-9_.:-]{1,128}")


def _check_callback(callback: Mapping[str, Any]) -> None:
    if not isinstance(callback, Mapping) or len(callback) != 1:
        raise InvalidCommand("SubmitTask", 'callback must be {"url": ...} or {"topic": ...}')
    url, topic = callback.get("url"), callback.get("topic")
    if url is not None and not (isinstance(url, str) and url.startswith(("http://", "https://"))):
        raise InvalidCommand("SubmitTask", f"callback.url must be an http(s) URL, not {url!r}")
    if topic is not None and not (isinstance(topic, str) and _TOPIC.fullmatch(topic)):
        raise InvalidCommand(
            "SubmitTask", f"callback.topic must be 1-128 of letters, digits and _.:-, not {topic!r}"
        )
    if url is None and topic is None:
        raise InvalidCommand("SubmitTask", 'callback must be {"url": ...} or {"topic": ...}')


@dataclass(frozen=True, slots=True)
class SubmitTask:
    task_id: str
    handler: str
    at: datetime
    payload: Mapping[str, Any] = field(default_factory=dict)
    queue: str = "default"
    priority: Priority = Priority.NORMAL
    max_attempts: int = 3
    requires: tuple[str, ...] = ()
    ordering_key: str | None = None
    callback: Mapping[str, Any] | None = None

    def __post_init__(self) -> None:
        _check_base(self, self.task_id, self.at)
        check_text("SubmitTask", "handler", self.handler)
        if not isinstance(self.requires, tuple) or not all(isinstance(c, str) and c for c in self.requires):
            raise InvalidCommand(
                "SubmitTask", f"requires must be a tuple of non-empty str: {self.requires!r}"
            )
        check_text("SubmitTask", "queue", self.queue)
        if not isinstance(self.priority, Priority):
            raise InvalidCommand("SubmitTask", f"priority must be a Priority, got {self.priority!r}")
        if not isinstance(self.max_attempts, int) or self.max_attempts < 1:
            raise InvalidCommand("SubmitTask", "max_attempts must be an int >= 1")


def _check_assignment(command: AssignTask | ClaimTask) -> None:
    _check_base(command, command.task_id, command.at)
    check_text(type(command).__name__, "assignee", command.assignee)
    _check_lease(command, command.lease_expires_at, command.at)


@dataclass(frozen=True, slots=True)
class AssignTask:
    task_id: str
    assignee: str
    lease_expires_at: datetime
    at: datetime

    def __post_init__(self) -> None:
        _check_assignment(self)


@dataclass(frozen=True, slots=True)
class ClaimTask:
    """AssignTask and StartTask in one decision, for a worker that starts what it is given:
    both events in one append, under one fencing token."""

    task_id: str
    assignee: str
    lease_expires_at: datetime
    at: datetime

    def __post_init__(self) -> None:
        _check_assignment(self)


@dataclass(frozen=True, slots=True)
class StartTask:
    task_id: str
    fencing_token: int
    at: datetime

    def __post_init__(self) -> None:
        _check_base(self, self.task_id, self.at)
        _check_token(self, self.fencing_token)


@dataclass(frozen=True, slots=True)
class RenewTaskLease:
    task_id: str
    fencing_token: int
    lease_expires_at: datetime
    at: datetime

    def __post_init__(self) -> None:
        _check_base(self, self.task_id, self.at)
        _check_token(self, self.fencing_token)
        _check_lease(self, self.lease_expires_at, self.at)


@dataclass(frozen=True, slots=True)
class ReportTaskProgress:
    task_id: str
    fencing_token: int
    percent: float
    at: datetime
    note: str = ""

    def __post_init__(self) -> None:
        _check_base(self, self.task_id, self.at)
        _check_token(self, self.fencing_token)
        if not isinstance(self.percent, int | float) or not 0.0 <= self.percent <= 100.0:
            raise InvalidCommand("ReportTaskProgress", f"percent must be in 0..100, got {self.percent!r}")


@dataclass(frozen=True, slots=True)
class CompleteTask:
    task_id: str
    fencing_token: int
    at: datetime
    result: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _check_base(self, self.task_id, self.at)
        _check_token(self, self.fencing_token)


@dataclass(frozen=True, slots=True)
class FailTask:
    task_id: str
    fencing_token: int
    error: str
    at: datetime

    def __post_init__(self) -> None:
        _check_base(self, self.task_id, self.at)
        _check_token(self, self.fencing_token)
        check_text("FailTask", "error", self.error)


@dataclass(frozen=True, slots=True)
class TimeOutTask:
    """Sent by the lease reaper, which holds no token: the lease expiry alone decides."""

    task_id: str
    at: datetime

    def __post_init__(self) -> None:
        _check_base(self, self.task_id, self.at)


@dataclass(frozen=True, slots=True)
class ScheduleTaskRetry:
    task_id: str
    not_before: datetime
    at: datetime

    def __post_init__(self) -> None:
        _check_base(self, self.task_id, self.at)
        check_aware("ScheduleTaskRetry", "not_before", self.not_before)
        if self.not_before < self.at:
            raise InvalidCommand("ScheduleTaskRetry", "not_before must not be earlier than at")


@dataclass(frozen=True, slots=True)
class CancelTask:
    task_id: str
    reason: str
    at: datetime

    def __post_init__(self) -> None:
        _check_base(self, self.task_id, self.at)
        check_text("CancelTask", "reason", self.reason)


@dataclass(frozen=True, slots=True)
class DeadLetterTask:
    task_id: str
    reason: str
    at: datetime

    def __post_init__(self) -> None:
        _check_base(self, self.task_id, self.at)
        check_text("DeadLetterTask", "reason", self.reason)


@dataclass(frozen=True, slots=True)
class RequeueTask:
    task_id: str
    at: datetime

    def __post_init__(self) -> None:
        _check_base(self, self.task_id, self.at)


TaskCommand = (
    SubmitTask
    | AssignTask
    | ClaimTask
    | StartTask
    | RenewTaskLease
    | ReportTaskProgress
    | CompleteTask
    | FailTask
    | TimeOutTask
    | ScheduleTaskRetry
    | CancelTask
    | DeadLetterTask
    | RequeueTask
)
