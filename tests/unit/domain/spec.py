"""Given/when/then for deciders: given past events, when a command, then events or an error."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import pytest

from core.domain import Decider, DomainEvent

__all__ = ["Spec"]

C = TypeVar("C")
S = TypeVar("S")
E = TypeVar("E", bound=BaseException)


@dataclass(frozen=True)
class Spec(Generic[C, S]):
    decider: Decider[C, S]
    history: tuple[DomainEvent, ...] = ()
    command: C | None = None

    def given(self, *events: DomainEvent | Sequence[DomainEvent]) -> Spec[C, S]:
        flat: list[DomainEvent] = []
        for item in events:
            flat.extend(item if isinstance(item, Sequence) else [item])
        return Spec(self.decider, tuple(flat))

    def when(self, command: C) -> Spec[C, S]:
        return Spec(self.decider, self.history, command)

    @property
    def state(self) -> S:
        return self.decider.fold(self.history)

    def then(self, *expected: DomainEvent) -> S:
        """Assert the command produces exactly ``expected``; returns the state after them."""
        assert self.command is not None
        events = self.decider.decide(self.command, self.state)
        assert list(events) == list(expected)
        return self.decider.fold(events, self.state)

    def then_raises(self, error: type[E], **attributes: Any) -> E:
        """Assert the command is refused with ``error`` carrying ``attributes``."""
        assert self.command is not None
        with pytest.raises(error) as caught:
            self.decider.decide(self.command, self.state)
        for name, value in attributes.items():
            assert getattr(caught.value, name) == value, name
        return caught.value
