"""A training run's stream (``run-<id>``) folded into one row per epoch.

This is the view behind ``chronicle replay run-<id> --steps`` (drawn by ``api/cli/train.py``):
for each epoch, the losses and accuracies, Tamiyo's decision and how its FieldReport judged it
one epoch later, every seed's stage after the boundary (with the transitions taken there),
rollbacks, the checkpoint saved and its checksum, and budget overruns. It is pure: recorded
events in, decoded strictly through the event registry (older versions upcast), frozen rows out.

Where an event belongs. Every event of an epoch boundary names the epoch it was emitted for
(a FieldReport names it as ``observed_epoch``), and that, not its position in the stream, is
what places it in a row: a checkpoint is written on a background thread, so ``CheckpointSaved``
for epoch N usually arrives after ``EpochCompleted`` for N+1.

Resumes. ``RunResumed(from_epoch=C)`` says the run went back to the checkpoint of epoch C.
Everything the abandoned attempt recorded for a boundary after C (decisions, field reports,
transitions, rollbacks, even checkpoints of later epochs that failed their checksum) did not
happen in the run that continued, so it is dropped; the resumed attempt records those epochs
again. Rows carry the attempt that recorded them (1, then 2 after the first resume, ...).
"""

from __future__ import annotations

import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from core.domain.contracts import EventRegistry
from core.domain.registry import DOMAIN_EVENTS
from core.events import RecordedEvent
from core.triad.events import (
    BudgetExceeded,
    CheckpointSaved,
    CommandRejected,
    ConservativeModeEntered,
    ConservativeModeExited,
    DecisionMade,
    EpochCompleted,
    FieldReportFiled,
    RolledBack,
    RunFailed,
    RunResumed,
    SeedStageChanged,
    SeedSummary,
)

__all__ = [
    "PLACED_TYPES",
    "Checkpoint",
    "EpochDecision",
    "EpochRow",
    "ModeSwitch",
    "Overrun",
    "PlacedEvent",
    "Rollback",
    "SeedAfterEpoch",
    "epoch_of",
    "run_history",
]


@dataclass(frozen=True, slots=True)
class EpochDecision:
    """Tamiyo's command at this boundary; ``outcome`` comes from the FieldReport filed one
    epoch later (None until it is filed, and always for commands Tolaria made up itself)."""

    command_id: int
    kind: str
    arguments: tuple[tuple[str, Any], ...]
    issued_by: str
    reason: str
    outcome: str | None = None
    rejected: str | None = None


@dataclass(frozen=True, slots=True)
class SeedAfterEpoch:
    """One slot after the boundary; ``moved_from`` is its stage before, if it moved there."""

    slot: int
    stage: str
    blueprint: str | None
    alpha: float
    contribution: float | None
    moved_from: str | None = None


@dataclass(frozen=True, slots=True)
class Rollback:
    tier: str
    reason: str
    restored_epoch: int
    elapsed_ms: float


@dataclass(frozen=True, slots=True)
class Checkpoint:
    file: str
    sha256: str


@dataclass(frozen=True, slots=True)
class Overrun:
    part: str
    elapsed_ms: float
    budget_ms: float


@dataclass(frozen=True, slots=True)
class ModeSwitch:
    component: str
    entered: bool
    reason: str


@dataclass(frozen=True, slots=True)
class EpochRow:
    """One epoch of a run as its events tell it. ``completed`` is False for an epoch that has
    events (a failure, say) but never reached its ``EpochCompleted``."""

    epoch: int
    attempt: int
    completed: bool
    global_step: int | None = None
    train_loss: float | None = None
    train_accuracy: float | None = None
    val_loss: float | None = None
    val_accuracy: float | None = None
    learning_rate: float | None = None
    decision: EpochDecision | None = None
    seeds: tuple[SeedAfterEpoch, ...] = ()
    rollbacks: tuple[Rollback, ...] = ()
    checkpoint: Checkpoint | None = None
    overruns: tuple[Overrun, ...] = ()
    mode_switches: tuple[ModeSwitch, ...] = ()
    failures: tuple[str, ...] = ()
    resumed_here: bool = False  # a later attempt continued from this epoch's checkpoint


# -- placing events ------------------------------------------------------------------------------

PlacedEvent = (
    EpochCompleted
    | DecisionMade
    | CommandRejected
    | SeedStageChanged
    | FieldReportFiled
    | CheckpointSaved
    | RolledBack
    | BudgetExceeded
    | ConservativeModeEntered
    | ConservativeModeExited
    | RunFailed
    | RunResumed
)
PLACED_TYPES = frozenset(contract.TYPE for contract in typing.get_args(PlacedEvent))


@dataclass(frozen=True, slots=True)
class _Placed:
    epoch: int
    attempt: int
    event: PlacedEvent


def epoch_of(event: PlacedEvent) -> int:
    """The boundary an event belongs to (the training-runs read model places events by it too)."""
    if isinstance(event, FieldReportFiled):
        return event.observed_epoch
    if isinstance(event, RunResumed):
        return event.from_epoch
    return event.epoch


