"""Command handling: load a stream, decide, append with the version it was loaded at.

Concurrency. ``handle`` appends with the stream version it folded, so two writers that decided
on the same state cannot both win: the slower one gets WrongExpectedVersion, reloads, and
decides again on the state that now includes the winner's events. The new decision may differ
(the task was cancelled meanwhile) or be refused; it is never a blind overwrite. After
``max_attempts`` losses in a row the command gives up with CommandRetriesExhausted rather than
spin on a hot stream.

Idempotency. A command that carries a command id (an HTTP Idempotency-Key, a message id from a
queue) gets event ids derived from it: uuid5 of (stream, command id, index). Handling it twice
therefore never stores it twice, by two checks that cover each other:

- before deciding, the loaded stream is searched for the command's first event id; if it is
  there the stored events are returned (``duplicate=True``) without deciding again, which
  would now be refused (a task cannot be completed twice) or produce something else;
- if two deliveries of the command race past that check, they append the same event ids and
  the event log answers the second with the first one's result and stores nothing new
  (``AppendResult.duplicate``), or refuses it with EventIdConflict when the two decided a
  different number of events. Either way the second delivery decided on a state that is
  now stale: a heartbeat may have renewed the lease in between. So its own fold is thrown
  away, never returned and never written to a cache; it reloads bypassing any cache and
  answers as the first check would have: the stored events and the stream's real state.

A load from a snapshot or a cache does not hold the events before it, so for such a load the
first check asks the log for the command's first event id (``EventLog.read_event``) instead of
searching the loaded events.

State. ``handle`` gets its state from a StateLoader: the whole stream by default, or a snapshot
plus the tail, or a cache. A loader can only be behind the log, never ahead of it, and the
append names the version the state was folded at, so a stale load ends in WrongExpectedVersion
and a fresh reload, never in a lost update.

Metadata. Every event records tenant_id, actor, command_id, command_type, correlation_id and
causation_id. A command's events are caused by the command, so causation_id defaults to the
command id; correlation_id defaults to it too, which makes the command the root of a new flow
unless the caller continues an existing one.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar
from uuid import UUID

from core.domain.contracts import DomainEvent, EventRegistry
from core.domain.decider import Decider
from core.domain.errors import CommandRetriesExhausted
from core.domain.loading import Loaded, LogLoader, StateLoader, load
from core.domain.registry import DOMAIN_EVENTS
from core.errors import EventIdConflict, InvalidInput, WrongExpectedVersion
from core.events import RecordedEvent, category_of, check_stream_id, uuid7
from core.ports import EventLog

__all__ = ["CommandContext", "Handled", "Loaded", "command_event_id", "handle", "load"]

C = TypeVar("C")
S = TypeVar("S")

# Fixed forever: changing it would make every retried command look new.
_COMMAND_NAMESPACE = UUID("6f1c2b7e-9a43-4d0e-8f5e-3c1a2d4b5e60")


@dataclass(frozen=True, slots=True)
class CommandContext:
    """Who sends a command, for whom, and where it sits in a flow; written into each event."""

    tenant_id: str
    actor: str
    command_id: str | None = None
    correlation_id: str | None = None
    causation_id: str | None = None
    trace_id: str | None = None

    def __post_init__(self) -> None:
        for name in ("tenant_id", "actor"):
            value = getattr(self, name)
            if not isinstance(value, str) or not value:
                raise InvalidInput(f"CommandContext.{name} must be a non-empty string, got {value!r}")
        if self.command_id is not None and (not isinstance(self.command_id, str) or not self.command_id):
            raise InvalidInput(
                f"CommandContext.command_id must be a non-empty string, got {self.command_id!r}"
            )

    def metadata(self, command_id: str, command_type: str) -> dict[str, Any]:
        metadata: dict[str, Any] = {
            "tenant_id": self.tenant_id,
            "actor": self.actor,
            "command_id": command_id,
            "command_type": command_type,
            "correlation_id": self.correlation_id or command_id,
            "causation_id": self.causation_id or command_id,
        }
        if self.trace_id is not None:
            metadata["trace_id"] = self.trace_id
        return metadata


@dataclass(frozen=True, slots=True)
class Handled(Generic[S]):
    """What handling a command did.

    ``events`` are the command's events (stored now, or found stored when ``duplicate``);
    ``state`` and ``version`` are the stream's after them. An empty ``events`` means the
    decider had nothing to record and nothing was appended.
    """

    stream_id: str
    command_id: str
    state: S
    version: int
    events: tuple[DomainEvent, ...]
    event_ids: tuple[UUID, ...]
    duplicate: bool
    attempts: int


def command_event_id(stream_id: str, command_id: str, index: int) -> UUID:
    """The id of the ``index``-th event that command ``command_id`` appends to ``stream_id``."""
    return uuid.uuid5(_COMMAND_NAMESPACE, f"{stream_id}\x1f{command_id}\x1f{index}")


async def handle(
    log: EventLog,
    stream_id: str,
    command: C,
    decider: Decider[C, S],
    context: CommandContext,
    *,
    registry: EventRegistry = DOMAIN_EVENTS,
    max_attempts: int = 3,
    loader: StateLoader | None = None,
) -> Handled[S]:
    """Decide ``command`` on the stream's current state and append the result atomically.

    ``loader`` chooses where that state comes from (default: the whole stream from ``log``; a
    SnapshotLoader or a cache may be passed). After a conflict it is asked for a fresh load.

    Raises what the decider raises (a CommandRefused, nothing written), CommandRetriesExhausted
    after ``max_attempts`` lost races, and the event log's own errors unchanged.
    """
    _check_target(stream_id, decider, max_attempts)
    command_id = context.command_id or str(uuid7())
    request = _Request(
        stream_id=stream_id,
        command_id=command_id,
        idempotent=context.command_id is not None,
        metadata=context.metadata(command_id, type(command).__name__),
        registry=registry,
    )
    loader = loader or LogLoader(log)
    conflict: WrongExpectedVersion | None = None
    for attempt in range(1, max_attempts + 1):
        try:
            return await _attempt(log, loader, request, command, decider, attempt)
        except WrongExpectedVersion as exc:
            conflict = exc
    raise CommandRetriesExhausted(stream_id, type(command).__name__, max_attempts) from conflict


@dataclass(frozen=True, slots=True)
class _Request:
    stream_id: str
    command_id: str
    idempotent: bool
    metadata: Mapping[str, Any]
    registry: EventRegistry

    def event_id(self, index: int) -> UUID | None:
        # Without a command id there is nothing to deduplicate against: the log's own
        # time-ordered ids keep its index appending at the right edge.
        return command_event_id(self.stream_id, self.command_id, index) if self.idempotent else None


async def _attempt(
    log: EventLog, loader: StateLoader, request: _Request, command: C, decider: Decider[C, S], attempt: int
) -> Handled[S]:
    """One load-decide-append round; raises WrongExpectedVersion when another writer won."""
    loaded = await loader.load(request.stream_id, decider, request.registry, fresh=attempt > 1)
    if request.idempotent:
        loaded, stored = await _already_stored(log, loader, loaded, request, decider)
        if stored:
            return _duplicate(loaded, request, stored, attempt)
    events = tuple(decider.decide(command, loaded.state))
    if not events:
        return Handled(
            request.stream_id, request.command_id, loaded.state, loaded.version, (), (), False, attempt
        )
    new_events = [
        request.registry.encode(event, request.metadata, request.event_id(i))
        for i, event in enumerate(events)
    ]
    try:
        result = await log.append(request.stream_id, new_events, expected_version=loaded.version)
    except EventIdConflict:
        if not request.idempotent:
            raise
        return await _stored_by_another_delivery(log, loader, request, decider, attempt)
    if result.duplicate and request.idempotent:
        return await _stored_by_another_delivery(log, loader, request, decider, attempt)
    # Without a command id the event ids are this call's own, so a duplicate answer can only
    # be the store re-sending this very append: it was written at loaded.version, and the
    # fold below is the truth.
    state = decider.fold(events, loaded.state)
    await loader.stored(request.stream_id, decider, state, result.stream_version)
    ids = tuple(event.id for event in new_events)
    return Handled(
        request.stream_id, request.command_id, state, result.stream_version, events, ids, False, attempt
    )


async def _already_stored(
    log: EventLog, loader: StateLoader, loaded: Loaded[S], request: _Request, decider: Decider[C, S]
) -> tuple[Loaded[S], tuple[RecordedEvent, ...]]:
    """The events this command already appended, and a state that includes them.

    A load from a snapshot or a cache holds only the tail (or nothing) of the stream, so a
    command whose events sit before it is looked up by its first event id instead (one index
    probe). If the stored run ends past the loaded version, the load was stale (a cache behind
    the log): a fresh load makes the duplicate report the stream's real state.
    """
    stored = _stored_by(loaded.recorded, request.stream_id, request.command_id)
    if stored or loaded.snapshot_version == 0:
        return loaded, stored
    first = await log.read_event(command_event_id(request.stream_id, request.command_id, 0))
    if first is None or first.stream_id != request.stream_id:
        return loaded, ()
    run = tuple(await log.read_stream(request.stream_id, from_version=first.stream_version))
    stored = _stored_by(run, request.stream_id, request.command_id)
    if stored and stored[-1].stream_version > loaded.version:
        loaded = await loader.load(request.stream_id, decider, request.registry, fresh=True)
    return loaded, stored


async def _stored_by_another_delivery(
    log: EventLog, loader: StateLoader, request: _Request, decider: Decider[C, S], attempt: int
) -> Handled[S]:
    """The log already holds this command's events: report them with the stream's real state."""
    loaded = await loader.load(request.stream_id, decider, request.registry, fresh=True)
    loaded, stored = await _already_stored(log, loader, loaded, request, decider)
    if not stored:
        raise EventIdConflict(request.stream_id, request.event_id(0))
    return _duplicate(loaded, request, stored, attempt)


def _check_target(stream_id: str, decider: Decider[Any, Any], max_attempts: int) -> None:
    check_stream_id(stream_id)
    if category_of(stream_id) != decider.category:
        raise InvalidInput(f"stream {stream_id!r} is not a {decider.category!r} stream")
    if max_attempts < 1:
        raise InvalidInput(f"max_attempts must be >= 1, got {max_attempts}")


def _stored_by(
    recorded: tuple[RecordedEvent, ...], stream_id: str, command_id: str
) -> tuple[RecordedEvent, ...]:
    """The events ``command_id`` already appended to this stream, or () if it never did."""
    first_id = command_event_id(stream_id, command_id, 0)
    # A retry usually follows its first delivery closely, so search from the newest event.
    for start in range(len(recorded) - 1, -1, -1):
        if recorded[start].event_id == first_id:
            run = [recorded[start]]
            for index, event in enumerate(recorded[start + 1 :], start=1):
                if event.event_id != command_event_id(stream_id, command_id, index):
                    break
                run.append(event)
            return tuple(run)
    return ()


def _duplicate(
    loaded: Loaded[S], request: _Request, stored: tuple[RecordedEvent, ...], attempt: int
) -> Handled[S]:
    events = tuple(request.registry.read(event) for event in stored)
    ids = tuple(event.event_id for event in stored)
    return Handled(
        loaded.stream_id, request.command_id, loaded.state, loaded.version, events, ids, True, attempt
    )
