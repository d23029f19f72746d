"""Conversation history: one row per message, in the order the conversation accepted it, with
when it was sent, delivered and acknowledged. Read it through the ``conversation_messages``
view, or with ``conversation`` here (a keyset page by sequence).

The conversation aggregate keeps only the messages still in flight; this is where the whole
history lives. ``MessageSent`` makes the row (sender, recipient, body, and the message's own
correlation and causation ids, which say which exchange it belongs to and what it answers;
the tenant is the event's); ``MessageDelivered`` and ``MessageAcknowledged`` stamp their times
on it. A delivery or acknowledgement of a message this generation never saw sent is ignored.
A ``SubjectForgotten`` replaces the body of every message its subject sent before it with the
redaction marker, as a replay of those messages now shows them (``core.privacy``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
import orjson

from core.domain.conversation.events import MessageAcknowledged, MessageDelivered, MessageSent
from core.domain.registry import DOMAIN_EVENTS
from core.domain.subject import SubjectForgotten
from core.events import RecordedEvent
from core.privacy import REDACTED_JSON
from projections.models.pages import fetch_page
from projections.models.rows import Row, RowTable, touched

__all__ = ["Conversations", "MessageRow", "conversation"]

COLUMNS = (
    "conversation_id",
    "sequence",
    "tenant_id",
    "message_id",
    "sender",
    "recipient",
    "body",
    "correlation_id",
    "causation_id",
    "sent_at",
    "delivered_at",
    "acknowledged_at",
    "updated_position",
)
TABLE = RowTable("conversation_messages_rows", ("conversation_id", "sequence"), COLUMNS)

_STAMPS = {MessageDelivered.TYPE: "delivered_at", MessageAcknowledged.TYPE: "acknowledged_at"}
_TYPES = frozenset({MessageSent.TYPE, *_STAMPS})

Key = tuple[str, int]


class Conversations:
    name = "conversations"
    version = 2  # 2: scrubs a forgotten subject's bodies
    categories = ("conversation", "subject")
    tables = (TABLE.name,)

    async def apply(self, conn: asyncpg.Connection, generation: int, events: Sequence[RecordedEvent]) -> None:
        # A SubjectForgotten scrubs the rows written before it, so the batch is applied in
        # segments split at each one: a message the subject sends after being forgotten (under
        # a new key) is not scrubbed.
        segment: list[RecordedEvent] = []
        for recorded in events:
            if recorded.type == SubjectForgotten.TYPE:
                await _apply_messages(conn, generation, segment)
                segment = []
                await _scrub(conn, generation, recorded)
            elif recorded.type in _TYPES:
                segment.append(recorded)
        await _apply_messages(conn, generation, segment)


async def _apply_messages(conn: asyncpg.Connection, generation: int, events: Sequence[RecordedEvent]) -> None:
    if not events:
        return
    stamped = [_key_of(e.data) for e in events if e.type in _STAMPS]
    rows = await TABLE.fetch(
        conn,
        generation,
        "(conversation_id, sequence) IN (SELECT * FROM unnest($2::text[], $3::int[]))",
        [k[0] for k in stamped],
        [k[1] for k in stamped],
    )
    changed: list[Key] = []
    for recorded in events:
        if (key := _fold(rows, recorded)) is not None:
            changed.append(key)
    await TABLE.upsert(conn, generation, touched(rows, changed))


async def _scrub(conn: asyncpg.Connection, generation: int, recorded: RecordedEvent) -> None:
    """The bodies the forgotten subject sent read as the marker a replay of them now shows."""
    event = DOMAIN_EVENTS.read(recorded)
    assert isinstance(event, SubjectForgotten)
    await conn.execute(
        "UPDATE conversation_messages_rows SET body = $4, updated_position = $5 "
        "WHERE generation = $1 AND tenant_id IS NOT DISTINCT FROM $2 AND sender = $3",
        generation,
        recorded.tenant_id,
        event.subject,
        orjson.dumps(REDACTED_JSON),
        recorded.global_position,
    )


def _key_of(data: Mapping[str, Any]) -> Key:
    """Which message an event is about, read before decoding to load its row."""
    return (str(data["conversation_id"]), int(data["sequence"]))


def _fold(rows: dict[Any, Row], recorded: RecordedEvent) -> Key | None:
    event = DOMAIN_EVENTS.read(recorded)
    if isinstance(event, MessageSent):
        key = (event.conversation_id, event.sequence)
        rows[key] = _sent_row(event, recorded)
        return key
    assert isinstance(event, MessageDelivered | MessageAcknowledged)
    row = rows.get((event.conversation_id, event.sequence))
    if row is None:
        return None
    row[_STAMPS[recorded.type]] = event.at
    row["updated_position"] = recorded.global_position
    return (event.conversation_id, event.sequence)


def _sent_row(event: MessageSent, recorded: RecordedEvent) -> Row:
    return {
        "conversation_id": event.conversation_id,
        "sequence": event.sequence,
        "tenant_id": recorded.tenant_id,
        "message_id": event.message_id,
        "sender": event.sender,
        "recipient": event.recipient,
        # jsonb travels as the bytes orjson makes (eventstore.pg's codec on every connection).
        "body": orjson.dumps(event.body),
        "correlation_id": event.correlation_id,
        "causation_id": event.causation_id,
        "sent_at": event.at,
        "delivered_at": None,
        "acknowledged_at": None,
        "updated_position": recorded.global_position,
    }


# -- reading -------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MessageRow:
    conversation_id: str
    sequence: int
    tenant_id: str | None
    message_id: str
    sender: str
    recipient: str
    body: Mapping[str, Any]
    correlation_id: str
    causation_id: str | None
    sent_at: datetime
    delivered_at: datetime | None
    acknowledged_at: datetime | None
    updated_position: int

    @classmethod
    def of(cls, record: asyncpg.Record) -> MessageRow:
        values = dict(record)
        values["body"] = orjson.loads(values["body"])  # bytes with Chronicle's codec, str without
        return cls(**values)


async def conversation(
    conn: asyncpg.Connection, conversation_id: str, *, after: int = 0, limit: int = 100
) -> list[MessageRow]:
    """The conversation's messages in order, from the one after sequence ``after``."""
    records = await fetch_page(
        conn,
        "conversation_messages",
        COLUMNS,
        {"conversation_id": conversation_id},
        ("sequence",),
        (after,),
        limit,
    )
    return [MessageRow.of(r) for r in records]
