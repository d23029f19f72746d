"""The task state machine, given/when/then: every allowed and every refused transition."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from core.domain import (
    TASK,
    AttemptsExhausted,
    IllegalTransition,
    InvalidCommand,
    LeaseNotExpired,
    RetryNotDue,
    StaleFencingToken,
)
from core.domain.task import (
    AssignTask,
    CancelTask,
    ClaimTask,
    CompleteTask,
    DeadLetterTask,
    FailTask,
    Priority,
    RenewTaskLease,
    ReportTaskProgress,
    RequeueTask,
    ScheduleTaskRetry,
    StartTask,
    SubmitTask,
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
    TaskStatus,
    TaskSubmitted,
    TaskTimedOut,
    TimeOutTask,
)
from tests.unit.domain.spec import Spec

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
LEASE = T0 + timedelta(minutes=1)
LATER = T0 + timedelta(hours=1)  # after every lease and back-off in the histories below
ID = "t1"

SUBMITTED = [TaskSubmitted(ID, "echo", {"x": 1}, "default", Priority.NORMAL, 3, T0)]
ASSIGNED = [*SUBMITTED, TaskAssigned(ID, "worker-1", 1, 1, LEASE, T0)]
RUNNING = [*ASSIGNED, TaskStarted(ID, 1, T0)]
COMPLETED = [*RUNNING, TaskCompleted(ID, 1, {"y": 2}, T0)]
FAILED = [*RUNNING, TaskFailed(ID, 1, "boom", T0)]
TIMED_OUT = [*ASSIGNED, TaskTimedOut(ID, 1, LEASE, LEASE)]
RETRY_SCHEDULED = [*FAILED, TaskRetryScheduled(ID, 2, T0 + timedelta(minutes=5), T0)]
CANCELLED = [*SUBMITTED, TaskCancelled(ID, "not needed", T0)]
DEAD_LETTERED = [*FAILED, TaskDeadLettered(ID, "gave up", T0)]

HISTORY = {
    TaskStatus.UNSUBMITTED: [],
    TaskStatus.PENDING: SUBMITTED,
    TaskStatus.ASSIGNED: ASSIGNED,
    TaskStatus.RUNNING: RUNNING,
    TaskStatus.COMPLETED: COMPLETED,
    TaskStatus.FAILED: FAILED,
    TaskStatus.TIMED_OUT: TIMED_OUT,
    TaskStatus.RETRY_SCHEDULED: RETRY_SCHEDULED,
    TaskStatus.CANCELLED: CANCELLED,
    TaskStatus.DEAD_LETTERED: DEAD_LETTERED,
}

# One well-formed instance of each command, timed after every lease and back-off above, so
# that only the status decides whether it is allowed.
COMMANDS = {
    "SubmitTask": SubmitTask(ID, "echo", LATER),
    "AssignTask": AssignTask(ID, "worker-2", LATER + timedelta(minutes=1), LATER),
    "ClaimTask": ClaimTask(ID, "worker-2", LATER + timedelta(minutes=1), LATER),
    "StartTask": StartTask(ID, 1, LATER),
    "RenewTaskLease": RenewTaskLease(ID, 1, LATER + timedelta(minutes=1), LATER),
    "ReportTaskProgress": ReportTaskProgress(ID, 1, 50.0, LATER),
    "CompleteTask": CompleteTask(ID, 1, LATER),
    "FailTask": FailTask(ID, 1, "boom", LATER),
    "TimeOutTask": TimeOutTask(ID, LATER),
    "ScheduleTaskRetry": ScheduleTaskRetry(ID, LATER, LATER),
    "CancelTask": CancelTask(ID, "stop", LATER),
    "DeadLetterTask": DeadLetterTask(ID, "gave up", LATER),
    "RequeueTask": RequeueTask(ID, LATER),
}

S = TaskStatus
# Written out here, independently of the decider's own table, so a change to either shows.
EXPECTED_ALLOWED = {
    "SubmitTask": {S.UNSUBMITTED},
    "AssignTask": {S.PENDING, S.RETRY_SCHEDULED},
    "ClaimTask": {S.PENDING, S.RETRY_SCHEDULED},
    "StartTask": {S.ASSIGNED},
    "RenewTaskLease": {S.ASSIGNED, S.RUNNING},
    "ReportTaskProgress": {S.RUNNING},
    "CompleteTask": {S.RUNNING},
    "FailTask": {S.ASSIGNED, S.RUNNING},
    "TimeOutTask": {S.ASSIGNED, S.RUNNING},
    "ScheduleTaskRetry": {S.FAILED, S.TIMED_OUT},
    "CancelTask": {S.PENDING, S.ASSIGNED, S.RUNNING, S.FAILED, S.TIMED_OUT, S.RETRY_SCHEDULED},
    "DeadLetterTask": {S.FAILED, S.TIMED_OUT},
    "RequeueTask": {S.DEAD_LETTERED},
}

REFUSED = [
    (status, name)
    for name, allowed in EXPECTED_ALLOWED.items()
    for status in TaskStatus
    if status not in allowed
]
ALLOWED = [(status, name) for name, allowed in EXPECTED_ALLOWED.items() for status in allowed]


def task() -> Spec:
    return Spec(TASK)


def test_histories_reach_their_status() -> None:
    """Each given history folds to the status it is filed under."""
    for status, history in HISTORY.items():
        assert TASK.fold(history).status is status


@pytest.mark.parametrize(("status", "name"), REFUSED, ids=[f"{s.value}-{n}" for s, n in REFUSED])
def test_refused_transition_names_state_and_command(status: TaskStatus, name: str) -> None:
    """A command outside its allowed statuses raises IllegalTransition naming status and command."""
    task().given(HISTORY[status]).when(COMMANDS[name]).then_raises(
        IllegalTransition, state=status.value, command=name, aggregate="task", aggregate_id=ID
    )


@pytest.mark.parametrize(("status", "name"), ALLOWED, ids=[f"{s.value}-{n}" for s, n in ALLOWED])
def test_allowed_transition_records_one_event(status: TaskStatus, name: str) -> None:
    """A command inside its allowed statuses records exactly one event."""
    state = TASK.fold(HISTORY[status])
    assert len(TASK.decide(COMMANDS[name], state)) == (2 if name == "ClaimTask" else 1)  # assigned, started


def test_completing_a_cancelled_task_is_refused() -> None:
    """Completing a cancelled task raises an error that says the task is cancelled."""
    error = task().given(CANCELLED).when(CompleteTask(ID, 1, LATER)).then_raises(IllegalTransition)
    assert "cancelled" in str(error) and "CompleteTask" in str(error)


def test_submit_records_the_task_as_pending() -> None:
    """Submitting records TaskSubmitted and the task becomes pending with its attempt budget."""
    state = (
        task()
        .when(SubmitTask(ID, "train", T0, {"lr": 0.1}, "gpu", Priority.HIGH, 5))
        .then(TaskSubmitted(ID, "train", {"lr": 0.1}, "gpu", Priority.HIGH, 5, T0))
    )
    assert (state.status, state.max_attempts, state.attempt, state.fencing_token) == (S.PENDING, 5, 0, 0)


def test_the_decider_allows_what_the_table_here_says() -> None:
    from core.domain.task.decide import ALLOWED as DECIDED

    assert {c.__name__: set(s) for c, s in DECIDED.items()} == EXPECTED_ALLOWED


def test_a_claim_assigns_and_starts_under_one_new_token() -> None:
    events = TASK.decide(COMMANDS["ClaimTask"], TASK.fold(HISTORY[S.PENDING]))
    assert [type(e).__name__ for e in events] == ["TaskAssigned", "TaskStarted"]
    assert events[0].fencing_token == events[1].fencing_token == 1  # type: ignore[attr-defined]
    assert TASK.fold(events, TASK.fold(HISTORY[S.PENDING])).status is S.RUNNING


def test_first_assignment_issues_fencing_token_one() -> None:
    """Assigning a pending task gives a lease and fencing token 1 for attempt 1."""
    state = (
        task()
        .given(SUBMITTED)
        .when(AssignTask(ID, "worker-1", LEASE, T0))
        .then(TaskAssigned(ID, "worker-1", 1, 1, LEASE, T0))
    )
    assert (state.status, state.assignee, state.lease_expires_at) == (S.ASSIGNED, "worker-1", LEASE)


def test_retry_assignment_issues_the_next_fencing_token() -> None:
    """Assigning a task whose back-off has passed issues a larger token for the next attempt."""
    due = T0 + timedelta(minutes=5)
    task().given(RETRY_SCHEDULED).when(AssignTask(ID, "worker-2", due + timedelta(minutes=1), due)).then(
        TaskAssigned(ID, "worker-2", 2, 2, due + timedelta(minutes=1), due)
    )


def test_assignment_before_the_back_off_ends_is_refused() -> None:
    """Assigning a scheduled retry before its not_before raises RetryNotDue."""
    early = T0 + timedelta(minutes=4)
    task().given(RETRY_SCHEDULED).when(AssignTask(ID, "w", early + timedelta(minutes=1), early)).then_raises(
        RetryNotDue, not_before=T0 + timedelta(minutes=5), now=early
    )


def test_start_moves_an_assigned_task_to_running() -> None:
    """The holder starting the task records TaskStarted and the task is running."""
    state = task().given(ASSIGNED).when(StartTask(ID, 1, T0)).then(TaskStarted(ID, 1, T0))
    assert state.status is S.RUNNING


@pytest.mark.parametrize("history", [ASSIGNED, RUNNING], ids=["assigned", "running"])
def test_renewing_the_lease_moves_its_expiry(history: list) -> None:
    """The holder's heartbeat records TaskLeaseRenewed and the lease runs to the new expiry."""
    until = LEASE + timedelta(minutes=1)
    state = (
        task().given(history).when(RenewTaskLease(ID, 1, until, T0)).then(TaskLeaseRenewed(ID, 1, until, T0))
    )
    assert state.lease_expires_at == until and state.fencing_token == 1


