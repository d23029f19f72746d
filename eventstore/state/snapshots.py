"""Snapshot storage: PostgreSQL (the ``snapshots`` table) and an in-memory twin for unit tests.

Unlike ``events``, ``snapshots`` is not append-only: a snapshot is a cache of a fold, and
retention deletes what a newer one supersedes. Saving is one transaction of two statements,
the insert and the retention delete, so a process that dies half-way leaves either the new
snapshot and its retention or neither; a reader never sees a partly written state (one row is
written by one statement).

Retention keeps the newest ``keep`` snapshots per stream under the current state schema
version and deletes every snapshot under an older one (those can never be used again).
Snapshots under a newer schema version, written by newer code in a rolling deploy, are left
alone: that code may still want them.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Self

import asyncpg
import orjson

from core.domain.snapshots import Snapshot
from core.errors import InvalidInput
from core.events import check_stream_id
from eventstore.pg import DRIVER_ERRORS, create_pool, fetch, translate

__all__ = ["InMemorySnapshotStore", "PostgresSnapshotStore"]

_SAVE = """
INSERT INTO snapshots (stream_id, stream_version, schema_version, state, global_position, recorded_at)
VALUES ($1, $2, $3, $4, $5, $6)
ON CONFLICT (stream_id, stream_version) DO UPDATE
SET schema_version = EXCLUDED.schema_version, state = EXCLUDED.state,
    global_position = EXCLUDED.global_position, recorded_at = EXCLUDED.recorded_at, created_at = now()
"""

# $2: the current schema version, $3: how many of its snapshots to keep.
_RETAIN = """
DELETE FROM snapshots
WHERE stream_id = $1
  AND (schema_version < $2
       OR (schema_version = $2 AND stream_version < (
           SELECT min(stream_version) FROM (
               SELECT stream_version FROM snapshots WHERE stream_id = $1 AND schema_version = $2
               ORDER BY stream_version DESC LIMIT $3) AS kept)))
"""

# NULL bounds mean "no bound"; a NULL position or time in a row (written before migration
# 0002) never satisfies a bound, so such a snapshot serves loads by version only.
_LATEST = """
SELECT stream_version, schema_version, state, global_position, recorded_at FROM snapshots
WHERE stream_id = $1 AND schema_version = $2 AND stream_version <= $3
  AND ($4::bigint IS NULL OR global_position <= $4)
  AND ($5::timestamptz IS NULL OR recorded_at <= $5)
ORDER BY stream_version DESC LIMIT 1
"""

_LIST = """
SELECT stream_version, schema_version, state, global_position, recorded_at FROM snapshots
WHERE stream_id = $1 ORDER BY stream_version
"""

_MAX_VERSION = 2**31 - 1


class PostgresSnapshotStore:
    """Snapshots in PostgreSQL. Create with ``await PostgresSnapshotStore.connect(url)``."""

    def __init__(self, pool: asyncpg.Pool, *, keep: int = 2) -> None:
        if keep < 1:
            raise InvalidInput(f"keep must be >= 1, got {keep}")
        self._pool = pool
        self._keep = keep

    @classmethod
    async def connect(cls, database_url: str, *, keep: int = 2, pool_size: int = 2) -> Self:
        return cls(await create_pool(database_url, pool_size), keep=keep)

    async def close(self) -> None:
        await self._pool.close()

    async def save(self, snapshot: Snapshot) -> None:
        """Store the snapshot and apply retention, in one transaction."""
        check_stream_id(snapshot.stream_id)
        state = orjson.dumps(snapshot.state)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await conn.execute(
                    _SAVE,
                    snapshot.stream_id,
                    snapshot.stream_version,
                    snapshot.schema_version,
                    state,
                    snapshot.global_position,
                    snapshot.recorded_at,
                )
                await conn.execute(_RETAIN, snapshot.stream_id, snapshot.schema_version, self._keep)
        except DRIVER_ERRORS as exc:
            raise translate(exc, "save snapshot") from exc

    async def latest(
        self,
        stream_id: str,
        schema_version: int,
        *,
        max_version: int | None = None,
        max_position: int | None = None,
        max_recorded_at: datetime | None = None,
    ) -> Snapshot | None:
        bound = _MAX_VERSION if max_version is None else max_version
        rows = await self._fetch(
            _LATEST, stream_id, schema_version, bound, max_position, max_recorded_at, op="read snapshot"
        )
        return _snapshot(stream_id, rows[0]) if rows else None

    async def all_of(self, stream_id: str) -> list[Snapshot]:
        """Every stored snapshot of the stream, oldest first, whatever its schema version."""
        rows = await self._fetch(_LIST, stream_id, op="list snapshots")
        return [_snapshot(stream_id, row) for row in rows]

    async def _fetch(self, sql: str, *args: Any, op: str) -> list[Any]:
        return await fetch(self._pool, op, sql, *args)


def _snapshot(stream_id: str, row: Any) -> Snapshot:
    version, schema, state, position, recorded_at = row
    return Snapshot(stream_id, version, schema, orjson.loads(state), position, recorded_at)


class InMemorySnapshotStore:
    """The same rules in a dict, for unit tests; states are stored as JSON bytes, as in PostgreSQL."""

    def __init__(self, *, keep: int = 2) -> None:
        if keep < 1:
            raise InvalidInput(f"keep must be >= 1, got {keep}")
        self._keep = keep
        self._rows: dict[str, dict[int, tuple[Snapshot, bytes]]] = {}

    async def close(self) -> None:
        return None

    async def save(self, snapshot: Snapshot) -> None:
        check_stream_id(snapshot.stream_id)
        rows = self._rows.setdefault(snapshot.stream_id, {})
        rows[snapshot.stream_version] = (snapshot, orjson.dumps(snapshot.state))
        schema = snapshot.schema_version
        current = sorted((v for v, (s, _) in rows.items() if s.schema_version == schema), reverse=True)
        cutoff = current[: self._keep][-1]
        for version, (stored, _) in list(rows.items()):
            if stored.schema_version < schema or (stored.schema_version == schema and version < cutoff):
                del rows[version]

    async def latest(
        self,
        stream_id: str,
        schema_version: int,
        *,
        max_version: int | None = None,
        max_position: int | None = None,
        max_recorded_at: datetime | None = None,
    ) -> Snapshot | None:
        for version in sorted(self._rows.get(stream_id, {}), reverse=True):
            stored, state = self._rows[stream_id][version]
            if _fits(stored, schema_version, max_version, max_position, max_recorded_at):
                return _copy(stored, orjson.loads(state))
        return None

    async def all_of(self, stream_id: str) -> list[Snapshot]:
        rows = self._rows.get(stream_id, {})
        return [_copy(rows[v][0], orjson.loads(rows[v][1])) for v in sorted(rows)]


def _fits(
    s: Snapshot,
    schema_version: int,
    max_version: int | None,
    max_position: int | None,
    max_recorded_at: datetime | None,
) -> bool:
    return (
        s.schema_version == schema_version
        and (max_version is None or s.stream_version <= max_version)
        and (max_position is None or (s.global_position is not None and s.global_position <= max_position))
        and (max_recorded_at is None or (s.recorded_at is not None and s.recorded_at <= max_recorded_at))
    )


def _copy(s: Snapshot, state: Mapping[str, Any]) -> Snapshot:
    return Snapshot(s.stream_id, s.stream_version, s.schema_version, state, s.global_position, s.recorded_at)
