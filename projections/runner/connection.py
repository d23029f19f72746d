"""A dedicated connection that is opened again after the database went away, and the pause
between tries. The runner's connections are never pooled: a pool resets a connection when it
takes it back (``pg_advisory_unlock_all``), which would drop a lease."""

from __future__ import annotations

import asyncio

import asyncpg
import structlog

from core.errors import StoreUnavailable
from eventstore.pg import close_connection, connect, is_connection_error, translate

__all__ = ["CUSTOM_PLANS", "Backoff", "DedicatedConnection", "as_outage"]

log = structlog.get_logger(__name__)

# Projections look rows up with `key = ANY($2)` in prepared statements. After five executions
# PostgreSQL may switch such a statement to a generic plan that cannot see the array's size and
# scans the whole generation: a rebuild of the agent registry ran 4x slower per batch from its
# fifth batch on. A custom plan per execution costs well under a millisecond.
CUSTOM_PLANS = "SET plan_cache_mode = force_custom_plan"


class Backoff:
    """Pauses of 0.1 s doubling to 2 s while the database is away; reset once it answers."""

    def __init__(self, first: float = 0.1, longest: float = 2.0) -> None:
        self._first, self._longest, self._next = first, longest, first

    async def pause(self, reason: StoreUnavailable, what: str) -> None:
        log.warning("projections.database_away", what=what, error=str(reason), retry_in_s=self._next)
        await asyncio.sleep(self._next)
        self._next = min(self._next * 2, self._longest)

    def reset(self) -> None:
        self._next = self._first


class DedicatedConnection:
    def __init__(self, database_url: str, application_name: str) -> None:
        self._url = database_url
        self._name = application_name
        self._conn: asyncpg.Connection | None = None

    async def get(self) -> asyncpg.Connection:
        """The connection, opened if needed; raises StoreUnavailable if the server is away."""
        if self._conn is None or self._conn.is_closed():
            conn = await connect(self._url, application_name=self._name)
            try:
                await conn.execute(CUSTOM_PLANS)
            except BaseException:  # cancelled or failed: nobody else holds it to close it
                conn.terminate()
                raise
            self._conn = conn
        return self._conn

    def drop(self) -> None:
        """After a connection error: never use this connection again."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            await close_connection(conn)


def as_outage(exc: BaseException, what: str) -> StoreUnavailable:
    """``exc`` as the database being away (the caller pauses and retries); any other driver
    error is translated and raised."""
    if isinstance(exc, StoreUnavailable):
        return exc
    if is_connection_error(exc):
        return StoreUnavailable(f"{what}: {exc}")
    raise translate(exc, what) from exc