def test_progress_is_recorded_while_running() -> None:
    """The holder reporting progress records TaskProgressed and the state keeps the percentage."""
    state = (
        task()
        .given(RUNNING)
        .when(ReportTaskProgress(ID, 1, 40, T0, "epoch 4"))
        .then(TaskProgressed(ID, 1, 40.0, "epoch 4", T0))
    )
    assert state.progress == 40.0 and state.status is S.RUNNING


def test_complete_records_the_result_and_releases_the_lease() -> None:
    """Completing a running task records its result; the task is completed and holds no lease."""
    state = (
        task().given(RUNNING).when(CompleteTask(ID, 1, T0, {"y": 2})).then(TaskCompleted(ID, 1, {"y": 2}, T0))
    )
    assert (state.status, state.result, state.lease_expires_at) == (S.COMPLETED, {"y": 2}, None)


@pytest.mark.parametrize("history", [ASSIGNED, RUNNING], ids=["assigned", "running"])
def test_fail_records_the_error(history: list) -> None:
    """The holder failing the task records TaskFailed and the task is failed with its error."""
    state = task().given(history).when(FailTask(ID, 1, "oom", T0)).then(TaskFailed(ID, 1, "oom", T0))
    assert (state.status, state.error, state.lease_expires_at) == (S.FAILED, "oom", None)


