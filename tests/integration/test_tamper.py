"""Tampering as a database superuser, triggers off: every attack is found by the verifier.

Each attack runs on a database of its own: mixed traffic is appended and sealed, a checkpoint is
signed and its note kept outside the database (as an auditor or a witness would), then the
attacker edits the tables directly with ``session_replication_role = replica`` (no append-only
trigger fires) and the verifier walks the log. The last attack rewrites a whole stream and
recomputes everything the database holds about it (chain links, leaf hashes, every tree node)
and deletes the checkpoints it cannot re-sign: only the checkpoint kept outside exposes it.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable

import asyncpg
import pytest

from bench.traffic import drive
from core.proofs import Verifier, complete_nodes, leaf_hash, parse_verifier_key
from core.settings import Settings
from eventstore import EventStore
from eventstore.audit.keys import SigningKey, load_or_create
from eventstore.audit.sealer import seal_batch
from eventstore.audit.verify import Report, verify_log
from eventstore.pg import connect

pytestmark = pytest.mark.integration

Attack = Callable[[asyncpg.Connection], Awaitable[None]]
RESULTS: list[tuple[str, str, str]] = []
CANONICAL = """chronicle_canonical(event_id, stream_id, stream_version, event_type, schema_version,
    tenant_id, recorded_at, data, metadata)"""


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    return load_or_create(tmp_path_factory.mktemp("keys") / "signing.key", "tamper.test/log")


async def sealed_log(url: str, key: SigningKey) -> str:
    """Traffic, a gap in the positions, more traffic, all sealed; the latest checkpoint's note."""
    async with await EventStore.connect(url, Settings(pool_size=2)) as store:
        await drive(store, "a", scenarios=3, lanes=1)
        conn = await connect(url)
        try:
            await conn.execute("SELECT nextval(pg_get_serial_sequence('events', 'global_position'))")
            await drive(store, "b", scenarios=2, lanes=1)
            while (sealed := await seal_batch(conn, key, 40, checkpoint_now=True)) and sealed.events:
                pass
            note: str = await conn.fetchval("SELECT note FROM checkpoints ORDER BY size DESC LIMIT 1")
            return note
        finally:
            await conn.close()


async def as_superuser(url: str, attack: Attack) -> None:
    conn = await asyncpg.connect(url)
    try:
        async with conn.transaction():
            await conn.execute("SET LOCAL session_replication_role = replica")
            await attack(conn)
    finally:
        await conn.close()


async def verified(url: str, verifiers: list[Verifier], trusted: list[str]) -> Report:
    conn = await connect(url)
    try:
        return await verify_log(conn, verifiers, trusted=trusted)
    finally:
        await conn.close()


async def flip_a_byte(conn: asyncpg.Connection) -> None:
    await conn.execute(
        """UPDATE events SET data = jsonb_set(data, '{handler}', '"ecHo"') WHERE global_position =
           (SELECT min(global_position) FROM events WHERE event_type = 'TaskSubmitted')"""
    )


async def delete_an_event(conn: asyncpg.Connection) -> None:
    await conn.execute("DELETE FROM events WHERE global_position = 20")


async def swap_two_positions(conn: asyncpg.Connection) -> None:
    rows = await conn.fetch("DELETE FROM events WHERE global_position IN (30, 31) RETURNING *")
    for row, position in zip(rows, (31, 30), strict=True):
        values = dict(row) | {"global_position": position}
        names = ", ".join(values)
        marks = ", ".join(f"${i}" for i in range(1, len(values) + 1))
        await conn.execute(
            f"INSERT INTO events ({names}) OVERRIDING SYSTEM VALUE VALUES ({marks})",
            *values.values(),
        )


