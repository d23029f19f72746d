"""One event of every run event type, with every field filled in, and the same events as a
stream written before the run events were typed (their stored shapes at schema version 1)."""

from __future__ import annotations

from typing import Any

from core.domain import DomainEvent
from core.triad.events import (
    BudgetExceeded,
    CheckpointSaved,
    CommandRejected,
    ConservativeModeEntered,
    ConservativeModeExited,
    DecisionMade,
    EmissionFailed,
    EpochCompleted,
    FieldReportFiled,
    FossilSummary,
    RolledBack,
    RunCompleted,
    RunFailed,
    RunResumed,
    RunStarted,
    SeedStageChanged,
    SeedSummary,
    SlotPlacement,
)

SEED = SeedSummary(0, "TRAINING", "RESIDUAL_MLP", 0.25, 1, 2, 0.5, None)

RUN_SAMPLES: list[DomainEvent] = [
    RunStarted("r1", "cpu", 120, (SlotPlacement(0, "stem_act", 8),), 40, 128, 0, 5.0, 0.03, 1),
    RunResumed(3, "ab" * 32, "ckpt-000003.pt", 40),
    EpochCompleted(0, 32, 1.2, 0.4, 1.1, 0.45, 0.03, 0.8, (SEED,), {"gather": 0.1, "total": 0.3}),
    DecisionMade(1, 0, "GERMINATE", {"slot": 0, "blueprint": "RESIDUAL_MLP"}, "policy", "plateau"),
    CommandRejected(1, 0, "already moved at this boundary"),
    SeedStageChanged(0, "DORMANT", "GERMINATED", 0, "germinated", "RESIDUAL_MLP"),
    FieldReportFiled(1, "GERMINATE", 0, 1, "SUCCESS", 1.1, 1.0, 0.45, 0.5),
    BudgetExceeded(0, "decide", 2.5, 2.0),
    ConservativeModeEntered(1, "tamiyo", "decide over budget"),
    ConservativeModeExited(4, "tamiyo", "call succeeded"),
    CheckpointSaved(0, "ckpt-000000.pt", "cd" * 32, 4096),
    RolledBack(2, "fast", "non-finite loss or gradient", 1, 1.25),
    RunCompleted(
        "r1",
        40,
        False,
        0.9,
        0.65,
        0.44,
        0.21,
        (FossilSummary(0, "RESIDUAL_MLP", 0.2),),
        {"0": "FOSSILIZED"},
        1,
        0,
        {"total": {"p50": 0.2}},
        None,
    ),
    RunFailed(5, "checkpoint failed: disk full"),
    EmissionFailed("DecisionMade", "NaN is not JSON"),
]

_OLD_SEED = {
    "slot": 0,
    "stage": "TRAINING",
    "blueprint": "RESIDUAL_MLP",
    "alpha": 0.25,
    "epochs_in_stage": 1,
    "age_epochs": 2,
    "gradient_norm": 0.5,
    "contribution": None,
}

#: (type, data) as the untyped run events stored them, all at schema version 1: RunStarted and
#: RunResumed as runs recorded them before they carried the learning rate, the checkpoint
#: interval and the target epochs; EpochCompleted without a train accuracy; DecisionMade and
#: FieldReportFiled with the triad's contract version inside the data.
OLD_RUN_STREAM: list[tuple[str, dict[str, Any]]] = [
    (
        "RunStarted",
        {
            "run_id": "old",
            "device": "cpu",
            "host_parameters": 120,
            "slots": [{"slot": 0, "point": "stem_act", "features": 8}],
            "epochs": 3,
            "batch_size": 64,
            "seed": 0,
            "budget_ms": 5.0,
        },
    ),
    (
        "FieldReportFiled",
        {
            "command_id": 1,
            "command_kind": "GERMINATE",
            "issued_epoch": 0,
            "observed_epoch": 1,
            "outcome": "SUCCESS",
            "val_loss_before": 1.1,
            "val_loss_after": None,
            "val_accuracy_before": 0.45,
            "val_accuracy_after": 0.5,
            "version": 1,
        },
    ),
    (
        "DecisionMade",
        {
            "command_id": 2,
            "epoch": 1,
            "kind": "GERMINATE",
            "payload": {"slot": 0, "blueprint": "RESIDUAL_MLP", "curve": "LINEAR", "blend_steps": 64},
            "issued_by": "policy",
            "reason": "plateau",
            "version": 1,
        },
    ),
    (
        "SeedStageChanged",
        {
            "slot": 0,
            "from": "DORMANT",
            "to": "GERMINATED",
            "epoch": 1,
            "reason": "germinated",
            "blueprint": "RESIDUAL_MLP",
        },
    ),
    (
        "EpochCompleted",
        {
            "epoch": 1,
            "global_step": 16,
            "train_loss": 1.2,
            "val_loss": 1.1,
            "val_accuracy": 0.45,
            "learning_rate": 0.03,
            "gradient_norm": None,
            "seeds": [_OLD_SEED],
            "boundary_ms": {"gather": 0.1, "decide": 0.1, "apply": 0.1, "total": 0.3},
        },
    ),
    ("CheckpointSaved", {"epoch": 1, "file": "ckpt-000001.pt", "sha256": "ab" * 32, "size_bytes": 4096}),
    ("RunResumed", {"from_epoch": 1, "sha256": "ab" * 32, "file": "ckpt-000001.pt"}),
]
