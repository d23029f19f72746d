"""Racing writers and tailing readers: nothing lost, nothing duplicated, nothing skipped."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable

import asyncpg
import pytest

from core.errors import WrongExpectedVersion
from core.settings import Settings
from eventstore import EventStore, NewEvent, RecordedEvent

pytestmark = pytest.mark.integration

APPEND_RAW = "SELECT * FROM chronicle_append($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb[], $10::jsonb[])"


async def test_racing_writers_get_exactly_one_winner_per_version(new_database: Callable[[], str]) -> None:
    """32 writers on 8 streams with expected versions: one winner per version, contiguous, no loss."""
    url = new_database()
    # Four stores are four connection pools: races happen between transactions, not only
    # inside one group-commit batch.
    stores = [await EventStore.connect(url, Settings(pool_size=4)) for _ in range(4)]
    streams = [f"race-{i}" for i in range(8)]
    won: dict[str, list[uuid.UUID]] = {s: [] for s in streams}
    lost: list[uuid.UUID] = []
    conflicts = 0

    async def writer(n: int) -> None:
        nonlocal conflicts
        store = stores[n % len(stores)]
        rng = random.Random(n)
        for _ in range(25):
            s = rng.choice(streams)
            version = await store.stream_version(s)
            event = NewEvent("Raced", {"writer": n})
            try:
                result = await store.append(s, [event], version)
            except WrongExpectedVersion as exc:
                assert exc.actual > version  # noqa: PT017 - the race itself is under test
                conflicts += 1
                lost.append(event.id)
                continue
            assert result.stream_version == version + 1
            won[s].append(event.id)

    try:
        await asyncio.gather(*(writer(n) for n in range(32)))
        assert conflicts > 0, "the writers never raced; the test proves nothing"
        for s in streams:
            events = await stores[0].read_stream(s)
            assert [e.stream_version for e in events] == list(range(1, len(events) + 1))
            assert sorted(e.event_id for e in events) == sorted(won[s])
        stored = {e.event_id async for e in stores[0].read_all()}
        assert stored.isdisjoint(lost)
        assert len(stored) == sum(len(v) for v in won.values()) == 32 * 25 - conflicts
    finally:
        for store in stores:
            await store.close()


async def test_concurrent_retries_of_one_append_store_it_once(store: EventStore) -> None:
    """Many callers retrying the same events at once all get one result; one copy is stored."""
    s = f"task-{uuid.uuid4().hex}"
    events = [NewEvent("Once", {"i": i}) for i in range(3)]
    results = await asyncio.gather(*(store.append(s, events) for _ in range(20)))
    assert len(set(results)) == 1
    assert [e.data["i"] for e in await store.read_stream(s)] == [0, 1, 2]


async def test_writer_waits_behind_an_open_append_so_order_matches_commit_order(
    store: EventStore, database_url: str
) -> None:
    """A slow first transaction is never overtaken: the later append gets a higher position."""
    slow = await asyncpg.connect(database_url)
    try:
        tx = slow.transaction()
        await tx.start()
        row = await slow.fetchrow(
            APPEND_RAW,
            ["slow-1"],
            [-1],
            [None],
            [0],
            [1],
            [uuid.uuid4()],
            ["Slow"],
            [1],
            ["{}"],
            ["{}"],
        )
        fast = asyncio.create_task(store.append("fast-1", [NewEvent("Fast", {})]))
        done, _ = await asyncio.wait([fast], timeout=0.3)
        assert not done, "an append overtook an open transaction"
        await tx.commit()
        result = await fast
        assert result.first_position > row["last_position"]
    finally:
        await slow.close()


async def test_tailing_reader_never_skips_an_event(new_database: Callable[[], str]) -> None:
    """A subscriber sees every committed event exactly once, in order, under mixed load.

    One writer appends 5,000-event batches, 16 writers append single events, and raw
    transactions run the append function, hold it open, and roll back.
    """
    url = new_database()
    writers = [await EventStore.connect(url, Settings(pool_size=4)) for _ in range(3)]
    reader = await EventStore.connect(url, Settings(poll_interval=0.05))
    committed: set[uuid.UUID] = set()
    rolled_back: set[uuid.UUID] = set()
    seen: list[RecordedEvent] = []
    writing = True

    async def bulk() -> None:
        for b in range(4):
            events = [NewEvent("Bulk", {"b": b, "i": i}) for i in range(5000)]
            await writers[0].append(f"bulk-{b}", events)
            committed.update(e.id for e in events)

    async def single(n: int) -> None:
        for i in range(60):
            event = NewEvent("Single", {"n": n, "i": i})
            await writers[1 + n % 2].append(f"single-{n}", [event])
            committed.add(event.id)

    async def doomed() -> None:
        conn = await asyncpg.connect(url)
        try:
            for _ in range(5):
                ids = [uuid.uuid4() for _ in range(50)]
                tx = conn.transaction()
                await tx.start()
                await conn.fetch(
                    APPEND_RAW,
                    ["doomed-1"],
                    [-1],
                    [None],
                    [0],
                    [50],
                    ids,
                    ["Doomed"] * 50,
                    [1] * 50,
                    ["{}"] * 50,
                    ["{}"] * 50,
                )
                await asyncio.sleep(0.02)  # hold the positions open while others queue behind
                await tx.rollback()
                rolled_back.update(ids)
        finally:
            await conn.close()

    async def tail() -> None:
        async for event in reader.subscribe(page_size=700):
            seen.append(event)
            if not writing and event.global_position >= final_head:
                return

    final_head = 2**63
    tail_task = asyncio.create_task(tail())
    await asyncio.gather(bulk(), doomed(), *(single(n) for n in range(16)))
    writing = False
    final_head = await reader.head_position()
    await reader.append("marker-1", [NewEvent("Marker", {})])  # wakes the tail past final_head
    await asyncio.wait_for(tail_task, 60)
    for store in writers:
        await store.close()
    await reader.close()

    positions = [e.global_position for e in seen]
    assert positions == sorted(set(positions)), "out of order or duplicated"
    ids = {e.event_id for e in seen if e.type != "Marker"}
    assert ids == committed
    assert ids.isdisjoint(rolled_back)
    assert len(committed) == 4 * 5000 + 16 * 60
