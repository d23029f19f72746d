"""One epoch of training: the steps (host and seeds together), their metric windows, validation.

Per-step metrics are materialised in windows of ``metrics_window`` steps: each step leaves its
loss and gradient norm as tensors on the device, and one ``tolist`` per window brings the whole
window over. On a GPU the step thread therefore synchronises with the device once per window
rather than once per metric, and emission itself never touches the device.

Train accuracy rides in the same transfer. Each step keeps its logits (a detached reference,
no copy) and targets; the window counts the correct predictions of all its steps at once, on
the device, and that one number joins the window's ``tolist``. Counting per window rather than
per step costs a handful of tensor operations per window instead of per step.

After the steps, a validation pass, and the counterfactual contribution of every blending or
holding seed (one more validation pass each, with that seed's alpha forced to 0).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

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
    """Up to ``metrics_window`` steps still on the device, and the epoch's numbers so far."""

    pending: list[torch.Tensor] = field(default_factory=list)  # [loss, gradient norm] per step
    logits: list[torch.Tensor] = field(default_factory=list)
    targets: list[torch.Tensor] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    norms: list[float] = field(default_factory=list)
    correct: float = 0.0
    seen: int = 0

    def add(self, numbers: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor) -> None:
        self.pending.append(numbers)
        self.logits.append(logits)
        self.targets.append(targets)

    def accuracy(self) -> float:
        return self.correct / self.seen if self.seen else math.nan


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
        window = _Window()
        config = self.config
        for index, (x, y) in enumerate(batches(self.dataset, config.batch_size, epoch, config.seed)):
            if self.stop.is_set():
                return None
            window.add(*self._step(x, y), y)
            if self.on_step is not None:
                self.on_step(epoch, index)
            if len(window.pending) >= config.metrics_window and not self._flush(epoch, rate, window):
                break  # a non-finite loss: stop wasting steps, the boundary will roll back
        self._flush(epoch, rate, window)
        return EpochResult(
            _mean(window.losses),
            window.accuracy(),
            window.norms[-1] if window.norms else math.nan,
            self._validate(),
        )

    def _step(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One step; its [loss, gradient norm] and its logits, both still on the device."""
        self.optimizer.zero_grad(set_to_none=True)
        self.kasmina.zero_grad()
        logits = self.host(x)
        loss = self.loss_fn(logits, y)
        loss.backward()  # type: ignore[no-untyped-call]  # Tensor.backward is untyped in torch's stubs
        norm = nn.utils.clip_grad_norm_(self.host.parameters(), self.config.grad_clip)
        self.optimizer.step()
        self.kasmina.step()
        self.global_step += 1
        return torch.stack([loss.detach(), norm.to(loss.dtype)]), logits.detach()

    def _flush(self, epoch: int, rate: float, window: _Window) -> bool:
        """Materialise the pending steps with one transfer and emit their metrics; False if any
        loss among them is not finite."""
        if not window.pending:
            return True
        steps = torch.stack(window.pending)
        targets = torch.cat(window.targets)
        correct = (torch.cat(window.logits).argmax(dim=-1) == targets).sum(dtype=steps.dtype)
        *flat, hits = torch.cat([steps.flatten(), correct.view(1)]).tolist()  # the one transfer
        values = list(zip(flat[::2], flat[1::2], strict=True))
        first_step = self.global_step - len(values) + 1
        for offset, (loss, norm) in enumerate(values):
            window.losses.append(loss)
            window.norms.append(norm)
            metrics = (("loss", loss), ("grad_norm", norm), ("lr", rate))
            self.sink.metric(TelemetryPacket(epoch, first_step + offset, metrics))
        window.correct += hits
        window.seen += int(targets.shape[0])
        for kept in (window.pending, window.logits, window.targets):
            kept.clear()
        return all(math.isfinite(loss) for loss, _ in values)

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
