"""Proofs served from the stored tree, as self-contained documents an auditor checks offline.

An inclusion proof says: this event (its canonical bytes, from which every field can be read
back) is leaf ``index`` of the tree whose signed checkpoint is attached. A consistency proof
says: the log signed at size OLD is a prefix of the log signed at size NEW. Each is a JSON
object; ``core.proofs.bundle`` checks them with the public key and nothing else.
"""

from __future__ import annotations

import base64
from typing import Any
from uuid import UUID

import asyncpg

from core.errors import InvalidInput
from core.proofs import (
    Node,
    Range,
    consistency_nodes,
    consistency_proof,
    inclusion_nodes,
    inclusion_proof,
    range_nodes,
)
from eventstore.audit.tree import fetch_nodes

__all__ = ["consistency_document", "inclusion_document", "inclusion_path"]

EVENT = """
SELECT e.global_position, s.leaf,
       chronicle_canonical(e.event_id, e.stream_id, e.stream_version, e.event_type, e.schema_version,
                           e.tenant_id, e.recorded_at, e.data, e.metadata) AS canonical
FROM all_events e LEFT JOIN seals s USING (global_position) WHERE e.event_id = $1
"""


def _b64(value: bytes) -> str:
    return base64.b64encode(value).decode()


async def inclusion_document(
    conn: asyncpg.Connection, event_id: UUID, size: int | None = None
) -> dict[str, Any]:
    """The proof that the event is in the log, against the checkpoint of ``size`` leaves (by
    default the latest one); raises InvalidInput when it cannot be given."""
    row = await conn.fetchrow(EVENT, event_id)
    if row is None:
        raise InvalidInput(f"no event has the id {event_id}")
    if row["leaf"] is None:
        raise InvalidInput(f"event {event_id} is not sealed yet: is `chronicle projections run` running?")
    checkpoint = await _checkpoint(conn, size, at_least=row["leaf"] + 1)
    hashes = await inclusion_path(conn, row["leaf"], checkpoint["size"])
    return {
        "type": "inclusion",
        "checkpoint": checkpoint["note"],
        "index": row["leaf"],
        "size": checkpoint["size"],
        "entry": _b64(row["canonical"]),
        "inclusion": [_b64(h) for h in hashes],
        "global_position": row["global_position"],
    }


async def inclusion_path(conn: asyncpg.Connection, leaf: int, size: int) -> list[bytes]:
    """The audit path of ``leaf`` in the tree of ``size`` leaves, from the stored nodes."""
    found = await _nodes(conn, inclusion_nodes(leaf, size))
    return inclusion_proof(leaf, size, lambda _: found)


async def consistency_document(conn: asyncpg.Connection, old: int, new: int) -> dict[str, Any]:
    """The proof that the checkpoint of ``old`` leaves is a prefix of the one of ``new``."""
    if not 0 < old <= new:
        raise InvalidInput(f"a consistency proof needs 0 < OLD <= NEW, got {old} and {new}")
    first, second = await _checkpoint(conn, old), await _checkpoint(conn, new)
    found = await _nodes(conn, consistency_nodes(old, new))
    hashes = consistency_proof(old, new, lambda _: found)
    return {
        "type": "consistency",
        "old_checkpoint": first["note"],
        "new_checkpoint": second["note"],
        "consistency": [_b64(h) for h in hashes],
    }


async def _checkpoint(conn: asyncpg.Connection, size: int | None, at_least: int = 1) -> asyncpg.Record:
    if size is None:
        row = await conn.fetchrow("SELECT size, note FROM checkpoints ORDER BY size DESC LIMIT 1")
        if row is None or row["size"] < at_least:
            raise InvalidInput("no checkpoint covers this event yet: wait a second and try again")
        return row
    row = await conn.fetchrow("SELECT size, note FROM checkpoints WHERE size = $1", size)
    if row is None:
        raise InvalidInput(f"there is no checkpoint of size {size} (`chronicle audit checkpoints` lists all)")
    if row["size"] < at_least:
        raise InvalidInput(f"the checkpoint of size {size} does not cover leaf {at_least - 1}")
    return row


async def _nodes(conn: asyncpg.Connection, ranges: list[Range]) -> dict[Node, bytes]:
    """Every complete subtree a proof over ``ranges`` needs, in one query."""
    nodes = dict.fromkeys(n for r in ranges for n in range_nodes(r.start, r.end))
    return await fetch_nodes(conn, list(nodes))