async def insert_a_forged_event(conn: asyncpg.Connection) -> None:
    # into the hole a drawn-but-unused position left, so that it sits among sealed events
    gap = await conn.fetchval(
        "SELECT g FROM generate_series(1, (SELECT max(global_position) FROM events)) g "
        "WHERE NOT EXISTS (SELECT 1 FROM events WHERE global_position = g) LIMIT 1"
    )
    await conn.execute(
        """INSERT INTO events (global_position, event_id, stream_id, stream_version, event_type,
               schema_version, data, metadata, tenant_id)
           OVERRIDING SYSTEM VALUE
           VALUES ($1, gen_random_uuid(), 'task-forged', 1, 'TaskSubmitted', 1,
                   '{"handler": "wire_money"}', '{"tenant_id": "acme", "actor": "ceo"}', 'acme')""",
        gap,
    )


async def rewrite_a_stream(conn: asyncpg.Connection) -> None:
    """Change every event of one task, then recompute its chain, every leaf hash and every tree
    node, and delete the checkpoints that no longer match (they cannot be signed again)."""
    stream = await conn.fetchval("SELECT stream_id FROM events WHERE stream_id LIKE 'task-%' LIMIT 1")
    await conn.execute(
        "UPDATE events SET metadata = jsonb_set(metadata, '{actor}', '\"mallory\"') WHERE stream_id = $1",
        stream,
    )
    link = b""
    for row in await conn.fetch(
        f"SELECT global_position, {CANONICAL} AS c FROM events WHERE stream_id = $1 ORDER BY stream_version",
        stream,
    ):
        link = hashlib.sha256(link + row["c"]).digest()
        await conn.execute(
            "UPDATE seals SET leaf_hash = $2, stream_hash = $3 WHERE global_position = $1",
            row["global_position"],
            leaf_hash(row["c"]),
            link,
        )
    leaves = [bytes(r[0]) for r in await conn.fetch("SELECT leaf_hash FROM seals ORDER BY leaf")]
    await conn.execute("DELETE FROM merkle_nodes")
    nodes = [(level, index, h) for (level, index), h in complete_nodes(leaves).items() if level > 0]
    await conn.copy_records_to_table("merkle_nodes", records=nodes, columns=["level", "idx", "hash"])
    await conn.execute("DELETE FROM checkpoints")


ATTACKS: list[tuple[str, Attack, str]] = [
    ("flip a byte of an event's data", flip_a_byte, "event differs from what was sealed"),
    ("delete an event", delete_an_event, "is sealed but its event is gone"),
    ("swap two positions", swap_two_positions, "event differs from what was sealed"),
    ("insert a forged event", insert_a_forged_event, "event has no seal but later events do"),
    ("rewrite a stream, chain recomputed", rewrite_a_stream, "differ from checkpoint"),
]


@pytest.mark.parametrize(("name", "attack", "expected"), ATTACKS, ids=[a[0] for a in ATTACKS])
async def test_the_attack_is_detected(
    new_database: Callable[[], str], key: SigningKey, name: str, attack: Attack, expected: str
) -> None:
    url = new_database()
    kept_outside = await sealed_log(url, key)
    verifiers = [parse_verifier_key(key.verifier_key)]
    before = await verified(url, verifiers, [kept_outside])
    assert before.ok, before.breaks
    assert before.unsealed == 0 and before.checkpoints_checked >= 1

    await as_superuser(url, attack)

    after = await verified(url, verifiers, [kept_outside])
    assert not after.ok, f"{name}: not detected"
    assert expected in str(after.breaks[0]), after.breaks
    RESULTS.append((name, "detected", str(after.breaks[0])))
    if attack is rewrite_a_stream:
        # the database alone now holds a consistent forgery: only the kept checkpoint catches it
        alone = await verified(url, verifiers, [])
        assert alone.ok, alone.breaks


def test_print_the_table_of_attacks(capsys: pytest.CaptureFixture[str]) -> None:
    """The table the issue asks for: every attack above, and what the verifier reported first."""
    assert len(RESULTS) == len(ATTACKS), "run with the attacks above"
    width = max(len(r[0]) for r in RESULTS)
    with capsys.disabled():
        print(f"\n{'attack':<{width}}  result    first break reported")
        for name, result, first in RESULTS:
            print(f"{name:<{width}}  {result:<8}  {first}")
