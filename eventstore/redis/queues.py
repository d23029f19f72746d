"""Dispatch through Redis Streams: one stream per priority, read by the consumer group
``workers``; and a sorted set of retries waiting for their time.

Redis is only dispatch. A message says "look at this task"; what happens is decided by the
task's stream in PostgreSQL (its status, lease and fencing token), so a message delivered
twice, or a stale one, does nothing, and a lost one is put back by the reconciler from
PostgreSQL.
"""

from __future__ import annotations

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
    "queue_depth",
    "release_due",
]

PRIORITIES = ("high", "normal", "low")
GROUP = "workers"


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
            return int(group.get("lag") or 0) + int(group["pending"])
    return int(await redis.xlen(queue_key(priority)))


async def ensure_groups(redis: Redis) -> None:
    for priority in PRIORITIES:
        try:
            await redis.xgroup_create(queue_key(priority), GROUP, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise
