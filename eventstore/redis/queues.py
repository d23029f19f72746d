"""Dispatch through Redis Streams: one stream per priority, read by the consumer group
``workers``; and a sorted set of retries waiting for their time.

Redis is only dispatch. A message says "look at this task"; what happens is decided by the
task's stream in PostgreSQL (its status, lease and fencing token), so a message delivered
twice, or a stale one, does nothing, and a lost one is put back by the reconciler from
PostgreSQL.
"""

from __future__ import annotations

import time

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from eventstore.redis.keys import PREFIX, queue_key

__all__ = [
    "GROUP",
    "PRIORITIES",
    "delayed_key",
    "dispatch",
    "dispatch_later",
    "ensure_groups",
    "free_slot",
    "parked_key",
    "queue_depth",
    "rate_key",
    "release_due",
    "running_key",
    "take_slot",
    "take_token",
]

PRIORITIES = ("high", "normal", "low")
GROUP = "workers"


def parked_key(priority: str, requires: tuple[str, ...] | list[str] | set[str]) -> str:
    """Where a task that requires capabilities waits for a worker that offers all of them: only
    such workers read this stream, so no other worker draws it again and again."""
    return f"{queue_key(priority)}:needs:{','.join(sorted(requires))}"


def delayed_key() -> str:
    """Retries not due yet: members ``<priority>:<task id>``, scored by their due time."""
    return f"{PREFIX}:delayed"


async def dispatch(redis: Redis, task_id: str, priority: str) -> None:
    await redis.xadd(queue_key(priority), {"task_id": task_id})


async def dispatch_later(redis: Redis, task_id: str, priority: str, due_unix_s: float) -> None:
    await redis.zadd(delayed_key(), {f"{priority}:{task_id}": due_unix_s})


# Moves every due retry onto its stream and out of the set in one atomic step: a crash or a
# second mover can neither lose one nor move it twice.
_RELEASE = """
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, 1000)
for _, member in ipairs(due) do
    local sep = string.find(member, ':', 1, true)
    local priority = string.sub(member, 1, sep - 1)
    redis.call('XADD', ARGV[2] .. priority, '*', 'task_id', string.sub(member, sep + 1))
    redis.call('ZREM', KEYS[1], member)
end
return #due
"""


async def release_due(redis: Redis, now_unix_s: float) -> int:
    """Dispatch the retries whose time has come; how many."""
    moved = await redis.eval(_RELEASE, 1, delayed_key(), str(now_unix_s), f"{PREFIX}:queue:")
    return int(moved)


DEPTH_CAP = 100_000  # counted one by one where Redis does not keep the lag: a metric, capped


async def queue_depth(redis: Redis, priority: str) -> int:
    """Messages of the priority's stream not yet delivered to a worker, plus those delivered
    and not yet acknowledged (XINFO GROUPS: lag + pending)."""
    try:
        groups = await redis.xinfo_groups(queue_key(priority))
    except ResponseError:  # no such stream yet
        return 0
    for group in groups:
        name = group["name"].decode() if isinstance(group["name"], bytes) else group["name"]
        if name == GROUP:
            lag = group.get("lag")
            if lag is None:  # Redis 6 (the embedded one) has no lag, and Redis 7 may not know it
                last = group["last-delivered-id"]
                last = last.decode() if isinstance(last, bytes) else last
                undelivered = await redis.xrange(queue_key(priority), f"({last}", "+", count=DEPTH_CAP)
                lag = len(undelivered or [])
            return int(lag) + int(group["pending"])
    return int(await redis.xlen(queue_key(priority)))


def running_key(tenant_id: str) -> str:
    """The tenant's tasks being run now, scored by their lease's end (per-tenant limits)."""
    return f"{PREFIX}:running:{{{tenant_id}}}"


# Takes a running slot for the task if the tenant has one free. Entries whose lease ran out
# (their worker died) are dropped first, so a crash frees its slot when its lease ends, never
# leaks it. Atomic in Redis: two workers cannot both take the last slot.
_TAKE_SLOT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if redis.call('ZSCORE', KEYS[1], ARGV[3]) then
    redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
    return 1
end
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
    return 0
end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[3])
return 1
"""


async def take_slot(redis: Redis, tenant_id: str, task_id: str, lease_end_unix_s: float, limit: int) -> bool:
    """A running slot of the tenant's ``limit`` for ``task_id`` until its lease ends; False if
    the tenant already runs ``limit`` tasks. Renewing a lease calls it again."""
    now = f"{time.time():.3f}"
    taken = await redis.eval(
        _TAKE_SLOT, 1, running_key(tenant_id), now, f"{lease_end_unix_s:.3f}", task_id, str(limit)
    )
    return bool(taken)


async def free_slot(redis: Redis, tenant_id: str, task_id: str) -> None:
    await redis.zrem(running_key(tenant_id), task_id)


def rate_key(tenant_id: str) -> str:
    """The tenant's token bucket (per-tenant rate limits)."""
    return f"{PREFIX}:rate:{{{tenant_id}}}"


# A token bucket holding up to ``rate`` tokens, refilled at ``rate`` a second by Redis's own
# clock (one clock for every worker); a task starts only with a token. Atomic in Redis.
_BUCKET = """
local now = redis.call('TIME')
local t = tonumber(now[1]) + tonumber(now[2]) / 1000000
local rate = tonumber(ARGV[1])
local bucket = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(bucket[1]) or rate
local at = tonumber(bucket[2]) or t
tokens = math.min(rate, tokens + (t - at) * rate)
local taken = 0
if tokens >= 1 then
    tokens = tokens - 1
    taken = 1
end
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(t))
redis.call('EXPIRE', KEYS[1], 3600)
return taken
"""


async def take_token(redis: Redis, tenant_id: str, rate: float) -> bool:
    """Whether the tenant may start a task now under ``rate`` tasks a second (burst: ``rate``)."""
    return bool(await redis.eval(_BUCKET, 1, rate_key(tenant_id), str(rate)))


async def ensure_groups(redis: Redis, keys: list[str] | None = None) -> None:
    """The consumer group on each stream (default: the three priority queues)."""
    for key in keys if keys is not None else [queue_key(p) for p in PRIORITIES]:
        try:
            await redis.xgroup_create(key, GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
