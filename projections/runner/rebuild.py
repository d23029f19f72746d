"""Rebuilding a read model with no read downtime: a new generation, built beside the live one
from the start of the log, swapped in once it has caught up.

1. The rebuild takes the projection's rebuild lock (a session advisory lock): one rebuild of a
   projection at a time, whoever starts it (``chronicle projections rebuild``, or a daemon
   that finds a new code version). A rebuild that died is resumed from its own checkpoint.
2. It applies the log to the new generation in large batches, each with its checkpoint in one
   transaction, as the live loop does. Readers still see the live generation, which the
   daemon keeps current meanwhile.
3. Once a read comes back short (caught up with the head), one transaction locks the
   projection's row (so no live batch runs), applies whatever arrived since, and points
   ``active_generation`` at the new generation. Readers' next statement sees the new model;
   no statement ever sees part of one model and part of the other. The live loop finds its
   generation retired at its next batch and carries on with the new one from the new
   checkpoint, which is at or past its own.
4. The retired generation's rows are deleted in batches afterwards.
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import asyncpg
import structlog

from core.errors import ChronicleError
from eventstore import EventStore
from projections.runner import state
from projections.runner.batches import PositionMoved, ProjectionFailed, apply_page, read_page, record
from projections.runner.connection import CUSTOM_PLANS
from projections.runner.contract import Projection

__all__ = ["LEASE_CLASS", "REBUILD_CLASS", "RebuildInProgress", "Rebuilt", "lock_key", "rebuild", "retire"]

log = structlog.get_logger(__name__)

# Advisory lock keys are (class, hash of the projection's name); the classes keep them apart
# from each other and from the append lock (a single bigint key).
LEASE_CLASS = 0x43480001
REBUILD_CLASS = 0x43480002

Progress = Callable[[int, int], None]  # (position reached, head of the log)


class RebuildInProgress(ChronicleError):
    def __init__(self, name: str) -> None:
        self.name = name
        super().__init__(f"projection {name} is being rebuilt elsewhere; wait for it to finish")


@dataclass(frozen=True, slots=True)
class Rebuilt:
    name: str
    generation: int
    replaced: int | None
    events: int
    position: int


def lock_key(name: str) -> int:
    """The second half of a projection's advisory lock keys (a signed 32-bit int)."""
    value = zlib.crc32(name.encode())
    return value - 2**32 if value >= 2**31 else value


async def rebuild(
    store: EventStore,
    conn: asyncpg.Connection,
    projection: Projection,
    *,
    batch_size: int = 10_000,
    progress: Progress | None = None,
) -> Rebuilt:
    """Rebuild ``projection`` on ``conn`` (a dedicated connection) and swap it in.

    Raises RebuildInProgress if another rebuild of it holds the lock, ProjectionFailed if the
    projection raises (the live generation is untouched and stays in place).
    """
    name = projection.name
    if not await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", REBUILD_CLASS, lock_key(name)):
        raise RebuildInProgress(name)
    try:
        await conn.execute(CUSTOM_PLANS)
        await state.ensure(conn, name, projection.version)
        generation = await state.new_rebuild_generation(conn, name, projection.version)
        log.info("projection.rebuild_started", projection=name, generation=generation)
        try:
            applied, position = await _catch_up(store, conn, projection, generation, batch_size, progress)
            more, position, replaced = await _swap(store, conn, projection, generation, position)
        except ProjectionFailed as failure:  # status shows the rebuild failed, not still running
            await record(conn, generation, failure)
            raise
        log.info("projection.rebuilt", projection=name, generation=generation, position=position)
        await retire(conn, projection)
        return Rebuilt(name, generation, replaced, applied + more, position)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1, $2)", REBUILD_CLASS, lock_key(name))


async def _catch_up(
    store: EventStore,
    conn: asyncpg.Connection,
    projection: Projection,
    generation: int,
    batch_size: int,
    progress: Progress | None,
) -> tuple[int, int]:
    """Apply the log to ``generation`` until a read comes back short; (events, position).

    The next page is read (on the store's pool) while this one is applied (on ``conn``), so a
    rebuild runs at the speed of the slower of the two, not of their sum.
    """
    checkpoint = await state.checkpoint(conn, projection.name, generation)
    assert checkpoint is not None
    position, applied = checkpoint.position, 0
    reading = asyncio.ensure_future(read_page(store, projection, position, batch_size))
    try:
        while True:
            page = await reading
            if progress is not None:
                progress(position, page.head)
            if len(page.events) < batch_size:
                return applied, position
            reading = asyncio.ensure_future(read_page(store, projection, page.through, batch_size))
            done = await apply_page(conn, projection, generation, page)
            position, applied = done.position, applied + done.events
    finally:
        reading.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await reading


async def _swap(
    store: EventStore, conn: asyncpg.Connection, projection: Projection, generation: int, position: int
) -> tuple[int, int, int | None]:
    """Apply what arrived since the last batch and make ``generation`` the live one, in one
    transaction that holds off the live loop; (events applied, position, replaced generation)."""
    name, applied = projection.name, 0
    async with conn.transaction():
        await state.lock_projection(conn, name)
        if await state.lock_for_batch(conn, name, generation) != position:
            raise PositionMoved
        while True:
            page = await read_page(store, projection, position, 50_000)
            if page.events:
                await projection.apply(conn, generation, page.events)
            recorded_at = page.events[-1].recorded_at if page.events else None
            await state.advance(conn, name, generation, page.through, len(page.events), recorded_at)
            position, applied = page.through, applied + len(page.events)
            if page.through >= page.head:
                break
        replaced = await state.swap(conn, name, generation, projection.version)
    return applied, position, replaced


async def retire(conn: asyncpg.Connection, projection: Projection, chunk: int = 10_000) -> None:
    """Delete the rows of generations nobody reads or builds any more, a chunk at a time."""
    for generation in await state.retired_generations(conn, projection.name):
        for table in projection.tables:
            # Table names come from the projection's own code, never from input.
            delete = (
                f"DELETE FROM {table} WHERE ctid = ANY(ARRAY("  # noqa: S608
                f"SELECT ctid FROM {table} WHERE generation = $1 LIMIT {chunk}))"
            )
            while (await conn.execute(delete, generation)) != "DELETE 0":
                pass
        await state.delete_generation_checkpoint(conn, projection.name, generation)
        log.info("projection.generation_retired", projection=projection.name, generation=generation)
