"""Retention policies and the archival run (migration 0007).

A policy keeps a category's streams in the hot ``events`` table for ``keep_days`` after their
last event; with ``after_terminal``, only streams whose last event ends their life
(``TERMINAL_TASK_EVENTS``) are archived, ``keep_days`` after that event. ``archive_due``
moves what is due in batches of whole streams, each batch one call of ``chronicle_archive``:
one transaction that moves the events, marks the streams archived and appends a
``StreamsArchived`` record, or does nothing. A process killed half-way leaves every batch
either moved and recorded, or untouched; running again picks up where it stopped.

Archived events stay readable (``read_stream(..., include_archived=True)``, ``read_all`` the
same), provable (proofs and the verifier read ``all_events``) and in the read models (their
rebuilds read the archive too). Only sealed events are archived.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg
import orjson

from core.domain.registry import DOMAIN_EVENTS
from core.domain.retention import TERMINAL_TASK_EVENTS, StreamsArchived
from core.errors import InvalidInput
from eventstore.pg import DRIVER_ERRORS, translate

__all__ = ["Archived", "Policy", "archive_due", "due_streams", "policies", "remove_policy", "set_policy"]

_CATEGORY = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}")


@dataclass(frozen=True, slots=True)
class Policy:
    category: str
    keep_days: int
    after_terminal: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.category, str) or not _CATEGORY.fullmatch(self.category):
            raise InvalidInput(
                f"category {self.category!r} must be a letter then up to 63 letters, digits or _"
            )
        if not isinstance(self.keep_days, int) or self.keep_days < 1:
            raise InvalidInput(f"keep_days must be a whole number of days >= 1, got {self.keep_days!r}")


@dataclass(frozen=True, slots=True)
class Archived:
    category: str
    streams: int
    events: int


async def set_policy(conn: asyncpg.Connection, policy: Policy) -> None:
    await conn.execute(
        "INSERT INTO retention_policies (category, keep_days, after_terminal) VALUES ($1, $2, $3) "
        "ON CONFLICT (category) DO UPDATE SET keep_days = excluded.keep_days, "
        "after_terminal = excluded.after_terminal, updated_at = now()",
        policy.category,
        policy.keep_days,
        policy.after_terminal,
    )


async def remove_policy(conn: asyncpg.Connection, category: str) -> bool:
    return (
        await conn.fetchval("DELETE FROM retention_policies WHERE category = $1 RETURNING true", category)
        or False
    )


async def policies(conn: asyncpg.Connection) -> list[Policy]:
    rows = await conn.fetch("SELECT category, keep_days, after_terminal FROM retention_policies ORDER BY 1")
    return [Policy(*row) for row in rows]


# A stream is due when its last event (the event at the stream's version) is older than the
# cutoff and, for an after-terminal policy, ends its life. Oldest first.
_DUE = """
SELECT s.stream_id FROM streams s
JOIN events e ON e.stream_id = s.stream_id AND e.stream_version = s.version
WHERE s.category = $1 AND NOT s.archived AND e.recorded_at < $2
  AND (NOT $3 OR e.event_type = ANY($4::text[]))
  AND e.global_position <= (SELECT coalesce(max(global_position), 0) FROM seals)
ORDER BY e.global_position
LIMIT $5
"""


async def due_streams(
    conn: asyncpg.Connection, policy: Policy, now: datetime, limit: int = 1000
) -> list[str]:
    """Up to ``limit`` streams the policy archives at ``now`` (sealed ones only)."""
    cutoff = now - timedelta(days=policy.keep_days)
    rows = await conn.fetch(
        _DUE, policy.category, cutoff, policy.after_terminal, list(TERMINAL_TASK_EVENTS), limit
    )
    return [r[0] for r in rows]


async def archive_due(
    conn: asyncpg.Connection,
    *,
    now: datetime | None = None,
    batch_streams: int = 1000,
    progress: Callable[[Archived], None] | None = None,
) -> list[Archived]:
    """Archive everything every policy says is due at ``now`` (default: the present).

    ``progress`` gets the category's running totals after each batch commits.
    """
    now = now or datetime.now(UTC)
    done = []
    for policy in await policies(conn):
        streams = events = 0
        while batch := await due_streams(conn, policy, now, batch_streams):
            events += await _archive(conn, policy, now, batch)
            streams += len(batch)
            if progress is not None:
                progress(Archived(policy.category, streams, events))
        done.append(Archived(policy.category, streams, events))
    return done


async def _archive(conn: asyncpg.Connection, policy: Policy, now: datetime, streams: list[str]) -> int:
    cutoff = now - timedelta(days=policy.keep_days)
    record = DOMAIN_EVENTS.encode(
        StreamsArchived(policy.category, policy.keep_days, policy.after_terminal, cutoff, tuple(streams), 0)
    )
    try:
        async with conn.transaction():
            moved = await conn.fetchval(
                "SELECT chronicle_archive($1, $2, $3, $4, $5)",
                streams,
                f"retention-{policy.category}",
                record.id,
                orjson.dumps(record.data),
                orjson.dumps(record.metadata),
            )
    except DRIVER_ERRORS as exc:
        raise translate(exc, f"archive {policy.category}") from exc
    return int(moved)
