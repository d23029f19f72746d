"""Loading a stream's state: from the whole log, or from a snapshot plus the tail, at any point.

Every load is ``fold(tail, start)`` where ``start`` is the initial state or the newest usable
snapshot at or before the target, and ``tail`` is the events after it up to the target. A
snapshot is usable when its state schema version is the decider's current one; any other is
ignored and the stream replayed from an older snapshot or from the start, so a change to
``evolve`` can never be hidden by a snapshot taken under the old meaning.

Targets: the latest state (None), ``AtVersion(k)`` (the first k events), ``AtPosition(p)``
(the events at global positions <= p) and ``AtTime(t)`` (the events recorded at or before t).
Within one stream a higher version always has a higher position (appends take one lock, so
insert order is commit order), so the last two are also prefixes of the stream, and the tail
read can stop at the first event past the bound.

A stream that does not exist. Reads of a state (``load_at`` and everything built on it) raise
``StreamNotFound`` when the stream has no events at all, so a mistyped id is never shown as an
empty state. A point before an existing stream's first event (version 0, an earlier position or
time) is not that: it is the initial state at version 0. Command handling is the other side:
``load``, ``LogLoader`` and ``SnapshotLoader`` never raise it, because a command on a new stream
is decided from the initial state at version 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, Protocol, TypeVar

from core.domain.agent import AGENT
from core.domain.contracts import EventRegistry
from core.domain.conversation import CONVERSATION
from core.domain.decider import Decider
from core.domain.registry import DOMAIN_EVENTS
from core.domain.snapshots import Snapshot, SnapshotStore
from core.domain.task import TASK
from core.errors import InvalidInput, StreamNotFound
from core.events import RecordedEvent, category_of, check_stream_id
from core.ports import EventLog

__all__ = [
    "DECIDERS",
    "AtPosition",
    "AtTime",
    "AtVersion",
    "Loaded",
    "LogLoader",
    "SnapshotLoader",
    "StateLoader",
    "Target",
    "decider_for",
    "load",
    "load_at",
    "require_stream",
]

S = TypeVar("S")

# Position and time targets read the tail in pages and stop past the bound, so loading an early
# point of a long stream with no snapshot near it never reads the rest of the stream at once.
_PAGE = 1_000

# Every aggregate by its stream category: what snapshots, time travel and recovery fold with.
DECIDERS: dict[str, Decider[Any, Any]] = {d.category: d for d in (AGENT, TASK, CONVERSATION)}


@dataclass(frozen=True, slots=True)
class Loaded(Generic[S]):
    """A stream folded to ``version``; 0 means no event is folded (a new stream, or a point before
    the stream's first event).

    ``recorded`` holds the events folded after ``snapshot_version``: the whole stream when no
    snapshot was used (``snapshot_version`` 0), otherwise only the tail.
    """

    stream_id: str
    state: S
    version: int
    recorded: tuple[RecordedEvent, ...]
    snapshot_version: int = 0


@dataclass(frozen=True, slots=True)
class AtVersion:
    version: int

    def __post_init__(self) -> None:
        if self.version < 0:
            raise InvalidInput(f"a version is >= 0, got {self.version}")


@dataclass(frozen=True, slots=True)
class AtPosition:
    position: int

    def __post_init__(self) -> None:
        if self.position < 0:
            raise InvalidInput(f"a global position is >= 0, got {self.position}")


@dataclass(frozen=True, slots=True)
class AtTime:
    at: datetime

    def __post_init__(self) -> None:
        if self.at.tzinfo is None:
            raise InvalidInput(f"a point in time needs a timezone, got {self.at.isoformat()}")


Target = AtVersion | AtPosition | AtTime


class StateLoader(Protocol):
    """How command handling gets a stream's current state, and hears of the state it wrote.

    ``fresh=True`` asks for the database's answer, bypassing any cache: handling passes it after
    a conflict, so a stale cached version costs one WrongExpectedVersion and one reload.
    ``stored`` is told the state after each successful append (a write-through cache keeps it).
    """

    async def load(
        self, stream_id: str, decider: Decider[Any, S], registry: EventRegistry, *, fresh: bool = False
    ) -> Loaded[S]: ...

    async def stored(self, stream_id: str, decider: Decider[Any, S], state: S, version: int) -> None: ...


async def load(
    log: EventLog, stream_id: str, decider: Decider[Any, S], registry: EventRegistry = DOMAIN_EVENTS
) -> Loaded[S]:
    """Read ``stream_id`` from the start, upcast each event and fold it into the state.

    This is command handling's load: a stream with no events is the initial state at version 0.
    """
    recorded = tuple(await log.read_stream(stream_id))
    state = decider.fold(registry.read(event) for event in recorded)
    version = recorded[-1].stream_version if recorded else 0
    return Loaded(stream_id, state, version, recorded)


async def load_at(
    log: EventLog,
    snapshots: SnapshotStore | None,
    stream_id: str,
    decider: Decider[Any, S],
    target: Target | None = None,
    registry: EventRegistry = DOMAIN_EVENTS,
    *,
    lenient: bool = False,
) -> Loaded[S]:
    """The state of ``stream_id`` at ``target`` (default: now), from the best snapshot and the tail.

    Raises StreamNotFound when the stream has no events at all; a target before the first event
    of a stream that has some gives the initial state at version 0. ``lenient`` folds events
    this code cannot read as UnknownEvent (which leave the state as it is) instead of raising:
    time-travel tools use it on logs written by newer code.
    """
    loaded = await _fold_at(log, snapshots, stream_id, decider, target, registry, lenient)
    if loaded.version == 0:
        await require_stream(log, stream_id, target)
    return loaded


async def require_stream(log: EventLog, stream_id: str, target: Target | None) -> None:
    """Raise StreamNotFound unless ``stream_id`` has events; call it when a read from version 1
    up to ``target`` found none.

    Versions start at 1 and are contiguous, so an empty read up to now or up to a version >= 1
    already proves the stream has no events. Version 0, a position or a time may fall before the
    stream's first event, so only then is the log asked (one probe).
    """
    read_proves_it = target is None or (isinstance(target, AtVersion) and target.version > 0)
    if read_proves_it or await log.stream_version(stream_id) == 0:
        raise StreamNotFound(stream_id)


async def _fold_at(
    log: EventLog,
    snapshots: SnapshotStore | None,
    stream_id: str,
    decider: Decider[Any, S],
    target: Target | None,
    registry: EventRegistry,
    lenient: bool = False,
) -> Loaded[S]:
    snapshot = await _usable_snapshot(snapshots, stream_id, decider, target)
    state, version = decider.initial_state, 0
    if snapshot is not None:
        state, version = decider.state_from_json(snapshot.state), snapshot.stream_version
    tail = await _tail(log, stream_id, version, target)
    state = decider.fold((registry.read(event, lenient=lenient) for event in tail), state)
    last = tail[-1].stream_version if tail else version
    return Loaded(stream_id, state, last, tuple(tail), version)


async def _usable_snapshot(
    snapshots: SnapshotStore | None, stream_id: str, decider: Decider[Any, Any], target: Target | None
) -> Snapshot | None:
    if snapshots is None:
        return None
    schema = decider.state_schema_version
    match target:
        case None:
            return await snapshots.latest(stream_id, schema)
        case AtVersion(version):
            return await snapshots.latest(stream_id, schema, max_version=version)
        case AtPosition(position):
            return await snapshots.latest(stream_id, schema, max_position=position)
        case AtTime(at):
            return await snapshots.latest(stream_id, schema, max_recorded_at=at)


async def _tail(log: EventLog, stream_id: str, after: int, target: Target | None) -> list[RecordedEvent]:
    match target:
        case None:
            return await log.read_stream(stream_id, from_version=after + 1)
        case AtVersion(version):
            if version <= after:
                return []
            return await log.read_stream(stream_id, from_version=after + 1, to_version=version)
    tail: list[RecordedEvent] = []
    start = after + 1
    while True:
        page = await log.read_stream(stream_id, from_version=start, to_version=start + _PAGE - 1)
        kept = _within(page, target)
        tail.extend(kept)
        if len(kept) < len(page) or len(page) < _PAGE:
            return tail
        start += _PAGE


def _within(page: Sequence[RecordedEvent], target: AtPosition | AtTime) -> list[RecordedEvent]:
    kept: list[RecordedEvent] = []
    for event in page:
        if isinstance(target, AtPosition):
            inside = event.global_position <= target.position
        else:
            inside = event.recorded_at <= target.at
        if not inside:
            break
        kept.append(event)
    return kept


class LogLoader:
    """Loads by reading the whole stream: no snapshot, no cache (the default of ``handle``)."""

    def __init__(self, log: EventLog) -> None:
        self._log = log

    async def load(
        self, stream_id: str, decider: Decider[Any, S], registry: EventRegistry, *, fresh: bool = False
    ) -> Loaded[S]:
        return await load(self._log, stream_id, decider, registry)

    async def stored(self, stream_id: str, decider: Decider[Any, S], state: S, version: int) -> None:
        return None


class SnapshotLoader:
    """Loads from the newest usable snapshot plus the tail; the snapshotter keeps snapshots fresh."""

    def __init__(self, log: EventLog, snapshots: SnapshotStore) -> None:
        self._log = log
        self._snapshots = snapshots

    async def load(
        self, stream_id: str, decider: Decider[Any, S], registry: EventRegistry, *, fresh: bool = False
    ) -> Loaded[S]:
        # A snapshot is never newer than the log, so even a fresh load may start from one. Not
        # load_at: a new stream is no error here, and handling must not pay for a probe.
        return await _fold_at(self._log, self._snapshots, stream_id, decider, None, registry)

    async def stored(self, stream_id: str, decider: Decider[Any, S], state: S, version: int) -> None:
        return None


def decider_for(stream_id: str) -> Decider[Any, Any]:
    """The decider of the aggregate ``stream_id`` holds, by its category (``task-...``: TASK)."""
    category = category_of(check_stream_id(stream_id))
    try:
        return DECIDERS[category]
    except KeyError:
        raise InvalidInput(
            f"stream {stream_id!r}: no aggregate has category {category!r} (known: {', '.join(DECIDERS)})"
        ) from None
