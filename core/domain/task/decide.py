"""The task state machine: which command is allowed in which status, and what it records.

    unsubmitted --submit--> pending --assign--> assigned --start--> running --complete--> completed
    assigned | running --fail--> failed        assigned | running --time out--> timed_out
    failed | timed_out --schedule retry--> retry_scheduled --assign--> assigned
    failed | timed_out --dead-letter--> dead_lettered --requeue--> pending
    any live status --cancel--> cancelled

Leases and fencing. Assignment hands out a lease (``lease_expires_at``) and a fencing token one
greater than any the task has issued. Every write by the holder (start, renew, progress,
complete, fail) carries its token, and a token other than the current one is refused with
StaleFencingToken. That is what makes lease expiry safe: a worker that stalled past its lease
(a GC pause, a partition) may wake up and try to complete a task that was timed out and given to
another worker; its token is now smaller than the task's, so the late write is refused instead
of overwriting the new holder's work. The lease itself is only consulted by ``TimeOutTask``:
a holder that writes after its lease ran out but before anyone timed it out still holds the
current token, nobody else can have the task, and the write is accepted.
"""

from __future__ import annotations

from collections.abc import Collection

from core.domain.errors import (
    AttemptsExhausted,
    IllegalTransition,
    LeaseNotExpired,
    RetryNotDue,
    StaleFencingToken,
)
from core.domain.task.commands import (
    AssignTask,
    CancelTask,
    ClaimTask,
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
from core.domain.task.events import (
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
from core.domain.task.state import TaskState, TaskStatus
from core.domain.validation import check_same_aggregate

__all__ = ["ALLOWED", "decide"]

_S = TaskStatus
_HELD = frozenset({_S.ASSIGNED, _S.RUNNING})
_ATTEMPT_ENDED = frozenset({_S.FAILED, _S.TIMED_OUT})

# The state machine as data: the statuses in which each command is allowed. The docs' state
# diagram and the refused-transition tests are read against this table.
ALLOWED: dict[type[TaskCommand], frozenset[TaskStatus]] = {
    SubmitTask: frozenset({_S.UNSUBMITTED}),
    AssignTask: frozenset({_S.PENDING, _S.RETRY_SCHEDULED}),
    ClaimTask: frozenset({_S.PENDING, _S.RETRY_SCHEDULED}),
    StartTask: frozenset({_S.ASSIGNED}),
    RenewTaskLease: _HELD,
    ReportTaskProgress: frozenset({_S.RUNNING}),
    CompleteTask: frozenset({_S.RUNNING}),
    FailTask: _HELD,
    TimeOutTask: _HELD,
    ScheduleTaskRetry: _ATTEMPT_ENDED,
    CancelTask: frozenset({_S.PENDING, _S.RETRY_SCHEDULED}) | _HELD | _ATTEMPT_ENDED,
    DeadLetterTask: _ATTEMPT_ENDED,
    RequeueTask: frozenset({_S.DEAD_LETTERED}),
}

_Holder = StartTask | RenewTaskLease | ReportTaskProgress | CompleteTask | FailTask


def decide(command: TaskCommand, state: TaskState) -> list[TaskEvent]:
    """The events ``command`` produces in ``state``; raises a CommandRefused if it may not run."""
    check_same_aggregate(type(command).__name__, command.task_id, state.task_id)
    if isinstance(command, _Holder):
        _check_token(command, state)
    _require(command, state, ALLOWED[type(command)])
    match command:
        case SubmitTask():
            return [_submitted(command)]
        case AssignTask():
            return [_assigned(command, state)]
        case ClaimTask():
            assigned = _assigned(command, state)
            return [assigned, TaskStarted(command.task_id, assigned.fencing_token, command.at)]
        case StartTask():
            return [TaskStarted(command.task_id, command.fencing_token, command.at)]
        case RenewTaskLease():
            return [
                TaskLeaseRenewed(command.task_id, command.fencing_token, command.lease_expires_at, command.at)
            ]
        case ReportTaskProgress():
            return [
                TaskProgressed(
                    command.task_id, command.fencing_token, float(command.percent), command.note, command.at
                )
            ]
        case CompleteTask():
            return [TaskCompleted(command.task_id, command.fencing_token, dict(command.result), command.at)]
        case FailTask():
            return [TaskFailed(command.task_id, command.fencing_token, command.error, command.at)]
        case _:
            return _decide_after_attempt(command, state)


def _decide_after_attempt(command: TaskCommand, state: TaskState) -> list[TaskEvent]:
    match command:
        case TimeOutTask():
            return [_timed_out(command, state)]
        case ScheduleTaskRetry():
            return [_retry_scheduled(command, state)]
        case CancelTask():
            return [TaskCancelled(command.task_id, command.reason, command.at)]
        case DeadLetterTask():
            return [TaskDeadLettered(command.task_id, command.reason, command.at)]
        case RequeueTask():
            return [TaskRequeued(command.task_id, command.at)]
        case _:  # pragma: no cover - every command is matched above or in decide
            raise TypeError(f"not a task command: {command!r}")


def _require(command: TaskCommand, state: TaskState, allowed: Collection[TaskStatus]) -> None:
    if state.status not in allowed:
        raise IllegalTransition("task", command.task_id, state.status.value, type(command).__name__)


def _check_token(command: _Holder, state: TaskState) -> None:
    # A smaller token means the lease moved on to another holder: refuse before looking at the
    # status, so the late writer learns it was fenced off rather than that the task is
    # "assigned". A larger token was never issued; it is refused once the status is known.
    if state.status is not TaskStatus.UNSUBMITTED and command.fencing_token < state.fencing_token:
        raise StaleFencingToken(
            command.task_id, type(command).__name__, command.fencing_token, state.fencing_token
        )
    if state.status in _HELD and command.fencing_token != state.fencing_token:
        raise StaleFencingToken(
            command.task_id, type(command).__name__, command.fencing_token, state.fencing_token
        )


def _submitted(command: SubmitTask) -> TaskSubmitted:
    return TaskSubmitted(
        task_id=command.task_id,
        handler=command.handler,
        payload=dict(command.payload),
        queue=command.queue,
        priority=command.priority,
        max_attempts=command.max_attempts,
        at=command.at,
        requires=command.requires,
        ordering_key=command.ordering_key,
        callback=None if command.callback is None else dict(command.callback),
    )


def _assigned(command: AssignTask | ClaimTask, state: TaskState) -> TaskAssigned:
    if state.retry_not_before is not None and command.at < state.retry_not_before:
        raise RetryNotDue(command.task_id, state.retry_not_before, command.at)
    return TaskAssigned(
        task_id=command.task_id,
        assignee=command.assignee,
        fencing_token=state.fencing_token + 1,
        attempt=state.attempt + 1,
        lease_expires_at=command.lease_expires_at,
        at=command.at,
    )


def _timed_out(command: TimeOutTask, state: TaskState) -> TaskTimedOut:
    expires = state.lease_expires_at
    assert expires is not None  # every held status has a lease (evolve of TaskAssigned)
    if command.at < expires:
        raise LeaseNotExpired(command.task_id, expires, command.at)
    return TaskTimedOut(command.task_id, state.fencing_token, expires, command.at)


def _retry_scheduled(command: ScheduleTaskRetry, state: TaskState) -> TaskRetryScheduled:
    if state.attempt >= state.max_attempts:
        raise AttemptsExhausted(command.task_id, state.attempt, state.max_attempts)
    return TaskRetryScheduled(command.task_id, state.attempt + 1, command.not_before, command.at)