@pytest.mark.parametrize("history", [ASSIGNED, RUNNING], ids=["assigned", "running"])
def test_time_out_after_the_lease_expired(history: list) -> None:
    """Timing out a task whose lease has run out records TaskTimedOut with the expired lease."""
    state = task().given(history).when(TimeOutTask(ID, LEASE)).then(TaskTimedOut(ID, 1, LEASE, LEASE))
    assert state.status is S.TIMED_OUT


def test_time_out_before_the_lease_expired_is_refused() -> None:
    """Timing out a task whose lease still runs raises LeaseNotExpired."""
    early = LEASE - timedelta(seconds=1)
    task().given(RUNNING).when(TimeOutTask(ID, early)).then_raises(
        LeaseNotExpired, lease_expires_at=LEASE, now=early
    )


@pytest.mark.parametrize("history", [FAILED, TIMED_OUT], ids=["failed", "timed_out"])
def test_schedule_retry_after_a_failed_attempt(history: list) -> None:
    """Scheduling a retry records the next attempt number and its not_before."""
    due = LATER + timedelta(seconds=30)
    state = (
        task()
        .given(history)
        .when(ScheduleTaskRetry(ID, due, LATER))
        .then(TaskRetryScheduled(ID, 2, due, LATER))
    )
    assert (state.status, state.retry_not_before, state.assignee) == (S.RETRY_SCHEDULED, due, None)


