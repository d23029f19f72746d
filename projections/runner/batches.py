"""Reading the next page of the log for a projection, and applying it with its checkpoint.

Reading. The head of the log is read first, then the projection's events after its checkpoint
up to that head. The append lock makes every snapshot see a prefix of the log, so every event
at or below that head is visible to the second read: when the page comes back short, the
projection has seen everything up to the head, and its checkpoint moves there even if the
last events were of categories it does not read. Lag in events is then simply head minus
checkpoint.

Applying. One transaction: lock the checkpoint (``state.lock_for_batch``), check that the
generation is still live and the position is the one the page was read after, apply, move the
checkpoint. A crash at any point keeps all of it or none of it, so every event takes effect
exactly once. If the position moved (another daemon, a swap), nothing is applied and the
caller reads again from the new checkpoint.

A projection that raises fails only itself. The batch is rolled back and applied again one
event at a time, each in its own transaction with its checkpoint, so the events before the
bad one take effect and the failure is recorded at the exact position of the one that
raised; the caller then stops that projection.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncGenerator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import cast

import asyncpg

from core.errors import ChronicleError, KeyUnavailable, StoreUnavailable
from core.events import RecordedEvent
from eventstore import EventStore
from eventstore.pg import DRIVER_ERRORS, is_connection_error, translate
from projections.runner import state
from projections.runner.contract import Projection

__all__ = ["Applied", "Page", "PositionMoved", "ProjectionFailed", "apply_page", "read_page"]


@dataclass(frozen=True, slots=True)
class Page:
    """The projection's events after ``after``, the position it has seen everything up to,
    and the head of the log when it was read."""

    after: int
    events: tuple[RecordedEvent, ...]
    through: int
    head: int


@dataclass(frozen=True, slots=True)
class Applied:
    position: int
    events: int
    applied_at: datetime | None


class PositionMoved(Exception):
    """The checkpoint is not where the page was read after: read again from where it is."""


class ProjectionFailed(ChronicleError):
    def __init__(self, name: str, position: int, error: BaseException) -> None:
        self.name = name
        self.position = position
        self.error = error
        super().__init__(f"projection {name} failed at position {position}: {type(error).__name__}: {error}")


async def read_page(store: EventStore, projection: Projection, after: int, limit: int) -> Page:
    head = await store.head_position()
    if head <= after:
        return Page(after, (), after, head)
    events: list[RecordedEvent] = []
    reading = store.read_all(
        after + 1, head, categories=projection.categories, page_size=limit, include_archived=True
    )
    try:
        async with contextlib.aclosing(cast(AsyncGenerator[RecordedEvent, None], reading)) as stream:
            async for event in stream:
                events.append(event)
                if len(events) == limit:
                    break
    except KeyUnavailable as exc:  # a personal field that cannot be opened: waiting will not help
        position = events[-1].global_position + 1 if events else after + 1
        raise ProjectionFailed(projection.name, position, exc) from exc
    through = events[-1].global_position if len(events) == limit else head
    return Page(after, tuple(events), through, head)


async def apply_page(
    conn: asyncpg.Connection, projection: Projection, generation: int, page: Page
) -> Applied:
    """Apply ``page`` to ``generation``; raises PositionMoved, ProjectionFailed or StoreUnavailable."""
    try:
        return await _apply(conn, projection, generation, page.after, page.events, page.through)
    except (PositionMoved, StoreUnavailable):
        raise
    except Exception as exc:
        _raise_if_connection_error(exc, projection)
    return await _one_by_one(conn, projection, generation, page)


async def _apply(
    conn: asyncpg.Connection,
    projection: Projection,
    generation: int,
    after: int,
    events: Sequence[RecordedEvent],
    through: int,
) -> Applied:
    async with conn.transaction():
        position = await state.lock_for_batch(conn, projection.name, generation)
        if position != after:
            raise PositionMoved
        if events:
            await projection.apply(conn, generation, events)
        recorded_at = events[-1].recorded_at if events else None
        applied_at = await state.advance(conn, projection.name, generation, through, len(events), recorded_at)
    return Applied(through, len(events), applied_at)


async def _one_by_one(
    conn: asyncpg.Connection, projection: Projection, generation: int, page: Page
) -> Applied:
    """Apply the page's events one at a time: the ones before a failing event take effect, and
    the failure is recorded at that event's position."""
    after, applied, applied_at = page.after, 0, None
    for event in page.events:
        try:
            done = await _apply(conn, projection, generation, after, (event,), event.global_position)
        except (PositionMoved, StoreUnavailable):
            raise
        except Exception as exc:
            _raise_if_connection_error(exc, projection)
            raise await _failed(conn, projection, generation, event.global_position, exc) from exc
        after, applied, applied_at = event.global_position, applied + 1, done.applied_at
    # Every event went through alone (the batch as a whole failed: a deadlock, a statement too
    # large); finish the page so the checkpoint reaches what was read.
    if after < page.through:
        done = await _apply(conn, projection, generation, after, (), page.through)
        applied_at = done.applied_at
    return Applied(page.through, applied, applied_at)


def _raise_if_connection_error(exc: Exception, projection: Projection) -> None:
    if isinstance(exc, DRIVER_ERRORS) and is_connection_error(exc):
        raise translate(exc, f"projection {projection.name}") from exc


async def record(conn: asyncpg.Connection, generation: int, failure: ProjectionFailed) -> None:
    """Record ``failure`` on ``generation``, so that `projections status` and /ready show it."""
    with contextlib.suppress(*DRIVER_ERRORS):
        error = f"{type(failure.error).__name__}: {failure.error}"
        await state.record_failure(conn, failure.name, generation, failure.position, error)


async def _failed(
    conn: asyncpg.Connection, projection: Projection, generation: int, position: int, error: Exception
) -> ProjectionFailed:
    with contextlib.suppress(*DRIVER_ERRORS):
        await state.record_failure(
            conn, projection.name, generation, position, f"{type(error).__name__}: {error}"
        )
    return ProjectionFailed(projection.name, position, error)
