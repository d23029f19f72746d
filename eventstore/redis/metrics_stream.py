"""High-rate training metrics in a capped Redis stream: the adapter behind
``core.triad.ports.MetricsSink``.

One stream per run, ``chronicle:run:{<run_id>}:metrics``; the braces make it a Redis Cluster
hash tag, so a run's keys always live on one shard. Each write is one pipelined round trip of
XADDs with ``MAXLEN ~ cap``: the approximate trim lets Redis drop whole radix-tree nodes, which
keeps trimming O(1) amortised at the cost of holding slightly more than ``cap`` entries. Metrics
are droppable by contract, so Redis errors become ``StoreUnavailable`` and the flusher counts
the batch as failed instead of retrying it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from core.errors import StoreUnavailable
from core.triad.contracts import TelemetryPacket
from eventstore.redis.keys import metrics_key

__all__ = ["RedisMetricsSink"]

DEFAULT_CAP = 100_000


class RedisMetricsSink:
    def __init__(self, redis: aioredis.Redis, *, cap: int = DEFAULT_CAP) -> None:
        self._redis = redis
        self._cap = cap

    async def write(self, run_id: str, packets: Sequence[TelemetryPacket]) -> None:
        if not packets:
            return
        key = metrics_key(run_id)
        pipe = self._redis.pipeline(transaction=False)
        for packet in packets:
            pipe.xadd(key, _fields(packet), maxlen=self._cap, approximate=True)
        try:
            await pipe.execute()
        except RedisError as exc:
            raise StoreUnavailable(f"metrics for run {run_id!r} not written: {exc}") from exc

    async def read(self, run_id: str, count: int = 1000) -> list[dict[str, Any]]:
        """The newest ``count`` samples, oldest first (for tools and tests)."""
        try:
            entries = await self._redis.xrevrange(metrics_key(run_id), count=count)
        except RedisError as exc:
            raise StoreUnavailable(f"metrics for run {run_id!r} not read: {exc}") from exc
        return [_decode(fields) for _id, fields in reversed(entries or []) if fields is not None]


Field = bytes | bytearray | memoryview | str | int | float


def _fields(packet: TelemetryPacket) -> dict[Field, Field]:
    fields: dict[Field, Field] = {"epoch": packet.epoch, "step": packet.step}
    for name, value in packet.metrics:
        fields[name] = repr(float(value))  # repr keeps nan/inf readable and full precision
    return fields


def _decode(fields: dict[Any, Any]) -> dict[str, Any]:
    decoded: dict[str, Any] = {}
    for key, value in fields.items():
        name = key.decode() if isinstance(key, bytes) else str(key)
        text = value.decode() if isinstance(value, bytes) else str(value)
        decoded[name] = int(text) if name in ("epoch", "step") else float(text)
    return decoded
