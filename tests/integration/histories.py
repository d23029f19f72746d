"""Random valid histories for the read-model tests: task commands the task decider accepts, and
run streams in the order a run emits its events (boundary events, late checkpoints, rollbacks,
resumes from a checkpoint, and every way a run ends)."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from core.domain import DomainEvent
from core.domain.task import (
    AssignTask,
    CancelTask,
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
    TaskState,
    TaskStatus,
    TimeOutTask,
)
from core.triad.events import (
    BudgetExceeded,
    CheckpointSaved,
    DecisionMade,
    EpochCompleted,
    FieldReportFiled,
    RolledBack,
    RunCompleted,
    RunFailed,
    RunResumed,
    RunStarted,
    SeedStageChanged,
    SeedSummary,
)

__all__ = ["T0", "RandomRun", "next_task_command", "random_run"]

T0 = datetime(2026, 2, 1, 9, 0, tzinfo=UTC)
QUEUES = ("default", "gpu")
WORKERS = ("w1", "w2", "agent-7")
_CANCELLABLE = frozenset(
    {
        TaskStatus.PENDING,
        TaskStatus.ASSIGNED,
        TaskStatus.RUNNING,
        TaskStatus.FAILED,
        TaskStatus.TIMED_OUT,
        TaskStatus.RETRY_SCHEDULED,
    }
)

# -- tasks ---------------------------------------------------------------------------------------


def next_task_command(rng: random.Random, task_id: str, state: TaskState, now: datetime) -> Any:
    """A command the task accepts in ``state`` at ``now``; None once the task has ended."""
    if state.status is TaskStatus.UNSUBMITTED:
        payload = {"n": rng.randint(0, 9)}
        priority = rng.choice(list(Priority))
        return SubmitTask(task_id, "echo", now, payload, rng.choice(QUEUES), priority, rng.randint(1, 3))
    if state.status in _CANCELLABLE and rng.random() < 0.02:
        return CancelTask(task_id, "no longer needed", now)
    options = _options(rng, task_id, state, now)
    return rng.choice(options) if options else None


def _options(rng: random.Random, task_id: str, state: TaskState, now: datetime) -> list[Any]:
    token, lease = state.fencing_token, now + timedelta(seconds=rng.randint(1, 300))
    expired = max(now, state.lease_expires_at or now)
    match state.status:
        case TaskStatus.PENDING:
            return [AssignTask(task_id, rng.choice(WORKERS), lease, now)]
        case TaskStatus.RETRY_SCHEDULED:
            due = max(now, state.retry_not_before or now)
            return [AssignTask(task_id, rng.choice(WORKERS), due + timedelta(minutes=1), due)]
        case TaskStatus.ASSIGNED:
            return [StartTask(task_id, token, now), RenewTaskLease(task_id, token, lease, now)]
        case TaskStatus.RUNNING:
            return [
                ReportTaskProgress(task_id, token, round(rng.uniform(0, 100), 3), now, "step"),
                ReportTaskProgress(task_id, token, round(rng.uniform(0, 100), 3), now, "step"),
                RenewTaskLease(task_id, token, lease, now),
                CompleteTask(task_id, token, now, {"ok": True}),
                FailTask(task_id, token, f"boom at {now:%H:%M:%S}", now),
                TimeOutTask(task_id, expired),
            ]
        case TaskStatus.FAILED | TaskStatus.TIMED_OUT:
            retry = ScheduleTaskRetry(task_id, now + timedelta(seconds=rng.randint(0, 60)), now)
            dead = DeadLetterTask(task_id, "gave up", now)
            return [retry, retry, dead] if state.attempt < state.max_attempts else [dead]
        case TaskStatus.DEAD_LETTERED:
            return [RequeueTask(task_id, now)] if rng.random() < 0.5 else []
        case _:
            return []


# -- training runs -------------------------------------------------------------------------------


@dataclass(frozen=True)
class RandomRun:
    events: list[DomainEvent]
    status: str  # what the training_runs row should say
    reason: str | None


@dataclass
class _Emitter:
    """A run's emission as Tolaria makes it, one boundary at a time."""

    rng: random.Random
    run_id: str
    planned: int
    events: list[DomainEvent]
    epoch: int = 0
    command: int = 0
    attempt: int = 1
    checkpoints: list[int] | None = None  # epochs whose checkpoint file a resume may go back to
    pending: list[int] | None = None  # checkpoints written but not yet reported

    def boundary(self) -> None:
        rng, epoch = self.rng, self.epoch
        self.command += 1
        if epoch > 0 and rng.random() < 0.7:
            report = FieldReportFiled(
                self.command - 1, "WAIT", epoch - 1, epoch, "NEUTRAL", 0.5, 0.4, None, None
            )
            self.events.append(report)
        kind = rng.choice(["WAIT", "WAIT", "GERMINATE", "ROLL_BACK"])
        self.events.append(
            DecisionMade(self.command, epoch, kind, {}, "policy", f"{kind.lower()} at {epoch}")
        )
        if rng.random() < 0.3:
            self.events.append(SeedStageChanged(0, "DORMANT", "GERMINATED", epoch, "germinate", "conv"))
        for part in rng.sample(["gather", "decide", "apply", "total"], rng.choice([0, 0, 1, 2])):
            self.events.append(BudgetExceeded(epoch, part, 9.5, 1.0))
        self.events.append(self._completed(epoch))
        self._after(epoch, kind)
        self.epoch += 1

    def _completed(self, epoch: int) -> EpochCompleted:
        rng = self.rng
        seed = SeedSummary(
            0, rng.choice(["DORMANT", "TRAINING"]), None, round(rng.random(), 6), 0, epoch, None, None
        )
        accuracy = None if rng.random() < 0.1 else round(rng.random(), 4)
        train_accuracy = None if rng.random() < 0.2 else round(rng.random(), 4)
        loss = round(rng.uniform(0.1, 2.0), 4)
        return EpochCompleted(
            epoch, 8 * (epoch + 1), loss, train_accuracy, loss, accuracy, 0.01, None, (seed,), {}
        )

    def _after(self, epoch: int, kind: str) -> None:
        rng = self.rng
        assert self.checkpoints is not None and self.pending is not None
        while self.pending and rng.random() < 0.6:  # a checkpoint is reported a boundary or two late
            self.events.append(self._saved(self.pending.pop(0)))
        if kind == "ROLL_BACK":
            self.events.append(RolledBack(epoch, "fast", "regression", max(epoch - 1, -1), 1.5))
        elif rng.random() < 0.5:
            self.checkpoints.append(epoch)
            self.pending.append(epoch)
        if rng.random() < 0.08:
            self.events.append(RunFailed(epoch + 1, "checkpoint failed: disk full"))

    def _saved(self, epoch: int) -> CheckpointSaved:
        return CheckpointSaved(
            epoch, f"ckpt-{epoch:06d}.pt", f"{self.attempt:x}{epoch:x}".ljust(64, "0"), 100
        )

    def resume(self) -> None:
        """The process died; the next one goes back to the newest checkpoint it finds."""
        assert self.checkpoints is not None
        back_to = self.checkpoints[-1]
        self.attempt += 1
        self.planned += self.rng.choice([0, 0, 2])
        self.events.append(
            RunResumed(back_to, f"{back_to:x}".ljust(64, "f"), f"ckpt-{back_to:06d}.pt", self.planned)
        )
        self.checkpoints = [c for c in self.checkpoints if c <= back_to]
        self.pending = []
        self.epoch = back_to + 1


