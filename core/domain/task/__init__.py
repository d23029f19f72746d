"""The task aggregate: submitted, assigned under a lease and fencing token, run, retried, ended."""

from __future__ import annotations

from core.domain.decider import Decider
from core.domain.task.commands import (
    AssignTask,
    CancelTask,
    CompleteTask,
    DeadLetterTask,
    FailTask,
    RenewTaskLease,
    ReportTaskProgress,
    RequeueTask,
    ScheduleTaskRetry,
    StartTask,
    SubmitTask,
    TaskCommand,
    TimeOutTask,
)
from core.domain.task.decide import ALLOWED, decide
from core.domain.task.events import (
    TASK_EVENTS,
    TASK_UPCASTERS,
    Priority,
    TaskAssigned,
    TaskCancelled,
    TaskCompleted,
    TaskDeadLettered,
    TaskEvent,
    TaskFailed,
    TaskLeaseRenewed,
    TaskProgressed,
    TaskRequeued,
    TaskRetryScheduled,
    TaskStarted,
    TaskSubmitted,
    TaskTimedOut,
)
from core.domain.task.state import TASK_STATE_SCHEMA_VERSION, TaskState, TaskStatus, evolve

__all__ = [
    "ALLOWED",
    "TASK",
    "TASK_EVENTS",
    "TASK_STATE_SCHEMA_VERSION",
    "TASK_UPCASTERS",
    "AssignTask",
    "CancelTask",
    "CompleteTask",
    "DeadLetterTask",
    "FailTask",
    "Priority",
    "RenewTaskLease",
    "ReportTaskProgress",
    "RequeueTask",
    "ScheduleTaskRetry",
    "StartTask",
    "SubmitTask",
    "TaskAssigned",
    "TaskCancelled",
    "TaskCommand",
    "TaskCompleted",
    "TaskDeadLettered",
    "TaskEvent",
    "TaskFailed",
    "TaskLeaseRenewed",
    "TaskProgressed",
    "TaskRequeued",
    "TaskRetryScheduled",
    "TaskStarted",
    "TaskState",
    "TaskStatus",
    "TaskSubmitted",
    "TaskTimedOut",
    "TimeOutTask",
    "decide",
    "evolve",
]

TASK: Decider[TaskCommand, TaskState] = Decider(
    category="task",
    initial_state=TaskState(),
    decide=decide,
    evolve=evolve,
    state_schema_version=TASK_STATE_SCHEMA_VERSION,
    state_to_json=TaskState.to_json,
    state_from_json=TaskState.from_json,
)
