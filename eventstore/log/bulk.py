"""Bulk moves: import JSON Lines through COPY, export the log as JSON Lines.

Import appends each line's event to its stream in file order (expected version ANY). It
works in chunks; each chunk is one transaction under the append lock, so readers tailing
the log never skip an imported event. Event ids are taken from the file, or derived from
the line's position and content when absent, so importing the same file again, or again
after a crash half-way, stores nothing twice.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, TextIO

import asyncpg
import orjson

from core.codec import EncodedAppend, encode_append
from core.errors import InvalidInput, TenantMismatch
from core.events import ExpectedVersion, NewEvent, RecordedEvent
from eventstore.log.wakeup import CHANNEL
from eventstore.pg import APPEND_LOCK, DRIVER_ERRORS, close_connection, connect, translate

__all__ = ["ImportReport", "export_jsonl", "import_jsonl", "parse_lines"]

_IDS = uuid.UUID("6f1d7c1e-3a52-4c4e-9d0b-5b2f8e1a7c44")
_ANY = ExpectedVersion.ANY

_STAGE = """
CREATE TEMP TABLE chronicle_import (
    seq integer, event_id uuid, stream_id text, event_type text, schema_version smallint,
    data jsonb, metadata jsonb, tenant_id text
) ON COMMIT DROP
"""
_STAGE_COLUMNS = [
    "seq",
    "event_id",
    "stream_id",
    "event_type",
    "schema_version",
    "data",
    "metadata",
    "tenant_id",
]

_MISMATCH = """
SELECT i.stream_id, s.tenant_id AS stream_tenant, i.tenant_id
FROM chronicle_import i JOIN streams s USING (stream_id)
WHERE s.tenant_id IS DISTINCT FROM i.tenant_id LIMIT 1
"""

# Same numbering and stream bookkeeping as chronicle_append, set-based over the staged chunk
# (the sealer chains and seals the events afterwards, as it does appended ones). Lines whose
# event id is already stored are skipped (a re-import).
_INSERT = """
WITH fresh AS (
    SELECT i.* FROM chronicle_import i
    WHERE NOT EXISTS (SELECT 1 FROM events e WHERE e.event_id = i.event_id)
),
numbered AS (
    SELECT f.*, coalesce(s.version, 0)
                + row_number() OVER (PARTITION BY f.stream_id ORDER BY f.seq) AS version
    FROM fresh f LEFT JOIN streams s USING (stream_id)
),
inserted AS (
    INSERT INTO events (event_id, stream_id, stream_version, event_type, schema_version,
                        data, metadata, tenant_id)
    SELECT event_id, stream_id, version, event_type, schema_version, data, metadata, tenant_id
    FROM numbered ORDER BY seq
    RETURNING stream_id, stream_version, tenant_id
),
written AS (
    SELECT stream_id, max(stream_version) AS version, min(tenant_id) AS tenant_id
    FROM inserted GROUP BY stream_id
),
upserted AS (
    INSERT INTO streams AS s (stream_id, category, tenant_id, version)
    SELECT stream_id, split_part(stream_id, '-', 1), tenant_id, version FROM written
    ON CONFLICT (stream_id) DO UPDATE SET version = EXCLUDED.version, updated_at = now()
    RETURNING 1
)
SELECT (SELECT count(*) FROM inserted), (SELECT count(*) FROM chronicle_import)
"""


@dataclass(frozen=True, slots=True)
class ImportReport:
    lines: int
    imported: int
    already_stored: int


@dataclass(frozen=True, slots=True)
class _Line:
    seq: int
    append: EncodedAppend


def parse_lines(lines: Iterable[str], max_event_bytes: int) -> Iterator[_Line]:
    """Validate each line as an append would; raise InvalidInput naming the line."""
    tenants: dict[str, str | None] = {}
    for number, text in enumerate(lines, start=1):
        if not text.strip():
            continue
        try:
            item = orjson.loads(text)
            if not isinstance(item, dict):
                raise InvalidInput("a line must be a JSON object")
            stream_id = item["stream_id"]
            event_id = item.get("event_id") or uuid.uuid5(
                _IDS, f"{number}\n{hashlib.sha256(text.strip().encode()).hexdigest()}"
            )
            event = NewEvent(
                item["type"],
                item.get("data", {}),
                item.get("metadata") or {},
                event_id,
                item.get("schema_version", 1),
            )
            encoded = encode_append(stream_id, [event], _ANY, max_event_bytes)
        except (orjson.JSONDecodeError, KeyError, InvalidInput, TypeError, ValueError) as exc:
            detail = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
            raise InvalidInput(f"line {number}: {detail}") from exc
        tenant = encoded.tenant_id
        if tenants.setdefault(stream_id, tenant) != tenant:
            raise InvalidInput(
                f"line {number}: stream {stream_id!r} was given tenant {tenants[stream_id]!r} "
                f"earlier in the file, here {tenant!r}"
            )
        yield _Line(number, encoded)


async def import_jsonl(
    database_url: str,
    source: TextIO,
    max_event_bytes: int,
    chunk_size: int = 50_000,
    progress: Callable[[int, int], None] | None = None,
) -> ImportReport:
    """Import a JSON Lines file; every line is validated before anything is written.

    ``progress(lines_written, lines)`` is called after each chunk's transaction commits.
    """
    lines = list(parse_lines(source, max_event_bytes))
    imported = 0
    conn = await connect(database_url)
    try:
        for start in range(0, len(lines), chunk_size):
            chunk = lines[start : start + chunk_size]
            imported += await _import_chunk(conn, chunk)
            if progress is not None:
                progress(start + len(chunk), len(lines))
    except DRIVER_ERRORS as exc:
        raise translate(exc, "import") from exc
    finally:
        await close_connection(conn)
    return ImportReport(len(lines), imported, len(lines) - imported)


async def _import_chunk(conn: asyncpg.Connection, chunk: list[_Line]) -> int:
    records = [
        (line.seq, e.event_id, a.stream_id, e.type, e.schema_version, e.data, e.metadata, a.tenant_id)
        for line in chunk
        for a in (line.append,)
        for e in a.events
    ]
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
        await conn.execute(_STAGE)
        await conn.copy_records_to_table("chronicle_import", records=records, columns=_STAGE_COLUMNS)
        mismatch = await conn.fetchrow(_MISMATCH)
        if mismatch is not None:
            raise TenantMismatch(mismatch["stream_id"], mismatch["stream_tenant"], mismatch["tenant_id"])
        inserted, _ = await conn.fetchrow(_INSERT)
        await conn.execute("SELECT pg_notify($1, '')", CHANNEL)
    return int(inserted)


def event_json(event: RecordedEvent) -> dict[str, Any]:
    return {
        "event_id": str(event.event_id),
        "stream_id": event.stream_id,
        "stream_version": event.stream_version,
        "global_position": event.global_position,
        "type": event.type,
        "schema_version": event.schema_version,
        "data": event.data,
        "metadata": event.metadata,
        "tenant_id": event.tenant_id,
        "recorded_at": event.recorded_at.isoformat(),
    }


async def export_jsonl(events: AsyncIterator[RecordedEvent], sink: TextIO) -> int:
    count = 0
    async for event in events:
        sink.write(orjson.dumps(event_json(event)).decode())
        sink.write("\n")
        count += 1
    return count
