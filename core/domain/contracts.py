"""Versioned event contracts: the registry from (type, schema version) to a frozen event type.

A stored event is never rewritten. When a contract changes, its ``SCHEMA_VERSION`` goes up by
one and an ``Upcaster`` is registered that turns the previous version's ``data`` into the new
shape. Reading an event runs the chain of upcasters from the version it was written with up to
the current one, then builds the current type; replays, projections and deciders only ever see
current types. An upcaster is a pure function of the old data: it may rename, split or derive
fields and supply defaults, but it cannot look at other events or at the clock, so an old event
upcasts to the same value every time it is read.

Reading fails loudly by default: an unknown type, a version with no path to the current one,
or data that does not fit the contract raises an error that names the type and version. Tools
that must show whatever is in a stream (audit, time travel over a log written by newer code)
read with ``lenient=True`` and get an ``UnknownEvent`` holding the raw payload instead.
"""

from __future__ import annotations

import collections.abc
import dataclasses
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, ClassVar, Literal, overload
from uuid import UUID

from core.domain.errors import (
    InvalidShape,
    MalformedEvent,
    UnknownEventType,
    UnknownSchemaVersion,
    UnreadableEvent,
)
from core.domain.serialization import decoder_of, from_json_value, to_json_value
from core.events import NewEvent, RecordedEvent
from core.privacy import Personal

__all__ = ["DomainEvent", "EventRegistry", "UnknownEvent", "Upcaster"]


class DomainEvent:
    """Base of every domain event: a frozen dataclass that names its contract and version."""

    __slots__ = ()

    TYPE: ClassVar[str]
    SCHEMA_VERSION: ClassVar[int]
    # Personal fields and their subject's field (core.privacy): sealed on append, forgettable.
    PERSONAL: ClassVar[Personal | None] = None


@dataclasses.dataclass(frozen=True, slots=True)
class UnknownEvent:
    """What a lenient read returns for an event it cannot decode; deciders leave state as is."""

    type: str
    schema_version: int
    data: Mapping[str, Any]
    reason: str


@dataclasses.dataclass(frozen=True, slots=True)
class Upcaster:
    """Turns ``data`` of ``type`` at ``from_version`` into the shape of ``from_version + 1``."""

    type: str
    from_version: int
    upcast: Callable[[Mapping[str, Any]], Mapping[str, Any]]


