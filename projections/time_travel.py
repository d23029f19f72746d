"""Time travel: a stream as it was at a version, a position or a time; step by step; compared.

All of it is ``core.domain.loading.load_at`` (newest usable snapshot at or before the point,
plus the tail) and the aggregate's ``evolve``. Events this code cannot read (written by newer
code, or of a retired contract) are folded leniently: they show up in the steps as unknown and
leave the state unchanged, so a debugging session never dies on one odd event.

Each of them raises ``StreamNotFound`` when the stream has no events at all (a mistyped id); a
point before an existing stream's first event is the initial state at version 0.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from core.domain.contracts import DomainEvent, EventRegistry, UnknownEvent
from core.domain.decider import Decider
from core.domain.diff import Change, diff_json
from core.domain.loading import AtVersion, Loaded, Target, decider_for, load_at
from core.domain.registry import DOMAIN_EVENTS
from core.domain.snapshots import SnapshotStore
from core.ports import EventLog

__all__ = ["Comparison", "Step", "compare", "state_at", "steps"]

_PAGE = 1_000


@dataclass(frozen=True, slots=True)
class Step:
    """One event of a stream and the state right after it."""

    stream_version: int
    global_position: int
    recorded_at: datetime
    event_type: str
    event: DomainEvent | UnknownEvent
    state: Any


@dataclass(frozen=True, slots=True)
class Comparison:
    """A stream at two points, and what changed between them."""

    stream_id: str
    before_version: int
    after_version: int
    changes: tuple[Change, ...]


async def state_at(
    log: EventLog,
    snapshots: SnapshotStore | None,
    stream_id: str,
    target: Target | None = None,
    *,
    registry: EventRegistry = DOMAIN_EVENTS,
) -> Loaded[Any]:
    """The stream's state at ``target`` (default: now); StreamNotFound if it has no events."""
    decider = decider_for(stream_id)
    return await load_at(log, snapshots, stream_id, decider, target, registry, lenient=True)


async def steps(
    log: EventLog,
    snapshots: SnapshotStore | None,
    stream_id: str,
    *,
    after: int = 0,
    until: Target | None = None,
    registry: EventRegistry = DOMAIN_EVENTS,
) -> AsyncIterator[Step]:
    """Each event after version ``after`` up to ``until``, with the state after it.

    The walk starts from the state at ``after`` (a snapshot helps there), then reads the
    stream in pages, so stepping through a long stream holds one page at a time. Raises
    StreamNotFound, before yielding anything, when the stream has no events.
    """
    decider: Decider[Any, Any] = decider_for(stream_id)
    last = (await state_at(log, snapshots, stream_id, until, registry=registry)).version
    state = await _start(log, snapshots, stream_id, decider, after, registry)
    version = after
    while version < last:
        page = await log.read_stream(
            stream_id, from_version=version + 1, to_version=min(version + _PAGE, last)
        )
        if not page:
            return
        for recorded in page:
            event = registry.read(recorded, lenient=True)
            state = decider.evolve(state, event)
            yield Step(
                recorded.stream_version,
                recorded.global_position,
                recorded.recorded_at,
                recorded.type,
                event,
                state,
            )
        version = page[-1].stream_version


async def _start(
    log: EventLog,
    snapshots: SnapshotStore | None,
    stream_id: str,
    decider: Decider[Any, Any],
    after: int,
    registry: EventRegistry,
) -> Any:
    """The state at version ``after``. At 0 that is the initial state, with no read: the stream is
    already known to exist, and loading version 0 would cost a probe that proves it again."""
    if after == 0:
        return decider.initial_state
    return (await load_at(log, snapshots, stream_id, decider, AtVersion(after), registry, lenient=True)).state


async def compare(
    log: EventLog,
    snapshots: SnapshotStore | None,
    stream_id: str,
    before: Target,
    after: Target | None = None,
    *,
    registry: EventRegistry = DOMAIN_EVENTS,
) -> Comparison:
    """What changed in the stream's state between two points (``after`` defaults to now).

    StreamNotFound if the stream has no events; a point before its first event is version 0.
    """
    decider = decider_for(stream_id)
    old = await state_at(log, snapshots, stream_id, before, registry=registry)
    new = await state_at(log, snapshots, stream_id, after, registry=registry)
    changes = diff_json(decider.state_to_json(old.state), decider.state_to_json(new.state))
    return Comparison(stream_id, old.version, new.version, tuple(changes))
