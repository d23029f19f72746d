"""A writer process killed half-way loses nothing that committed and a rerun duplicates nothing."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from eventstore import EventStore
from tests.reliability.crash_writer import BATCH, PER_STREAM, STREAMS, planned, write_plan

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


async def test_killed_writer_then_rerun_stores_every_event_exactly_once(
    new_database: Callable[[], str],
) -> None:
    """SIGKILL mid-load, then rerun the same plan: each stream holds its plan once, in order."""
    url = new_database()
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.reliability.crash_writer",
        url,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert child.stdout is not None
    for _ in range(300):  # let it get well under way, then kill it with appends in flight
        assert await asyncio.wait_for(child.stdout.readline(), 30), "writer exited early"
    child.send_signal(signal.SIGKILL)
    await child.wait()

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
