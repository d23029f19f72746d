"""The triad's shared contracts (the seed project's "Leyline"): every message and every enum that
Tolaria, Kasmina and Tamiyo pass to each other lives here, and nowhere else.

One ``CONTRACT_VERSION`` covers all of them (the seed's "Option B"): the three components ship
together, so there is no field-level compatibility to negotiate, only a version to refuse.

The state packet has a compact positional encoding (``encode_packet``/``decode_packet``): a JSON
array in a fixed field order, written by orjson. It is measured against a budget of 20 us at p95
for 32 seed states; a dataclass walk costs about six times that, which is why it is positional.
The run's stream records these messages as readable, versioned events instead (``events``).
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass

import orjson

__all__ = [
    "CONTRACT_VERSION",
    "AdaptationCommand",
    "AdjustLearningRate",
    "AlphaCurve",
    "Blueprint",
    "CommandKind",
    "CommandPayload",
    "ContractVersionMismatch",
    "FieldReport",
    "Fossilize",
    "Germinate",
    "HardwareContext",
    "Outcome",
    "Prune",
    "RollBack",
    "SeedStage",
    "SeedState",
    "SetAlphaTarget",
    "SystemStatePacket",
    "TelemetryPacket",
    "Wait",
    "decode_packet",
    "encode_packet",
]

CONTRACT_VERSION = 1


class ContractVersionMismatch(ValueError):
    """A message was written under another contract version; it is refused, never guessed at."""


class SeedStage(enum.IntEnum):
    """Where a seed slot is in its life. Degraded conditions are events, never extra stages."""

    DORMANT = 1
    GERMINATED = 2
    TRAINING = 3
    BLENDING = 4
    HOLDING = 5
    FOSSILIZED = 6
    PRUNED = 7
    EMBARGOED = 8
    RESETTING = 9


class AlphaCurve(enum.IntEnum):
    """The shape of the blending ramp from alpha 0 to the target."""

    LINEAR = 1
    COSINE = 2
    SIGMOID = 3


class Blueprint(enum.IntEnum):
    """Seed architectures Kasmina knows how to build (see core.triad.blueprints)."""

    RESIDUAL_MLP = 1
    BOTTLENECK = 2
    LOW_RANK = 3


class CommandKind(enum.IntEnum):
    WAIT = 1
    GERMINATE = 2
    SET_ALPHA_TARGET = 3
    PRUNE = 4
    FOSSILIZE = 5
    ADJUST_LEARNING_RATE = 6
    ROLL_BACK = 7


class Outcome(enum.IntEnum):
    """How a decision turned out one epoch later."""

    SUCCESS = 1
    NEUTRAL = 2
    REGRESSION = 3


# -- command payloads: one frozen type per command kind ------------------------------------------


@dataclass(frozen=True, slots=True)
class Wait:
    kind = CommandKind.WAIT


@dataclass(frozen=True, slots=True)
class Germinate:
    slot: int
    blueprint: Blueprint
    curve: AlphaCurve = AlphaCurve.LINEAR
    blend_steps: int = 64
    kind = CommandKind.GERMINATE


@dataclass(frozen=True, slots=True)
class SetAlphaTarget:
    slot: int
    target: float
    kind = CommandKind.SET_ALPHA_TARGET


@dataclass(frozen=True, slots=True)
class Prune:
    slot: int
    kind = CommandKind.PRUNE


@dataclass(frozen=True, slots=True)
class Fossilize:
    slot: int
    kind = CommandKind.FOSSILIZE


@dataclass(frozen=True, slots=True)
class AdjustLearningRate:
    factor: float
    kind = CommandKind.ADJUST_LEARNING_RATE


@dataclass(frozen=True, slots=True)
class RollBack:
    kind = CommandKind.ROLL_BACK


CommandPayload = Wait | Germinate | SetAlphaTarget | Prune | Fossilize | AdjustLearningRate | RollBack


@dataclass(frozen=True, slots=True)
class AdaptationCommand:
    """A decision of Tamiyo's. ``issued_by`` says whether the policy, a risk rule or the
    conservative mode produced it; ``reason`` is for people reading the log."""

    command_id: int
    epoch: int
    payload: CommandPayload
    issued_by: str = "policy"
    reason: str = ""
    version: int = CONTRACT_VERSION

    @property
    def kind(self) -> CommandKind:
        return self.payload.kind


# -- state ---------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SeedState:
    """One slot as Tamiyo sees it. ``contribution`` is the counterfactual gain in validation
    accuracy (alpha as set minus alpha forced to 0), measured in the current stage, or None."""

    slot: int
    stage: SeedStage
    blueprint: Blueprint | None
    alpha: float
    epochs_in_stage: int
    age_epochs: int
    gradient_norm: float
    contribution: float | None


@dataclass(frozen=True, slots=True)
class HardwareContext:
    device: str
    accelerator_memory_mb: float = 0.0


@dataclass(frozen=True, slots=True)
class SystemStatePacket:
    """What Tolaria hands Tamiyo at an epoch boundary."""

    epoch: int
    global_step: int
    train_loss: float
    val_loss: float
    val_accuracy: float
    learning_rate: float
    gradient_norm: float
    seeds: tuple[SeedState, ...]
    hardware: HardwareContext
    timestamp_ns: int
    budget_overruns: int = 0
    conservative: bool = False
    version: int = CONTRACT_VERSION


@dataclass(frozen=True, slots=True)
class FieldReport:
    """The observed effect of one command, filed one epoch after it was issued."""

    command_id: int
    command_kind: CommandKind
    issued_epoch: int
    observed_epoch: int
    outcome: Outcome
    val_loss_before: float
    val_loss_after: float
    val_accuracy_before: float
    val_accuracy_after: float
    version: int = CONTRACT_VERSION


@dataclass(frozen=True, slots=True)
class TelemetryPacket:
    """High-rate, droppable numbers for one training step (loss, gradient norm, ...)."""

    epoch: int
    step: int
    metrics: tuple[tuple[str, float], ...]
    version: int = CONTRACT_VERSION


# -- the compact packet encoding -----------------------------------------------------------------


def encode_packet(packet: SystemStatePacket) -> bytes:
    """Positional JSON: [version, epoch, step, losses..., [seed tuples], [device, mb], ...].

    orjson writes NaN and Infinity as null; ``decode_packet`` reads null back as NaN, which is
    what a risk rule needs to see (a non-finite loss), not a crash in the encoder.
    """
    return orjson.dumps(
        (
            packet.version,
            packet.epoch,
            packet.global_step,
            packet.train_loss,
            packet.val_loss,
            packet.val_accuracy,
            packet.learning_rate,
            packet.gradient_norm,
            [
                (
                    s.slot,
                    s.stage,
                    s.blueprint,
                    s.alpha,
                    s.epochs_in_stage,
                    s.age_epochs,
                    s.gradient_norm,
                    s.contribution,
                )
                for s in packet.seeds
            ],
            (packet.hardware.device, packet.hardware.accelerator_memory_mb),
            packet.timestamp_ns,
            packet.budget_overruns,
            packet.conservative,
        )
    )


def decode_packet(raw: bytes) -> SystemStatePacket:
    fields = orjson.loads(raw)
    if fields[0] != CONTRACT_VERSION:
        raise ContractVersionMismatch(f"state packet version {fields[0]}, expected {CONTRACT_VERSION}")
    seeds = tuple(
        SeedState(
            slot=s[0],
            stage=SeedStage(s[1]),
            blueprint=None if s[2] is None else Blueprint(s[2]),
            alpha=_float(s[3]),
            epochs_in_stage=s[4],
            age_epochs=s[5],
            gradient_norm=_float(s[6]),
            contribution=s[7],
        )
        for s in fields[8]
    )
    return SystemStatePacket(
        epoch=fields[1],
        global_step=fields[2],
        train_loss=_float(fields[3]),
        val_loss=_float(fields[4]),
        val_accuracy=_float(fields[5]),
        learning_rate=_float(fields[6]),
        gradient_norm=_float(fields[7]),
        seeds=seeds,
        hardware=HardwareContext(fields[9][0], fields[9][1]),
        timestamp_ns=fields[10],
        budget_overruns=fields[11],
        conservative=fields[12],
        version=fields[0],
    )


def _float(value: float | None) -> float:
    return math.nan if value is None else float(value)
