"""Crypto-shredding of personal fields (``core.privacy``): sealed on append, opened on read.

``Privacy`` sits in the event store's append and read paths. An append whose events have no
personal fields costs one set lookup per event; one that has them gets its subjects' data
keys (cached) and seals each personal value before the events are encoded, so the stored,
hashed and sealed bytes are the envelope. A read opens envelopes with one query for the keys
of a page that are not cached, or puts the redaction marker where a key was destroyed.

``forget`` destroys a subject's keys and records ``SubjectForgotten`` in the same transaction,
so the read models that copied its personal fields scrub them exactly when they apply it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import orjson

from core.domain.registry import DOMAIN_EVENTS
from core.domain.subject import SubjectForgotten
from core.errors import InvalidInput
from core.events import NewEvent, RecordedEvent
from core.privacy import ENVELOPE, Personal, is_envelope, open_value, seal_value, subject_stream_id
from core.settings import Settings
from eventstore.pg import create_pool
from eventstore.privacy.keys import SubjectKeys
from eventstore.privacy.masterkeys import MasterKeyFiles

__all__ = ["MasterKeyFiles", "Privacy", "SubjectKeys"]

_ENVELOPE_BYTES = f'"{ENVELOPE}"'.encode()
_APPEND = "SELECT outcome FROM chronicle_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"


class Privacy:
    def __init__(self, keys: SubjectKeys, personal: Mapping[str, Personal] | None = None) -> None:
        self.keys = keys
        self._personal = dict(DOMAIN_EVENTS.personal if personal is None else personal)
        self._own_pool: asyncpg.Pool | None = None

    @classmethod
    async def connect(cls, database_url: str, settings: Settings) -> Privacy:
        """For a tool that reads events outside an EventStore (audit queries); ``close`` it."""
        pool = await create_pool(database_url, 1)
        privacy = cls(SubjectKeys(pool, MasterKeyFiles(settings.master_key_path)))
        privacy._own_pool = pool
        return privacy

    async def close(self) -> None:
        if self._own_pool is not None:
            await self._own_pool.close()

    def declares(self, event_type: str) -> bool:
        """Whether events of this type carry personal fields (sealed on the way in)."""
        return event_type in self._personal

    def concerns(self, events: Sequence[NewEvent]) -> bool:
        personal = self._personal
        return any(e.type in personal for e in events)

    async def seal(self, events: Sequence[NewEvent]) -> list[NewEvent]:
        """``events`` with every personal value replaced by its envelope."""
        sealed = []
        for event in events:
            spec = self._personal.get(event.type)
            if spec is None:
                sealed.append(event)
                continue
            data = dict(event.data)
            subject = data.get(spec.subject)
            if not isinstance(subject, str) or not subject:
                raise InvalidInput(
                    f"event {event.type!r}: data.{spec.subject} names whose personal data this is and "
                    f"must be a non-empty str, got {subject!r}"
                )
            tenant = event.metadata.get("tenant_id") or ""
            key_id, key = await self.keys.live_key(str(tenant), subject)
            for field in spec.fields:
                if field in data and not is_envelope(data[field]):
                    data[field] = seal_value(data[field], key, key_id, event.type, field)
            sealed.append(dataclasses.replace(event, data=data))
        return sealed

    async def open(self, events: list[RecordedEvent]) -> list[RecordedEvent]:
        """``events`` with every envelope opened, or redacted where its key was destroyed."""
        personal = self._personal
        touched = [
            i
            for i, e in enumerate(events)
            if e.type in personal and not isinstance(raw := e._data_raw, Mapping) and _ENVELOPE_BYTES in raw
        ]
        if not touched:
            return events
        wanted = {value["key"] for i in touched for value in events[i].data.values() if is_envelope(value)}
        keys = await self.keys.keys(UUID(k) for k in wanted)
        opened = list(events)
        for i in touched:
            e = events[i]
            data = {
                field: open_value(value, keys[UUID(value["key"])], e.type, field)
                if is_envelope(value)
                else value
                for field, value in e.data.items()
            }
            opened[i] = RecordedEvent(
                e.event_id,
                e.stream_id,
                e.stream_version,
                e.global_position,
                e.type,
                e.schema_version,
                data,
                e.metadata,
                e.tenant_id,
                e.recorded_at,
            )
        return opened

    async def forget(
        self, conn: asyncpg.Connection, subject: str, *, tenant_id: str | None, reason: str
    ) -> int:
        """Destroy every data key of ``subject`` and record it, in one transaction. Returns how
        many keys were destroyed (0: nothing of the subject was ever sealed, or it was already
        forgotten; the event is recorded all the same, so the request itself is on record)."""
        if not isinstance(subject, str) or not subject:
            raise InvalidInput(f"subject must be a non-empty str, got {subject!r}")
        event = DOMAIN_EVENTS.encode(
            SubjectForgotten(subject, 0, reason, datetime.now(UTC)),
            {"tenant_id": tenant_id} if tenant_id else {},
        )
        async with conn.transaction():
            destroyed = await conn.fetch(
                "UPDATE subject_keys SET wrapped_key = NULL, forgotten_at = now() "
                "WHERE tenant_id = $1 AND subject = $2 AND forgotten_at IS NULL RETURNING key_id",
                tenant_id or "",
                subject,
            )
            data = {**event.data, "keys_destroyed": len(destroyed)}
            outcome = await conn.fetchval(
                _APPEND,
                [subject_stream_id(tenant_id, subject)],
                [-1],
                [tenant_id],
                [0],
                [1],
                [event.id],
                [event.type],
                [event.schema_version],
                [orjson.dumps(data)],
                [orjson.dumps(event.metadata)],
            )
            if outcome != "ok":
                raise InvalidInput(f"recording that {subject!r} was forgotten failed: {outcome}")
        self.keys.forget_cached(tenant_id or "", subject)
        return len(destroyed)


def _open(envelope: Mapping[str, Any], keys: Mapping[UUID, bytes | None], event_type: str, field: str) -> Any:
    return open_value(envelope, keys[UUID(envelope["key"])], event_type, field)
