"""The shape every aggregate shares: pure ``decide`` and ``evolve`` plus what snapshots need.

An aggregate is a value, never an object with methods that write: ``decide(command, state)``
returns the events a command produces (or raises a CommandRefused), ``evolve(state, event)``
returns the next state. Both are pure, so replaying the same events always yields the same
state, and time travel is a fold over a prefix of the stream.

``evolve`` applies facts: it does not re-check the transition, because an event in the log has
already happened and replay must reproduce it even if today's rules would refuse it.

States are frozen and JSON-ready (``state_to_json`` / ``state_from_json``) so a snapshot can
store one. ``state_schema_version`` must go up whenever the state's shape or the meaning of
``evolve`` changes; a snapshot taken under another version is ignored and the stream replayed.
"""

from __future__ import annotations

import dataclasses
import operator
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from core.domain.contracts import DomainEvent, UnknownEvent

__all__ = ["Decider", "with_changes"]

C = TypeVar("C")
S = TypeVar("S")
T = TypeVar("T")

_FIELDS: dict[type, tuple[dict[str, int], Callable[[Any], tuple[Any, ...]]]] = {}


def with_changes(value: T, **changes: Any) -> T:
    """A copy of the frozen dataclass ``value`` with ``changes`` applied.

    ``evolve`` runs once per event of every replay. ``dataclasses.replace`` re-reads the
    field list and builds keyword arguments on every call; this fetches every field in one C
    call (``attrgetter``), patches the changed positions and calls the constructor
    positionally, which takes about two thirds of the time. An unknown field name raises
    TypeError, as ``replace`` does.
    """
    index, get_all = _FIELDS.get(type(value)) or _learn_fields(value)
    values = list(get_all(value))
    for name, item in changes.items():
        try:
            values[index[name]] = item
        except KeyError:
            raise TypeError(f"{type(value).__qualname__} has no field {name!r}") from None
    return type(value)(*values)


@dataclasses.dataclass(frozen=True, slots=True)
class Decider(Generic[C, S]):
    """One aggregate's decider: its stream category, initial state and pure functions."""

    category: str
    initial_state: S
    decide: Callable[[C, S], Sequence[DomainEvent]]
    evolve: Callable[[S, DomainEvent | UnknownEvent], S]
    state_schema_version: int
    state_to_json: Callable[[S], dict[str, Any]]
    state_from_json: Callable[[Mapping[str, Any]], S]

    def stream_id(self, aggregate_id: str) -> str:
        """The stream that holds the aggregate ``aggregate_id``: ``<category>-<id>``."""
        return f"{self.category}-{aggregate_id}"

    def fold(self, events: Iterable[DomainEvent | UnknownEvent], state: S | None = None) -> S:
        """The state after applying ``events`` in order to ``state`` (default: the initial state)."""
        current = self.initial_state if state is None else state
        evolve = self.evolve
        for event in events:
            current = evolve(current, event)
        return current


def _learn_fields(value: object) -> tuple[dict[str, int], Callable[[Any], tuple[Any, ...]]]:
    if not dataclasses.is_dataclass(value) or isinstance(value, type):
        raise TypeError(f"with_changes needs a dataclass instance, got {value!r}")
    fields = dataclasses.fields(value)
    if any(not f.init for f in fields):
        raise TypeError(f"{type(value).__qualname__} has fields outside __init__; use dataclasses.replace")
    names = tuple(f.name for f in fields)

    def one_by_one(item: Any) -> tuple[Any, ...]:
        return tuple(getattr(item, name) for name in names)

    # attrgetter of two or more names returns a tuple; of one name it returns the bare value.
    get_all: Callable[[Any], tuple[Any, ...]] = operator.attrgetter(*names) if len(names) > 1 else one_by_one
    learned = ({name: i for i, name in enumerate(names)}, get_all)
    _FIELDS[type(value)] = learned
    return learned
