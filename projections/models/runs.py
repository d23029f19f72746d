"""Training runs: one row per run (status, device, epochs, attempts, accuracy, rollbacks, budget
overruns, last checkpoint, times, failure) and one row per epoch per attempt (losses,
accuracies, learning rate, Tamiyo's decision, the seeds, rollback, budget overruns, the
checkpoint's sha256), folded from the run streams' typed events (``core/triad/events.py``).
Read them through the ``training_runs`` and ``training_run_epochs`` views, or with ``runs``,
``run`` and ``run_epochs`` here.

Epochs. An event lands on the epoch it names, as ``projections.run_history`` places it
(``epoch_of``: a FieldReport on the epoch it observed, ``RunResumed`` on the checkpoint it went
back to), in the run's history as it stands, so a checkpoint saved late still lands on its
epoch. ``RunResumed(from_epoch=C)`` starts the next attempt: the rows of epochs after C are
marked ``abandoned`` (the run that continued never had them), and the new attempt records
those epochs again in rows of its own. So the rows that are not abandoned are the epochs
``run_history`` shows for the run stream, field for field; the abandoned ones are kept for
the record. ``completed_at`` is None for an epoch that has events but never completed.

Runs. ``status`` is ``running`` from ``RunStarted`` or ``RunResumed``; ``failed`` at a
``RunFailed``, with its ``reason`` (which is None in any other status); ``completed`` or
``stopped`` at ``RunCompleted``. A checkpoint that fails is recorded as ``RunFailed`` while
training goes on, so the next completed epoch sets the run ``running`` again; a run that stops
right after a failure (nothing to roll back to) stays ``failed``. ``attempts`` is 1 plus the
resumes. The counts and accuracies are over the epochs of the current history, so a resume
recounts them: ``val_accuracy`` is the latest completed epoch's, ``best_val_accuracy`` the
highest, ``rollbacks`` the epochs rolled back, ``budget_overruns`` the parts over budget.
Timestamps are the log's (run events carry none of their own): ``started_at`` is when the
run's first event was recorded, ``finished_at`` when its ``RunFailed`` or ``RunCompleted`` was.

Incremental, not a re-read. A batch loads the runs it names and the epoch rows its events
name (every epoch row of a run it resumes), folds its events over them in log order and writes
them back: O(batch), and reading only the model's own rows and the events handed to it, as the
runner's contract asks. Re-reading each touched run stream instead would cost the whole stream
for every live batch that carries a few of its events (quadratic over a long run's life).
"""

from __future__ import annotations

import enum
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from core.domain.contracts import DomainEvent
from core.domain.registry import DOMAIN_EVENTS
from core.domain.serialization import to_json_value
from core.events import RecordedEvent
from core.triad.events import (
    BudgetExceeded,
    CheckpointSaved,
    DecisionMade,
    EpochCompleted,
    RolledBack,
    RunCompleted,
    RunFailed,
    RunResumed,
    RunStarted,
)
from projections.models.pages import fetch_page
from projections.models.rows import Row, RowTable, touched
from projections.run_history import PLACED_TYPES, PlacedEvent, epoch_of

__all__ = ["RunEpochRow", "RunRow", "RunStatus", "TrainingRuns", "run", "run_epochs", "runs"]


