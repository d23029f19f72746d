"""The default task: interleaved spirals, generated deterministically, so a run needs no network.

The task is chosen so that seeds have to earn their place. The default host is an MLP eight
units wide: it cannot carve five interleaved spiral arms apart (about a third of the validation
points right), while a residual seed of 32 hidden units at its narrow points roughly doubles
that. A seed that does not help is visible too: its counterfactual contribution stays near 0
and the heuristic policy prunes it.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import torch
from torch import nn

__all__ = ["HOST_POINTS", "Dataset", "SpiralTask", "batches", "default_host", "make_dataset", "wide_host"]

#: Where the default host takes seed slots: after each hidden activation.
HOST_POINTS = ("stem_act", "hidden_act")


@dataclass(frozen=True, slots=True)
class SpiralTask:
    classes: int = 5
    turns: float = 1.75
    noise: float = 0.015
    train_size: int = 4096
    val_size: int = 1024
    host_width: int = 8
    seed: int = 0


@dataclass(frozen=True, slots=True)
class Dataset:
    train_x: torch.Tensor
    train_y: torch.Tensor
    val_x: torch.Tensor
    val_y: torch.Tensor
    classes: int

    @property
    def features(self) -> int:
        return int(self.train_x.shape[1])

    def to(self, device: torch.device) -> Dataset:
        return Dataset(
            self.train_x.to(device),
            self.train_y.to(device),
            self.val_x.to(device),
            self.val_y.to(device),
            self.classes,
        )


def make_dataset(task: SpiralTask) -> Dataset:
    """Train and validation points from one generator, split after drawing, so both come from
    the same distribution and the same seed gives the same bytes on every machine."""
    generator = torch.Generator().manual_seed(task.seed)
    total = task.train_size + task.val_size
    labels = torch.randint(0, task.classes, (total,), generator=generator)
    radius = torch.rand(total, generator=generator)
    angle = radius * task.turns * 2 * math.pi + labels * (2 * math.pi / task.classes)
    points = torch.stack([radius * torch.cos(angle), radius * torch.sin(angle)], dim=1)
    points = 2.0 * (points + task.noise * torch.randn(total, 2, generator=generator))
    n = task.train_size
    return Dataset(points[:n], labels[:n], points[n:], labels[n:], task.classes)


def default_host(features: int, width: int, classes: int, generator_seed: int = 0) -> nn.Sequential:
    """stem -> ReLU -> hidden -> ReLU -> head, with slots expected at ``HOST_POINTS``."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(generator_seed)
        return nn.Sequential(
            OrderedDict(
                stem=nn.Linear(features, width),
                stem_act=nn.ReLU(),
                hidden=nn.Linear(width, width),
                hidden_act=nn.ReLU(),
                head=nn.Linear(width, classes),
            )
        )


def wide_host(parameters: int, features: int = 64, classes: int = 10) -> nn.Sequential:
    """A two-hidden-layer MLP with about ``parameters`` weights (benchmarks of rollback cost)."""
    width = int((-(features + classes + 2) + math.sqrt((features + classes + 2) ** 2 + 4 * parameters)) / 2)
    return nn.Sequential(
        OrderedDict(
            stem=nn.Linear(features, width),
            stem_act=nn.ReLU(),
            hidden=nn.Linear(width, width),
            hidden_act=nn.ReLU(),
            head=nn.Linear(width, classes),
        )
    )


def batches(
    dataset: Dataset, batch_size: int, epoch: int, seed: int
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """This epoch's minibatches in an order fixed by (seed, epoch): a resumed run sees the
    same batches in the same order as an uninterrupted one."""
    generator = torch.Generator().manual_seed(seed * 100_003 + epoch)
    order = torch.randperm(dataset.train_x.shape[0], generator=generator).to(dataset.train_x.device)
    for start in range(0, order.numel(), batch_size):
        index = order[start : start + batch_size]
        yield dataset.train_x[index], dataset.train_y[index]
