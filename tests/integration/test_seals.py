"""The sealer against a real database: every event gets one leaf in global order and one chain
link; the stored tree and the signed checkpoints agree with a tree recomputed from the rows."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest

from core.events import ExpectedVersion, NewEvent
from core.proofs import (
    complete_nodes,
    leaf_hash,
    open_note,
    parse_checkpoint,
    parse_verifier_key,
    root,
)
from eventstore import EventStore
from eventstore.audit.keys import SigningKey, known_verifiers, load_or_create
from eventstore.audit.sealer import CHECKPOINT_EVERY_EVENTS, CHECKPOINT_EVERY_S, _due, _Head, seal_batch
from eventstore.pg import connect

pytestmark = pytest.mark.integration

CANONICAL = """SELECT global_position, stream_id, chronicle_canonical(event_id, stream_id, stream_version,
    event_type, schema_version, tenant_id, recorded_at, data, metadata) AS canonical
    FROM events ORDER BY global_position"""


@pytest.fixture(scope="module")
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    c = await connect(database_url)
    yield c
    await c.close()


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    return load_or_create(tmp_path_factory.mktemp("keys") / "signing.key", "test.chronicle/log")


async def seal_all(conn: asyncpg.Connection, key: SigningKey, limit: int = 5000) -> None:
    while True:
        sealed = await seal_batch(conn, key, limit)
        assert sealed is not None
        if sealed.events == 0:
            return


async def test_every_event_is_sealed_once_in_order_and_the_tree_matches_the_rows(
    conn: asyncpg.Connection, store: EventStore, key: SigningKey
) -> None:
    """Seal in odd-sized batches across streams; the leaves, links, nodes and checkpoint equal
    what a verifier recomputes from the events alone."""
    for i in range(23):
        await store.append(
            f"task-s{i % 5}", [NewEvent("Noted", {"i": i, "text": "a\nb"})], ExpectedVersion.ANY
        )
    # a rolled-back append leaves a hole in the positions: it takes no leaf
    with pytest.raises(Exception):  # noqa: B017, PT011
        await store.append("task-s0", [NewEvent("Noted", {})], expected_version=1)
    await store.append("task-s9", [NewEvent("Noted", {"n": n}) for n in range(14)], ExpectedVersion.NO_STREAM)
    await seal_all(conn, key, limit=7)
    await seal_batch(conn, key, checkpoint_now=True)

    rows = await conn.fetch(CANONICAL)
    seals = await conn.fetch("SELECT leaf, global_position, leaf_hash, stream_hash FROM seals ORDER BY leaf")
    assert [s["leaf"] for s in seals] == list(range(len(rows)))
    assert [s["global_position"] for s in seals] == [r["global_position"] for r in rows]
    links: dict[str, bytes] = {}
    for row, seal in zip(rows, seals, strict=True):
        assert bytes(seal["leaf_hash"]) == leaf_hash(row["canonical"])
        links[row["stream_id"]] = hashlib.sha256(links.get(row["stream_id"], b"") + row["canonical"]).digest()
        assert bytes(seal["stream_hash"]) == links[row["stream_id"]]

    leaves = [leaf_hash(r["canonical"]) for r in rows]
    expected = {node: h for node, h in complete_nodes(leaves).items() if node[0] > 0}
    stored = {
        (r["level"], r["idx"]): bytes(r["hash"]) for r in await conn.fetch("SELECT * FROM merkle_nodes")
    }
    assert stored == expected

    note = await conn.fetchval("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1")
    text, signers = open_note(note, [parse_verifier_key(key.verifier_key)])
    checkpoint = parse_checkpoint(text)
    assert signers == ["test.chronicle/log"]
    assert (checkpoint.origin, checkpoint.size, checkpoint.root) == (
        "test.chronicle/log",
        len(rows),
        root(leaves),
    )
    assert [v.public_key for v in await known_verifiers(conn)] == [
        parse_verifier_key(key.verifier_key).public_key
    ]


async def test_a_checkpoint_is_signed_only_when_the_tree_grew_and_one_is_due(
    conn: asyncpg.Connection, key: SigningKey
) -> None:
    await seal_all(conn, key)
    sealed = await seal_batch(conn, key)
    assert sealed is not None and (sealed.events, sealed.checkpoint) == (0, None)  # nothing new
    # due: the first one; a second after the last; or 10,000 events unsigned, however recent
    assert _due(_Head(5, 9, 0, None), 5)
    assert not _due(_Head(5, 9, 5, 0.1), 5)
    assert not _due(_Head(5, 9, 4, 0.5), 5)
    assert _due(_Head(5, 9, 4, CHECKPOINT_EVERY_S), 5)
    assert _due(_Head(5, 9, 4, 0.0), 4 + CHECKPOINT_EVERY_EVENTS)


def test_the_signing_key_is_created_once_with_mode_0600_and_reloaded(tmp_path: Path) -> None:
    path = tmp_path / "k" / "signing.key"
    first = load_or_create(path, "x.example/log")
    again = load_or_create(path, "x.example/log")
    assert first.verifier_key == again.verifier_key
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text().startswith("PRIVATE+KEY+x.example/log+")
