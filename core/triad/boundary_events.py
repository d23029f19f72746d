"""The events an epoch boundary emits: the epoch's record, the decision and what came of it,
seed transitions, budget overruns and breaker changes. Part of the run's stream; ``events``
holds the rest, and the registry lists of both.

History: ``EpochCompleted`` v2 added ``train_accuracy`` (v1 had none: it upcasts to None);
``DecisionMade`` and ``FieldReportFiled`` v2 dropped the triad's contract ``version`` from the
data (the event's own schema version says it).
"""

from __future__ import annotations

import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from core.domain.contracts import DomainEvent, Upcaster
from core.domain.serialization import stored_as
from core.triad.contracts import AdaptationCommand, FieldReport, SeedState

if TYPE_CHECKING:
    from core.triad.slots import Transition

__all__ = [
    "BOUNDARY_EVENTS",
    "BOUNDARY_UPCASTERS",
    "BudgetExceeded",
    "CommandRejected",
    "ConservativeModeEntered",
    "ConservativeModeExited",
    "DecisionMade",
    "EpochCompleted",
    "FieldReportFiled",
    "SeedStageChanged",
    "SeedSummary",
    "finite_or_none",
]


def finite_or_none(value: float | None) -> float | None:
    """The event log stores JSON, which has no NaN: a non-finite number is recorded as null."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


@dataclass(frozen=True, slots=True)
class SeedSummary:
    """One slot as an event records it: stage and blueprint by name, no NaN."""

    slot: int
    stage: str
    blueprint: str | None
    alpha: float
    epochs_in_stage: int
    age_epochs: int
    gradient_norm: float | None
    contribution: float | None

    @classmethod
    def of(cls, seed: SeedState) -> SeedSummary:
        return cls(
            slot=seed.slot,
            stage=seed.stage.name,
            blueprint=None if seed.blueprint is None else seed.blueprint.name,
            alpha=round(seed.alpha, 6),
            epochs_in_stage=seed.epochs_in_stage,
            age_epochs=seed.age_epochs,
            gradient_norm=finite_or_none(seed.gradient_norm),
            contribution=finite_or_none(seed.contribution),
        )


@dataclass(frozen=True, slots=True)
class EpochCompleted(DomainEvent):
    """Every boundary, after its command was applied; ``seeds`` is every slot after it."""

    TYPE: ClassVar[str] = "EpochCompleted"
    SCHEMA_VERSION: ClassVar[int] = 2

    epoch: int
    global_step: int
    train_loss: float | None
    train_accuracy: float | None
    val_loss: float | None
    val_accuracy: float | None
    learning_rate: float
    gradient_norm: float | None
    seeds: tuple[SeedSummary, ...]
    boundary_ms: Mapping[str, Any]  # gather, decide, apply, total -> milliseconds


@dataclass(frozen=True, slots=True)
class DecisionMade(DomainEvent):
    """Tamiyo's command at a boundary (or the one Tolaria or conservative mode put in its place)."""

    TYPE: ClassVar[str] = "DecisionMade"
    SCHEMA_VERSION: ClassVar[int] = 2

    command_id: int
    epoch: int
    kind: str
    payload: Mapping[str, Any]  # the command's arguments, enums by name
    issued_by: str
    reason: str

    @classmethod
    def of(cls, command: AdaptationCommand) -> DecisionMade:
        arguments: dict[str, Any] = {}
        for name in command.payload.__dataclass_fields__:
            value = getattr(command.payload, name)
            arguments[name] = value.name if isinstance(value, enum.Enum) else value
        return cls(
            command.command_id, command.epoch, command.kind.name, arguments, command.issued_by, command.reason
        )


@dataclass(frozen=True, slots=True)
class CommandRejected(DomainEvent):
    """Kasmina refused a command, or a learning-rate factor was invalid."""

    TYPE: ClassVar[str] = "CommandRejected"
    SCHEMA_VERSION: ClassVar[int] = 1

    command_id: int
    epoch: int
    reason: str