def _place(events: Sequence[RecordedEvent], registry: EventRegistry) -> list[_Placed]:
    """The events that belong to the run's history, each with its epoch and attempt."""
    kept: list[_Placed] = []
    attempt = 1
    for recorded in events:
        if recorded.type not in PLACED_TYPES:
            continue  # RunStarted, RunCompleted, EmissionFailed and types a later version adds
        event = typing.cast(PlacedEvent, registry.read(recorded))  # its type is one of them
        epoch = epoch_of(event)
        if isinstance(event, RunResumed):
            kept = [p for p in kept if p.epoch <= epoch]  # the abandoned attempt's later epochs
            attempt += 1
        kept.append(_Placed(epoch, attempt, event))
    return kept


# -- folding -------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Builder:
    """A row while its events are folded in; frozen into an EpochRow at the end."""

    epoch: int
    attempt: int
    completed: EpochCompleted | None = None
    decision: DecisionMade | None = None
    rejected: str | None = None
    moves: dict[int, str] = field(default_factory=dict)
    rollbacks: list[Rollback] = field(default_factory=list)
    checkpoint: Checkpoint | None = None
    overruns: list[Overrun] = field(default_factory=list)
    mode_switches: list[ModeSwitch] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    resumed_here: bool = False


def run_history(events: Sequence[RecordedEvent], registry: EventRegistry = DOMAIN_EVENTS) -> list[EpochRow]:
    """One row per epoch of a run stream's events (in stream order), oldest first."""
    placed = _place(events, registry)
    outcomes = {
        (p.event.issued_epoch, p.event.command_id): p.event.outcome
        for p in placed
        if isinstance(p.event, FieldReportFiled)
    }
    builders: dict[int, _Builder] = {}
    for p in placed:
        builder = builders.setdefault(p.epoch, _Builder(p.epoch, p.attempt))
        _fold(builder, p)
    return [_row(builders[epoch], outcomes) for epoch in sorted(builders)]


def _fold(row: _Builder, p: _Placed) -> None:
    match p.event:
        case EpochCompleted() as completed:
            row.completed, row.attempt = completed, p.attempt
        case DecisionMade() as decision:
            row.decision = decision
        case CommandRejected(reason=reason):
            row.rejected = reason
        case SeedStageChanged() as move:
            row.moves[move.slot] = move.from_stage
        case RolledBack() as back:
            row.rollbacks.append(Rollback(back.tier, back.reason, back.restored_epoch, back.elapsed_ms))
        case CheckpointSaved(file=file, sha256=sha256):
            row.checkpoint = Checkpoint(file, sha256)
        case BudgetExceeded(part=part, elapsed_ms=elapsed, budget_ms=budget):
            row.overruns.append(Overrun(part, elapsed, budget))
        case ConservativeModeEntered(component=component, reason=reason):
            row.mode_switches.append(ModeSwitch(component, True, reason))
        case ConservativeModeExited(component=component, reason=reason):
            row.mode_switches.append(ModeSwitch(component, False, reason))
        case RunFailed(reason=reason):
            row.failures.append(reason)
        case RunResumed(file=file, sha256=sha256):
            row.resumed_here = True
            # The checkpoint may have been written just before the crash, its event never emitted.
            row.checkpoint = row.checkpoint or Checkpoint(file, sha256)


def _row(b: _Builder, outcomes: Mapping[tuple[int, int], str]) -> EpochRow:
    done = b.completed
    return EpochRow(
        epoch=b.epoch,
        attempt=b.attempt,
        completed=done is not None,
        global_step=None if done is None else done.global_step,
        train_loss=None if done is None else done.train_loss,
        train_accuracy=None if done is None else done.train_accuracy,
        val_loss=None if done is None else done.val_loss,
        val_accuracy=None if done is None else done.val_accuracy,
        learning_rate=None if done is None else done.learning_rate,
        decision=None if b.decision is None else _decision(b, b.decision, outcomes),
        seeds=() if done is None else tuple(_seed(s, b.moves) for s in done.seeds),
        rollbacks=tuple(b.rollbacks),
        checkpoint=b.checkpoint,
        overruns=tuple(b.overruns),
        mode_switches=tuple(b.mode_switches),
        failures=tuple(b.failures),
        resumed_here=b.resumed_here,
    )


def _decision(b: _Builder, made: DecisionMade, outcomes: Mapping[tuple[int, int], str]) -> EpochDecision:
    return EpochDecision(
        command_id=made.command_id,
        kind=made.kind,
        # jsonb does not keep key order: put the slot first, then the rest by name.
        arguments=tuple(sorted(made.payload.items(), key=lambda kv: (kv[0] != "slot", kv[0]))),
        issued_by=made.issued_by,
        reason=made.reason,
        outcome=outcomes.get((b.epoch, made.command_id)),
        rejected=b.rejected,
    )


def _seed(seed: SeedSummary, moves: Mapping[int, str]) -> SeedAfterEpoch:
    return SeedAfterEpoch(
        slot=seed.slot,
        stage=seed.stage,
        blueprint=seed.blueprint,
        alpha=seed.alpha,
        contribution=seed.contribution,
        moved_from=moves.get(seed.slot),
    )
