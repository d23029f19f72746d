"""A seed slot: the module grafted on a host point, its lifecycle record, and their snapshots.

What a slot does to its input ``h`` (``SeedSlot.forward``) depends on its stage:

- DORMANT, GERMINATED, PRUNED, EMBARGOED, RESETTING: nothing, the output is ``h``.
- TRAINING: a straight-through estimator. The seed sees ``h.detach()`` and the output is
  ``h + (f - f.detach())``: numerically ``h`` to the last bit, so the host trains exactly as if
  the seed were absent, while the seed receives the downstream gradient as if it were blended
  in at alpha 1. No gradient can reach the host through the seed.
- BLENDING, HOLDING: ``h + alpha * f(h.detach())`` with alpha from the slot's schedule. The
  host still gets no gradient through the seed; the seed is on probation.
- FOSSILIZED: ``h + alpha * f(h)``, frozen and part of the network for good.

``SlotRecord`` is a slot's bookkeeping; ``record_to_plain``/``record_from_plain`` turn it into
ints, floats and None for a snapshot, so a checkpoint loads with
``torch.load(weights_only=True)``. ``Transition`` is what a move along a lifecycle edge reports.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from core.triad.contracts import AlphaCurve, Blueprint, SeedStage, SeedState
from core.triad.lifecycle import AlphaSchedule, GateFacts
from core.triad.tensors import snapshot_tree

__all__ = [
    "SeedSlot",
    "SlotRecord",
    "SlotSnapshot",
    "Transition",
    "chain_hook",
    "feature_widths",
    "gate_facts",
    "record_from_plain",
    "record_to_plain",
    "seed_state",
    "snapshot_slot",
]

S = SeedStage


@dataclass(frozen=True, slots=True)
class Transition:
    slot: int
    from_stage: SeedStage
    to_stage: SeedStage
    epoch: int
    reason: str
    blueprint: Blueprint | None = None


@dataclass(slots=True)
class SlotRecord:
    """A slot's lifecycle bookkeeping; mutable, owned by its slot, copied into snapshots."""

    stage: SeedStage = S.DORMANT
    blueprint: Blueprint | None = None
    curve: AlphaCurve = AlphaCurve.LINEAR
    blend_steps: int = 64
    schedule: AlphaSchedule | None = None
    epochs_in_stage: int = 0
    age_epochs: int = 0
    contribution: float | None = None
    germinations: int = 0
    moved_at_epoch: int | None = None  # the boundary that last moved the slot


@dataclass(frozen=True, slots=True)
class SlotSnapshot:
    """A slot at one moment: its record as plain values, its seed's weights and optimizer."""

    index: int
    record: dict[str, Any]
    seed_state: dict[str, torch.Tensor] | None
    optimizer_state: dict[str, Any] | None


class SeedSlot(nn.Module):
    def __init__(self, index: int, point: str, features: int) -> None:
        super().__init__()
        self.index = index
        self.point = point
        self.features = features
        self.seed: nn.Module | None = None
        self.optimizer: torch.optim.Optimizer | None = None
        self.record = SlotRecord()
        self.forced_alpha: float | None = None
        self.grad_norm: torch.Tensor | None = None

    @property
    def alpha(self) -> float:
        if self.forced_alpha is not None:
            return self.forced_alpha
        schedule = self.record.schedule
        return 0.0 if schedule is None else schedule.value

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        stage, seed = self.record.stage, self.seed
        if seed is None or stage not in _ACTIVE:
            return h
        if stage is S.TRAINING:
            delta: torch.Tensor = seed(h.detach())
            return h + (delta - delta.detach())
        alpha = self.alpha
        if alpha == 0.0:
            return h
        seed_input = h if stage is S.FOSSILIZED else h.detach()
        residual: torch.Tensor = seed(seed_input)
        return h + alpha * residual


_ACTIVE = frozenset({S.TRAINING, S.BLENDING, S.HOLDING, S.FOSSILIZED})


def gate_facts(slot: SeedSlot) -> GateFacts:
    record = slot.record
    complete = record.schedule is not None and record.schedule.complete
    return GateFacts(record.epochs_in_stage, complete, record.contribution)


def seed_state(slot: SeedSlot) -> SeedState:
    record = slot.record
    norm = slot.grad_norm
    return SeedState(
        slot=slot.index,
        stage=record.stage,
        blueprint=record.blueprint,
        alpha=slot.alpha,
        epochs_in_stage=record.epochs_in_stage,
        age_epochs=record.age_epochs,
        gradient_norm=0.0 if norm is None else float(norm),
        contribution=record.contribution,
    )


def snapshot_slot(slot: SeedSlot, to_host: bool) -> SlotSnapshot:
    fields = record_to_plain(slot.record)
    seed_state = None if slot.seed is None else snapshot_tree(slot.seed.state_dict(), to_host)
    optimizer_state = None if slot.optimizer is None else snapshot_tree(slot.optimizer.state_dict(), to_host)
    return SlotSnapshot(slot.index, fields, seed_state, optimizer_state)


def record_to_plain(record: SlotRecord) -> dict[str, Any]:
    """Ints, floats and None only, so a checkpoint loads with ``torch.load(weights_only=True)``."""
    schedule = record.schedule
    return {
        "stage": int(record.stage),
        "blueprint": None if record.blueprint is None else int(record.blueprint),
        "curve": int(record.curve),
        "blend_steps": record.blend_steps,
        "schedule": None
        if schedule is None
        else [int(schedule.curve), schedule.steps, schedule.target, schedule.start, schedule.done],
        "epochs_in_stage": record.epochs_in_stage,
        "age_epochs": record.age_epochs,
        "contribution": record.contribution,
        "germinations": record.germinations,
        "moved_at_epoch": record.moved_at_epoch,
    }


def record_from_plain(plain: dict[str, Any]) -> SlotRecord:
    schedule = plain["schedule"]
    return SlotRecord(
        stage=SeedStage(plain["stage"]),
        blueprint=None if plain["blueprint"] is None else Blueprint(plain["blueprint"]),
        curve=AlphaCurve(plain["curve"]),
        blend_steps=plain["blend_steps"],
        schedule=None
        if schedule is None
        else AlphaSchedule(AlphaCurve(schedule[0]), schedule[1], schedule[2], schedule[3], schedule[4]),
        epochs_in_stage=plain["epochs_in_stage"],
        age_epochs=plain["age_epochs"],
        contribution=plain["contribution"],
        germinations=plain["germinations"],
        moved_at_epoch=plain["moved_at_epoch"],
    )


def chain_hook(chain: list[SeedSlot]) -> Any:
    def hook(_module: nn.Module, _inputs: Any, output: torch.Tensor) -> torch.Tensor:
        for slot in chain:
            output = slot(output)
        return output

    return hook


def feature_widths(host: nn.Module, modules: list[nn.Module], sample: torch.Tensor) -> list[int]:
    widths: dict[int, int] = {}
    handles = [
        module.register_forward_hook(
            lambda m, _i, out, key=id(module): widths.__setitem__(key, int(out.shape[-1]))
        )
        for module in modules
    ]
    try:
        with torch.no_grad():
            host(sample)
    finally:
        for handle in handles:
            handle.remove()
    return [widths[id(module)] for module in modules]