def test_schedule_retry_without_attempts_left_is_refused() -> None:
    """Scheduling a retry when every attempt is used raises AttemptsExhausted."""
    history = [
        TaskSubmitted(ID, "echo", {}, "default", Priority.LOW, 1, T0),
        TaskAssigned(ID, "w", 1, 1, LEASE, T0),
        TaskFailed(ID, 1, "boom", T0),
    ]
    task().given(history).when(ScheduleTaskRetry(ID, LATER, LATER)).then_raises(
        AttemptsExhausted, attempts=1, max_attempts=1
    )


@pytest.mark.parametrize(
    "status", sorted(EXPECTED_ALLOWED["CancelTask"], key=lambda s: s.value), ids=lambda s: s.value
)
def test_cancel_from_every_live_status(status: TaskStatus) -> None:
    """Cancelling a live task records TaskCancelled and the task is cancelled without a lease."""
    state = (
        task()
        .given(HISTORY[status])
        .when(CancelTask(ID, "stop", LATER))
        .then(TaskCancelled(ID, "stop", LATER))
    )
    assert (state.status, state.reason, state.lease_expires_at) == (S.CANCELLED, "stop", None)


@pytest.mark.parametrize("history", [FAILED, TIMED_OUT], ids=["failed", "timed_out"])
def test_dead_letter_after_a_failed_attempt(history: list) -> None:
    """Dead-lettering records TaskDeadLettered with its reason."""
    state = (
        task()
        .given(history)
        .when(DeadLetterTask(ID, "poison", LATER))
        .then(TaskDeadLettered(ID, "poison", LATER))
    )
    assert (state.status, state.reason) == (S.DEAD_LETTERED, "poison")


def test_requeue_gives_a_fresh_attempt_budget_but_never_reuses_a_token() -> None:
    """Requeueing a dead letter resets the attempt count; the next token still exceeds every old one."""
    state = task().given(DEAD_LETTERED).when(RequeueTask(ID, LATER)).then(TaskRequeued(ID, LATER))
    assert (state.status, state.attempt, state.fencing_token) == (S.PENDING, 0, 1)
    task().given(DEAD_LETTERED, TaskRequeued(ID, LATER)).when(
        AssignTask(ID, "w", LATER + timedelta(minutes=1), LATER)
    ).then(TaskAssigned(ID, "w", 2, 1, LATER + timedelta(minutes=1), LATER))


def test_late_write_of_a_fenced_off_worker_is_refused() -> None:
    """A worker whose task was timed out and reassigned cannot complete it with its old token."""
    reassigned = [
        *TIMED_OUT,
        TaskRetryScheduled(ID, 2, LEASE, LEASE),
        TaskAssigned(ID, "worker-2", 2, 2, LATER, LEASE),
        TaskStarted(ID, 2, LEASE),
    ]
    task().given(reassigned).when(CompleteTask(ID, 1, LEASE)).then_raises(
        StaleFencingToken, given=1, current=2, command="CompleteTask"
    )


