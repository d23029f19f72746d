"""Working as one tenant, or as the auditor, under row-level security (migration 0005).

A transaction for tenant A takes the role ``chronicle_tenant`` and sets ``chronicle.tenant``
to A, both ``LOCAL``: they end with the transaction, so a pooled connection never carries a
tenant into its next use. PostgreSQL then filters every table and view by tenant, whatever
the query says, and refuses a write tagged with another tenant. ``chronicle_auditor`` reads
across tenants and writes nothing.

This isolates tenants from one another's queries: a report or a handler that forgets its
tenant filter still sees only its tenant. It is not a wall against whoever can send
arbitrary SQL on the connection: such a session can set the setting itself (docs/compliance.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from core.errors import InvalidInput
from core.events import RecordedEvent, check_stream_id
from eventstore.log.reads import LogFilter, read_all_sql, read_stream_sql
from eventstore.pg import DRIVER_ERRORS, translate

__all__ = ["AUDITOR_ROLE", "TENANT_ROLE", "TenantReader", "as_auditor", "as_tenant"]

TENANT_ROLE = "chronicle_tenant"
AUDITOR_ROLE = "chronicle_auditor"

# One round trip: set_config('role', ...) is SET ROLE, with the same permission check.
_BECOME_TENANT = "SELECT set_config('role', $1, true), set_config('chronicle.tenant', $2, true)"


def check_tenant_id(tenant_id: object) -> str:
    if not isinstance(tenant_id, str) or not tenant_id:
        raise InvalidInput(f"tenant_id must be a non-empty str, not {tenant_id!r}")
    return tenant_id


@asynccontextmanager
async def as_tenant(conn: asyncpg.Connection, tenant_id: str) -> AsyncIterator[asyncpg.Connection]:
    """A transaction on ``conn`` that sees and writes only ``tenant_id``'s rows."""
    check_tenant_id(tenant_id)
    async with conn.transaction():
        await conn.execute(_BECOME_TENANT, TENANT_ROLE, tenant_id)
        yield conn


@asynccontextmanager
async def as_auditor(conn: asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    """A read-only transaction on ``conn`` that sees every tenant's rows."""
    async with conn.transaction(readonly=True):
        await conn.execute("SELECT set_config('role', $1, true)", AUDITOR_ROLE)
        yield conn


class TenantReader:
    """The event log as one tenant sees it: the same reads as EventStore's, each in a
    transaction under the tenant's row-level security."""

    def __init__(self, pool: asyncpg.Pool, tenant_id: str) -> None:
        self._pool = pool
        self.tenant_id = check_tenant_id(tenant_id)

    async def read_stream(
        self, stream_id: str, from_version: int = 1, to_version: int | None = None
    ) -> list[RecordedEvent]:
        check_stream_id(stream_id)
        last = to_version if to_version is not None else 2**31 - 1
        return await self._fetch(read_stream_sql(False), stream_id, from_version, last)

    async def read_all_page(self, from_position: int = 0, limit: int = 5000) -> list[RecordedEvent]:
        """Up to ``limit`` of the tenant's events from ``from_position`` on, in order."""
        # The filter repeats what the policy enforces, so the planner can use the tenant index.
        sql, args = read_all_sql(LogFilter(tenant_id=self.tenant_id), from_position, 2**63 - 1, limit)
        return await self._fetch(sql, *args)

    async def _fetch(self, sql: str, *args: object) -> list[RecordedEvent]:
        try:
            async with self._pool.acquire() as conn, as_tenant(conn, self.tenant_id):
                rows = await conn.fetch(sql, *args)
        except DRIVER_ERRORS as exc:
            raise translate(exc, f"read as tenant {self.tenant_id}") from exc
        return [RecordedEvent(*row) for row in rows]
