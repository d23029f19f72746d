"""The queue depth /metrics reports: undelivered plus unacknowledged messages, on Redis 7 (which
keeps a group's lag) and on the embedded Redis 6 (which does not)."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from eventstore.redis.queues import GROUP, queue_depth, queue_key

pytestmark = pytest.mark.redis


async def test_depth_counts_messages_not_delivered_and_not_acknowledged(redis_url: str) -> None:
    redis = Redis.from_url(redis_url)
    key = queue_key("low")
    try:
        await redis.delete(key)
        assert await queue_depth(redis, "low") == 0  # no stream yet
        await redis.xgroup_create(key, GROUP, id="0", mkstream=True)
        ids = [await redis.xadd(key, {"task_id": str(i)}) for i in range(5)]
        assert await queue_depth(redis, "low") == 5
        await redis.xreadgroup(GROUP, "w1", {key: ">"}, count=2)  # two delivered, not acknowledged
        assert await queue_depth(redis, "low") == 5
        await redis.xack(key, GROUP, ids[0])
        assert await queue_depth(redis, "low") == 4
    finally:
        await redis.delete(key)
        await redis.aclose()
