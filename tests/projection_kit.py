"""What the projection tests share: a projection that records every event it applies, and waits.

``PositionLog`` inserts one row per applied event into a table of its own (primary key
generation + position), so applying an event twice would raise, and the rows are exactly the
events it saw. It can be told to fail on one event type, or to sleep inside its transaction
so that a kill lands mid-batch.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from core.events import RecordedEvent
from projections.runner import state
from tests.waiting import wait_until

__all__ = [
    "PositionLog",
    "checkpoint_of",
    "create_table",
    "live_positions",
    "matching_positions",
    "wait_until",
]

TABLE = "test_position_log_rows"
CREATE = (
    f"CREATE TABLE IF NOT EXISTS {TABLE} (generation integer NOT NULL, name text NOT NULL, "
    "global_position bigint NOT NULL, PRIMARY KEY (generation, name, global_position))"
)


@dataclass
class PositionLog:
    name: str = "position_log"
    version: int = 1
    categories: tuple[str, ...] | None = None
    fail_on: str | None = None  # an event type that makes apply raise
    pause_s: float = 0.0  # held inside the batch's transaction

    @property
    def tables(self) -> tuple[str, ...]:
        return (TABLE,)

    async def apply(self, conn: asyncpg.Connection, generation: int, events: Sequence[RecordedEvent]) -> None:
        for event in events:
            if event.type == self.fail_on:
                raise RuntimeError(f"cannot fold {event.type}")
        await conn.executemany(
            f"INSERT INTO {TABLE} VALUES ($1, $2, $3)",
            [(generation, self.name, e.global_position) for e in events],
        )
        if self.pause_s:
            await conn.execute("SELECT pg_sleep($1)", self.pause_s)


async def create_table(database_url: str) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(CREATE)
    finally:
        await conn.close()


async def live_positions(conn: asyncpg.Connection, name: str) -> list[int]:
    """The positions in the projection's live generation, in order."""
    rows = await conn.fetch(
        f"SELECT global_position FROM {TABLE} WHERE name = $1 AND generation = "
        "(SELECT active_generation FROM projections WHERE name = $1) ORDER BY global_position",
        name,
    )
    return [r[0] for r in rows]


async def matching_positions(
    conn: asyncpg.Connection, categories: tuple[str, ...] | None, up_to: int
) -> list[int]:
    rows = await conn.fetch(
        "SELECT global_position FROM events WHERE global_position <= $1 "
        "AND ($2::text[] IS NULL OR split_part(stream_id, '-', 1) = ANY($2)) ORDER BY global_position",
        up_to,
        list(categories) if categories is not None else None,
    )
    return [r[0] for r in rows]


async def checkpoint_of(conn: asyncpg.Connection, name: str) -> tuple[int, int] | None:
    """(position, applied events) of the projection's live generation, or None."""
    row = await state.load(conn, name)
    if row is None or row.active_generation is None:
        return None
    record = await conn.fetchrow(
        "SELECT position, applied_events FROM projection_checkpoints WHERE name = $1 AND generation = $2",
        name,
        row.active_generation,
    )
    return (record[0], record[1]) if record is not None else None
