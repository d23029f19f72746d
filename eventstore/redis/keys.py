"""Every Redis key Chronicle writes, in one place.

Keys that belong to one stream carry the stream id as a Redis Cluster hash tag (``{...}``), so
whatever else is ever keyed by the same stream lands on the same shard and can be touched by one
script or one MULTI. Stream ids cannot contain braces (``core.events.check_stream_id``), so the
tag is always exactly the stream id.
"""

from __future__ import annotations

__all__ = ["PREFIX", "metrics_key", "queue_key", "state_key"]

PREFIX = "chronicle"


def state_key(stream_id: str) -> str:
    """The cached aggregate state of ``stream_id`` (eventstore.redis.state_cache)."""
    return f"{PREFIX}:state:{{{stream_id}}}"


def metrics_key(run_id: str) -> str:
    """The capped stream of a training run's metrics (eventstore.redis.metrics_stream)."""
    return f"{PREFIX}:run:{{{run_id}}}:metrics"


def queue_key(priority: str) -> str:
    """The dispatch stream of one priority band (high, normal, low): task ids for workers."""
    return f"{PREFIX}:queue:{priority}"
