"""A snapshotter and a blob writer killed half-way leave every snapshot and blob whole or absent."""

from __future__ import annotations

from collections.abc import Callable

import asyncpg
import orjson
import pytest

from core.domain import TASK
from core.domain.loading import AtVersion, load_at
from eventstore import EventStore
from eventstore.state.blobs import digest_of
from tests.reliability.crash import kill_after
from tests.reliability.crash_snapshotter import STREAMS

pytestmark = pytest.mark.integration


async def test_killed_snapshotter_leaves_only_whole_snapshots_and_blobs(
    new_database: Callable[[], str],
) -> None:
    """SIGKILL mid-write: each stored snapshot equals the replay at its version; each blob fits its digest."""
    url = new_database()
    await kill_after("tests.reliability.crash_snapshotter", url, lines=24, timeout=60)

    conn = await asyncpg.connect(url)
    try:
        snapshots = await conn.fetch("SELECT stream_id, stream_version, state::text FROM snapshots")
        blobs = await conn.fetch("SELECT digest, data FROM blobs")
    finally:
        await conn.close()
    assert snapshots and blobs
    async with await EventStore.connect(url) as store:
        for row in snapshots:
            assert row["stream_id"] in STREAMS
            replayed = await load_at(store, None, row["stream_id"], TASK, AtVersion(row["stream_version"]))
            assert TASK.state_from_json(orjson.loads(row["state"])) == replayed.state
    for row in blobs:
        assert digest_of(bytes(row["data"])) == row["digest"]
