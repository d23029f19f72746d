"""Tolaria: runs the epochs, owns the learning rate, the rollback tiers and the checkpoints.

One epoch: train (host and seeds step together) and validate (``steps.StepLoop``), then the
epoch boundary, where Tamiyo and Kasmina are called directly (``boundary.EpochBoundary``), then
what follows the boundary, which is Tolaria's own: a rollback if the command was ``ROLL_BACK``,
otherwise a snapshot for the fast tier and, every ``checkpoint_every`` epochs, a checkpoint.

Tolaria owns the only learning-rate controller: it sets the host optimizer's rate at the start
of each epoch and passes the same rate to Kasmina for the seed optimizers.

Everything runs on the calling thread (the step thread), which never waits on I/O: events and
metrics go to an ``EventSink``, checkpoints to a ``Checkpoints`` writer (``ports``). Callers
read the run's counters with ``progress()`` and ask it to stop with ``stop.set()``, from any
thread.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from core.triad.boundary import EpochBoundary
from core.triad.config import TrainingConfig
from core.triad.contracts import AdaptationCommand, CommandKind
from core.triad.data import Dataset
from core.triad.errors import NoCheckpoint
from core.triad.evaluation import LossFn
from core.triad.events import CheckpointSaved, RolledBack, RunFailed, RunResumed, RunStarted, SlotPlacement
from core.triad.kasmina import Kasmina
from core.triad.learning_rate import LearningRateController
from core.triad.ports import (
    CheckpointFailed,
    CheckpointInfo,
    CheckpointResult,
    Checkpoints,
    EventSink,
    MemoryProbe,
    NullEventSink,
    StopFlag,
    no_accelerator_memory,
)
from core.triad.reporting import RunProgress, RunSummary, summarise
from core.triad.rollback import FastRollback, TrainingSnapshot, capture, restore
from core.triad.steps import StepLoop
from core.triad.tamiyo import Tamiyo

__all__ = ["Tolaria"]


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
        checkpoints: Checkpoints | None = None,
        loss_fn: LossFn = nn.functional.cross_entropy,
        on_step: Callable[[int, int], None] | None = None,
        memory_probe: MemoryProbe = no_accelerator_memory,
    ) -> None:
        self.run_id, self.host, self.dataset, self.config = run_id, host, dataset, config
        self.kasmina, self.tamiyo, self.loss_fn = kasmina, tamiyo, loss_fn
        self.sink: EventSink = sink or NullEventSink()
        self.checkpoints = checkpoints
        self.device = next(host.parameters()).device
        self.optimizer = torch.optim.Adam(host.parameters(), lr=config.learning_rate.base)
        self.lr = LearningRateController(config.learning_rate)
        self.fast = FastRollback(config.rollback_capacity)
        self.stop = StopFlag()
        self.steps = StepLoop(
            host,
            dataset,
            kasmina,
            self.optimizer,
            config,
            self.sink,
            loss_fn,
            stop=self.stop,
            on_step=on_step,
        )
        self.boundary = EpochBoundary(
            kasmina, tamiyo, self.lr, self.sink, config, device=str(self.device), memory_probe=memory_probe
        )
        self._epoch = 0
        self._rollbacks = 0
        self._resumed_from: int | None = None

    def progress(self) -> RunProgress:
        boundary = self.boundary
        return RunProgress(
            epoch=self._epoch,
            global_step=self.steps.global_step,
            rollbacks=self._rollbacks,
            budget_overruns=boundary.budget_overruns,
            resumed_from=self._resumed_from,
            boundary_ms={part: tuple(values) for part, values in boundary.timings.items()},
        )

    # -- the run -------------------------------------------------------------------------------

    def run(self) -> RunSummary:
        """Train until ``config.epochs``, or until ``stop`` is set. Never raises for a bad epoch.

        The checkpoint writer is closed on the way out, whatever happens, so no checkpoint is
        still being written when this returns or raises."""
        try:
            if self._resumed_from is None and self._epoch == 0:
                self.sink.emit(self._started())
                self.fast.remember(self._capture(-1))
            stopped = False
            while self._epoch < self.config.epochs and not stopped:
                stopped = not self.run_epoch()
            summary = self.summary(stopped)
            if self.checkpoints is not None:
                self._record_checkpoints(self.checkpoints.wait())
            self.sink.emit(summary.to_event())
            return summary
        finally:
            if self.checkpoints is not None:
                self.checkpoints.close()

    def run_epoch(self) -> bool:
        """One epoch and its boundary; False when a stop request cut it short."""
        epoch = self._epoch
        rate = self.lr.apply(epoch, [self.optimizer])
        self.kasmina.set_learning_rate(rate)
        result = self.steps.train_epoch(epoch, rate)
        if result is None:
            return False
        self.kasmina.close_epoch()
        command = self.boundary.run(epoch, self.steps.global_step, rate, result)
        self._after_boundary(epoch, command)
        self._epoch += 1
        return True

    def resume(self) -> CheckpointInfo:
        """Load the newest valid checkpoint: the run continues from the epoch after it."""
        if self.checkpoints is None:
            raise NoCheckpoint("this run has no checkpoint directory")
        info, snapshot = self.checkpoints.load_latest(self.device)
        restore(snapshot, self.host, self.optimizer, self.kasmina)
        self._load_controller(snapshot.controller, everything=True)
        self._epoch, self._resumed_from = snapshot.epoch + 1, snapshot.epoch
        self.steps.global_step = snapshot.global_step
        self.fast.remember(snapshot)
        self.sink.emit(RunResumed(info.epoch, info.sha256, info.path.name, self.config.epochs))
        return info

    def summary(self, stopped: bool = False) -> RunSummary:
        """The final evaluation: accuracy with and without the seeds, each fossil's contribution."""
        validation = (self.dataset.val_x, self.dataset.val_y)
        return summarise(
            self.run_id, self.progress(), stopped, self.host, self.kasmina, validation, self.loss_fn
        )

    # -- after the boundary: rollback, snapshots, checkpoints ----------------------------------

    def _after_boundary(self, epoch: int, command: AdaptationCommand) -> None:
        if self.checkpoints is not None:
            self._record_checkpoints(self.checkpoints.finished())
        if command.kind is CommandKind.ROLL_BACK:
            self._roll_back(epoch, command.reason)
            return
        snapshot = self._capture(epoch)
        self.fast.remember(snapshot)
        every = self.config.checkpoint_every
        if self.checkpoints is not None and every > 0 and (epoch + 1) % every == 0:
            # Never ahead of the log: a run killed after the manifest but before the flush
            # would resume past this epoch's decision, transitions and EpochCompleted. The
            # barrier is taken here, after the boundary's last emit; the writer publishes the
            # manifest once it holds (one append; with the store away, as long as the flusher
            # retries). The step thread never waits for it.
            self.checkpoints.submit(snapshot, self.sink.barrier())

    def _record_checkpoints(self, results: list[CheckpointResult]) -> None:
        """Saves that ended since the last boundary; a failed one is recorded, training goes on."""
        for result in results:
            if isinstance(result, CheckpointFailed):
                self.sink.emit(RunFailed(self._epoch, f"checkpoint failed: {result.reason}"))
            else:
                self.sink.emit(
                    CheckpointSaved(result.epoch, result.path.name, result.sha256, result.size_bytes)
                )

    def _roll_back(self, epoch: int, reason: str) -> None:
        started = time.perf_counter()
        snapshot, tier = self.fast.latest(), "fast"
        if snapshot is None and self.checkpoints is not None:
            _info, snapshot = self.checkpoints.load_latest(self.device)
            tier = "full"
        if snapshot is None:
            self.sink.emit(RunFailed(epoch, f"no state to roll back to ({reason})"))
            self.stop.set()
            return
        restore(snapshot, self.host, self.optimizer, self.kasmina)
        self._load_controller(snapshot.controller, everything=False)
        self.lr.adjust(self.config.rollback_lr_factor)  # the same rate led here; go gentler
        self.fast.forget_latest()  # if this state fails again, the next rollback goes further back
        self._rollbacks += 1
        elapsed = round((time.perf_counter() - started) * 1000, 3)
        self.sink.emit(RolledBack(epoch, tier, reason, snapshot.epoch, elapsed))

    # -- what a snapshot holds besides tensors -------------------------------------------------

    def _capture(self, epoch: int) -> TrainingSnapshot:
        controller = self._controller()
        return capture(epoch, self.steps.global_step, self.host, self.optimizer, self.kasmina, controller)

    def _controller(self) -> dict[str, Any]:
        boundary = self.boundary
        return {
            "lr": self.lr.state_dict(),
            "tamiyo": self.tamiyo.state_dict(),
            "breakers": boundary.breaker_states(),
            "counters": [self._rollbacks, boundary.budget_overruns, boundary.consecutive_overruns],
        }

    def _load_controller(self, state: dict[str, Any], everything: bool) -> None:
        """A fast rollback rewinds the learning rate with the weights; Tamiyo keeps her memory of
        what happened (and her command ids keep counting). A resume restores everything."""
        self.lr.load_state_dict(state["lr"])
        if everything:
            self.tamiyo.load_state_dict(state["tamiyo"])
            self._rollbacks, overruns, consecutive = state["counters"]
            self.boundary.load(state["breakers"], overruns, consecutive)

    def _started(self) -> RunStarted:
        config = self.config
        return RunStarted(
            run_id=self.run_id,
            device=str(self.device),
            host_parameters=sum(p.numel() for p in self.host.parameters()),
            slots=tuple(SlotPlacement(s.index, s.point, s.features) for s in self.kasmina.all_slots()),
            epochs=config.epochs,
            batch_size=config.batch_size,
            seed=config.seed,
            budget_ms=config.budget.total_ms,
            learning_rate=config.learning_rate.base,
            checkpoint_every=config.checkpoint_every,
        )
