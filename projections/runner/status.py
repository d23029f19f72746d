"""Where every projection stands: position, lag in events and seconds, owner, failure, rebuild.

Lag in events is the head of the log minus the projection's checkpoint. Lag in seconds is how
long the oldest event it has not applied has been committed (0 when it has applied them all).
The owner is the ``application_name`` of the session that holds the projection's lease.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from projections.runner.contract import Projection
from projections.runner.rebuild import LEASE_CLASS, lock_key

__all__ = ["ProjectionStatus", "lagging", "statuses"]


@dataclass(frozen=True, slots=True)
class ProjectionStatus:
    name: str
    code_version: int | None  # None: in the database but not in this code
    version: int | None  # of the live model; None: never built
    generation: int | None
    position: int
    head: int
    lag_events: int
    lag_seconds: float
    applied_events: int
    last_applied_at: datetime | None
    owner: str | None
    failed_position: int | None
    error: str | None
    rebuilding_generation: int | None
    rebuild_position: int | None

    @property
    def state(self) -> str:
        if self.error is not None:
            return "failed"
        if self.generation is None:
            return "building" if self.rebuilding_generation is not None else "not built"
        if self.rebuilding_generation is not None:
            return "rebuilding"
        return "running" if self.owner else "stopped"


_ROWS = """
SELECT p.name, p.version, p.active_generation, p.rebuilding_generation,
       coalesce(c.position, 0), coalesce(c.applied_events, 0), c.last_applied_at,
       coalesce(c.failed_position, r.failed_position), coalesce(c.error, r.error), r.position
FROM projections p
LEFT JOIN projection_checkpoints c ON c.name = p.name AND c.generation = p.active_generation
LEFT JOIN projection_checkpoints r ON r.name = p.name AND r.generation = p.rebuilding_generation
ORDER BY p.name
"""

_OWNERS = """
SELECT l.objid::bigint, a.application_name FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.classid = $1 AND l.objsubid = 2 AND l.granted
"""

_OLDEST_UNAPPLIED = """
SELECT extract(epoch FROM clock_timestamp() - recorded_at)::float8 FROM events
WHERE global_position > $1 ORDER BY global_position LIMIT 1
"""


async def statuses(conn: asyncpg.Connection, known: Sequence[Projection] = ()) -> list[ProjectionStatus]:
    """Every projection in the database, and every ``known`` one that has no row yet."""
    head = int(await conn.fetchval("SELECT coalesce(max(global_position), 0) FROM events"))
    owners = {int(objid): name for objid, name in await conn.fetch(_OWNERS, LEASE_CLASS)}
    versions = {p.name: p.version for p in known}
    found = []
    for row in await conn.fetch(_ROWS):
        name, version, generation, rebuilding, position = row[0], row[1], row[2], row[3], row[4]
        behind = head - position if generation is not None else head
        lag_seconds = 0.0
        if behind > 0:
            lag_seconds = float(await conn.fetchval(_OLDEST_UNAPPLIED, position) or 0.0)
        found.append(
            ProjectionStatus(
                name=name,
                code_version=versions.pop(name, None),
                version=version if generation is not None else None,
                generation=generation,
                position=position,
                head=head,
                lag_events=behind,
                lag_seconds=lag_seconds,
                applied_events=row[5],
                last_applied_at=row[6],
                owner=owners.get(lock_key(name) & 0xFFFFFFFF),
                failed_position=row[7],
                error=row[8],
                rebuilding_generation=rebuilding,
                rebuild_position=row[9],
            )
        )
    for name, code_version in versions.items():
        found.append(
            ProjectionStatus(
                name, code_version, None, None, 0, head, head, 0.0, 0, None, None, None, None, None, None
            )
        )
    return found


def lagging(found: Sequence[ProjectionStatus], max_lag_seconds: float) -> list[ProjectionStatus]:
    """The projections a readiness check should fail on: failed, not built, or behind more
    than ``max_lag_seconds``."""
    return [
        s for s in found if s.error is not None or s.generation is None or s.lag_seconds > max_lag_seconds
    ]