def random_run(rng: random.Random, run_id: str) -> RandomRun:
    """A run stream of a few epochs, with up to two resumes, ending in any of the ways a run ends."""
    planned = rng.randint(2, 6)
    started = RunStarted(run_id, "cpu", 1000, (), planned, 64, 7, 100.0, 0.01, 1)
    emitter = _Emitter(rng, run_id, planned, [started], checkpoints=[], pending=[])
    while emitter.epoch < emitter.planned:
        emitter.boundary()
        if emitter.checkpoints and emitter.attempt < 3 and rng.random() < 0.2:
            emitter.resume()
    return _ended(rng, emitter)


def _ended(rng: random.Random, emitter: _Emitter) -> RandomRun:
    """End the run; what its row should say, by the rules of ``projections.models.runs``."""
    events, epoch = emitter.events, emitter.epoch
    # A checkpoint that failed at the last boundary: nothing after it set the run going again.
    failure = events[-1].reason if isinstance(events[-1], RunFailed) else None
    ending = rng.choice(["completed", "stopped", "raised", "gave up", "running"])
    if ending in ("raised", "gave up"):
        failure = "RuntimeError: boom" if ending == "raised" else "no state to roll back to (regression)"
        events.append(RunFailed(epoch, failure))
        if ending == "gave up":
            events.append(_summary(emitter.run_id, epoch, stopped=True))
        return RandomRun(events, "failed", failure)
    if ending != "running":
        events.append(_summary(emitter.run_id, epoch, stopped=ending == "stopped"))
    if failure is not None and ending != "completed":
        return RandomRun(events, "failed", failure)
    return RandomRun(events, ending, None)


def _summary(run_id: str, epochs: int, *, stopped: bool) -> RunCompleted:
    return RunCompleted(run_id, epochs, stopped, 0.3, 0.9, 0.8, 0.1, (), {}, 0, 0, {}, None)
