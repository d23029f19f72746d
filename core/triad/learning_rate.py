"""The one learning-rate controller of a run.

Nothing else writes a learning rate: no torch scheduler steps behind its back, Tamiyo asks for
a change through an AdjustLearningRate command, and a rollback restores the controller with the
weights. That is how the seed project avoided optimizers and schedulers disagreeing after a
restore.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

import torch

from core.settings import TrainingSettings

__all__ = ["LearningRateController", "LearningRateSchedule"]


_DEFAULTS = TrainingSettings()


@dataclass(frozen=True, slots=True)
class LearningRateSchedule:
    base: float = _DEFAULTS.learning_rate
    total_epochs: int = _DEFAULTS.epochs
    warmup_epochs: int = 1
    shape: Literal["cosine", "constant"] = "cosine"
    floor_ratio: float = 0.05
    min_scale: float = 0.01
    max_scale: float = 10.0


class LearningRateController:
    def __init__(self, schedule: LearningRateSchedule) -> None:
        self.schedule = schedule
        self.scale = 1.0

    def rate(self, epoch: int) -> float:
        s = self.schedule
        if epoch < s.warmup_epochs:
            shape = (epoch + 1) / (s.warmup_epochs + 1)
        elif s.shape == "constant":
            shape = 1.0
        else:
            span = max(s.total_epochs - s.warmup_epochs, 1)
            progress = min((epoch - s.warmup_epochs) / span, 1.0)
            shape = s.floor_ratio + (1 - s.floor_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
        return s.base * self.scale * shape

    def adjust(self, factor: float) -> float:
        """Multiply the scale by ``factor`` (clamped); returns the new scale."""
        if not math.isfinite(factor) or factor <= 0:
            raise ValueError(f"learning-rate factor must be a positive number, got {factor}")
        s = self.schedule
        self.scale = min(max(self.scale * factor, s.min_scale), s.max_scale)
        return self.scale

    def apply(self, epoch: int, optimizers: Iterable[torch.optim.Optimizer]) -> float:
        rate = self.rate(epoch)
        for optimizer in optimizers:
            for group in optimizer.param_groups:
                group["lr"] = rate
        return rate

    def state_dict(self) -> dict[str, Any]:
        return {"scale": self.scale}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.scale = float(state["scale"])
