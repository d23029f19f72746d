"""The runner's own tables: one ``projections`` row per projection, one checkpoint per generation.

``projections.active_generation`` is the generation readers see (the views filter on it);
``rebuilding_generation`` is one being built beside it, with the code ``rebuilding_version`` it
is built by. A checkpoint holds the last position applied to its generation, how many events
were applied in all, and the last failure.

Locking. A batch locks its checkpoint row (FOR UPDATE) and the projection's row (FOR SHARE)
before it applies anything, and proceeds only if the generation and the position are the ones
it read its events for. A swap locks the projection's row FOR UPDATE. So a batch and a swap
never interleave, and two appliers of one generation (two daemons, a daemon and a rebuild
resumed elsewhere) can never both apply the same events: the second finds the position moved
and reads again.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

__all__ = [
    "Checkpoint",
    "ProjectionRow",
    "advance",
    "checkpoint",
    "delete_generation_checkpoint",
    "ensure",
    "load",
    "lock_for_batch",
    "lock_projection",
    "new_rebuild_generation",
    "record_failure",
    "retired_generations",
    "swap",
]


@dataclass(frozen=True, slots=True)
class ProjectionRow:
    name: str
    version: int
    active_generation: int | None
    rebuilding_generation: int | None
    rebuilding_version: int | None


@dataclass(frozen=True, slots=True)
class Checkpoint:
    generation: int
    position: int
    failed_position: int | None


async def ensure(conn: asyncpg.Connection, name: str, version: int) -> ProjectionRow:
    """The projection's row, created with no active generation if it is new."""
    await conn.execute(
        "INSERT INTO projections (name, version) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING", name, version
    )
    row = await load(conn, name)
    assert row is not None
    return row


async def load(conn: asyncpg.Connection, name: str) -> ProjectionRow | None:
    row = await conn.fetchrow(
        "SELECT name, version, active_generation, rebuilding_generation, rebuilding_version "
        "FROM projections WHERE name = $1",
        name,
    )
    return ProjectionRow(*row) if row is not None else None


async def checkpoint(conn: asyncpg.Connection, name: str, generation: int) -> Checkpoint | None:
    row = await conn.fetchrow(
        "SELECT generation, position, failed_position FROM projection_checkpoints "
        "WHERE name = $1 AND generation = $2",
        name,
        generation,
    )
    return Checkpoint(*row) if row is not None else None


async def lock_for_batch(conn: asyncpg.Connection, name: str, generation: int) -> int | None:
    """Inside a transaction: lock the generation's checkpoint; its position, or None if the
    generation is neither active nor being rebuilt any more."""
    position: int | None = await conn.fetchval(
        "SELECT c.position FROM projection_checkpoints c JOIN projections p ON p.name = c.name "
        "WHERE c.name = $1 AND c.generation = $2 "
        "AND $2 IN (p.active_generation, p.rebuilding_generation) "
        "FOR UPDATE OF c FOR SHARE OF p",
        name,
        generation,
    )
    return position


async def advance(
    conn: asyncpg.Connection,
    name: str,
    generation: int,
    position: int,
    applied: int,
    last_recorded_at: datetime | None,
) -> datetime:
    """Move the checkpoint (in the batch's transaction); returns the database's clock then."""
    applied_at: datetime = await conn.fetchval(
        "UPDATE projection_checkpoints SET position = $3, applied_events = applied_events + $4, "
        "last_applied_at = clock_timestamp(), "
        "last_event_recorded_at = coalesce($5, last_event_recorded_at), "
        "failed_position = NULL, failed_at = NULL, error = NULL "
        "WHERE name = $1 AND generation = $2 RETURNING last_applied_at",
        name,
        generation,
        position,
        applied,
        last_recorded_at,
    )
    return applied_at


async def record_failure(
    conn: asyncpg.Connection, name: str, generation: int, position: int, error: str
) -> None:
    await conn.execute(
        "UPDATE projection_checkpoints SET failed_position = $3, failed_at = clock_timestamp(), error = $4 "
        "WHERE name = $1 AND generation = $2",
        name,
        generation,
        position,
        error[:2000],
    )


async def new_rebuild_generation(conn: asyncpg.Connection, name: str, version: int) -> int:
    """The generation a rebuild by ``version`` writes: the one already under way for that
    version (a rebuild resumes where it stopped), or a new, empty one."""
    async with conn.transaction():
        row = await conn.fetchrow(
            "SELECT rebuilding_generation, rebuilding_version FROM projections WHERE name = $1 FOR UPDATE",
            name,
        )
        assert row is not None, f"projection {name} has no row"
        if row["rebuilding_generation"] is not None and row["rebuilding_version"] == version:
            return int(row["rebuilding_generation"])
        generation: int = await conn.fetchval(
            "SELECT coalesce(max(generation), 0) + 1 FROM projection_checkpoints WHERE name = $1", name
        )
        await conn.execute(
            "INSERT INTO projection_checkpoints (name, generation) VALUES ($1, $2)", name, generation
        )
        await conn.execute(
            "UPDATE projections SET rebuilding_generation = $2, rebuilding_version = $3, "
            "updated_at = now() WHERE name = $1",
            name,
            generation,
            version,
        )
        return generation


async def swap(conn: asyncpg.Connection, name: str, generation: int, version: int) -> int | None:
    """Inside the transaction that applied the rebuild's last events: make ``generation`` the
    one readers see; returns the generation it replaces."""
    previous: int | None = await conn.fetchval(
        "SELECT active_generation FROM projections WHERE name = $1", name
    )
    await conn.execute(
        "UPDATE projections SET active_generation = $2, version = $3, rebuilding_generation = NULL, "
        "rebuilding_version = NULL, updated_at = now() WHERE name = $1",
        name,
        generation,
        version,
    )
    return previous


async def lock_projection(conn: asyncpg.Connection, name: str) -> None:
    """Inside a transaction: hold off every batch of this projection until it ends."""
    await conn.execute("SELECT 1 FROM projections WHERE name = $1 FOR UPDATE", name)


async def delete_generation_checkpoint(conn: asyncpg.Connection, name: str, generation: int) -> None:
    await conn.execute(
        "DELETE FROM projection_checkpoints WHERE name = $1 AND generation = $2", name, generation
    )


async def retired_generations(conn: asyncpg.Connection, name: str) -> list[int]:
    """Generations whose rows nobody reads or builds any more."""
    rows = await conn.fetch(
        "SELECT c.generation FROM projection_checkpoints c JOIN projections p ON p.name = c.name "
        "WHERE c.name = $1 AND c.generation IS DISTINCT FROM p.active_generation "
        "AND c.generation IS DISTINCT FROM p.rebuilding_generation",
        name,
    )
    return [int(r[0]) for r in rows]
