"""The events of a training run's stream (``run-<id>``): versioned domain event contracts.

This module holds the run's lifecycle (started, resumed, completed, failed), checkpoints and
rollbacks, and re-exports the events of an epoch boundary from ``boundary_events``, so that
every run event is imported from here.

They live in the same registry as agent, task and conversation events (``DOMAIN_EVENTS``) and
are read back the same way: strictly decoded, older schema versions upcast on read. The step
thread builds these frozen objects and hands them to its ``EventSink``; turning them into JSON
is the flusher's work, off the step thread. Their fields are already what is stored (enum
names, rounded timings, ``None`` for a non-finite number, since JSON has no NaN), so encoding
is a plain walk of the dataclass.

Reading a run back (``chronicle replay run-<id> --steps``): events are in emit order.
``EpochCompleted`` carries every slot's state after the boundary, ``DecisionMade`` the command
and who issued it, ``SeedStageChanged`` each transition, ``FieldReportFiled`` the outcome one
epoch later. After a crash, ``RunResumed`` names the checkpoint epoch the run went back to:
events between that checkpoint and the ``RunResumed`` belong to the abandoned attempt.

Schema history: ``EpochCompleted``, ``DecisionMade`` and ``FieldReportFiled`` are at v2 (see
``boundary_events``). ``RunStarted.learning_rate`` and ``checkpoint_every`` and
``RunResumed.epochs`` are absent from runs recorded before they were added, so they default to
None rather than bumping a version: every run written since carries them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from core.domain.contracts import DomainEvent, Upcaster
from core.triad.boundary_events import (
    BOUNDARY_EVENTS,
    BOUNDARY_UPCASTERS,
    BudgetExceeded,
    CommandRejected,
    ConservativeModeEntered,
    ConservativeModeExited,
    DecisionMade,
    EpochCompleted,
    FieldReportFiled,
    SeedStageChanged,
    SeedSummary,
    finite_or_none,
)

__all__ = [
    "RUN",
    "RUN_EVENTS",
    "RUN_UPCASTERS",
    "BudgetExceeded",
    "CheckpointSaved",
    "CommandRejected",
    "ConservativeModeEntered",
    "ConservativeModeExited",
    "DecisionMade",
    "EmissionFailed",
    "EpochCompleted",
    "FieldReportFiled",
    "FossilSummary",
    "RolledBack",
    "RunCompleted",
    "RunEvent",
    "RunFailed",
    "RunResumed",
    "RunStarted",
    "SeedStageChanged",
    "SeedSummary",
    "SlotPlacement",
    "finite_or_none",
    "run_stream_id",
]

#: The stream category of training runs: a run writes to ``run-<run_id>``.
RUN = "run"


def run_stream_id(run_id: str) -> str:
    return f"{RUN}-{run_id}"


# -- nested records ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SlotPlacement:
    slot: int
    point: str
    features: int


@dataclass(frozen=True, slots=True)
class FossilSummary:
    slot: int
    blueprint: str | None
    contribution: float


# -- the run's lifecycle -------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RunStarted(DomainEvent):
    TYPE: ClassVar[str] = "RunStarted"
    SCHEMA_VERSION: ClassVar[int] = 1

    run_id: str
    device: str
    host_parameters: int
    slots: tuple[SlotPlacement, ...]
    epochs: int
    batch_size: int
    seed: int
    budget_ms: float
    learning_rate: float | None = None  # absent from runs recorded before it was
    checkpoint_every: int | None = None  # likewise


@dataclass(frozen=True, slots=True)
class RunResumed(DomainEvent):
    """The run went back to the checkpoint of ``from_epoch``; ``epochs`` is its target from now on."""

    TYPE: ClassVar[str] = "RunResumed"
    SCHEMA_VERSION: ClassVar[int] = 1

    from_epoch: int
    sha256: str
    file: str
    epochs: int | None = None  # absent from runs recorded before it was


@dataclass(frozen=True, slots=True)
class RunCompleted(DomainEvent):
    """The run summary: the run ended, or was stopped (``stopped``)."""

    TYPE: ClassVar[str] = "RunCompleted"
    SCHEMA_VERSION: ClassVar[int] = 1

    run_id: str
    epochs_completed: int
    stopped: bool
    val_loss: float | None
    val_accuracy: float
    val_accuracy_without_seeds: float
    seed_gain: float
    fossilized: tuple[FossilSummary, ...]
    final_stages: Mapping[str, Any]  # slot (as a string) -> stage name
    rollbacks: int
    budget_overruns: int
    boundary_ms: Mapping[str, Any]  # part -> {p50, p95, p99, max}
    resumed_from_epoch: int | None


@dataclass(frozen=True, slots=True)
class RunFailed(DomainEvent):
    """An exception, nothing to roll back to, or a checkpoint that failed; the reason says which."""

    TYPE: ClassVar[str] = "RunFailed"
    SCHEMA_VERSION: ClassVar[int] = 1

    epoch: int
    reason: str


@dataclass(frozen=True, slots=True)
class EmissionFailed(DomainEvent):
    """An event the flusher could not record; it stands in for that event in the stream."""

    TYPE: ClassVar[str] = "EmissionFailed"
    SCHEMA_VERSION: ClassVar[int] = 1

    event_type: str
    error: str


# -- rollback and checkpoints --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CheckpointSaved(DomainEvent):
    """A checkpoint write finished (it may arrive a few boundaries after its ``epoch``)."""

    TYPE: ClassVar[str] = "CheckpointSaved"
    SCHEMA_VERSION: ClassVar[int] = 1

    epoch: int
    file: str
    sha256: str
    size_bytes: int


@dataclass(frozen=True, slots=True)
class RolledBack(DomainEvent):
    TYPE: ClassVar[str] = "RolledBack"
    SCHEMA_VERSION: ClassVar[int] = 1

    epoch: int
    tier: str  # "fast" (memory) or "full" (a checkpoint on disk)
    reason: str
    restored_epoch: int
    elapsed_ms: float


RunEvent = (
    RunStarted
    | RunResumed
    | RunCompleted
    | RunFailed
    | EmissionFailed
    | EpochCompleted
    | DecisionMade
    | CommandRejected
    | SeedStageChanged
    | FieldReportFiled
    | BudgetExceeded
    | ConservativeModeEntered
    | ConservativeModeExited
    | CheckpointSaved
    | RolledBack
)

#: Every contract of a run stream, and the upcasters from their older versions (all of them
#: boundary events so far), for core.domain.registry.
RUN_EVENTS: tuple[type[DomainEvent], ...] = (
    RunStarted,
    RunResumed,
    RunCompleted,
    RunFailed,
    EmissionFailed,
    CheckpointSaved,
    RolledBack,
    *BOUNDARY_EVENTS,
)
RUN_UPCASTERS: tuple[Upcaster, ...] = BOUNDARY_UPCASTERS
