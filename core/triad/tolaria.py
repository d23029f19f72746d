"""Tolaria: runs the epochs, and at each boundary calls Tamiyo and Kasmina directly.

One epoch: train (host and seeds step together), validate (and measure the counterfactual
contribution of every blending or holding seed), then the boundary: gather the state packet,
ask Tamiyo for one command, apply it through Kasmina and take the automatic lifecycle edges.
Each of the three parts is timed against its budget; an overrun is an event and counts as a
failure of the component's circuit breaker. An open breaker puts that component in
conservative mode (Tamiyo: wait; Kasmina: no seed commands, no growth), and the run goes on.

Tolaria owns the only learning-rate controller, the fast rollback tier and the checkpoints. A
non-finite loss is rolled back whether or not Tamiyo is reachable: safety does not depend on
the component most likely to be replaced.

Per-step metrics are materialised in windows of ``metrics_window`` steps (one ``tolist`` for
the whole window), so on a GPU the step thread synchronises with the device once per window
rather than once per metric, and emission itself never touches the device.
"""

from __future__ import annotations

import concurrent.futures
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from core.triad import run_events as ev
from core.triad.contracts import (
    AdaptationCommand,
    AdjustLearningRate,
    CommandKind,
    HardwareContext,
    RollBack,
    SeedStage,
    SystemStatePacket,
    TelemetryPacket,
)
from core.triad.data import Dataset, batches
from core.triad.emission import EventSink, NullEventSink
from core.triad.errors import CommandRejected, IllegalTransition, NoCheckpoint
from core.triad.evaluation import Evaluation, FossilReport, evaluate, measure_contributions
from core.triad.guards import BoundaryBudget, CircuitBreaker
from core.triad.kasmina import Kasmina
from core.triad.learning_rate import LearningRateController, LearningRateSchedule
from core.triad.reporting import RunSummary, percentiles
from core.triad.rollback import (
    CheckpointInfo,
    CheckpointStore,
    FastRollback,
    TrainingSnapshot,
    capture,
    restore,
)
from core.triad.tamiyo import Proposal, Tamiyo

__all__ = ["RunSummary", "Tolaria", "TrainingConfig"]  # RunSummary re-exported for callers

S = SeedStage
_SEED_COMMANDS = frozenset(
    {CommandKind.GERMINATE, CommandKind.PRUNE, CommandKind.FOSSILIZE, CommandKind.SET_ALPHA_TARGET}
)
_MEASURED = (S.BLENDING, S.HOLDING)


@dataclass(frozen=True, slots=True)
class TrainingConfig:
    epochs: int = 40
    batch_size: int = 128
    seed: int = 0
    learning_rate: LearningRateSchedule = field(default_factory=LearningRateSchedule)
    budget: BoundaryBudget = field(default_factory=BoundaryBudget)
    grad_clip: float = 5.0
    rollback_capacity: int = 3
    rollback_lr_factor: float = 0.5
    checkpoint_every: int = 1
    metrics_window: int = 8
    breaker_failures: int = 3
    breaker_cooldown_epochs: int = 3


@dataclass(frozen=True, slots=True)
class _EpochResult:
    train_loss: float
    gradient_norm: float
    validation: Evaluation


