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
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, TypeVar, cast

from core.domain.contracts import DomainEvent, UnknownEvent
from core.domain.serialization import builds_without_init, compile_function, slot_setters

__all__ = ["Decider", "with_changes", "with_changes_to"]

C = TypeVar("C")
S = TypeVar("S")
T = TypeVar("T")

# value, changes -> a copy of value with changes applied
_Copier = Callable[[Any, Mapping[str, Any]], Any]

_COPIERS: dict[type, _Copier] = {}


def with_changes(value: T, **changes: Any) -> T:
    """A copy of the frozen dataclass ``value`` with ``changes`` applied.

    ``evolve`` runs once per event of every replay, so this is the fold's inner loop. For a
    slotted dataclass without ``__post_init__`` the copy is built by a function generated once
    per class: it allocates the instance and fills every slot through the slot's own
    descriptor, then overwrites the changed ones. That skips the frozen ``__init__``, which
    stores each field through ``object.__setattr__`` and costs twice as much. Nothing is lost
    by skipping it: every value being copied already sat in an instance of the same class, and
    the fields are the same ones ``__init__`` would set. Other dataclasses go through their
    constructor. An unknown field name raises TypeError, as ``dataclasses.replace`` does.
    """
    copier = _COPIERS.get(type(value)) or _learn_copier(value)
    return cast(T, copier(value, changes))


def with_changes_to(cls: type[T], *names: str) -> Callable[..., T]:
    """``with_changes`` for a change set known in advance: ``copy(value, *new_values)``.

    The events that make up most of a long stream change the same fields every time (a
    progress report: ``progress`` and ``updated_at``). This builds their copy once, taking the
    new values positionally in the order of ``names``, which saves the keyword dict that
    ``with_changes`` builds and walks per call (about a third of its cost). A name that is not
    a field raises TypeError here, when the aggregate's module is imported.
    """
    fields = _init_fields(cls)
    for name in names:
        if name not in fields:
            raise _no_field(cls, name)
    if len(set(names)) != len(names):
        raise TypeError(f"with_changes_to({cls.__qualname__}): a field is named twice in {names}")
    if not builds_without_init(cls):
        return lambda value, *items: with_changes(value, **dict(zip(names, items, strict=True)))
    params = {name: f"new_{i}" for i, name in enumerate(names)}
    env, lines = _fill(cls, fields, lambda name: params.get(name, f"value.{name}"))
    copy: Callable[..., T] = compile_function(
        "copy_with_" + "_".join(names), ["value", *params.values()], [*lines, "return instance"], env, cls
    )
    return copy


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


def _learn_copier(value: object) -> _Copier:
    if isinstance(value, type):
        raise TypeError(f"with_changes needs a dataclass instance, got {value!r}")
    cls = type(value)
    names = _init_fields(cls)
    copier = _slot_copier(cls, names) if builds_without_init(cls) else _constructor_copier(cls, names)
    _COPIERS[cls] = copier
    return copier


def _init_fields(cls: type) -> tuple[str, ...]:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"with_changes needs a dataclass, got {cls!r}")
    fields = dataclasses.fields(cls)
    if any(not f.init for f in fields):
        raise TypeError(f"{cls.__qualname__} has fields outside __init__; use dataclasses.replace")
    return tuple(f.name for f in fields)


def _fill(
    cls: type, names: tuple[str, ...], source_of: Callable[[str], str]
) -> tuple[dict[str, Any], list[str]]:
    """Lines that allocate ``instance`` and store ``source_of(name)`` in each slot, and their globals."""
    setters = slot_setters(cls, names)
    env: dict[str, Any] = {"new": object.__new__, "cls": cls}
    env |= {f"set_{i}": setter for i, setter in enumerate(setters)}
    lines = ["instance = new(cls)", *(f"set_{i}(instance, {source_of(n)})" for i, n in enumerate(names))]
    return env, lines


def _slot_copier(cls: type, names: tuple[str, ...]) -> _Copier:
    env, lines = _fill(cls, names, lambda name: f"value.{name}")
    env |= {"by_name": dict(zip(names, slot_setters(cls, names), strict=True)), "no_field": _no_field}
    body = [
        *lines,
        "for name, item in changes.items():",
        "    setter = by_name.get(name)",
        "    if setter is None:",
        "        raise no_field(cls, name)",
        "    setter(instance, item)",
        "return instance",
    ]
    copier: _Copier = compile_function("copy_with", ["value", "changes"], body, env, cls)
    return copier


def _constructor_copier(cls: type, names: tuple[str, ...]) -> _Copier:
    index = {name: i for i, name in enumerate(names)}

    def copier(value: Any, changes: Mapping[str, Any]) -> Any:
        values = [getattr(value, name) for name in names]
        for name, item in changes.items():
            try:
                values[index[name]] = item
            except KeyError:
                raise _no_field(cls, name) from None
        return cls(*values)

    return copier


def _no_field(cls: type, name: str) -> TypeError:
    return TypeError(f"{cls.__qualname__} has no field {name!r}")
