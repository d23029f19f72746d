"""Budgets and circuit breakers for the epoch boundary.

Breakers count in epochs, not seconds: a run's decisions must not depend on wall-clock time
beyond the overruns themselves, so that a resumed run can make the same calls again. A breaker
opens after ``failure_threshold`` consecutive failures (an exception or a budget overrun), stays
open ``cooldown_epochs`` epochs, then lets one call through (half-open): a success closes it, a
failure opens it again.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any

__all__ = ["BoundaryBudget", "BreakerState", "CircuitBreaker"]


@dataclass(frozen=True, slots=True)
class BoundaryBudget:
    """Milliseconds allowed to each part of the epoch boundary and to the whole of it."""

    gather_ms: float = 1.0
    decide_ms: float = 2.0
    apply_ms: float = 2.0
    total_ms: float = 5.0


class BreakerState(enum.Enum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


class CircuitBreaker:
    def __init__(self, name: str, failure_threshold: int = 3, cooldown_epochs: int = 3) -> None:
        self.name = name
        self.failure_threshold = failure_threshold
        self.cooldown_epochs = cooldown_epochs
        self.state = BreakerState.CLOSED
        self.failures = 0
        self.opened_at = -1

    def allows(self, epoch: int) -> bool:
        if self.state is BreakerState.OPEN and epoch >= self.opened_at + self.cooldown_epochs:
            self.state = BreakerState.HALF_OPEN
        return self.state is not BreakerState.OPEN

    def succeeded(self) -> bool:
        """Record a success; True when this closed an open breaker."""
        was_half_open = self.state is BreakerState.HALF_OPEN
        self.state, self.failures = BreakerState.CLOSED, 0
        return was_half_open

    def failed(self, epoch: int) -> bool:
        """Record a failure; True when this opened the breaker."""
        self.failures += 1
        if self.state is BreakerState.HALF_OPEN or self.failures >= self.failure_threshold:
            opening = self.state is not BreakerState.OPEN
            self.state, self.opened_at = BreakerState.OPEN, epoch
            return opening
        return False

    def state_dict(self) -> dict[str, Any]:
        return {"state": self.state.value, "failures": self.failures, "opened_at": self.opened_at}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.state = BreakerState(state["state"])
        self.failures = int(state["failures"])
        self.opened_at = int(state["opened_at"])
