"""What a finished run reports: accuracy with and without its seeds, what got fossilized and
how much each fossil contributes, and the boundary timings against their budget."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.triad.contracts import finite_or_none
from core.triad.evaluation import FossilReport

__all__ = ["RunSummary", "percentiles"]


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

    def to_data(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "epochs_completed": self.epochs_completed,
            "stopped": self.stopped,
            "val_loss": finite_or_none(self.val_loss),
            "val_accuracy": self.val_accuracy,
            "val_accuracy_without_seeds": self.val_accuracy_without_seeds,
            "seed_gain": self.val_accuracy - self.val_accuracy_without_seeds,
            "fossilized": [
                {
                    "slot": f.slot,
                    "blueprint": f.blueprint.name if f.blueprint else None,
                    "contribution": f.contribution,
                }
                for f in self.fossilized
            ],
            "final_stages": {str(slot): stage for slot, stage in self.final_stages},
            "rollbacks": self.rollbacks,
            "budget_overruns": self.budget_overruns,
            "boundary_ms": self.boundary_ms,
            "resumed_from_epoch": self.resumed_from_epoch,
        }


def percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    ordered = sorted(values)

    def at(q: float) -> float:
        return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 4)

    return {"p50": at(0.5), "p95": at(0.95), "p99": at(0.99), "max": round(ordered[-1], 4)}
