"""What a run is configured with: ``TrainingConfig`` (Tolaria's loop) and ``RunOptions`` (a whole
run: task, components, slots, device). Their defaults come from ``core.settings.TrainingSettings``,
where ``chronicle train`` and the ``train`` task take theirs too."""

from __future__ import annotations

from dataclasses import dataclass, field

from core.settings import TrainingSettings
from core.triad.data import HOST_POINTS, SpiralTask
from core.triad.guards import BoundaryBudget
from core.triad.kasmina import KasminaConfig
from core.triad.learning_rate import LearningRateSchedule
from core.triad.policy import HeuristicConfig, RiskConfig

__all__ = ["RunOptions", "TrainingConfig"]

_DEFAULTS = TrainingSettings()


@dataclass(frozen=True, slots=True)
class TrainingConfig:
    epochs: int = _DEFAULTS.epochs
    batch_size: int = _DEFAULTS.batch_size
    seed: int = _DEFAULTS.seed
    learning_rate: LearningRateSchedule = field(default_factory=LearningRateSchedule)
    budget: BoundaryBudget = field(default_factory=BoundaryBudget)
    grad_clip: float = 5.0
    rollback_capacity: int = 3
    rollback_lr_factor: float = 0.5
    checkpoint_every: int = _DEFAULTS.checkpoint_every
    metrics_window: int = 8
    breaker_failures: int = 3
    breaker_cooldown_epochs: int = 3


@dataclass(frozen=True, slots=True)
class RunOptions:
    run_id: str
    task: SpiralTask = field(default_factory=SpiralTask)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    kasmina: KasminaConfig = field(default_factory=KasminaConfig)
    heuristic: HeuristicConfig = field(default_factory=HeuristicConfig)
    risk: RiskConfig = field(default_factory=RiskConfig)
    points: tuple[str, ...] = HOST_POINTS
    slots_per_point: int = 1
    seeds: int | None = None  # total slots spread over the points; overrides slots_per_point
    device: str = _DEFAULTS.device

    def slot_counts(self) -> list[int]:
        if self.seeds is None:
            return [self.slots_per_point] * len(self.points)
        share, extra = divmod(self.seeds, len(self.points))
        return [share + (1 if i < extra else 0) for i in range(len(self.points))]
