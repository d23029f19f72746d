"""What a run reports: its counters while it runs (``RunProgress``), and when it ends
(``RunSummary``) accuracy with and without its seeds, what got fossilized and how much each
fossil contributes, and the boundary timings against their budget."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from core.domain.serialization import to_json_value
from core.triad.contracts import SeedStage
from core.triad.evaluation import FossilReport, LossFn, evaluate, measure_contributions
from core.triad.events import FossilSummary, RunCompleted, finite_or_none
from core.triad.kasmina import Kasmina

__all__ = ["RunProgress", "RunSummary", "percentiles", "summarise"]


@dataclass(frozen=True, slots=True)
class RunProgress:
    """A run's counters at one moment (``Tolaria.progress()``): ``epoch`` is the next epoch to
    train, ``boundary_ms`` every boundary's timing per part (gather, decide, apply, total)."""

    epoch: int
    global_step: int
    rollbacks: int
    budget_overruns: int
    resumed_from: int | None
    boundary_ms: Mapping[str, tuple[float, ...]]


@dataclass(frozen=True, slots=True)
class RunSummary:
    run_id: str
    epochs_completed: int
    stopped: bool
    val_loss: float
    val_accuracy: float
    val_accuracy_without_seeds: float
    fossilized: tuple[FossilReport, ...]
    final_stages: tuple[tuple[int, str], ...]
    rollbacks: int
    budget_overruns: int
    boundary_ms: dict[str, dict[str, float]]
    resumed_from_epoch: int | None

    def to_event(self) -> RunCompleted:
        return RunCompleted(
            run_id=self.run_id,
            epochs_completed=self.epochs_completed,
            stopped=self.stopped,
            val_loss=finite_or_none(self.val_loss),
            val_accuracy=self.val_accuracy,
            val_accuracy_without_seeds=self.val_accuracy_without_seeds,
            seed_gain=self.val_accuracy - self.val_accuracy_without_seeds,
            fossilized=tuple(
                FossilSummary(f.slot, f.blueprint.name if f.blueprint else None, f.contribution)
                for f in self.fossilized
            ),
            final_stages={str(slot): stage for slot, stage in self.final_stages},
            rollbacks=self.rollbacks,
            budget_overruns=self.budget_overruns,
            boundary_ms=self.boundary_ms,
            resumed_from_epoch=self.resumed_from_epoch,
        )

    def to_data(self) -> dict[str, Any]:
        """The summary as ``RunCompleted`` stores it."""
        return to_json_value(self.to_event())


def summarise(
    run_id: str,
    progress: RunProgress,
    stopped: bool,
    host: nn.Module,
    kasmina: Kasmina,
    validation: tuple[torch.Tensor, torch.Tensor],
    loss_fn: LossFn,
) -> RunSummary:
    """The final evaluation: with the seeds, with every grafted seed forced to alpha 0, and each
    fossil's counterfactual contribution."""
    x, y = validation
    final = evaluate(host, x, y, loss_fn)
    grafted = [s.index for s in kasmina.all_slots() if s.seed is not None]
    with kasmina.alpha_forced(grafted, 0.0):
        without = evaluate(host, x, y, loss_fn)
    fossils = measure_contributions(host, kasmina, (SeedStage.FOSSILIZED,), final, x, y, loss_fn)
    return RunSummary(
        run_id=run_id,
        epochs_completed=progress.epoch,
        stopped=stopped,
        val_loss=final.loss,
        val_accuracy=final.accuracy,
        val_accuracy_without_seeds=without.accuracy,
        fossilized=tuple(
            FossilReport(f.slot, kasmina.slot(f.slot).record.blueprint, f.contribution) for f in fossils
        ),
        final_stages=tuple((s.slot, s.stage.name) for s in kasmina.states()),
        rollbacks=progress.rollbacks,
        budget_overruns=progress.budget_overruns,
        boundary_ms={part: percentiles(list(values)) for part, values in progress.boundary_ms.items()},
        resumed_from_epoch=progress.resumed_from,
    )


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4)

    return {"p50": at(0.5), "p95": at(0.95), "p99": at(0.99), "max": round(ordered[-1], 4)}
