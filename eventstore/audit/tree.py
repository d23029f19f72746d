"""The stored Merkle tree: complete subtree hashes, leaves from ``seals`` and the rest from
``merkle_nodes``, fetched in one query however many a proof needs."""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from core.proofs import Node

__all__ = ["fetch_nodes"]

NODES = """
SELECT 0 AS level, leaf AS idx, leaf_hash AS hash FROM seals WHERE leaf = ANY($1::bigint[])
UNION ALL
SELECT level, idx, hash FROM merkle_nodes n
JOIN unnest($2::smallint[], $3::bigint[]) AS w(level, idx) USING (level, idx)
"""


async def fetch_nodes(conn: asyncpg.Connection, nodes: Sequence[Node]) -> dict[Node, bytes]:
    """The hashes of ``nodes``; raises LookupError naming the first one the tree does not have."""
    leaves = [index for level, index in nodes if level == 0]
    upper = [(level, index) for level, index in nodes if level > 0]
    rows = await conn.fetch(NODES, leaves, [n[0] for n in upper], [n[1] for n in upper])
    found = {(r["level"], r["idx"]): bytes(r["hash"]) for r in rows}
    for node in nodes:
        if node not in found:
            raise LookupError(f"the tree has no node {node} (level, index)")
    return found
