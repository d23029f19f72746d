"""An in-memory event store with the PostgreSQL store's contract, for unit tests and the
contract suite's second adapter. It decides appends by the same rules and raises the same
errors; it keeps nothing after the process ends."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Self
from uuid import UUID

from core.codec import EncodedAppend, encode_append, encode_multi
from core.errors import StoreClosed
from core.events import (
    AppendResult,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    category_of,
    check_stream_id,
)
from core.settings import Settings
from eventstore.log.outcomes import AppendOutcome, results
from eventstore.log.reads import LogFilter

__all__ = ["InMemoryEventStore"]


class InMemoryEventStore:
    def __init__(self, settings: Settings | None = None) -> None:
        self._settings = settings or Settings.defaults()
        self._log: list[RecordedEvent] = []
        self._streams: dict[str, list[RecordedEvent]] = {}
        self._tenants: dict[str, str | None] = {}
        self._by_id: dict[UUID, RecordedEvent] = {}
        self._changed = asyncio.Condition()
        self._closed = False

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        self._closed = True
        async with self._changed:
            self._changed.notify_all()

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: int | ExpectedVersion = ExpectedVersion.ANY,
    ) -> AppendResult:
        encoded = encode_append(stream_id, events, expected_version, self._settings.max_event_bytes)
        return (await self._commit((encoded,)))[0]

    async def append_multi(self, appends: Sequence[StreamAppend]) -> list[AppendResult]:
        encoded = encode_multi(appends, self._settings.max_event_bytes)
        return await self._commit(encoded)

    async def _commit(self, appends: tuple[EncodedAppend, ...]) -> list[AppendResult]:
        if self._closed:
            raise StoreClosed("the event store is closed")
        verdicts = [self._judge(a) for a in appends]
        if not all(v.outcome in ("ok", "duplicate") for v in verdicts):
            verdicts = [v._replace(outcome="aborted") if v.outcome == "ok" else v for v in verdicts]
        outcomes = [
            self._write(a) if v.outcome == "ok" else v for a, v in zip(appends, verdicts, strict=True)
        ]
        async with self._changed:
            self._changed.notify_all()
        return results(appends, outcomes)

    def _judge(self, append: EncodedAppend) -> AppendOutcome:
        stream = self._streams.get(append.stream_id)
        version = len(stream) if stream else 0
        found = [self._by_id[e.event_id] for e in append.events if e.event_id in self._by_id]
        if found:
            versions = [e.stream_version for e in found]
            if (
                len(found) == len(append.events)
                and all(e.stream_id == append.stream_id for e in found)
                and max(versions) - min(versions) + 1 == len(found)
            ):
                positions = [e.global_position for e in found]
                return AppendOutcome("duplicate", max(versions), min(positions), max(positions), None)
            return AppendOutcome("id_conflict", version, None, None, None)
        exists = stream is not None
        if exists and self._tenants[append.stream_id] != append.tenant_id:
            return AppendOutcome("tenant_mismatch", version, None, None, self._tenants[append.stream_id])
        expected = append.expected_version
        ok = (
            expected is ExpectedVersion.ANY
            or (expected is ExpectedVersion.NO_STREAM and not exists)
            or (expected is ExpectedVersion.STREAM_EXISTS and exists)
            or expected == version
        )
        return AppendOutcome("ok" if ok else "wrong_version", version, None, None, None)

    def _write(self, append: EncodedAppend) -> AppendOutcome:
        stream = self._streams.setdefault(append.stream_id, [])
        self._tenants.setdefault(append.stream_id, append.tenant_id)
        now = datetime.now(UTC)
        first = len(self._log) + 1
        for event in append.events:
            recorded = RecordedEvent(
                event.event_id,
                append.stream_id,
                len(stream) + 1,
                len(self._log) + 1,
                event.type,
                event.schema_version,
                event.data,
                event.metadata,
                append.tenant_id,
                now,
            )
            stream.append(recorded)
            self._log.append(recorded)
            self._by_id[event.event_id] = recorded
        return AppendOutcome("ok", len(stream), first, len(self._log), None)

    async def read_stream(
        self,
        stream_id: str,
        from_version: int = 1,
        to_version: int | None = None,
        backwards: bool = False,
    ) -> list[RecordedEvent]:
        check_stream_id(stream_id)
        self._check_open()
        last = to_version if to_version is not None else 2**31 - 1
        events = [
            _copy(e) for e in self._streams.get(stream_id, []) if from_version <= e.stream_version <= last
        ]
        return events[::-1] if backwards else events

    async def read_all(
        self,
        from_position: int = 0,
        to_position: int | None = None,
        *,
        categories: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        tenant_id: str | None = None,
        page_size: int = 5000,
    ) -> AsyncIterator[RecordedEvent]:
        flt = LogFilter.of(categories, types, tenant_id)
        last = to_position if to_position is not None else 2**63 - 1
        self._check_open()
        for event in list(self._log[max(from_position - 1, 0) :]):
            if event.global_position > last:
                return
            if _matches(flt, event):
                yield _copy(event)

    async def subscribe(
        self,
        from_position: int = 0,
        *,
        categories: Sequence[str] | None = None,
        types: Sequence[str] | None = None,
        tenant_id: str | None = None,
        page_size: int = 5000,
    ) -> AsyncIterator[RecordedEvent]:
        flt = LogFilter.of(categories, types, tenant_id)
        position = max(from_position, 1)
        while not self._closed:
            while position <= len(self._log):
                event = self._log[position - 1]
                position += 1
                if _matches(flt, event):
                    yield _copy(event)
            async with self._changed:
                if position > len(self._log) and not self._closed:
                    await self._changed.wait()

    async def read_event(self, event_id: UUID) -> RecordedEvent | None:
        self._check_open()
        found = self._by_id.get(event_id)
        return _copy(found) if found is not None else None

    async def stream_version(self, stream_id: str) -> int:
        check_stream_id(stream_id)
        return len(self._streams.get(stream_id, []))

    async def head_position(self) -> int:
        return len(self._log)

    def _check_open(self) -> None:
        if self._closed:
            raise StoreClosed("the event store is closed")


def _matches(flt: LogFilter, event: RecordedEvent) -> bool:
    return (
        (flt.categories is None or category_of(event.stream_id) in flt.categories)
        and (flt.types is None or event.type in flt.types)
        and (flt.tenant_id is None or event.tenant_id == flt.tenant_id)
    )


def _copy(event: RecordedEvent) -> RecordedEvent:
    """A reader's own copy: callers that mutate what they read cannot change the log."""
    return RecordedEvent(
        event.event_id,
        event.stream_id,
        event.stream_version,
        event.global_position,
        event.type,
        event.schema_version,
        event._data_raw,
        event._metadata_raw,
        event.tenant_id,
        event.recorded_at,
    )
