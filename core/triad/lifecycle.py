"""The seed lifecycle as data: the edges, the gate on each edge, and the alpha ramp.

Pure functions over plain values, so every edge and every refusal is testable without torch.

    DORMANT ─► GERMINATED ─► TRAINING ─► BLENDING ─► HOLDING ─► FOSSILIZED
                   │             │           │          │
                   └─────────────┴─────┬─────┴──────────┘
                                       ▼
    DORMANT ◄─ RESETTING ◄─ EMBARGOED ◄─ PRUNED

A slot moves along at most one edge per epoch boundary. Every stage but DORMANT has a minimum
dwell in epochs, so even a sequence of commands cannot rush a seed through its life: a seed
that germinated this epoch cannot train before the next one. Pruning needs no dwell: it is the
way out of trouble and must always be open to a live seed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from core.triad.contracts import AlphaCurve, SeedStage

__all__ = [
    "EDGES",
    "LIVE_STAGES",
    "AlphaSchedule",
    "GateFacts",
    "LifecycleConfig",
    "Verdict",
    "alpha_at",
    "gate",
]

S = SeedStage
EDGES: Mapping[SeedStage, frozenset[SeedStage]] = MappingProxyType(
    {
        S.DORMANT: frozenset({S.GERMINATED}),
        S.GERMINATED: frozenset({S.TRAINING, S.PRUNED}),
        S.TRAINING: frozenset({S.BLENDING, S.PRUNED}),
        S.BLENDING: frozenset({S.HOLDING, S.PRUNED}),
        S.HOLDING: frozenset({S.FOSSILIZED, S.PRUNED}),
        S.FOSSILIZED: frozenset(),
        S.PRUNED: frozenset({S.EMBARGOED}),
        S.EMBARGOED: frozenset({S.RESETTING}),
        S.RESETTING: frozenset({S.DORMANT}),
    }
)

#: Stages whose seed module exists and costs compute or memory.
LIVE_STAGES = frozenset({S.GERMINATED, S.TRAINING, S.BLENDING, S.HOLDING})


def _default_dwell() -> Mapping[SeedStage, int]:
    return MappingProxyType(
        {
            S.DORMANT: 0,
            S.GERMINATED: 1,
            S.TRAINING: 2,
            S.BLENDING: 1,
            S.HOLDING: 1,
            S.FOSSILIZED: 0,
            S.PRUNED: 1,
            S.EMBARGOED: 3,
            S.RESETTING: 1,
        }
    )


@dataclass(frozen=True, slots=True)
class LifecycleConfig:
    """Minimum epochs per stage and the bar a seed must clear to be fossilized.

    ``fossilize_threshold`` is in validation-accuracy points (0.01 = one percentage point) of
    counterfactual contribution: accuracy as blended minus accuracy with the seed's alpha at 0.
    """

    min_dwell: Mapping[SeedStage, int] = field(default_factory=_default_dwell)
    fossilize_threshold: float = 0.005

    def dwell(self, stage: SeedStage) -> int:
        return self.min_dwell.get(stage, 1)


@dataclass(frozen=True, slots=True)
class GateFacts:
    """What a gate looks at. ``contribution`` must have been measured in the current stage."""

    epochs_in_stage: int
    alpha_complete: bool = False
    contribution: float | None = None


@dataclass(frozen=True, slots=True)
class Verdict:
    allowed: bool
    reason: str


_ALLOW = Verdict(True, "ok")


def gate(current: SeedStage, target: SeedStage, facts: GateFacts, config: LifecycleConfig) -> Verdict:
    """Decide one edge. The first failing condition is the reason given."""
    if target not in EDGES[current]:
        return Verdict(False, f"{current.name} has no edge to {target.name}")
    if target is S.PRUNED:
        return _ALLOW
    if facts.epochs_in_stage < config.dwell(current):
        return Verdict(
            False,
            f"{current.name} needs {config.dwell(current)} epoch(s) of dwell, has {facts.epochs_in_stage}",
        )
    if current is S.BLENDING and not facts.alpha_complete:
        return Verdict(False, "alpha has not reached its target")
    if target is S.FOSSILIZED:
        return _fossilize_gate(facts, config)
    return _ALLOW


def _fossilize_gate(facts: GateFacts, config: LifecycleConfig) -> Verdict:
    if facts.contribution is None:
        return Verdict(False, "no counterfactual contribution measured while holding")
    if not facts.contribution >= config.fossilize_threshold:  # `not >=` also refuses NaN
        return Verdict(
            False,
            f"counterfactual contribution {facts.contribution:.4f} is under {config.fossilize_threshold:.4f}",
        )
    return _ALLOW


# -- alpha ---------------------------------------------------------------------------------------

_SIGMOID_STEEPNESS = 12.0


def _sigmoid01(t: float) -> float:
    """A logistic ramp rescaled so that it starts at exactly 0 and ends at exactly 1."""

    def raw(x: float) -> float:
        return 1.0 / (1.0 + math.exp(-_SIGMOID_STEEPNESS * (x - 0.5)))

    low, high = raw(0.0), raw(1.0)
    return (raw(t) - low) / (high - low)


def alpha_at(curve: AlphaCurve, progress: float) -> float:
    """The ramp's value in [0, 1] at ``progress`` in [0, 1]."""
    t = min(max(progress, 0.0), 1.0)
    if curve is AlphaCurve.LINEAR:
        return t
    if curve is AlphaCurve.COSINE:
        return 0.5 * (1.0 - math.cos(math.pi * t))
    return _sigmoid01(t)


@dataclass(frozen=True, slots=True)
class AlphaSchedule:
    """A ramp from ``start`` to ``target`` over ``steps`` training steps; a value, not a clock.

    Kasmina replaces its schedule each step with ``advanced()``, so a snapshot of the slot is a
    snapshot of its schedule, and a rollback rewinds the ramp with the weights.
    """

    curve: AlphaCurve
    steps: int
    target: float = 1.0
    start: float = 0.0
    done: int = 0

    @property
    def value(self) -> float:
        progress = 1.0 if self.steps <= 0 else self.done / self.steps
        return self.start + (self.target - self.start) * alpha_at(self.curve, progress)

    @property
    def complete(self) -> bool:
        return self.done >= self.steps

    def advanced(self) -> AlphaSchedule:
        if self.complete:
            return self
        return AlphaSchedule(self.curve, self.steps, self.target, self.start, self.done + 1)

    def retargeted(self, target: float) -> AlphaSchedule:
        """Ramp from where alpha is now to a new target over the steps that remain (at least 1)."""
        remaining = max(self.steps - self.done, 1)
        return AlphaSchedule(self.curve, remaining, target, self.value, 0)