@dataclass(frozen=True, slots=True)
class SeedStageChanged(DomainEvent):
    """A slot moved along a lifecycle edge. The stages are stored as ``from`` and ``to``, as they
    always were; ``from`` is a Python keyword, hence the field names."""

    TYPE: ClassVar[str] = "SeedStageChanged"
    SCHEMA_VERSION: ClassVar[int] = 1

    slot: int
    from_stage: str = field(metadata=stored_as("from"))
    to_stage: str = field(metadata=stored_as("to"))
    epoch: int
    reason: str
    blueprint: str | None

    @classmethod
    def of(cls, transition: Transition) -> SeedStageChanged:
        blueprint = transition.blueprint
        return cls(
            transition.slot,
            transition.from_stage.name,
            transition.to_stage.name,
            transition.epoch,
            transition.reason,
            None if blueprint is None else blueprint.name,
        )


@dataclass(frozen=True, slots=True)
class FieldReportFiled(DomainEvent):
    """How a command turned out, observed one boundary after it was issued."""

    TYPE: ClassVar[str] = "FieldReportFiled"
    SCHEMA_VERSION: ClassVar[int] = 2

    command_id: int
    command_kind: str
    issued_epoch: int
    observed_epoch: int
    outcome: str
    val_loss_before: float | None
    val_loss_after: float | None
    val_accuracy_before: float | None
    val_accuracy_after: float | None

    @classmethod
    def of(cls, report: FieldReport) -> FieldReportFiled:
        return cls(
            command_id=report.command_id,
            command_kind=report.command_kind.name,
            issued_epoch=report.issued_epoch,
            observed_epoch=report.observed_epoch,
            outcome=report.outcome.name,
            val_loss_before=finite_or_none(report.val_loss_before),
            val_loss_after=finite_or_none(report.val_loss_after),
            val_accuracy_before=finite_or_none(report.val_accuracy_before),
            val_accuracy_after=finite_or_none(report.val_accuracy_after),
        )


@dataclass(frozen=True, slots=True)
class BudgetExceeded(DomainEvent):
    """A part of the boundary (gather, decide, apply, total) took longer than its budget."""

    TYPE: ClassVar[str] = "BudgetExceeded"
    SCHEMA_VERSION: ClassVar[int] = 1

    epoch: int
    part: str
    elapsed_ms: float
    budget_ms: float


@dataclass(frozen=True, slots=True)
class ConservativeModeEntered(DomainEvent):
    """A component's circuit breaker opened."""

    TYPE: ClassVar[str] = "ConservativeModeEntered"
    SCHEMA_VERSION: ClassVar[int] = 1

    epoch: int
    component: str
    reason: str


@dataclass(frozen=True, slots=True)
class ConservativeModeExited(DomainEvent):
    """A component's circuit breaker closed again."""

    TYPE: ClassVar[str] = "ConservativeModeExited"
    SCHEMA_VERSION: ClassVar[int] = 1

    epoch: int
    component: str
    reason: str


BOUNDARY_EVENTS: tuple[type[DomainEvent], ...] = (
    EpochCompleted,
    DecisionMade,
    CommandRejected,
    SeedStageChanged,
    FieldReportFiled,
    BudgetExceeded,
    ConservativeModeEntered,
    ConservativeModeExited,
)


# -- upcasters -----------------------------------------------------------------------------------


def upcast_epoch_completed_v1(data: Mapping[str, Any]) -> dict[str, Any]:
    """v1 recorded no train accuracy."""
    return {**data, "train_accuracy": None}


def drop_triad_version(data: Mapping[str, Any]) -> dict[str, Any]:
    """v1 of DecisionMade and FieldReportFiled carried the triad's contract version in the data."""
    return {key: value for key, value in data.items() if key != "version"}


BOUNDARY_UPCASTERS: tuple[Upcaster, ...] = (
    Upcaster("EpochCompleted", 1, upcast_epoch_completed_v1),
    Upcaster("DecisionMade", 1, drop_triad_version),
    Upcaster("FieldReportFiled", 1, drop_triad_version),
)
