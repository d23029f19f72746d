"""Tamiyo: reads a state packet, decides one command, and files a report on each decision.

The policy proposes; hard risk rules dispose (both in ``policy``). Tamiyo asks the one, has the
other review the answer, numbers the command and keeps the bookkeeping a resume restores.

Every command, waits included, gets a FieldReport at the next decision: the seed's "1-epoch
window". The report compares validation loss and accuracy before and after, which is what a
learned policy would be trained on and what an operator reads in ``replay --steps``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from core.triad.contracts import (
    AdaptationCommand,
    CommandKind,
    FieldReport,
    Outcome,
    SystemStatePacket,
    Wait,
)
from core.triad.policy import HeuristicPolicy, Policy, Proposal, RiskRules

__all__ = ["Decision", "Tamiyo"]


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