@pytest.mark.parametrize(
    "command",
    [
        StartTask(ID, 1, T0),
        RenewTaskLease(ID, 1, LATER, T0),
        ReportTaskProgress(ID, 1, 1.0, T0),
        CompleteTask(ID, 1, T0),
        FailTask(ID, 1, "x", T0),
    ],
    ids=lambda c: type(c).__name__,
)
def test_every_holder_write_checks_the_fencing_token(command: object) -> None:
    """Each write a holder makes is refused when its token is older than the task's."""
    reassigned = [
        *TIMED_OUT,
        TaskRetryScheduled(ID, 2, LEASE, LEASE),
        TaskAssigned(ID, "w2", 2, 2, LATER, LEASE),
    ]
    task().given(reassigned).when(command).then_raises(StaleFencingToken, given=1, current=2)


def test_a_fenced_off_worker_learns_it_was_fenced_off_whatever_the_status() -> None:
    """An old token is refused as stale even after the newer attempt ended, not as an illegal transition."""
    newer_attempt_failed = [
        *TIMED_OUT,
        TaskRetryScheduled(ID, 2, LEASE, LEASE),
        TaskAssigned(ID, "w2", 2, 2, LATER, LEASE),
        TaskFailed(ID, 2, "boom", LEASE),
    ]
    task().given(newer_attempt_failed).when(CompleteTask(ID, 1, LATER)).then_raises(
        StaleFencingToken, given=1, current=2
    )


def test_a_token_never_issued_is_refused() -> None:
    """A write carrying a token larger than any issued is refused as not the current token."""
    task().given(RUNNING).when(CompleteTask(ID, 2, T0)).then_raises(StaleFencingToken, given=2, current=1)


def test_holder_may_write_after_lease_expiry_until_timed_out() -> None:
    """A holder whose lease ran out but was not timed out still holds the current token and may finish."""
    task().given(RUNNING).when(CompleteTask(ID, 1, LATER)).then(TaskCompleted(ID, 1, {}, LATER))


def test_command_for_another_task_is_refused() -> None:
    """A command addressed to another task than the stream holds raises InvalidCommand."""
    task().given(SUBMITTED).when(CancelTask("t2", "x", T0)).then_raises(InvalidCommand, command="CancelTask")


@pytest.mark.parametrize(
    "build",
    [
        lambda: SubmitTask(ID, "echo", datetime(2025, 1, 1)),  # naive on purpose
        lambda: SubmitTask(ID, "", T0),
        lambda: SubmitTask(ID, "echo", T0, max_attempts=0),
        lambda: SubmitTask("bad id!", "echo", T0),
        lambda: AssignTask(ID, "w", T0, T0),
        lambda: StartTask(ID, 0, T0),
        lambda: ReportTaskProgress(ID, 1, 101.0, T0),
        lambda: ScheduleTaskRetry(ID, T0 - timedelta(seconds=1), T0),
        lambda: CancelTask(ID, " ", T0),
    ],
    ids=[
        "naive-time",
        "empty-handler",
        "no-attempts",
        "bad-id",
        "lease-not-after-now",
        "token-zero",
        "percent-over-100",
        "retry-in-the-past",
        "blank-reason",
    ],
)
def test_malformed_commands_are_refused_when_built(build: object) -> None:
    """A malformed command raises InvalidCommand at construction, before any decision."""
    assert callable(build)
    with pytest.raises(InvalidCommand):
        build()


def test_times_in_other_zones_compare_by_instant() -> None:
    """A lease given in UTC+2 expires at the same instant as its UTC equivalent."""
    plus_two = timezone(timedelta(hours=2))
    at = LEASE.astimezone(plus_two)
    task().given(RUNNING).when(TimeOutTask(ID, at)).then(TaskTimedOut(ID, 1, LEASE, at))
