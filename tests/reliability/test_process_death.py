"""A writer process killed half-way loses nothing that committed and a rerun duplicates nothing."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from eventstore import EventStore
from tests.reliability.crash import kill_after
from tests.reliability.crash_writer import BATCH, PER_STREAM, STREAMS, planned, write_plan

pytestmark = pytest.mark.integration


async def test_killed_writer_then_rerun_stores_every_event_exactly_once(
    new_database: Callable[[], str],
) -> None:
    """SIGKILL mid-load, then rerun the same plan: each stream holds its plan once, in order."""
    url = new_database()
    await kill_after("tests.reliability.crash_writer", url, lines=300, timeout=30)

    async with await EventStore.connect(url) as store:
        before = {s: await store.stream_version(s) for s in STREAMS}
        assert 0 < sum(before.values()) < len(STREAMS) * PER_STREAM * BATCH
        assert all(v % BATCH == 0 for v in before.values()), "a half-written append survived"
        await asyncio.gather(*(write_plan(store, s, report=False) for s in STREAMS))
        for s in STREAMS:
            stored = await store.read_stream(s)
            want = [e.id for step in range(PER_STREAM) for e in planned(s, step)]
            assert [e.event_id for e in stored] == want
            assert [e.stream_version for e in stored] == list(range(1, len(want) + 1))
