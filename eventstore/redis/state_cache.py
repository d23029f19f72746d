"""A Redis write-through cache of hot aggregate state, which can never cause a lost update.

Each entry is ``<stream version>|<state schema version>|<state JSON>`` under
``keys.state_key(stream)``, with a TTL of five minutes renewed by every read (GETEX), so
a hot stream stays cached and a cold one ages out.

Why a stale entry cannot lose an update. The cache only ever answers "the state at version v",
and command handling appends with ``expected_version=v``. If the stream has moved past v (a
writer that skips the cache, an entry written late, a failover), the append fails with
WrongExpectedVersion and nothing is written; handling then reloads with ``fresh=True``, which
bypasses the cache and reads the database. So a stale entry costs a conflict and a reload,
never a write on top of a state that was not the latest.

Why entries never go backwards. Two writers finishing close together may write their entries
in the opposite order to their appends. A small Lua script sets an entry only if it is newer
than the one stored (comparing versions inside Redis, atomically), so the later version wins
whatever the order of arrival. A state whose schema version is not the decider's is a miss.

Redis down or slow is a miss: the database answers, the error is counted, and the command
goes on. The cache is an optimisation, never a dependency.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

import orjson
import redis.asyncio as aioredis
import structlog
from prometheus_client import REGISTRY, CollectorRegistry, Counter
from redis.exceptions import RedisError

from core.domain.contracts import EventRegistry
from core.domain.decider import Decider
from core.domain.loading import Loaded, StateLoader
from eventstore.redis.keys import state_key

__all__ = ["CacheMetrics", "CachedLoader", "CachedState", "StateCache"]

log = structlog.get_logger(__name__)
S = TypeVar("S")

DEFAULT_TTL_SECONDS = 300

# KEYS[1]: the entry; ARGV: version, the encoded entry, TTL seconds. Returns 1 if written.
_PUT_IF_NEWER = """
local current = redis.call('GET', KEYS[1])
if current then
  local stored = tonumber(string.match(current, '^(%d+)|'))
  if stored and stored >= tonumber(ARGV[1]) then
    return 0
  end
end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return 1
"""


class CacheMetrics:
    """Hit, miss and error counts, exported to Prometheus as ``chronicle_state_cache_*_total``."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.hits = Counter("chronicle_state_cache_hits", "state loads answered by Redis", registry=registry)
        self.misses = Counter(
            "chronicle_state_cache_misses", "state loads that went to the database", registry=registry
        )
        self.errors = Counter(
            "chronicle_state_cache_errors", "Redis errors met (each counted as a miss)", registry=registry
        )


_default_metrics: CacheMetrics | None = None


def _metrics() -> CacheMetrics:
    # One set per process on the default registry: registering the same names twice raises.
    global _default_metrics
    if _default_metrics is None:
        _default_metrics = CacheMetrics()
    return _default_metrics


@dataclass(frozen=True, slots=True)
class CachedState:
    version: int
    schema_version: int
    state: dict[str, Any]


class StateCache:
    """Get and put version-stamped states; every Redis failure is a counted miss, never an error."""

    def __init__(
        self,
        redis: aioredis.Redis,
        *,
        ttl_seconds: int = DEFAULT_TTL_SECONDS,
        metrics: CacheMetrics | None = None,
    ) -> None:
        self._redis = redis
        self._ttl = ttl_seconds
        self.metrics = metrics or _metrics()
        self._put = redis.register_script(_PUT_IF_NEWER)

    async def get(self, stream_id: str, schema_version: int) -> CachedState | None:
        try:
            raw = await self._redis.getex(state_key(stream_id), ex=self._ttl)
        except (RedisError, OSError) as exc:
            self._failed("get", stream_id, exc)
            self.metrics.misses.inc()
            return None
        entry = _decode(raw) if raw is not None else None
        if entry is None or entry.schema_version != schema_version:
            self.metrics.misses.inc()
            return None
        self.metrics.hits.inc()
        return entry

    async def put(self, stream_id: str, version: int, schema_version: int, state: dict[str, Any]) -> bool:
        """Store the state at ``version`` unless a newer one is cached; True if it was written."""
        entry = b"%d|%d|" % (version, schema_version) + orjson.dumps(state)
        try:
            written = await self._put(keys=[state_key(stream_id)], args=[version, entry, self._ttl])
        except (RedisError, OSError) as exc:
            self._failed("put", stream_id, exc)
            return False
        return bool(written)

    def _failed(self, operation: str, stream_id: str, exc: Exception) -> None:
        self.metrics.errors.inc()
        log.warning("state_cache.unavailable", operation=operation, stream_id=stream_id, error=str(exc))


def _decode(raw: bytes | str) -> CachedState | None:
    data = raw.encode() if isinstance(raw, str) else raw
    try:
        version, schema, state = data.split(b"|", 2)
        return CachedState(int(version), int(schema), orjson.loads(state))
    except ValueError:
        return None  # not an entry this code wrote: treat as a miss and let a put replace it


class CachedLoader:
    """A StateLoader that asks the cache first and falls back to ``inner`` (a snapshot or log loader).

    A hit carries no events, so command handling checks idempotency by event id (see
    ``core.domain.handling``). After each append the new state is written through.
    """

    def __init__(self, cache: StateCache, inner: StateLoader) -> None:
        self._cache = cache
        self._inner = inner

    async def load(
        self, stream_id: str, decider: Decider[Any, S], registry: EventRegistry, *, fresh: bool = False
    ) -> Loaded[S]:
        if not fresh:
            hit = await self._cache.get(stream_id, decider.state_schema_version)
            if hit is not None:
                return Loaded(stream_id, decider.state_from_json(hit.state), hit.version, (), hit.version)
        loaded = await self._inner.load(stream_id, decider, registry, fresh=fresh)
        if loaded.version:
            await self._remember(stream_id, decider, loaded.state, loaded.version)
        return loaded

    async def stored(self, stream_id: str, decider: Decider[Any, S], state: S, version: int) -> None:
        await self._remember(stream_id, decider, state, version)

    async def _remember(self, stream_id: str, decider: Decider[Any, S], state: S, version: int) -> None:
        await self._cache.put(stream_id, version, decider.state_schema_version, decider.state_to_json(state))
