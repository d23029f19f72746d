"""Kasmina: seed slots grafted onto a host network, and the lifecycle that moves them.

A slot sits on the output of a named submodule of the host (a forward hook replaces that
output), so any ``nn.Module`` can host seeds without being rewritten, and the host's own
``state_dict`` never changes shape; what a slot does to that output, stage by stage, is in
``slots``. Kasmina grafts the slots, applies seed commands, takes the automatic lifecycle edges
whose gates are open, steps the seed optimizers and snapshots and restores the slots.

Each seed has its own optimizer, so pruning one frees it cleanly; Tolaria's learning-rate
controller sets the rate of every one of them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import torch
from torch import nn

from core.triad.blueprints import build_seed
from core.triad.contracts import (
    AdaptationCommand,
    Blueprint,
    Fossilize,
    Germinate,
    Prune,
    SeedStage,
    SeedState,
    SetAlphaTarget,
)
from core.triad.errors import IllegalSeedTransition, SeedCommandRejected
from core.triad.lifecycle import LIVE_STAGES, AlphaSchedule, LifecycleConfig, gate
from core.triad.slots import (
    SeedSlot,
    SlotSnapshot,
    Transition,
    chain_hook,
    feature_widths,
    gate_facts,
    record_from_plain,
    seed_state,
    snapshot_slot,
)
from core.triad.tensors import clone_tree

__all__ = ["Kasmina", "KasminaConfig"]

S = SeedStage
_AUTOMATIC: dict[SeedStage, SeedStage] = {
    S.GERMINATED: S.TRAINING,
    S.TRAINING: S.BLENDING,
    S.BLENDING: S.HOLDING,
    S.PRUNED: S.EMBARGOED,
    S.EMBARGOED: S.RESETTING,
    S.RESETTING: S.DORMANT,
}
_TRAINABLE = frozenset({S.TRAINING, S.BLENDING, S.HOLDING})


@dataclass(frozen=True, slots=True)
class KasminaConfig:
    lifecycle: LifecycleConfig = field(default_factory=LifecycleConfig)
    seed_lr_scale: float = 1.0
    seed_grad_clip: float = 5.0


class Kasmina:
    """Owns the slots. Tolaria calls it directly: ``apply`` one command and ``advance`` the
    automatic edges at each epoch boundary, ``step`` the seeds after each training step."""

    def __init__(
        self, config: KasminaConfig, *, run_seed: int = 0, device: torch.device | None = None
    ) -> None:
        self.config = config
        self.run_seed = run_seed
        self.device = device or torch.device("cpu")
        self.slots = nn.ModuleList()
        self._hooks: list[torch.utils.hooks.RemovableHandle] = []
        self.learning_rate = 1e-3

    # -- grafting ------------------------------------------------------------------------------

    def graft(
        self, host: nn.Module, points: Sequence[str], sample_input: torch.Tensor, per_point: int = 1
    ) -> None:
        """Put ``per_point`` slots on the output of each named submodule of ``host``.

        One forward pass over ``sample_input`` learns each point's feature width, so callers
        name places, not shapes.
        """
        modules = dict(host.named_modules())
        missing = [p for p in points if p not in modules]
        if missing:
            raise SeedCommandRejected(f"host has no submodule named {missing}")
        widths = feature_widths(host, [modules[p] for p in points], sample_input)
        for point, width in zip(points, widths, strict=True):
            chain = [SeedSlot(len(self.slots) + i, point, width) for i in range(per_point)]
            for slot in chain:
                self.slots.append(slot)
            self._hooks.append(modules[point].register_forward_hook(chain_hook(chain)))

    def detach_from_host(self) -> None:
        for handle in self._hooks:
            handle.remove()
        self._hooks.clear()

    # -- what Tamiyo sees ----------------------------------------------------------------------

    def slot(self, index: int) -> SeedSlot:
        if not 0 <= index < len(self.slots):
            raise SeedCommandRejected(f"no slot {index}; there are {len(self.slots)}")
        return self.slots[index]  # type: ignore[return-value]  # ModuleList items are nn.Module

    def all_slots(self) -> list[SeedSlot]:
        return [self.slot(i) for i in range(len(self.slots))]

    def states(self) -> tuple[SeedState, ...]:
        return tuple(seed_state(slot) for slot in self.all_slots())

    def live_count(self) -> int:
        return sum(1 for slot in self.all_slots() if slot.record.stage in LIVE_STAGES)

    # -- commands and the epoch boundary -------------------------------------------------------

    def apply(self, command: AdaptationCommand, epoch: int) -> Transition | None:
        """Apply one seed command: at most one transition, or IllegalSeedTransition/SeedCommandRejected."""
        payload = command.payload
        if isinstance(payload, Germinate):
            return self._germinate(payload, epoch, command.reason)
        if isinstance(payload, Prune):
            return self._move(self.slot(payload.slot), S.PRUNED, epoch, command.reason or "pruned")
        if isinstance(payload, Fossilize):
            return self._move(self.slot(payload.slot), S.FOSSILIZED, epoch, command.reason or "fossilized")
        if isinstance(payload, SetAlphaTarget):
            self._retarget(self.slot(payload.slot), payload.target)
            return None
        raise SeedCommandRejected(f"{command.kind.name} is not a Kasmina command")

    def close_epoch(self) -> None:
        """Count the epoch that just ended toward every slot's dwell."""
        for slot in self.all_slots():
            slot.record.epochs_in_stage += 1
            if slot.record.stage in LIVE_STAGES:
                slot.record.age_epochs += 1

    def advance(self, epoch: int) -> list[Transition]:
        """Take every automatic edge whose gate is open, one per slot, skipping slots that a
        command already moved at this boundary."""
        moved: list[Transition] = []
        for slot in self.all_slots():
            target = _AUTOMATIC.get(slot.record.stage)
            if target is None or slot.record.moved_at_epoch == epoch:
                continue
            if gate(slot.record.stage, target, gate_facts(slot), self.config.lifecycle).allowed:
                moved.append(self._move(slot, target, epoch, "gate passed"))
        return moved

    def record_contribution(self, index: int, contribution: float) -> None:
        self.slot(index).record.contribution = contribution

    # -- per training step ---------------------------------------------------------------------

    def zero_grad(self) -> None:
        for slot in self.all_slots():
            if slot.optimizer is not None:
                slot.optimizer.zero_grad(set_to_none=True)

    def step(self) -> None:
        """Step every training seed's optimizer and advance every blending ramp by one step."""
        for slot in self.all_slots():
            record = slot.record
            if record.stage not in _TRAINABLE or slot.optimizer is None or slot.seed is None:
                continue
            slot.grad_norm = torch.nn.utils.clip_grad_norm_(
                slot.seed.parameters(), self.config.seed_grad_clip
            )
            slot.optimizer.step()
            if record.stage is S.BLENDING and record.schedule is not None:
                record.schedule = record.schedule.advanced()

    def optimizers(self) -> list[torch.optim.Optimizer]:
        return [slot.optimizer for slot in self.all_slots() if slot.optimizer is not None]

    def set_learning_rate(self, rate: float) -> None:
        """Called only by Tolaria's learning-rate controller."""
        self.learning_rate = rate
        for optimizer in self.optimizers():
            for group in optimizer.param_groups:
                group["lr"] = rate * self.config.seed_lr_scale

    @contextlib.contextmanager
    def alpha_forced(self, indices: Sequence[int], alpha: float) -> Iterator[None]:
        """Evaluate the network as if these slots' alphas were ``alpha`` (the counterfactual)."""
        slots = [self.slot(i) for i in indices]
        for slot in slots:
            slot.forced_alpha = alpha
        try:
            yield
        finally:
            for slot in slots:
                slot.forced_alpha = None

    # -- snapshots -----------------------------------------------------------------------------

    def snapshot(self, to_host: bool) -> tuple[SlotSnapshot, ...]:
        return tuple(snapshot_slot(slot, to_host) for slot in self.all_slots())

    def restore(self, snapshots: Sequence[SlotSnapshot]) -> None:
        for saved in snapshots:
            self._restore_slot(self.slot(saved.index), saved)

    # -- internals -----------------------------------------------------------------------------

    def _germinate(self, command: Germinate, epoch: int, reason: str) -> Transition:
        slot = self.slot(command.slot)
        self._check(slot, S.GERMINATED, epoch)
        record = slot.record
        record.blueprint, record.curve = command.blueprint, command.curve
        record.blend_steps = max(command.blend_steps, 1)
        self._build(slot, command.blueprint, record.germinations)
        record.germinations += 1
        return self._enter(slot, S.GERMINATED, epoch, reason or "germinated")

    def _build(self, slot: SeedSlot, blueprint: Blueprint, germination: int) -> None:
        generator = torch.Generator().manual_seed(_seed_for(self.run_seed, slot.index, germination))
        slot.seed = build_seed(blueprint, slot.features, generator).to(self.device)
        rate = self.learning_rate * self.config.seed_lr_scale
        slot.optimizer = torch.optim.Adam(slot.seed.parameters(), lr=rate)

    def _move(self, slot: SeedSlot, target: SeedStage, epoch: int, reason: str) -> Transition:
        self._check(slot, target, epoch)
        return self._enter(slot, target, epoch, reason)

    def _check(self, slot: SeedSlot, target: SeedStage, epoch: int) -> None:
        current = slot.record.stage
        if slot.record.moved_at_epoch == epoch:
            raise IllegalSeedTransition(
                slot.index, current.name, target.name, "already moved at this boundary"
            )
        verdict = gate(current, target, gate_facts(slot), self.config.lifecycle)
        if not verdict.allowed:
            raise IllegalSeedTransition(slot.index, current.name, target.name, verdict.reason)

    def _enter(self, slot: SeedSlot, target: SeedStage, epoch: int, reason: str) -> Transition:
        record = slot.record
        transition = Transition(slot.index, record.stage, target, epoch, reason, record.blueprint)
        record.stage, record.epochs_in_stage, record.moved_at_epoch = target, 0, epoch
        record.contribution = None  # a contribution counts only in the stage it was measured in
        if target is S.BLENDING:
            record.schedule = AlphaSchedule(record.curve, record.blend_steps)
        elif target is S.FOSSILIZED:
            self._fossilize(slot)
        elif target is S.PRUNED:
            slot.seed, slot.optimizer, slot.grad_norm, record.schedule = None, None, None, None
        elif target is S.DORMANT:
            record.blueprint, record.age_epochs = None, 0
        return transition

    def _fossilize(self, slot: SeedSlot) -> None:
        assert slot.seed is not None  # the gate admits only HOLDING slots, which have a seed
        slot.seed.requires_grad_(False)
        slot.optimizer, slot.grad_norm = None, None

    def _retarget(self, slot: SeedSlot, target: float) -> None:
        record = slot.record
        if record.stage not in (S.BLENDING, S.HOLDING) or record.schedule is None:
            raise SeedCommandRejected(
                f"slot {slot.index} is {record.stage.name}; alpha is set only while blending"
            )
        if not 0.0 <= target <= 1.0:
            raise SeedCommandRejected(f"alpha target {target} is outside [0, 1]")
        if record.stage is S.BLENDING:
            record.schedule = record.schedule.retargeted(target)
        else:  # holding: the ramp is over, so the new alpha applies at once
            record.schedule = AlphaSchedule(record.curve, 0, target, target)

    def _restore_slot(self, slot: SeedSlot, saved: SlotSnapshot) -> None:
        slot.record = record_from_plain(saved.record)
        slot.grad_norm = None
        if saved.seed_state is None or slot.record.blueprint is None:
            slot.seed, slot.optimizer = None, None
            return
        generator = torch.Generator().manual_seed(0)  # weights are overwritten just below
        slot.seed = build_seed(slot.record.blueprint, slot.features, generator).to(self.device)
        slot.seed.load_state_dict(saved.seed_state)
        if slot.record.stage is S.FOSSILIZED:
            slot.seed.requires_grad_(False)
        slot.optimizer = None
        if saved.optimizer_state is not None:
            slot.optimizer = torch.optim.Adam(slot.seed.parameters(), lr=self.learning_rate)
            slot.optimizer.load_state_dict(clone_tree(saved.optimizer_state, self.device))


def _seed_for(run_seed: int, slot: int, germination: int) -> int:
    """A distinct, reproducible RNG seed per (run, slot, germination)."""
    return (run_seed * 1_000_003 + slot * 10_007 + germination) % (2**63)
