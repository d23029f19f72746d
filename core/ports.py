"""The event log's port, which eventstore implements twice (PostgreSQL and in memory).

Code in core talks to I/O only through ports: this one, and the training loop's in
``core.triad.ports``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Protocol
from uuid import UUID

from core.events import AppendResult, ExpectedVersion, NewEvent, RecordedEvent, StreamAppend

__all__ = ["EventLog"]


class EventLog(Protocol):
    """What eventstore.EventStore and eventstore.InMemoryEventStore both provide."""

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: int | ExpectedVersion = ...,
    ) -> AppendResult: ...

    async def append_multi(self, appends: Sequence[StreamAppend]) -> list[AppendResult]: ...

    async def read_stream(
        self,
        stream_id: str,
        from_version: int = ...,
        to_version: int | None = ...,
        backwards: bool = ...,
    ) -> list[RecordedEvent]: ...

    def read_all(
        self,
        from_position: int = ...,
        to_position: int | None = ...,
        *,
        categories: Sequence[str] | None = ...,
        types: Sequence[str] | None = ...,
        tenant_id: str | None = ...,
        page_size: int = ...,
    ) -> AsyncIterator[RecordedEvent]: ...

    def subscribe(
        self,
        from_position: int = ...,
        *,
        categories: Sequence[str] | None = ...,
        types: Sequence[str] | None = ...,
        tenant_id: str | None = ...,
        page_size: int = ...,
    ) -> AsyncIterator[RecordedEvent]: ...

    async def read_event(self, event_id: UUID) -> RecordedEvent | None: ...

    async def stream_version(self, stream_id: str) -> int: ...

    async def head_position(self) -> int: ...

    async def close(self) -> None: ...
