"""The audit index: one row per event, with the fields an auditor filters on. Read it through
the ``audit_index`` view; ``projections.audit`` queries it.

A row holds the event's global position, ``recorded_at``, tenant, stream, category, stream
version, event type and id, and from its metadata the actor and the correlation, causation and
command ids (handling writes them; see ``core.domain.handling``). A metadata value that is not
a string is stored as its JSON text, a missing one as NULL. The index reads every category.

Time as positions. ``recorded_at`` is set when an append's transaction starts, while positions
follow the append lock, so an append that waited for the lock (or a bulk import chunk that
spent a while copying) can be recorded slightly earlier than an event below it. Two running
maxima, taken over the log in position order, turn a time range into a range of positions
anyway, exactly:

- ``recorded_max``: the latest ``recorded_at`` at or before this position. It never decreases,
  and every event recorded at or after T sits at or after the first position whose
  ``recorded_max`` reaches T.
- ``lateness_max``: the most that any event at or before this position was recorded before
  ``recorded_max`` (0 while the log is in time order). With L the value on the last row, every
  event recorded before T sits at or before the last position whose ``recorded_max`` is before
  T + L.

Both depend only on the log up to the row, so a rebuild computes the same values.

Applying is insert-only and set-based: one INSERT ... SELECT per batch, which reads the batch's
events from ``events`` by position (the very events handed to ``apply``: committed, and
append-only), takes the metadata fields out in SQL, and carries the two maxima on from the
generation's last row with window functions. Nothing of the events travels back to the
database, and no Python runs per event.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from core.events import RecordedEvent

__all__ = ["AuditIndex"]

# ->> gives a metadata string as it is, any other JSON value as its text, and NULL when absent.
_INSERT = """
WITH previous AS (
    SELECT recorded_max, lateness_max FROM audit_index_rows
    WHERE generation = $1 ORDER BY global_position DESC LIMIT 1
),
batch AS (
    SELECT e.global_position, e.recorded_at, e.tenant_id, e.metadata, e.event_type, e.stream_id,
           e.stream_version, e.event_id,
           greatest(max(e.recorded_at) OVER running, (SELECT recorded_max FROM previous)) AS recorded_max
    FROM events e WHERE e.global_position = ANY($2::bigint[])
    WINDOW running AS (ORDER BY e.global_position)
)
INSERT INTO audit_index_rows (
    generation, global_position, recorded_at, recorded_max, lateness_max, tenant_id, actor,
    event_type, stream_id, category, stream_version, event_id, correlation_id, causation_id,
    command_id)
SELECT $1, global_position, recorded_at, recorded_max,
       greatest(max(recorded_max - recorded_at) OVER running, (SELECT lateness_max FROM previous)),
       tenant_id, metadata->>'actor', event_type, stream_id, split_part(stream_id, '-', 1),
       stream_version, event_id, metadata->>'correlation_id', metadata->>'causation_id',
       metadata->>'command_id'
FROM batch
WINDOW running AS (ORDER BY global_position)
"""


class AuditIndex:
    name = "audit_index"
    version = 1
    categories = None
    tables = ("audit_index_rows",)

    async def apply(self, conn: asyncpg.Connection, generation: int, events: Sequence[RecordedEvent]) -> None:
        await conn.execute(_INSERT, generation, [event.global_position for event in events])
