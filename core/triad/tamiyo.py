"""Tamiyo: reads a state packet, decides one command, and files a report on each decision.

The policy proposes; hard risk rules dispose. A rule sees the policy's proposal and the packet
and may replace the proposal (a non-finite loss becomes a rollback whatever the policy wanted),
so a learned policy can be dropped in behind ``Policy`` without being trusted with safety.

Every command, waits included, gets a FieldReport at the next decision: the seed's "1-epoch
window". The report compares validation loss and accuracy before and after, which is what a
learned policy would be trained on and what an operator reads in ``replay --steps``.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from core.triad.contracts import (
    AdaptationCommand,
    AlphaCurve,
    Blueprint,
    CommandKind,
    CommandPayload,
    FieldReport,
    Fossilize,
    Germinate,
    Outcome,
    Prune,
    RollBack,
    SeedStage,
    SeedState,
    SetAlphaTarget,
    SystemStatePacket,
    Wait,
)
from core.triad.lifecycle import LIVE_STAGES

__all__ = [
    "Decision",
    "HeuristicConfig",
    "HeuristicPolicy",
    "Policy",
    "Proposal",
    "RiskConfig",
    "RiskRules",
    "Tamiyo",
]

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


# -- Tamiyo --------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Decision:
    command: AdaptationCommand
    field_reports: tuple[FieldReport, ...]
    overridden: Proposal | None = None


@dataclass(slots=True)
class _Pending:
    command_id: int
    kind: int
    epoch: int
    val_loss: float
    val_accuracy: float


@dataclass(frozen=True, slots=True)
class _ReportRules:
    improvement: float = 0.002
    regression: float = 0.01


class Tamiyo:
    def __init__(self, policy: Policy | None = None, risk: RiskRules | None = None) -> None:
        self.policy: Policy = policy or HeuristicPolicy()
        self.risk = risk or RiskRules()
        self.next_command_id = 1
        self._pending: list[_Pending] = []
        self._report_rules = _ReportRules()

    def decide(self, packet: SystemStatePacket) -> Decision:
        # The policy and the risk rules run first: if either raises, no due report has been
        # taken off the pending list yet, and the conservative path files them instead.
        proposal = self.policy.propose(packet)
        replacement = self.risk.review(packet, proposal)
        reports = self._file_reports(packet)
        chosen = replacement or proposal
        issued_by = "risk" if replacement is not None else "policy"
        command = self._issue(packet, chosen, issued_by)
        return Decision(command, reports, proposal if replacement is not None else None)

    def conservative(self, packet: SystemStatePacket, reason: str) -> Decision:
        """What Tolaria issues when the policy is unavailable: a wait, numbered and reported on
        like any decision. Pure bookkeeping, it never calls the policy."""
        reports = self._file_reports(packet)
        return Decision(self._issue(packet, Proposal(Wait(), reason), "conservative"), reports, None)

    def override(
        self, packet: SystemStatePacket, replaced: AdaptationCommand, proposal: Proposal, issued_by: str
    ) -> AdaptationCommand:
        """Tolaria's safety rules replace a command before it is applied: the replaced one will
        never act, so it gets no report; the replacement gets one like any decision."""
        self._pending = [p for p in self._pending if p.command_id != replaced.command_id]
        return self._issue(packet, proposal, issued_by)

    def _issue(self, packet: SystemStatePacket, proposal: Proposal, issued_by: str) -> AdaptationCommand:
        command = AdaptationCommand(
            self.next_command_id, packet.epoch, proposal.payload, issued_by, proposal.reason
        )
        self.next_command_id += 1
        self._pending.append(
            _Pending(
                command.command_id, int(command.kind), packet.epoch, packet.val_loss, packet.val_accuracy
            )
        )
        return command

    def _file_reports(self, packet: SystemStatePacket) -> tuple[FieldReport, ...]:
        due = [p for p in self._pending if p.epoch < packet.epoch]
        self._pending = [p for p in self._pending if p.epoch >= packet.epoch]
        return tuple(self._report(p, packet) for p in due)

    def _report(self, pending: _Pending, packet: SystemStatePacket) -> FieldReport:
        before, after = pending.val_loss, packet.val_loss
        rules = self._report_rules
        if not math.isfinite(after) or (math.isfinite(before) and after > before + rules.regression):
            outcome = Outcome.REGRESSION
        elif math.isfinite(before) and after < before - rules.improvement:
            outcome = Outcome.SUCCESS
        else:
            outcome = Outcome.NEUTRAL
        return FieldReport(
            command_id=pending.command_id,
            command_kind=CommandKind(pending.kind),
            issued_epoch=pending.epoch,
            observed_epoch=packet.epoch,
            outcome=outcome,
            val_loss_before=before,
            val_loss_after=after,
            val_accuracy_before=pending.val_accuracy,
            val_accuracy_after=packet.val_accuracy,
        )

    def state_dict(self) -> dict[str, Any]:
        return {
            "next_command_id": self.next_command_id,
            "pending": [[p.command_id, p.kind, p.epoch, p.val_loss, p.val_accuracy] for p in self._pending],
            "policy": self.policy.state_dict(),
            "risk": self.risk.state_dict(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.next_command_id = state["next_command_id"]
        self._pending = [_Pending(*p) for p in state["pending"]]
        self.policy.load_state_dict(state["policy"])
        self.risk.load_state_dict(state["risk"])
