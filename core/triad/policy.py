"""What Tamiyo decides with: a ``Policy`` that proposes a command, and ``RiskRules`` that may
replace the proposal.

The policy proposes; hard risk rules dispose. A rule sees the policy's proposal and the packet
and may replace it (a non-finite loss becomes a rollback whatever the policy wanted), so a
learned policy can be dropped in behind ``Policy`` without being trusted with safety.
``HeuristicPolicy`` is the policy that ships: prune what hurts, fossilize what earned its place,
germinate on a plateau, otherwise wait.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core.triad.contracts import (
    AlphaCurve,
    Blueprint,
    CommandPayload,
    Fossilize,
    Germinate,
    Prune,
    RollBack,
    SeedStage,
    SeedState,
    SetAlphaTarget,
    SystemStatePacket,
    Wait,
)
from core.triad.lifecycle import LIVE_STAGES

__all__ = ["HeuristicConfig", "HeuristicPolicy", "Policy", "Proposal", "RiskConfig", "RiskRules"]

S = SeedStage


@dataclass(frozen=True, slots=True)
class Proposal:
    payload: CommandPayload
    reason: str


class Policy(Protocol):
    """Anything that turns a packet into a proposal; it may keep state between epochs."""

    def propose(self, packet: SystemStatePacket) -> Proposal: ...

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


# -- the heuristic policy ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class HeuristicConfig:
    plateau_epochs: int = 2
    plateau_tolerance: float = 0.01
    embargo_epochs: int = 3
    max_live_seeds: int = 4
    fossilize_threshold: float = 0.005
    hurt_threshold: float = -0.02
    max_holding_epochs: int = 3
    blueprints: tuple[Blueprint, ...] = (Blueprint.RESIDUAL_MLP, Blueprint.BOTTLENECK, Blueprint.LOW_RANK)
    curve: AlphaCurve = AlphaCurve.COSINE
    blend_steps: int = 64


class HeuristicPolicy:
    """Germinate after a plateau, prune what hurts, fossilize what earns its place.

    In order: prune a blending or holding seed whose counterfactual contribution is negative;
    fossilize a holding seed that clears the bar; prune one that held too long without
    clearing it; germinate the next blueprint (round robin) into a dormant slot once validation
    loss has stalled for ``plateau_epochs`` and no prune happened in the last
    ``embargo_epochs``; otherwise wait.
    """

    def __init__(self, config: HeuristicConfig | None = None) -> None:
        self.config = config or HeuristicConfig()
        self.best_val_loss = math.inf
        self.plateau = 0
        self.last_prune_epoch = -(10**9)
        self.next_blueprint = 0

    def propose(self, packet: SystemStatePacket) -> Proposal:
        self._track_plateau(packet.val_loss)
        proposal = self._seed_care(packet) or self._growth(packet)
        if proposal is None:
            return Proposal(Wait(), "nothing to do")
        if isinstance(proposal.payload, Prune):
            self.last_prune_epoch = packet.epoch
        return proposal

    def _track_plateau(self, val_loss: float) -> None:
        if val_loss < self.best_val_loss * (1.0 - self.config.plateau_tolerance):
            self.best_val_loss, self.plateau = val_loss, 0
        else:
            self.plateau += 1

    def _seed_care(self, packet: SystemStatePacket) -> Proposal | None:
        config = self.config
        for seed in packet.seeds:
            contribution = seed.contribution
            if seed.stage not in (S.BLENDING, S.HOLDING) or contribution is None:
                continue
            if contribution < config.hurt_threshold:
                return Proposal(Prune(seed.slot), f"contribution {contribution:.4f} hurts")
            if seed.stage is S.HOLDING and contribution >= config.fossilize_threshold:
                return Proposal(Fossilize(seed.slot), f"contribution {contribution:.4f} earns its place")
            if seed.stage is S.HOLDING and seed.epochs_in_stage >= config.max_holding_epochs:
                return Proposal(Prune(seed.slot), f"held {seed.epochs_in_stage} epochs without earning")
        return None

    def _growth(self, packet: SystemStatePacket) -> Proposal | None:
        config = self.config
        if self.plateau < config.plateau_epochs:
            return None
        if packet.epoch - self.last_prune_epoch <= config.embargo_epochs:
            return None
        if _live(packet.seeds) >= config.max_live_seeds:
            return None
        dormant = next((s for s in packet.seeds if s.stage is S.DORMANT), None)
        if dormant is None:
            return None
        blueprint = config.blueprints[self.next_blueprint % len(config.blueprints)]
        self.next_blueprint += 1
        self.plateau = 0  # give the new seed time before judging the plateau again
        payload = Germinate(dormant.slot, blueprint, config.curve, config.blend_steps)
        return Proposal(payload, f"validation loss flat for {config.plateau_epochs} epochs")

    def state_dict(self) -> dict[str, Any]:
        return {
            "best_val_loss": self.best_val_loss if math.isfinite(self.best_val_loss) else None,
            "plateau": self.plateau,
            "last_prune_epoch": self.last_prune_epoch,
            "next_blueprint": self.next_blueprint,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        best = state["best_val_loss"]
        self.best_val_loss = math.inf if best is None else best
        self.plateau = state["plateau"]
        self.last_prune_epoch = state["last_prune_epoch"]
        self.next_blueprint = state["next_blueprint"]


def _live(seeds: Sequence[SeedState]) -> int:
    return sum(1 for s in seeds if s.stage in LIVE_STAGES)


# -- hard risk rules -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RiskConfig:
    loss_spike_factor: float = 3.0
    loss_history: int = 3
    max_budget_overruns: int = 3
    max_live_seeds: int = 8


_GROWTH = (Germinate, SetAlphaTarget, Fossilize)


class RiskRules:
    """Rules that override the policy. Each returns a replacement or None; the first wins."""

    def __init__(self, config: RiskConfig | None = None) -> None:
        self.config = config or RiskConfig()
        self.recent_train_losses: deque[float] = deque(maxlen=self.config.loss_history)

    def review(self, packet: SystemStatePacket, proposal: Proposal) -> Proposal | None:
        verdict = (
            self._non_finite(packet)
            or self._loss_spike(packet)
            or self._overruns(packet, proposal)
            or self._too_many_seeds(packet, proposal)
        )
        if math.isfinite(packet.train_loss) and verdict is None:
            self.recent_train_losses.append(packet.train_loss)
        return verdict

    def _non_finite(self, packet: SystemStatePacket) -> Proposal | None:
        values = (packet.train_loss, packet.val_loss, packet.gradient_norm)
        if all(math.isfinite(v) for v in values):
            return None
        return Proposal(RollBack(), "risk:non_finite: a loss or gradient norm is NaN or infinite")

    def _loss_spike(self, packet: SystemStatePacket) -> Proposal | None:
        history = self.recent_train_losses
        if len(history) < self.config.loss_history:
            return None
        baseline = sum(history) / len(history)
        if packet.train_loss <= self.config.loss_spike_factor * baseline:
            return None
        return Proposal(RollBack(), f"risk:loss_spike: {packet.train_loss:.4g} vs recent {baseline:.4g}")

    def _overruns(self, packet: SystemStatePacket, proposal: Proposal) -> Proposal | None:
        if packet.budget_overruns < self.config.max_budget_overruns and not packet.conservative:
            return None
        if not isinstance(proposal.payload, _GROWTH):
            return None
        return Proposal(Wait(), f"risk:budget: {packet.budget_overruns} overruns, no growth")

    def _too_many_seeds(self, packet: SystemStatePacket, proposal: Proposal) -> Proposal | None:
        if not isinstance(proposal.payload, Germinate) or _live(packet.seeds) < self.config.max_live_seeds:
            return None
        return Proposal(Wait(), f"risk:live_seeds: {_live(packet.seeds)} live seeds is the limit")

    def state_dict(self) -> dict[str, Any]:
        return {"recent_train_losses": list(self.recent_train_losses)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.recent_train_losses.clear()
        self.recent_train_losses.extend(state["recent_train_losses"])
