"""The sealer: chains, hashes into the Merkle tree and checkpoints events after they commit.

Appends store events only; hashing inside the append lock cost up to a quarter of append
throughput. The sealer follows the log in global order, as transparency logs integrate entries
after accepting them, and writes for each event, in one transaction per batch:

- its leaf: index n in the tree (0, 1, 2, ... in global order; positions left by rolled-back
  appends take no leaf), ``leaf_hash(canonical bytes)``;
- its stream chain link: sha256(previous link of the stream || canonical bytes);
- every complete subtree node the new leaves finish (``merkle_nodes``);
- a signed checkpoint when the tree has grown and the last one is a second old, or 10,000
  events behind (``CHECKPOINT_EVERY_S`` / ``CHECKPOINT_EVERY_EVENTS``).

The canonical bytes come from the database's own ``chronicle_canonical``, the function the
verifier uses too, so the bytes hashed are the bytes stored (ciphertext, for encrypted fields).

Exactly once, crash or not: the batch reads where the tree ends from ``seals`` itself inside
its transaction, and holds a transaction-level advisory lock for the whole batch, so two
sealers (two daemons) never integrate the same events; a crash rolls the batch back and the
next one starts from the last committed leaf. The append lock makes every snapshot of the log
a prefix, so reading the events after the last sealed position never skips one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import asyncpg

from core.proofs import Checkpoint, Frontier, leaf_hash, range_nodes, sign_note
from eventstore.audit.keys import SigningKey, register
from eventstore.audit.tree import fetch_nodes

__all__ = [
    "CHECKPOINT_EVERY_EVENTS",
    "CHECKPOINT_EVERY_S",
    "SEAL_LOCK",
    "Sealed",
    "seal_batch",
    "unsealed_events",
]

SEAL_LOCK = 7_291_033_452  # one sealing transaction at a time; fixed forever
CHECKPOINT_EVERY_S = 1.0
CHECKPOINT_EVERY_EVENTS = 10_000

# Canonical bytes as revision 0001 defines them: the fields joined by newlines, data and
# metadata last as jsonb text.
EVENTS_AFTER = """
SELECT global_position, stream_id, stream_version,
       chronicle_canonical(event_id, stream_id, stream_version, event_type, schema_version,
                           tenant_id, recorded_at, data, metadata) AS canonical