class Tolaria:
    def __init__(
        self,
        run_id: str,
        host: nn.Module,
        dataset: Dataset,
        kasmina: Kasmina,
        tamiyo: Tamiyo,
        config: TrainingConfig,
        *,
        sink: EventSink | None = None,
        checkpoints: CheckpointStore | None = None,
        loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] = nn.functional.cross_entropy,
        on_step: Callable[[int, int], None] | None = None,
    ) -> None:
        self.run_id, self.host, self.dataset, self.config = run_id, host, dataset, config
        self.kasmina, self.tamiyo, self.loss_fn, self.on_step = kasmina, tamiyo, loss_fn, on_step
        self.sink: EventSink = sink or NullEventSink()
        self.checkpoints = checkpoints
        self.device = next(host.parameters()).device
        self.optimizer = torch.optim.Adam(host.parameters(), lr=config.learning_rate.base)
        self.lr = LearningRateController(config.learning_rate)
        self.fast = FastRollback(config.rollback_capacity)
        self.tamiyo_breaker = CircuitBreaker(
            "tamiyo", config.breaker_failures, config.breaker_cooldown_epochs
        )
        self.kasmina_breaker = CircuitBreaker(
            "kasmina", config.breaker_failures, config.breaker_cooldown_epochs
        )
        self.stop = threading.Event()
        self.epoch = 0
        self.global_step = 0
        self.rollbacks = 0
        self.budget_overruns = 0
        self.consecutive_overruns = 0
        self.resumed_from: int | None = None
        self.boundary_ms: dict[str, list[float]] = {"gather": [], "decide": [], "apply": [], "total": []}
        self._rate = self.lr.rate(0)
        self._writer = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix=f"checkpoint-{run_id}")
        self._pending_checkpoints: list[concurrent.futures.Future[CheckpointInfo]] = []
        self._called: set[str] = set()  # boundary parts whose component ran without raising

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> RunSummary:
        """Train until ``config.epochs``, or until ``stop`` is set. Never raises for a bad epoch."""
        try:
            if self.resumed_from is None and self.epoch == 0:
                self.sink.emit(ev.RUN_STARTED, self._start_data())
                self.fast.remember(self._capture(-1))
            stopped = False
            while self.epoch < self.config.epochs and not stopped:
                stopped = not self.run_epoch()
            summary = self.summary(stopped)
            self._wait_for_checkpoints()
            self.sink.emit(ev.RUN_COMPLETED, summary.to_data())
            return summary
        finally:
            self._writer.shutdown(wait=True)

    def run_epoch(self) -> bool:
        """One epoch and its boundary; False when a stop request cut it short."""
        epoch = self.epoch
        self._rate = self.lr.apply(epoch, [self.optimizer])
        self.kasmina.set_learning_rate(self._rate)
        result = self._train(epoch)
        if result is None:
            return False
        self.kasmina.close_epoch()
        command = self._boundary(epoch, result)
        self._after_boundary(epoch, command, result)
        self.epoch += 1
        return True

    def resume(self) -> CheckpointInfo:
        """Load the newest valid checkpoint: the run continues from the epoch after it."""
        if self.checkpoints is None:
            raise NoCheckpoint("this run has no checkpoint directory")
        info, snapshot = self.checkpoints.load_latest(self.device)
        restore(snapshot, self.host, self.optimizer, self.kasmina)
        self._load_controller(snapshot.controller, everything=True)
        self.epoch, self.global_step, self.resumed_from = (
            snapshot.epoch + 1,
            snapshot.global_step,
            snapshot.epoch,
        )
        self.fast.remember(snapshot)
        resumed = {"from_epoch": info.epoch, "sha256": info.sha256, "file": info.path.name}
        self.sink.emit(ev.RUN_RESUMED, resumed | {"epochs": self.config.epochs})
        return info

    # -- training and validation ---------------------------------------------------------------

    def _train(self, epoch: int) -> _EpochResult | None:
        self.host.train()
        window: list[tuple[torch.Tensor, torch.Tensor]] = []
        losses: list[float] = []
        norms: list[float] = []
        for index, (x, y) in enumerate(
            batches(self.dataset, self.config.batch_size, epoch, self.config.seed)
        ):
            if self.stop.is_set():
                return None
            window.append(self._step(x, y))
            if self.on_step is not None:
                self.on_step(epoch, index)
            if len(window) >= self.config.metrics_window and not self._flush_window(
                epoch, window, losses, norms
            ):
                break  # a non-finite loss: stop wasting steps, the boundary will roll back
        self._flush_window(epoch, window, losses, norms)
        validation = evaluate(self.host, self.dataset.val_x, self.dataset.val_y, self.loss_fn)
        for found in measure_contributions(
            self.host,
            self.kasmina,
            _MEASURED,
            validation,
            self.dataset.val_x,
            self.dataset.val_y,
            self.loss_fn,
        ):
            self.kasmina.record_contribution(found.slot, found.contribution)
        return _EpochResult(_mean(losses), norms[-1] if norms else math.nan, validation)

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        self.optimizer.zero_grad(set_to_none=True)
        self.kasmina.zero_grad()
        loss = self.loss_fn(self.host(x), y)
        loss.backward()  # type: ignore[no-untyped-call]  # Tensor.backward is untyped in torch's stubs
        norm = nn.utils.clip_grad_norm_(self.host.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.kasmina.step()
        self.global_step += 1
        return loss.detach(), norm

    def _flush_window(
        self,
        epoch: int,
        window: list[tuple[torch.Tensor, torch.Tensor]],
        losses: list[float],
        norms: list[float],
    ) -> bool:
        """Materialise a window of step metrics with one transfer and emit them; False if any
        loss in it is not finite."""
        if not window:
            return True
        values: list[list[float]] = torch.stack([torch.stack(pair) for pair in window]).tolist()
        first_step = self.global_step - len(window) + 1
        window.clear()
        for offset, (loss, norm) in enumerate(values):
            losses.append(loss)
            norms.append(norm)
            metrics = (("loss", loss), ("grad_norm", norm), ("lr", self._rate))
            self.sink.metric(TelemetryPacket(epoch, first_step + offset, metrics))
        return all(math.isfinite(loss) for loss, _ in values)

    # -- the epoch boundary --------------------------------------------------------------------

    def _boundary(self, epoch: int, result: _EpochResult) -> AdaptationCommand:
        clock = time.perf_counter_ns
        start = clock()
        packet = self._gather(epoch, result)
        gathered = clock()
        command = self._decide(packet)
        decided = clock()
        self._apply(command, epoch)
        applied = clock()
        parts = {
            "gather": (gathered - start) / 1e6,
            "decide": (decided - gathered) / 1e6,
            "apply": (applied - decided) / 1e6,
            "total": (applied - start) / 1e6,
        }
        self._check_budget(epoch, parts)
        self.sink.emit(
            ev.EPOCH_COMPLETED,
            ev.EpochRecord(
                epoch,
                self.global_step,
                result.train_loss,
                result.validation.loss,
                result.validation.accuracy,
                self._rate,
                result.gradient_norm,
                self.kasmina.states(),
                tuple(parts.items()),
            ),
        )
        return command

    def _gather(self, epoch: int, result: _EpochResult) -> SystemStatePacket:
        memory = torch.cuda.memory_allocated() / 1e6 if self.device.type == "cuda" else 0.0
        return SystemStatePacket(
            epoch=epoch,
            global_step=self.global_step,
            train_loss=result.train_loss,
            val_loss=result.validation.loss,
            val_accuracy=result.validation.accuracy,
            learning_rate=self._rate,
            gradient_norm=result.gradient_norm,
            seeds=self.kasmina.states(),
            hardware=HardwareContext(str(self.device), memory),
            timestamp_ns=time.time_ns(),
            budget_overruns=self.consecutive_overruns,
            conservative=not (self.tamiyo_breaker.allows(epoch) and self.kasmina_breaker.allows(epoch)),
        )

    def _decide(self, packet: SystemStatePacket) -> AdaptationCommand:
        epoch = packet.epoch
        command: AdaptationCommand | None = None
        if self.tamiyo_breaker.allows(epoch):
            try:
                decision = self.tamiyo.decide(packet)
            except Exception as exc:  # a failing policy must not end the run: count it, go conservative
                self._breaker_failed(self.tamiyo_breaker, epoch, f"decide raised {type(exc).__name__}: {exc}")
            else:
                self._called.add("decide")
                command = decision.command
                for report in decision.field_reports:
                    self.sink.emit(ev.FIELD_REPORT_FILED, report)
        if command is None:
            fallback = self.tamiyo.conservative(packet, "tamiyo unavailable")
            command = fallback.command
            for report in fallback.field_reports:
                self.sink.emit(ev.FIELD_REPORT_FILED, report)
        if not _finite(packet) and command.kind is not CommandKind.ROLL_BACK:
            command = self.tamiyo.override(
                packet, command, Proposal(RollBack(), "non-finite loss or gradient"), "tolaria"
            )
        self.sink.emit(ev.DECISION_MADE, command)
        return command

    def _apply(self, command: AdaptationCommand, epoch: int) -> None:
        if isinstance(command.payload, AdjustLearningRate):
            try:
                self.lr.adjust(command.payload.factor)
            except ValueError as exc:
                self.sink.emit(ev.COMMAND_REJECTED, ev.CommandRefusal(command.command_id, epoch, str(exc)))
        if not self.kasmina_breaker.allows(epoch):
            if command.kind in _SEED_COMMANDS:
                refusal = ev.CommandRefusal(command.command_id, epoch, "kasmina is in conservative mode")
                self.sink.emit(ev.COMMAND_REJECTED, refusal)
            return
        try:
            if command.kind in _SEED_COMMANDS:
                self._apply_seed_command(command, epoch)
            for transition in self.kasmina.advance(epoch):
                self.sink.emit(ev.SEED_STAGE_CHANGED, transition)
        except Exception as exc:  # Kasmina's own failure: conservative mode, never a crash
            self._breaker_failed(self.kasmina_breaker, epoch, f"kasmina raised {type(exc).__name__}: {exc}")
        else:
            self._called.add("apply")

    def _apply_seed_command(self, command: AdaptationCommand, epoch: int) -> None:
        """A refused command is Kasmina doing her job (an event, not a failure)."""
        try:
            transition = self.kasmina.apply(command, epoch)
        except (IllegalTransition, CommandRejected) as exc:
            self.sink.emit(ev.COMMAND_REJECTED, ev.CommandRefusal(command.command_id, epoch, str(exc)))
            return
        if transition is not None:
            self.sink.emit(ev.SEED_STAGE_CHANGED, transition)

    def _check_budget(self, epoch: int, parts: dict[str, float]) -> None:
        budget = self.config.budget
        limits = {"gather": budget.gather_ms, "decide": budget.decide_ms, "apply": budget.apply_ms}
        limits["total"] = budget.total_ms
        over = [part for part, limit in limits.items() if parts[part] > limit]
        for part, elapsed in parts.items():
            self.boundary_ms[part].append(elapsed)
        for part in over:
            self.sink.emit(ev.BUDGET_EXCEEDED, ev.BudgetOverrun(epoch, part, parts[part], limits[part]))
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
            self.sink.emit(ev.CONSERVATIVE_MODE_ENTERED, ev.ModeChange(epoch, breaker.name, reason))

    def _breaker_succeeded(self, breaker: CircuitBreaker, epoch: int) -> None:
        if breaker.succeeded():
            self.sink.emit(ev.CONSERVATIVE_MODE_EXITED, ev.ModeChange(epoch, breaker.name, "call succeeded"))

    # -- after the boundary: rollback, snapshots, checkpoints ----------------------------------

    def _after_boundary(self, epoch: int, command: AdaptationCommand, result: _EpochResult) -> None:
        self._emit_finished_checkpoints()
        if command.kind is CommandKind.ROLL_BACK:
            self._roll_back(epoch, command.reason)
            return
        snapshot = self._capture(epoch)
        self.fast.remember(snapshot)
        every = self.config.checkpoint_every
        if self.checkpoints is not None and every > 0 and (epoch + 1) % every == 0:
            self._checkpoint(self.checkpoints, snapshot)

    def _checkpoint(self, store: CheckpointStore, snapshot: TrainingSnapshot) -> None:
        """Never ahead of the log: a run killed after the manifest but before the flush would
        resume past this epoch's decision, transitions and EpochCompleted. The barrier is taken
        after the boundary's last emit; the writer thread publishes the manifest once it holds
        (one append; with the store away, as long as the flusher retries). The step thread
        never waits for it."""
        wait_for_log = self.sink.barrier()
        self._pending_checkpoints.append(self._writer.submit(store.save, snapshot, wait_for_log))

    def _roll_back(self, epoch: int, reason: str) -> None:
        started = time.perf_counter()
        snapshot, tier = self.fast.latest(), "fast"
        if snapshot is None and self.checkpoints is not None:
            _info, snapshot = self.checkpoints.load_latest(self.device)
            tier = "full"
        if snapshot is None:
            self.sink.emit(ev.RUN_FAILED, {"epoch": epoch, "reason": f"no state to roll back to ({reason})"})
            self.stop.set()
            return
        restore(snapshot, self.host, self.optimizer, self.kasmina)
        self._load_controller(snapshot.controller, everything=False)
        self.lr.adjust(self.config.rollback_lr_factor)  # the same rate led here; go gentler
        self.fast.forget_latest()  # if this state fails again, the next rollback goes further back
        self.rollbacks += 1
        elapsed = (time.perf_counter() - started) * 1000
        self.sink.emit(ev.ROLLED_BACK, ev.RollbackRecord(epoch, tier, reason, snapshot.epoch, elapsed))

    def _capture(self, epoch: int) -> Any:
        return capture(epoch, self.global_step, self.host, self.optimizer, self.kasmina, self._controller())

    def _controller(self) -> dict[str, Any]:
        return {
            "lr": self.lr.state_dict(),
            "tamiyo": self.tamiyo.state_dict(),
            "breakers": [self.tamiyo_breaker.state_dict(), self.kasmina_breaker.state_dict()],
            "counters": [self.rollbacks, self.budget_overruns, self.consecutive_overruns],
        }

    def _load_controller(self, state: dict[str, Any], everything: bool) -> None:
        """A fast rollback rewinds the learning rate with the weights; Tamiyo keeps her memory of
        what happened (and her command ids keep counting). A resume restores everything."""
        self.lr.load_state_dict(state["lr"])
        if everything:
            self.tamiyo.load_state_dict(state["tamiyo"])
            self.tamiyo_breaker.load_state_dict(state["breakers"][0])
            self.kasmina_breaker.load_state_dict(state["breakers"][1])
            self.rollbacks, self.budget_overruns, self.consecutive_overruns = state["counters"]

    def _emit_finished_checkpoints(self) -> None:
        done = [f for f in self._pending_checkpoints if f.done()]
        self._pending_checkpoints = [f for f in self._pending_checkpoints if not f.done()]
        for future in done:
            try:
                info = future.result()
            except Exception as exc:  # a failed checkpoint is recorded; training goes on
                self.sink.emit(ev.RUN_FAILED, {"epoch": self.epoch, "reason": f"checkpoint failed: {exc}"})
                continue
            record = ev.CheckpointRecord(info.epoch, info.path.name, info.sha256, info.size_bytes)
            self.sink.emit(ev.CHECKPOINT_SAVED, record)

    def _wait_for_checkpoints(self) -> None:
        concurrent.futures.wait(self._pending_checkpoints)
        self._emit_finished_checkpoints()

    # -- reporting -----------------------------------------------------------------------------

    def summary(self, stopped: bool = False) -> RunSummary:
        x, y = self.dataset.val_x, self.dataset.val_y
        final = evaluate(self.host, x, y, self.loss_fn)
        grafted = [s.index for s in self.kasmina.all_slots() if s.seed is not None]
        with self.kasmina.alpha_forced(grafted, 0.0):
            without = evaluate(self.host, x, y, self.loss_fn)
        fossils = measure_contributions(self.host, self.kasmina, (S.FOSSILIZED,), final, x, y, self.loss_fn)
        return RunSummary(
            run_id=self.run_id,
            epochs_completed=self.epoch,
            stopped=stopped,
            val_loss=final.loss,
            val_accuracy=final.accuracy,
            val_accuracy_without_seeds=without.accuracy,
            fossilized=tuple(
                FossilReport(f.slot, self.kasmina.slot(f.slot).record.blueprint, f.contribution)
                for f in fossils
            ),
            final_stages=tuple((s.slot, s.stage.name) for s in self.kasmina.states()),
            rollbacks=self.rollbacks,
            budget_overruns=self.budget_overruns,
            boundary_ms={part: percentiles(values) for part, values in self.boundary_ms.items()},
            resumed_from_epoch=self.resumed_from,
        )

    def _start_data(self) -> dict[str, Any]:
        slots = [
            {"slot": s.index, "point": s.point, "features": s.features} for s in self.kasmina.all_slots()
        ]
        return {
            "run_id": self.run_id,
            "device": str(self.device),
            "host_parameters": sum(p.numel() for p in self.host.parameters()),
            "slots": slots,
            "epochs": self.config.epochs,
            "batch_size": self.config.batch_size,
            "seed": self.config.seed,
            "learning_rate": self.config.learning_rate.base,
            "checkpoint_every": self.config.checkpoint_every,
            "budget_ms": self.config.budget.total_ms,
        }


def _finite(packet: SystemStatePacket) -> bool:
    return all(math.isfinite(v) for v in (packet.train_loss, packet.val_loss, packet.gradient_norm))


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan
