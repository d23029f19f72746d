"""A duplicate delivery through the Redis cache never writes a stale state (PostgreSQL and Redis)."""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry

from bench.histories import T0, append_history
from core.domain import TASK, CommandContext, handle, load
from core.domain.loading import Loaded, LogLoader, StateLoader
from core.domain.registry import DOMAIN_EVENTS
from core.domain.task import RenewTaskLease, ReportTaskProgress
from eventstore import EventStore
from eventstore.redis.state_cache import CachedLoader, CacheMetrics, StateCache

pytestmark = pytest.mark.integration


class PausedAfterLoad:
    """Holds its first caller between the load and the append, as a GC pause or a busy loop would."""

    def __init__(self, inner: StateLoader) -> None:
        self.inner = inner
        self.loaded = asyncio.Event()
        self.go_on = asyncio.Event()

    async def load(self, stream_id: str, decider: Any, registry: Any, *, fresh: bool = False) -> Loaded[Any]:
        loaded = await self.inner.load(stream_id, decider, registry, fresh=fresh)
        if not self.loaded.is_set():
            self.loaded.set()
            await self.go_on.wait()
        return loaded

    async def stored(self, stream_id: str, decider: Any, state: Any, version: int) -> None:
        await self.inner.stored(stream_id, decider, state, version)


async def test_a_duplicate_delivery_never_writes_a_stale_state_through_the_cache(
    store: EventStore, redis_url: str
) -> None:
    """The sequence of the bug report: delivery 2 loads v3 through the cache and pauses; a
    heartbeat renews the lease (v4); delivery 1 appends (v5); delivery 2 appends and is told
    it is a duplicate. It reports the real state, and a reaper reading the cache sees the
    renewed lease."""
    task = f"dup{uuid.uuid4().hex[:12]}"
    stream = await append_history(store, task, 3)  # running, lease until T0 + 5 min
    client = aioredis.Redis.from_url(redis_url)
    try:
        cache = StateCache(client, metrics=CacheMetrics(CollectorRegistry()))
        paused = PausedAfterLoad(CachedLoader(cache, LogLoader(store)))
        progress = ReportTaskProgress(task, 1, 50.0, T0 + timedelta(minutes=1), "half")
        delivery = CommandContext("acme", "worker-1", command_id=f"progress-{task}")
        second = asyncio.create_task(handle(store, stream, progress, TASK, delivery, loader=paused))
        await paused.loaded.wait()
        renewed = T0 + timedelta(hours=1)
        heartbeat = RenewTaskLease(task, 1, renewed, T0 + timedelta(minutes=1))
        await handle(store, stream, heartbeat, TASK, CommandContext("acme", "worker-1"))
        await handle(store, stream, progress, TASK, delivery)
        paused.go_on.set()
        late = await second

        truth = await load(store, stream, TASK)
        assert truth.version == 5 and truth.state.lease_expires_at == renewed
        reaper = await CachedLoader(cache, LogLoader(store)).load(stream, TASK, DOMAIN_EVENTS)
        assert reaper.version == 5 and reaper.state.lease_expires_at == renewed, "stale state cached"
        assert late.state == truth.state, "delivery 2 reported its stale fold"
        assert late.duplicate and late.version == 5
    finally:
        await client.aclose()