FROM events WHERE global_position > $1 ORDER BY global_position LIMIT $2
"""
# The chain link of the event before each stream's first one in the batch.
PREVIOUS_LINKS = """
SELECT e.stream_id, s.stream_hash
FROM unnest($1::text[], $2::integer[]) AS p(stream_id, version)
JOIN all_events e ON e.stream_id = p.stream_id AND e.stream_version = p.version
JOIN seals s ON s.global_position = e.global_position
"""


@dataclass(frozen=True, slots=True)
class Sealed:
    events: int  # sealed by this batch
    size: int  # leaves in the tree after it
    checkpoint: Checkpoint | None  # signed by this batch, if it signed one
    unsigned: int  # leaves no checkpoint covers yet


@dataclass(frozen=True, slots=True)
class _Head:
    size: int
    position: int
    checkpointed: int
    checkpoint_age: float | None


async def seal_batch(
    conn: asyncpg.Connection, key: SigningKey, limit: int = 5000, *, checkpoint_now: bool = False
) -> Sealed | None:
    """Seal up to ``limit`` events after the last sealed one, and checkpoint if one is due (or,
    with ``checkpoint_now``, whenever the tree has grown since the last).

    None if another sealer holds the lock (it is doing the same work).
    """
    async with conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", SEAL_LOCK):
            return None
        head = await _head(conn)
        rows = await conn.fetch(EVENTS_AFTER, head.position, limit)
        frontier = await _frontier(conn, head.size)
        if rows:
            await _write(conn, rows, frontier)
        size = head.size + len(rows)
        checkpoint = None
        if _due(head, size) or (checkpoint_now and size > head.checkpointed):
            checkpoint = await _checkpoint(conn, key, size, frontier.root())
        unsigned = 0 if checkpoint is not None else size - head.checkpointed
        return Sealed(len(rows), size, checkpoint, unsigned)


async def unsealed_events(conn: asyncpg.Connection) -> int:
    """How many events wait for a seal now: the work left for ``seal_batch``."""
    return int(
        await conn.fetchval(
            """SELECT count(*) FROM events WHERE global_position >
                      coalesce((SELECT global_position FROM seals ORDER BY leaf DESC LIMIT 1), 0)"""
        )
    )


async def _head(conn: asyncpg.Connection) -> _Head:
    row = await conn.fetchrow(
        """SELECT (SELECT leaf FROM seals ORDER BY leaf DESC LIMIT 1) AS leaf,
                  (SELECT global_position FROM seals ORDER BY leaf DESC LIMIT 1) AS position,
                  c.size, extract(epoch FROM clock_timestamp() - c.signed_at)::float8 AS age
           FROM (SELECT 1) one
           LEFT JOIN LATERAL (SELECT size, signed_at FROM checkpoints ORDER BY size DESC LIMIT 1) c ON true"""
    )
    assert row is not None
    size = 0 if row["leaf"] is None else row["leaf"] + 1
    return _Head(size, row["position"] or 0, row["size"] or 0, row["age"])


def _due(head: _Head, size: int) -> bool:
    if size == head.checkpointed:
        return False
    if head.checkpoint_age is None or size - head.checkpointed >= CHECKPOINT_EVERY_EVENTS:
        return True
    return head.checkpoint_age >= CHECKPOINT_EVERY_S


async def _frontier(conn: asyncpg.Connection, size: int) -> Frontier:
    """The stored tree of ``size`` leaves, as its right edge."""
    if size == 0:
        return Frontier()
    nodes = range_nodes(0, size)
    found = await fetch_nodes(conn, nodes)
    return Frontier((node, found[node]) for node in nodes)


async def _write(conn: asyncpg.Connection, rows: Sequence[asyncpg.Record], frontier: Frontier) -> None:
    """Append ``rows`` as the next leaves; ``frontier`` grows with them."""
    links = await _previous_links(conn, rows)
    seals: list[tuple[int, int, bytes, bytes]] = []
    nodes: list[tuple[int, int, bytes]] = []
    for leaf, row in enumerate(rows, start=frontier.size):
        position, stream, canonical = row[0], row[1], row[3]
        link = hashlib.sha256(links.get(stream, b"") + canonical).digest()
        links[stream] = link
        hashed = leaf_hash(canonical)
        seals.append((leaf, position, hashed, link))
        nodes.extend((level, index, h) for (level, index), h in frontier.append(hashed))
    await conn.copy_records_to_table(
        "seals", records=seals, columns=["leaf", "global_position", "leaf_hash", "stream_hash"]
    )
    if nodes:
        await conn.copy_records_to_table("merkle_nodes", records=nodes, columns=["level", "idx", "hash"])


async def _previous_links(conn: asyncpg.Connection, rows: Sequence[asyncpg.Record]) -> dict[str, bytes]:
    first: dict[str, int] = {}
    for row in rows:
        first.setdefault(row["stream_id"], row["stream_version"])
    wanted = [(stream, version - 1) for stream, version in first.items() if version > 1]
    if not wanted:
        return {}
    found = await conn.fetch(PREVIOUS_LINKS, [s for s, _ in wanted], [v for _, v in wanted])
    links = {r["stream_id"]: bytes(r["stream_hash"]) for r in found}
    missing = [s for s, _ in wanted if s not in links]
    if missing:  # the log and the seals disagree: never chain over a hole
        raise RuntimeError(f"stream {missing[0]!r}: the event before this batch has no seal")
    return links


async def _checkpoint(conn: asyncpg.Connection, key: SigningKey, size: int, root: bytes) -> Checkpoint:
    checkpoint = Checkpoint(key.name, size, root)
    note = sign_note(checkpoint.body(), key.name, key.signer.private_key)
    await register(conn, key)
    await conn.execute(
        "INSERT INTO checkpoints (size, root, note, key_name) VALUES ($1, $2, $3, $4)",
        size,
        root,
        note,
        key.name,
    )
    return checkpoint
