"""The epoch boundary: gather the state packet, let Tamiyo decide, apply through Kasmina.

The three call each other directly, once per epoch; no bus sits between them. Each part is
timed against its budget; an overrun is an event and counts as a failure of the component's
circuit breaker. An open breaker puts that component in conservative mode (Tamiyo: wait;
Kasmina: no seed commands, no growth), and the run goes on: an exception from either component
never ends it. A non-finite loss or gradient is rolled back whether or not Tamiyo is reachable:
safety does not depend on the component most likely to be replaced.

Events, in the order a boundary emits them: field reports, the decision, rejections and
transitions, overruns and breaker changes, then ``EpochCompleted``.
"""

from __future__ import annotations

import math
import time
from typing import Any

from core.triad.config import TrainingConfig
from core.triad.contracts import (
    AdaptationCommand,
    AdjustLearningRate,
    CommandKind,
    HardwareContext,
    RollBack,
    SeedState,
    SystemStatePacket,
)
from core.triad.errors import IllegalSeedTransition, SeedCommandRejected
from core.triad.events import (
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
from core.triad.guards import CircuitBreaker
from core.triad.kasmina import Kasmina
from core.triad.learning_rate import LearningRateController
from core.triad.policy import Proposal
from core.triad.ports import EventSink, MemoryProbe
from core.triad.steps import EpochResult
from core.triad.tamiyo import Decision, Tamiyo

__all__ = ["EpochBoundary"]

_SEED_COMMANDS = frozenset(
    {CommandKind.GERMINATE, CommandKind.PRUNE, CommandKind.FOSSILIZE, CommandKind.SET_ALPHA_TARGET}
)
_PARTS = ("gather", "decide", "apply", "total")


class EpochBoundary:
    """Runs one boundary per epoch; keeps the breakers, the overrun counts and the timings."""

    def __init__(
        self,
        kasmina: Kasmina,
        tamiyo: Tamiyo,
        learning_rate: LearningRateController,
        sink: EventSink,
        config: TrainingConfig,
        *,
        device: str,
        memory_probe: MemoryProbe,
    ) -> None:
        self.kasmina, self.tamiyo, self.learning_rate, self.sink = kasmina, tamiyo, learning_rate, sink
        self.budget, self.device, self.memory_probe = config.budget, device, memory_probe
        failures, cooldown = config.breaker_failures, config.breaker_cooldown_epochs
        self.tamiyo_breaker = CircuitBreaker("tamiyo", failures, cooldown)
        self.kasmina_breaker = CircuitBreaker("kasmina", failures, cooldown)
        self.timings: dict[str, list[float]] = {part: [] for part in _PARTS}
        self.budget_overruns = 0
        self.consecutive_overruns = 0
        self._called: set[str] = set()  # parts whose component ran without raising

    def run(self, epoch: int, global_step: int, rate: float, result: EpochResult) -> AdaptationCommand:
        """Gather, decide, apply; record the timings; returns the command that was applied."""
        clock = time.perf_counter_ns
        start = clock()
        packet = self._gather(epoch, global_step, rate, result)
        gathered = clock()
        command = self._decide(packet)
        decided = clock()
        self._apply(command, epoch)
        applied = clock()
        ends = (gathered - start, decided - gathered, applied - decided, applied - start)
        parts = {part: nanoseconds / 1e6 for part, nanoseconds in zip(_PARTS, ends, strict=True)}
        self._check_budget(epoch, parts)
        self.sink.emit(_epoch_completed(packet, result, parts, self.kasmina.states()))
        return command

    # -- the three parts -----------------------------------------------------------------------

    def _gather(self, epoch: int, global_step: int, rate: float, result: EpochResult) -> SystemStatePacket:
        return SystemStatePacket(
            epoch=epoch,
            global_step=global_step,
            train_loss=result.train_loss,
            val_loss=result.validation.loss,
            val_accuracy=result.validation.accuracy,
            learning_rate=rate,
            gradient_norm=result.gradient_norm,
            seeds=self.kasmina.states(),
            hardware=HardwareContext(self.device, self.memory_probe()),
            timestamp_ns=time.time_ns(),
            budget_overruns=self.consecutive_overruns,
            conservative=not (self.tamiyo_breaker.allows(epoch) and self.kasmina_breaker.allows(epoch)),
        )

    def _decide(self, packet: SystemStatePacket) -> AdaptationCommand:
        decision: Decision | None = None
        if self.tamiyo_breaker.allows(packet.epoch):
            try:
                decision = self.tamiyo.decide(packet)
            except Exception as exc:  # a failing policy must not end the run: count it, go conservative
                reason = f"decide raised {type(exc).__name__}: {exc}"
                self._breaker_failed(self.tamiyo_breaker, packet.epoch, reason)
            else:
                self._called.add("decide")
        if decision is None:
            decision = self.tamiyo.conservative(packet, "tamiyo unavailable")
        for report in decision.field_reports:
            self.sink.emit(FieldReportFiled.of(report))
        command = decision.command
        if not _finite(packet) and command.kind is not CommandKind.ROLL_BACK:
            proposal = Proposal(RollBack(), "non-finite loss or gradient")
            command = self.tamiyo.override(packet, command, proposal, "tolaria")
        self.sink.emit(DecisionMade.of(command))
        return command

    def _apply(self, command: AdaptationCommand, epoch: int) -> None:
        if isinstance(command.payload, AdjustLearningRate):
            try:
                self.learning_rate.adjust(command.payload.factor)
            except ValueError as exc:
                self.sink.emit(CommandRejected(command.command_id, epoch, str(exc)))
        if not self.kasmina_breaker.allows(epoch):
            if command.kind in _SEED_COMMANDS:
                refusal = CommandRejected(command.command_id, epoch, "kasmina is in conservative mode")
                self.sink.emit(refusal)
            return
        try:
            if command.kind in _SEED_COMMANDS:
                self._apply_seed_command(command, epoch)
            for transition in self.kasmina.advance(epoch):
                self.sink.emit(SeedStageChanged.of(transition))
        except Exception as exc:  # Kasmina's own failure: conservative mode, never a crash
            reason = f"kasmina raised {type(exc).__name__}: {exc}"
            self._breaker_failed(self.kasmina_breaker, epoch, reason)
        else:
            self._called.add("apply")

    def _apply_seed_command(self, command: AdaptationCommand, epoch: int) -> None:
        """A refused command is Kasmina doing her job (an event, not a failure)."""
        try:
            transition = self.kasmina.apply(command, epoch)
        except (IllegalSeedTransition, SeedCommandRejected) as exc:
            self.sink.emit(CommandRejected(command.command_id, epoch, str(exc)))
            return
        if transition is not None:
            self.sink.emit(SeedStageChanged.of(transition))

    # -- budgets and breakers ------------------------------------------------------------------

    def _check_budget(self, epoch: int, parts: dict[str, float]) -> None:
        budget = self.budget
        limits = {"gather": budget.gather_ms, "decide": budget.decide_ms, "apply": budget.apply_ms}
        limits["total"] = budget.total_ms
        over = [part for part, limit in limits.items() if parts[part] > limit]
        for part, elapsed in parts.items():
            self.timings[part].append(elapsed)
        for part in over:
            self.sink.emit(BudgetExceeded(epoch, part, parts[part], limits[part]))
        # A call counts as a success only if it returned and kept to its budget: a component
        # that is always slow must trip its breaker as surely as one that always raises.
        for part, breaker in (("decide", self.tamiyo_breaker), ("apply", self.kasmina_breaker)):
            if part in over:
                self._breaker_failed(breaker, epoch, f"{part} over budget")
            elif part in self._called:
                self._breaker_succeeded(breaker, epoch)
        self._called.clear()
        self.budget_overruns += len(over)
        self.consecutive_overruns = self.consecutive_overruns + 1 if over else 0

    def _breaker_failed(self, breaker: CircuitBreaker, epoch: int, reason: str) -> None:
        if breaker.failed(epoch):
            self.sink.emit(ConservativeModeEntered(epoch, breaker.name, reason))

    def _breaker_succeeded(self, breaker: CircuitBreaker, epoch: int) -> None:
        if breaker.succeeded():
            self.sink.emit(ConservativeModeExited(epoch, breaker.name, "call succeeded"))

    # -- what a snapshot keeps -----------------------------------------------------------------

    def breaker_states(self) -> list[dict[str, Any]]:
        return [self.tamiyo_breaker.state_dict(), self.kasmina_breaker.state_dict()]

    def load(self, breakers: list[dict[str, Any]], budget_overruns: int, consecutive_overruns: int) -> None:
        """Restore the breakers and overrun counts a snapshot kept (a resume)."""
        self.tamiyo_breaker.load_state_dict(breakers[0])
        self.kasmina_breaker.load_state_dict(breakers[1])
        self.budget_overruns, self.consecutive_overruns = budget_overruns, consecutive_overruns


def _epoch_completed(
    packet: SystemStatePacket, result: EpochResult, parts: dict[str, float], seeds: tuple[SeedState, ...]
) -> EpochCompleted:
    """The boundary's record; ``seeds`` as they stand after the command was applied."""
    return EpochCompleted(
        epoch=packet.epoch,
        global_step=packet.global_step,
        train_loss=finite_or_none(result.train_loss),
        train_accuracy=finite_or_none(result.train_accuracy),
        val_loss=finite_or_none(result.validation.loss),
        val_accuracy=finite_or_none(result.validation.accuracy),
        learning_rate=packet.learning_rate,
        gradient_norm=finite_or_none(result.gradient_norm),
        seeds=tuple(SeedSummary.of(seed) for seed in seeds),
        boundary_ms={part: round(ms, 4) for part, ms in parts.items()},
    )


def _finite(packet: SystemStatePacket) -> bool:
    return all(math.isfinite(v) for v in (packet.train_loss, packet.val_loss, packet.gradient_norm))
