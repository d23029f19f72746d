"""Validation passes: the metric, the counterfactual contribution of each seed, the run summary.

A seed's counterfactual contribution is validation accuracy as the network stands minus the
same with that seed's alpha forced to 0. It costs one extra validation pass per seed measured,
which is why Tolaria measures only seeds that are blending or holding (the ones a decision
hangs on) each epoch, and fossilized ones once, for the summary.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from core.triad.contracts import Blueprint, SeedStage
from core.triad.kasmina import Kasmina

__all__ = ["Evaluation", "FossilReport", "LossFn", "SeedContribution", "evaluate", "measure_contributions"]

LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
_CHUNK = 8192


@dataclass(frozen=True, slots=True)
class Evaluation:
    loss: float
    accuracy: float


@dataclass(frozen=True, slots=True)
class SeedContribution:
    slot: int
    contribution: float


@dataclass(frozen=True, slots=True)
class FossilReport:
    slot: int
    blueprint: Blueprint | None
    contribution: float


@torch.no_grad()
def evaluate(host: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: LossFn) -> Evaluation:
    was_training = host.training
    host.eval()
    total_loss = torch.zeros((), device=x.device)
    correct = torch.zeros((), device=x.device)
    for start in range(0, x.shape[0], _CHUNK):
        logits = host(x[start : start + _CHUNK])
        target = y[start : start + _CHUNK]
        total_loss += loss_fn(logits, target) * target.shape[0]
        correct += (logits.argmax(dim=-1) == target).sum()
    host.train(was_training)
    n = max(int(x.shape[0]), 1)
    loss, hits = torch.stack([total_loss, correct]).tolist()  # one device sync for both
    return Evaluation(loss / n, hits / n)


def measure_contributions(
    host: nn.Module,
    kasmina: Kasmina,
    stages: Sequence[SeedStage],
    baseline: Evaluation,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_fn: LossFn,
) -> list[SeedContribution]:
    """Each seed's accuracy gain over the same network with that seed's alpha at 0."""
    found: list[SeedContribution] = []
    for slot in kasmina.all_slots():
        if slot.record.stage not in stages:
            continue
        with kasmina.alpha_forced([slot.index], 0.0):
            without = evaluate(host, x, y, loss_fn)
        found.append(SeedContribution(slot.index, baseline.accuracy - without.accuracy))
    return found