class EventRegistry:
    """The contracts a process can read and write. Immutable once built."""

    __slots__ = ("_current", "_decoders", "_personal", "_upcasters")

    def __init__(self, contracts: Iterable[type[DomainEvent]], upcasters: Iterable[Upcaster] = ()) -> None:
        self._current: dict[str, type[DomainEvent]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        # type -> (current version, compiled decoder): what ``read`` needs, in one lookup
        self._decoders: dict[str, tuple[int, Callable[[Any], DomainEvent]]] = {}
        self._personal: dict[str, Personal] = {}
        for contract in contracts:
            self._add_contract(contract)
        for upcaster in upcasters:
            self._add_upcaster(upcaster)

    def _add_contract(self, contract: type[DomainEvent]) -> None:
        params = getattr(contract, "__dataclass_params__", None)
        if params is None or not params.frozen:
            raise TypeError(f"{contract.__qualname__} must be a frozen dataclass")
        if not isinstance(contract.SCHEMA_VERSION, int) or contract.SCHEMA_VERSION < 1:
            raise ValueError(f"{contract.__qualname__}: SCHEMA_VERSION must be an int >= 1")
        if contract.TYPE in self._current:
            raise ValueError(f"event type {contract.TYPE!r} is registered twice")
        self._current[contract.TYPE] = contract
        self._decoders[contract.TYPE] = (contract.SCHEMA_VERSION, decoder_of(contract))
        if contract.PERSONAL is not None:
            _check_personal(contract, contract.PERSONAL)
            self._personal[contract.TYPE] = contract.PERSONAL

    def _add_upcaster(self, upcaster: Upcaster) -> None:
        contract = self._current.get(upcaster.type)
        if contract is None:
            raise ValueError(f"upcaster for unregistered event type {upcaster.type!r}")
        if not 1 <= upcaster.from_version < contract.SCHEMA_VERSION:
            raise ValueError(
                f"upcaster {upcaster.type!r} v{upcaster.from_version} does not lead to the current "
                f"version {contract.SCHEMA_VERSION}"
            )
        key = (upcaster.type, upcaster.from_version)
        if key in self._upcasters:
            raise ValueError(f"two upcasters for {upcaster.type!r} v{upcaster.from_version}")
        self._upcasters[key] = upcaster

    def merged_with(self, other: EventRegistry) -> EventRegistry:
        """A registry holding both registries' contracts; a type in both is refused."""
        return EventRegistry(
            [*self._current.values(), *other._current.values()],
            [*self._upcasters.values(), *other._upcasters.values()],
        )

    @property
    def types(self) -> frozenset[str]:
        return frozenset(self._current)

    @property
    def personal(self) -> Mapping[str, Personal]:
        """Event type -> its personal fields, for every contract that has any."""
        return dict(self._personal)

    def contract(self, event_type: str) -> type[DomainEvent]:
        """The current type for ``event_type``; raises UnknownEventType."""
        contract = self._current.get(event_type)
        if contract is None:
            raise UnknownEventType(event_type)
        return contract

    def encode(
        self,
        event: DomainEvent,
        metadata: Mapping[str, Any] | None = None,
        event_id: UUID | None = None,
    ) -> NewEvent:
        """The NewEvent that stores ``event`` under its current contract."""
        contract = self._current.get(event.TYPE)
        if contract is not type(event):
            raise UnknownEventType(event.TYPE)
        return NewEvent(
            type=event.TYPE,
            data=to_json_value(event),
            metadata=dict(metadata or {}),
            event_id=event_id,
            schema_version=event.SCHEMA_VERSION,
        )

    def upcast(self, event_type: str, schema_version: int, data: Mapping[str, Any]) -> Mapping[str, Any]:
        """``data`` written under ``schema_version``, in the shape of the current version."""
        current = self.contract(event_type).SCHEMA_VERSION
        if schema_version > current or schema_version < 1:
            raise UnknownSchemaVersion(event_type, schema_version, current)
        for version in range(schema_version, current):
            upcaster = self._upcasters.get((event_type, version))
            if upcaster is None:
                raise UnknownSchemaVersion(event_type, schema_version, current)
            data = _run_upcaster(upcaster, data)
        return data

    @overload
    def decode(
        self,
        event_type: str,
        schema_version: int,
        data: Mapping[str, Any],
        *,
        lenient: Literal[False] = ...,
    ) -> DomainEvent: ...

    @overload
    def decode(
        self, event_type: str, schema_version: int, data: Mapping[str, Any], *, lenient: bool
    ) -> DomainEvent | UnknownEvent: ...

    def decode(
        self, event_type: str, schema_version: int, data: Mapping[str, Any], *, lenient: bool = False
    ) -> DomainEvent | UnknownEvent:
        """The current domain event for stored ``data``, upcast as needed.

        Strict (the default) raises UnknownEventType, UnknownSchemaVersion or MalformedEvent;
        lenient returns an UnknownEvent that carries the reason instead.
        """
        try:
            return self._decode(event_type, schema_version, data)
        except UnreadableEvent as exc:
            if not lenient:
                raise
            return UnknownEvent(event_type, schema_version, data, str(exc))

    def _decode(self, event_type: str, schema_version: int, data: Mapping[str, Any]) -> DomainEvent:
        contract = self.contract(event_type)
        if schema_version != contract.SCHEMA_VERSION:
            data = self.upcast(event_type, schema_version, data)
        try:
            return from_json_value(contract, data, event_type)
        except InvalidShape as exc:
            raise MalformedEvent(event_type, schema_version, str(exc)) from exc

    @overload
    def read(self, recorded: RecordedEvent, *, lenient: Literal[False] = ...) -> DomainEvent: ...

    @overload
    def read(self, recorded: RecordedEvent, *, lenient: bool) -> DomainEvent | UnknownEvent: ...

    def read(self, recorded: RecordedEvent, *, lenient: bool = False) -> DomainEvent | UnknownEvent:
        """Decode a stored event (see ``decode``)."""
        # Every replay runs through here once per event, so an event already at its contract's
        # version goes straight to the contract's compiled decoder, which checks every field
        # as ``decode`` does. A refusal, an older version or an unknown type takes ``decode``,
        # which upcasts, and raises the error that names the type and version (or, lenient,
        # returns an UnknownEvent); a refused payload is simply decoded a second time there.
        current = self._decoders.get(recorded.type)
        if current is not None and current[0] == recorded.schema_version:
            try:
                return current[1](recorded.data)
            except InvalidShape:
                pass
        return self.decode(recorded.type, recorded.schema_version, recorded.data, lenient=lenient)


def _run_upcaster(upcaster: Upcaster, data: Mapping[str, Any]) -> Mapping[str, Any]:
    # An upcaster indexes old data by the fields its version had; a stored payload missing
    # one of them is a malformed event, reported as such rather than as a KeyError.
    try:
        return upcaster.upcast(data)
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedEvent(upcaster.type, upcaster.from_version, f"upcaster failed: {exc!r}") from exc


def _check_personal(contract: type[DomainEvent], personal: Personal) -> None:
    """A personal field is a str or a mapping (so a redaction marker fits it), and the subject
    is a str field of the same contract."""
    hints = typing.get_type_hints(contract)
    name = contract.__qualname__
    if hints.get(personal.subject) is not str:
        raise TypeError(f"{name}: the personal data's subject {personal.subject!r} must be a str field")
    for field in personal.fields:
        hint = hints.get(field)
        if hint is not str and typing.get_origin(hint) not in (dict, collections.abc.Mapping):
            raise TypeError(f"{name}: personal field {field!r} must be a str or a mapping, not {hint!r}")