class RunStatus(enum.Enum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    STOPPED = "stopped"


RUN_COLUMNS = (
    "run_id",
    "tenant_id",
    "status",
    "device",
    "epochs_planned",
    "epochs_completed",
    "attempts",
    "val_accuracy",
    "best_val_accuracy",
    "rollbacks",
    "budget_overruns",
    "last_checkpoint_epoch",
    "started_at",
    "finished_at",
    "reason",
    "updated_position",
)
EPOCH_COLUMNS = (
    "run_id",
    "attempt",
    "epoch",
    "tenant_id",
    "train_loss",
    "val_loss",
    "val_accuracy",
    "train_accuracy",
    "learning_rate",
    "decision",
    "decision_reason",
    "seeds",
    "rolled_back",
    "budget_overruns",
    "checkpoint_sha256",
    "abandoned",
    "completed_at",
    "updated_position",
)
RUNS = RowTable("training_runs_rows", "run_id", RUN_COLUMNS)
EPOCHS = RowTable("training_run_epochs_rows", ("run_id", "attempt", "epoch"), EPOCH_COLUMNS)

_TYPES = PLACED_TYPES | {RunStarted.TYPE, RunCompleted.TYPE}

EpochKey = tuple[str, int, int]  # run_id, attempt, epoch


@dataclass(slots=True)
class _Batch:
    """The rows a batch folds over. ``history`` maps (run, epoch) to the key of that epoch's
    row in the run's current history (the one row of that epoch that is not abandoned)."""

    runs: dict[Any, Row]
    epochs: dict[Any, Row]
    history: dict[tuple[str, int], EpochKey] = field(default_factory=dict)
    changed_runs: list[str] = field(default_factory=list)
    changed_epochs: list[EpochKey] = field(default_factory=list)

    def __post_init__(self) -> None:
        for key, row in self.epochs.items():
            self.history[(row["run_id"], row["epoch"])] = key

    def run(self, recorded: RecordedEvent) -> Row:
        """The run's row, new if this is its first event; marked changed."""
        run_id = recorded.stream_id.split("-", 1)[1]
        row = self.runs.get(run_id)
        if row is None:
            row = self.runs[run_id] = _new_run(run_id, recorded)
        row["updated_position"] = recorded.global_position
        self.changed_runs.append(run_id)
        return row

    def epoch(self, run: Row, epoch: int, recorded: RecordedEvent) -> Row:
        """The epoch's row in the run's history, new (in the current attempt) if it has none."""
        key = self.history.get((run["run_id"], epoch))
        if key is None:
            key = (run["run_id"], run["attempts"], epoch)
            self.epochs[key] = _new_epoch(run, epoch)
            self.history[(run["run_id"], epoch)] = key
        row = self.epochs[key]
        row["updated_position"] = recorded.global_position
        self.changed_epochs.append(key)
        return row

    def current(self, run_id: str) -> list[Row]:
        """The run's epoch rows that are not abandoned, oldest epoch first."""
        rows = [self.epochs[k] for (r, _), k in self.history.items() if r == run_id]
        return sorted(rows, key=lambda row: int(row["epoch"]))

    def abandon_after(self, run_id: str, epoch: int, position: int) -> None:
        for row in self.current(run_id):
            if row["epoch"] > epoch:
                row["abandoned"], row["updated_position"] = True, position
                key = (run_id, row["attempt"], row["epoch"])
                del self.history[(run_id, row["epoch"])]
                self.changed_epochs.append(key)


class TrainingRuns:
    name = "training_runs"
    version = 1
    categories = ("run",)
    tables = (RUNS.name, EPOCHS.name)

    async def apply(self, conn: asyncpg.Connection, generation: int, events: Sequence[RecordedEvent]) -> None:
        decoded = [(r, DOMAIN_EVENTS.read(r)) for r in events if r.type in _TYPES]
        run_ids = {r.stream_id.split("-", 1)[1] for r, _ in decoded}
        batch = _Batch(
            await RUNS.fetch(conn, generation, "run_id = ANY($2)", list(run_ids)),
            await _fetch_epochs(conn, generation, decoded),
        )
        for recorded, event in decoded:
            _fold(batch, recorded, event)
        await RUNS.upsert(conn, generation, touched(batch.runs, batch.changed_runs))
        await EPOCHS.upsert(conn, generation, touched(batch.epochs, batch.changed_epochs))


async def _fetch_epochs(
    conn: asyncpg.Connection, generation: int, decoded: Sequence[tuple[RecordedEvent, DomainEvent]]
) -> dict[Any, Row]:
    """The current-history rows of the epochs the events name, and all of them for a run a
    ``RunResumed`` recounts."""
    resumed: set[str] = set()
    named: set[tuple[str, int]] = set()
    for recorded, event in decoded:
        if isinstance(event, RunResumed):
            resumed.add(recorded.stream_id.split("-", 1)[1])
        elif recorded.type in PLACED_TYPES:
            named.add((recorded.stream_id.split("-", 1)[1], epoch_of(typing.cast(PlacedEvent, event))))
    return await EPOCHS.fetch(
        conn,
        generation,
        "NOT abandoned AND (run_id = ANY($2) OR (run_id, epoch) IN "
        "(SELECT * FROM unnest($3::text[], $4::int[])))",
        list(resumed),
        [run_id for run_id, _ in named],
        [epoch for _, epoch in named],
    )


def _new_run(run_id: str, recorded: RecordedEvent) -> Row:
    return {
        "run_id": run_id,
        "tenant_id": recorded.tenant_id,
        "status": RunStatus.RUNNING.value,
        "device": None,
        "epochs_planned": None,
        "epochs_completed": 0,
        "attempts": 1,
        "val_accuracy": None,
        "best_val_accuracy": None,
        "rollbacks": 0,
        "budget_overruns": 0,
        "last_checkpoint_epoch": None,
        "started_at": recorded.recorded_at,
        "finished_at": None,
        "reason": None,
    }


def _new_epoch(run: Row, epoch: int) -> Row:
    return {
        "run_id": run["run_id"],
        "attempt": run["attempts"],
        "epoch": epoch,
        "tenant_id": run["tenant_id"],
        "train_loss": None,
        "val_loss": None,
        "val_accuracy": None,
        "train_accuracy": None,
        "learning_rate": None,
        "decision": None,
        "decision_reason": None,
        "seeds": b"[]",
        "rolled_back": False,
        "budget_overruns": 0,
        "checkpoint_sha256": None,
        "abandoned": False,
        "completed_at": None,
    }


# -- folding -------------------------------------------------------------------------------------


def _fold(batch: _Batch, recorded: RecordedEvent, event: DomainEvent) -> None:
    run = batch.run(recorded)
    if isinstance(event, RunResumed):
        _resumed(batch, run, event, recorded)
        return
    if isinstance(event, RunStarted | RunCompleted | RunFailed):
        _lifecycle(run, event, recorded)
    if recorded.type in PLACED_TYPES:
        placed = typing.cast(PlacedEvent, event)
        _on_epoch(run, batch.epoch(run, epoch_of(placed), recorded), placed, recorded)


def _lifecycle(run: Row, event: RunStarted | RunCompleted | RunFailed, recorded: RecordedEvent) -> None:
    match event:
        case RunStarted():
            run.update(status=RunStatus.RUNNING.value, device=event.device, epochs_planned=event.epochs)
            run.update(started_at=recorded.recorded_at, finished_at=None, reason=None)
        case RunFailed():
            run.update(status=RunStatus.FAILED.value, reason=event.reason, finished_at=recorded.recorded_at)
        case RunCompleted():
            status = _completed_status(run["status"], event.stopped)
            run.update(status=status, finished_at=recorded.recorded_at)
            run["reason"] = run["reason"] if status == RunStatus.FAILED.value else None


def _completed_status(status: str, stopped: bool) -> str:
    if not stopped:
        return RunStatus.COMPLETED.value
    # A run stops itself after a failure it cannot get over (nothing to roll back to).
    return RunStatus.FAILED.value if status == RunStatus.FAILED.value else RunStatus.STOPPED.value


def _on_epoch(run: Row, row: Row, event: PlacedEvent, recorded: RecordedEvent) -> None:
    match event:
        case EpochCompleted():
            _epoch_completed(run, row, event, recorded)
        case DecisionMade():
            row.update(decision=event.kind, decision_reason=event.reason)
        case CheckpointSaved():
            row["checkpoint_sha256"] = event.sha256
            last = run["last_checkpoint_epoch"]
            run["last_checkpoint_epoch"] = event.epoch if last is None else max(last, event.epoch)
        case RolledBack():
            run["rollbacks"] += 0 if row["rolled_back"] else 1
            row["rolled_back"] = True
        case BudgetExceeded():
            row["budget_overruns"] += 1
            run["budget_overruns"] += 1
        case _:
            pass  # placed, so the epoch has a row, but nothing of it is on the row


def _epoch_completed(run: Row, row: Row, event: EpochCompleted, recorded: RecordedEvent) -> None:
    if row["completed_at"] is None:
        run["epochs_completed"] += 1
    row.update(
        train_loss=event.train_loss,
        val_loss=event.val_loss,
        val_accuracy=event.val_accuracy,
        train_accuracy=event.train_accuracy,
        learning_rate=event.learning_rate,
        # jsonb travels as the bytes orjson makes (eventstore.pg's codec on every connection).
        seeds=orjson.dumps([to_json_value(seed) for seed in event.seeds]),
        completed_at=recorded.recorded_at,
    )
    run.update(status=RunStatus.RUNNING.value, reason=None, val_accuracy=event.val_accuracy)
    run["best_val_accuracy"] = _best(run["best_val_accuracy"], event.val_accuracy)


def _best(best: float | None, value: float | None) -> float | None:
    if value is None:
        return best
    return value if best is None else max(best, value)


def _resumed(batch: _Batch, run: Row, event: RunResumed, recorded: RecordedEvent) -> None:
    """The next attempt goes on from epoch ``from_epoch``'s checkpoint: the epochs after it are
    abandoned, and the run's counts are those of the history that remains."""
    run_id = run["run_id"]
    run["attempts"] += 1
    batch.abandon_after(run_id, event.from_epoch, recorded.global_position)
    row = batch.epoch(run, event.from_epoch, recorded)
    # The checkpoint may have been written just before the crash, its event never emitted.
    row["checkpoint_sha256"] = row["checkpoint_sha256"] or event.sha256
    run.update(status=RunStatus.RUNNING.value, finished_at=None, reason=None)
    run["epochs_planned"] = event.epochs if event.epochs is not None else run["epochs_planned"]
    run["last_checkpoint_epoch"] = event.from_epoch
    _recount(run, batch.current(run_id))


def _recount(run: Row, history: Sequence[Row]) -> None:
    done = [row for row in history if row["completed_at"] is not None]
    run["epochs_completed"] = len(done)
    run["val_accuracy"] = done[-1]["val_accuracy"] if done else None
    run["best_val_accuracy"] = None
    for row in done:
        run["best_val_accuracy"] = _best(run["best_val_accuracy"], row["val_accuracy"])
    run["rollbacks"] = sum(1 for row in history if row["rolled_back"])
    run["budget_overruns"] = sum(row["budget_overruns"] for row in history)


# -- reading -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunRow:
    run_id: str
    tenant_id: str | None
    status: RunStatus
    device: str | None
    epochs_planned: int | None
    epochs_completed: int
    attempts: int
    val_accuracy: float | None
    best_val_accuracy: float | None
    rollbacks: int
    budget_overruns: int
    last_checkpoint_epoch: int | None
    started_at: datetime
    finished_at: datetime | None
    reason: str | None
    updated_position: int

    @property
    def cursor(self) -> tuple[datetime, str]:
        """What ``runs(after=...)`` takes to continue after this row."""
        return (self.started_at, self.run_id)

    @classmethod
    def of(cls, record: asyncpg.Record) -> RunRow:
        return cls(**(dict(record) | {"status": RunStatus(record["status"])}))


@dataclass(frozen=True, slots=True)
class RunEpochRow:
    run_id: str
    attempt: int
    epoch: int
    tenant_id: str | None
    train_loss: float | None
    val_loss: float | None
    val_accuracy: float | None
    train_accuracy: float | None
    learning_rate: float | None
    decision: str | None
    decision_reason: str | None
    seeds: tuple[Mapping[str, Any], ...]  # each slot after the boundary, as EpochCompleted records it
    rolled_back: bool
    budget_overruns: int
    checkpoint_sha256: str | None
    abandoned: bool
    completed_at: datetime | None
    updated_position: int

    @classmethod
    def of(cls, record: asyncpg.Record) -> RunEpochRow:
        # jsonb is bytes with Chronicle's codec (eventstore.pg), str without; orjson reads both.
        return cls(**(dict(record) | {"seeds": tuple(orjson.loads(record["seeds"]))}))


async def runs(
    conn: asyncpg.Connection,
    *,
    tenant_id: str | None = None,
    status: RunStatus | None = None,
    after: tuple[datetime, str] | None = None,
    limit: int = 100,
) -> list[RunRow]:
    """Runs in the order they started (then by id); ``after`` is the last row's ``cursor``."""
    filters = {"tenant_id": tenant_id, "status": None if status is None else status.value}
    records = await fetch_page(
        conn, "training_runs", RUN_COLUMNS, filters, ("started_at", "run_id"), after, limit
    )
    return [RunRow.of(r) for r in records]


async def run(conn: asyncpg.Connection, run_id: str) -> RunRow | None:
    record = await conn.fetchrow(
        f"SELECT {', '.join(RUN_COLUMNS)} FROM training_runs WHERE run_id = $1",  # noqa: S608
        run_id,
    )
    return None if record is None else RunRow.of(record)


async def run_epochs(
    conn: asyncpg.Connection, run_id: str, *, include_abandoned: bool = False
) -> list[RunEpochRow]:
    """The run's epochs of its current history, or with the abandoned ones too, by epoch and
    then attempt (an abandoned epoch comes just before the one that recorded it again)."""
    abandoned = "" if include_abandoned else " AND NOT abandoned"
    records = await conn.fetch(
        f"SELECT {', '.join(EPOCH_COLUMNS)} FROM training_run_epochs "  # noqa: S608
        f"WHERE run_id = $1{abandoned} ORDER BY epoch, attempt",
        run_id,
    )
    return [RunEpochRow.of(r) for r in records]
