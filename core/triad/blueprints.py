"""Seed architectures. A seed computes a residual ``f(h)`` on the host's features at its slot.

Every blueprint ends in a zero-initialised layer, so a germinated seed computes exactly 0 and
the slot's output ``h + alpha * f(h)`` is the host's own until the seed has learned something.
Initialisation draws from a generator the caller passes in, never from the global RNG, so a
germination replays identically after a resume.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import nn

from core.triad.contracts import Blueprint

__all__ = ["build_seed", "seed_parameter_count"]


class _Residual(nn.Module):
    """in -> hidden -> activation -> out, the out layer zeroed."""

    def __init__(self, features: int, hidden: int, activation: nn.Module, bias: bool = True) -> None:
        super().__init__()
        self.expand = nn.Linear(features, hidden, bias=bias)
        self.activation = activation
        self.project = nn.Linear(hidden, features, bias=bias)

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.project(self.activation(self.expand(h)))  # type: ignore[no-any-return]  # nn.Linear is untyped


def _residual_mlp(features: int) -> nn.Module:
    return _Residual(features, 4 * features, nn.GELU())


def _bottleneck(features: int) -> nn.Module:
    return _Residual(features, max(features // 2, 2), nn.GELU())


def _low_rank(features: int) -> nn.Module:
    return _Residual(features, max(features // 4, 2), nn.Tanh(), bias=False)


_BUILDERS: dict[Blueprint, Callable[[int], nn.Module]] = {
    Blueprint.RESIDUAL_MLP: _residual_mlp,
    Blueprint.BOTTLENECK: _bottleneck,
    Blueprint.LOW_RANK: _low_rank,
}


def build_seed(blueprint: Blueprint, features: int, generator: torch.Generator) -> nn.Module:
    """A new seed for a slot whose features have ``features`` channels (the last dimension)."""
    seed = _BUILDERS[blueprint](features)
    _initialise(seed, generator)
    return seed


def _initialise(seed: nn.Module, generator: torch.Generator) -> None:
    linears = [m for m in seed.modules() if isinstance(m, nn.Linear)]
    with torch.no_grad():
        for layer in linears[:-1]:
            bound = 1.0 / math.sqrt(layer.in_features)
            layer.weight.uniform_(-bound, bound, generator=generator)
            if layer.bias is not None:
                layer.bias.uniform_(-bound, bound, generator=generator)
        last = linears[-1]
        last.weight.zero_()
        if last.bias is not None:
            last.bias.zero_()


def seed_parameter_count(blueprint: Blueprint, features: int) -> int:
    return sum(p.numel() for p in _BUILDERS[blueprint](features).parameters())
