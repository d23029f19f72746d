"""One epoch of training: the steps (host and seeds together), their metric windows, validation.

Per-step metrics are materialised in windows of ``metrics_window`` steps: each step leaves its
loss, gradient norm and count of correct predictions as tensors on the device, and one
``tolist`` per window brings the whole window over. On a GPU the step thread therefore
synchronises with the device once per window rather than once per metric, and emission itself
never touches the device. The correct-prediction count rides in the same transfer; it is what
the epoch's train accuracy is made of.

After the steps, a validation pass, and the counterfactual contribution of every blending or
holding seed (one more validation pass each, with that seed's alpha forced to 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from core.triad.config import TrainingConfig
from core.triad.contracts import SeedStage, TelemetryPacket
from core.triad.data import Dataset, batches
from core.triad.evaluation import Evaluation, LossFn, evaluate, measure_contributions
from core.triad.kasmina import Kasmina
from core.triad.ports import EventSink, StopFlag

__all__ = ["EpochResult", "StepLoop"]

_MEASURED = (SeedStage.BLENDING, SeedStage.HOLDING)


@dataclass(frozen=True, slots=True)
class EpochResult:
    train_loss: float
    train_accuracy: float
    gradient_norm: float
    validation: Evaluation


@dataclass(slots=True)
class _Window:
    """Up to ``metrics_window`` steps' numbers, still on the device, and the epoch's totals."""

    pending: list[torch.Tensor]  # one [loss, gradient norm, correct] per step
    samples: list[int]
    losses: list[float]
    norms: list[float]
    correct: float = 0.0
    seen: int = 0


class StepLoop:
    """Trains the host and its seeds for one epoch at a time; counts the run's global steps."""

    def __init__(
        self,
        host: nn.Module,
        dataset: Dataset,
        kasmina: Kasmina,
        optimizer: torch.optim.Optimizer,
        config: TrainingConfig,
        sink: EventSink,
        loss_fn: LossFn,
        *,
        stop: StopFlag,
        on_step: Callable[[int, int], None] | None = None,
    ) -> None:
        self.host, self.dataset, self.kasmina, self.optimizer = host, dataset, kasmina, optimizer
        self.config, self.sink, self.loss_fn = config, sink, loss_fn
        self.stop, self.on_step = stop, on_step
        self.global_step = 0

    def train_epoch(self, epoch: int, rate: float) -> EpochResult | None:
        """Train ``epoch`` at learning rate ``rate`` and validate; None if a stop cut it short."""
        self.host.train()
        window = _Window([], [], [], [])
        config = self.config
        for index, (x, y) in enumerate(batches(self.dataset, config.batch_size, epoch, config.seed)):
            if self.stop.is_set():
                return None
            window.pending.append(self._step(x, y))
            window.samples.append(int(y.shape[0]))
            if self.on_step is not None:
                self.on_step(epoch, index)
            if len(window.pending) >= config.metrics_window and not self._flush(epoch, rate, window):
                break  # a non-finite loss: stop wasting steps, the boundary will roll back
        self._flush(epoch, rate, window)
        return EpochResult(
            _mean(window.losses),
            window.correct / window.seen if window.seen else math.nan,
            window.norms[-1] if window.norms else math.nan,
            self._validate(),
        )

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        self.optimizer.zero_grad(set_to_none=True)
        self.kasmina.zero_grad()
        logits = self.host(x)
        loss = self.loss_fn(logits, y)
        loss.backward()  # type: ignore[no-untyped-call]  # Tensor.backward is untyped in torch's stubs
        norm = nn.utils.clip_grad_norm_(self.host.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.kasmina.step()
        self.global_step += 1
        correct = (logits.detach().argmax(dim=-1) == y).sum(dtype=loss.dtype)
        return torch.stack([loss.detach(), norm.to(loss.dtype), correct])

    def _flush(self, epoch: int, rate: float, window: _Window) -> bool:
        """Materialise the pending steps with one transfer and emit their metrics; False if any
        loss among them is not finite."""
        if not window.pending:
            return True
        values: list[list[float]] = torch.stack(window.pending).tolist()
        first_step = self.global_step - len(values) + 1
        for offset, (loss, norm, correct) in enumerate(values):
            window.losses.append(loss)
            window.norms.append(norm)
            window.correct += correct
            metrics = (("loss", loss), ("grad_norm", norm), ("lr", rate))
            self.sink.metric(TelemetryPacket(epoch, first_step + offset, metrics))
        window.seen += sum(window.samples)
        window.pending.clear()
        window.samples.clear()
        return all(math.isfinite(loss) for loss, _, _ in values)

    def _validate(self) -> Evaluation:
        x, y = self.dataset.val_x, self.dataset.val_y
        validation = evaluate(self.host, x, y, self.loss_fn)
        for found in measure_contributions(
            self.host, self.kasmina, _MEASURED, validation, x, y, self.loss_fn
        ):
            self.kasmina.record_contribution(found.slot, found.contribution)
        return validation


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan
