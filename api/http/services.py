"""What a request needs, built once per process in the app's lifespan (never a module global),
and the two ways every route reads as the key's tenant."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import asyncpg
from fastapi import HTTPException, Request
from redis.asyncio import Redis

from core.errors import InvalidInput
from core.events import RecordedEvent, check_stream_id
from eventstore import EventStore
from eventstore.apikeys import KeyRing
from eventstore.tenancy import as_tenant

__all__ = ["Services", "services", "stream_or_404"]


@dataclass
class Services:
    store: EventStore
    pool: asyncpg.Pool  # reads of read models, under the tenant's row-level security
    redis: Redis
    keys: KeyRing
    max_lag_seconds: float = 30.0
    tenant_submit_rate: float = 0.0  # submissions a second per tenant across replicas; 0: no limit
    draining: bool = field(default=False)

    @asynccontextmanager
    async def as_tenant(self, tenant_id: str) -> AsyncIterator[asyncpg.Connection]:
        """A pooled connection in a transaction that sees only ``tenant_id``'s rows."""
        async with self.pool.acquire() as conn, as_tenant(conn, tenant_id):
            yield conn

    async def first_event(self, tenant_id: str, stream_id: str) -> RecordedEvent:
        """The stream's first event as the tenant sees it; 404 when there is none for it (no
        such stream, another tenant's, or an id no stream can have)."""
        events = await self.store.as_tenant(tenant_id).read_stream(stream_or_404(stream_id), to_version=1)
        if not events:
            raise HTTPException(404, f"no stream {stream_id}")
        return events[0]


def stream_or_404(stream_id: str) -> str:
    """``stream_id`` if a stream can have it; otherwise nothing is there: 404."""
    try:
        return check_stream_id(stream_id)
    except InvalidInput:
        raise HTTPException(404, f"no stream {stream_id}") from None


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found
