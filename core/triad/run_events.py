"""The events of a training run's stream (``run-<id>``) and how each payload becomes JSON.

The step thread emits frozen payload objects; ``to_event_data`` turns them into dicts on the
flusher's side, so the cost of building readable JSON never lands on a training step.

Reading a run back (``chronicle replay run-<id> --steps``): events are in emit order.
``EpochCompleted`` carries every slot's state after the boundary, ``DecisionMade`` the command
and who issued it, ``SeedStageChanged`` each transition, ``FieldReportFiled`` the outcome one
epoch later. After a crash, ``RunResumed`` names the checkpoint epoch the run went back to:
events between that checkpoint and the ``RunResumed`` belong to the abandoned attempt.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from core.triad.contracts import (
    AdaptationCommand,
    FieldReport,
    SeedState,
    command_to_data,
    field_report_to_data,
    finite_or_none,
    seed_state_to_data,
)
from core.triad.kasmina import Transition

__all__ = [
    "BUDGET_EXCEEDED",
    "CHECKPOINT_SAVED",
    "COMMAND_REJECTED",
    "CONSERVATIVE_MODE_ENTERED",
    "CONSERVATIVE_MODE_EXITED",
    "DECISION_MADE",
    "EMISSION_FAILED",
    "EPOCH_COMPLETED",
    "FIELD_REPORT_FILED",
    "ROLLED_BACK",
    "RUN_COMPLETED",
    "RUN_FAILED",
    "RUN_RESUMED",
    "RUN_STARTED",
    "SEED_STAGE_CHANGED",
    "BudgetOverrun",
    "CheckpointRecord",
    "CommandRefusal",
    "EpochRecord",
    "ModeChange",
    "RollbackRecord",
    "to_event_data",
]

RUN_STARTED = "RunStarted"
RUN_RESUMED = "RunResumed"
EPOCH_COMPLETED = "EpochCompleted"
DECISION_MADE = "DecisionMade"
COMMAND_REJECTED = "CommandRejected"
SEED_STAGE_CHANGED = "SeedStageChanged"
FIELD_REPORT_FILED = "FieldReportFiled"
CHECKPOINT_SAVED = "CheckpointSaved"
ROLLED_BACK = "RolledBack"
BUDGET_EXCEEDED = "BudgetExceeded"
CONSERVATIVE_MODE_ENTERED = "ConservativeModeEntered"
CONSERVATIVE_MODE_EXITED = "ConservativeModeExited"
RUN_COMPLETED = "RunCompleted"
RUN_FAILED = "RunFailed"
EMISSION_FAILED = "EmissionFailed"


@dataclass(frozen=True, slots=True)
class EpochRecord:
    epoch: int
    global_step: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    learning_rate: float
    gradient_norm: float
    seeds: tuple[SeedState, ...]
    boundary_ms: tuple[tuple[str, float], ...]


@dataclass(frozen=True, slots=True)
class CommandRefusal:
    command_id: int
    epoch: int
    reason: str


@dataclass(frozen=True, slots=True)
class CheckpointRecord:
    epoch: int
    file: str
    sha256: str
    size_bytes: int


@dataclass(frozen=True, slots=True)
class RollbackRecord:
    epoch: int
    tier: str
    reason: str
    restored_epoch: int
    elapsed_ms: float


@dataclass(frozen=True, slots=True)
class BudgetOverrun:
    epoch: int
    part: str
    elapsed_ms: float
    budget_ms: float


@dataclass(frozen=True, slots=True)
class ModeChange:
    epoch: int
    component: str
    reason: str


@functools.singledispatch
def to_event_data(payload: object) -> dict[str, Any]:
    """JSON-ready event data for a payload the step thread emitted."""
    raise TypeError(f"no event data for {type(payload).__name__}")


@to_event_data.register
def _(payload: Mapping) -> dict[str, Any]:  # type: ignore[type-arg]  # singledispatch needs the bare class
    return dict(payload)


@to_event_data.register
def _(payload: EpochRecord) -> dict[str, Any]:
    return {
        "epoch": payload.epoch,
        "global_step": payload.global_step,
        "train_loss": finite_or_none(payload.train_loss),
        "val_loss": finite_or_none(payload.val_loss),
        "val_accuracy": finite_or_none(payload.val_accuracy),
        "learning_rate": payload.learning_rate,
        "gradient_norm": finite_or_none(payload.gradient_norm),
        "seeds": [seed_state_to_data(s) for s in payload.seeds],
        "boundary_ms": {part: round(ms, 4) for part, ms in payload.boundary_ms},
    }


@to_event_data.register
def _(payload: Transition) -> dict[str, Any]:
    return {
        "slot": payload.slot,
        "from": payload.from_stage.name,
        "to": payload.to_stage.name,
        "epoch": payload.epoch,
        "reason": payload.reason,
        "blueprint": None if payload.blueprint is None else payload.blueprint.name,
    }


@to_event_data.register
def _(payload: AdaptationCommand) -> dict[str, Any]:
    return command_to_data(payload)


@to_event_data.register
def _(payload: FieldReport) -> dict[str, Any]:
    return field_report_to_data(payload)


@to_event_data.register(CommandRefusal)
@to_event_data.register(CheckpointRecord)
@to_event_data.register(BudgetOverrun)
@to_event_data.register(ModeChange)
def _(payload: Any) -> dict[str, Any]:
    return {name: getattr(payload, name) for name in payload.__dataclass_fields__}


@to_event_data.register
def _(payload: RollbackRecord) -> dict[str, Any]:
    return {
        "epoch": payload.epoch,
        "tier": payload.tier,
        "reason": payload.reason,
        "restored_epoch": payload.restored_epoch,
        "elapsed_ms": round(payload.elapsed_ms, 3),
    }
