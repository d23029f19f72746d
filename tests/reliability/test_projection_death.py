"""A projection daemon killed with SIGKILL again and again, with events arriving all the while,
applies every event exactly once: afterwards each read model equals a fresh rebuild of it, and
the checkpoints count exactly the events of their categories. Its sealer, killed with it,
lost and repeated no seal: every event is one leaf, in order, and the verifier finds the
chains, the tree and every checkpoint signed along the way sound."""

from __future__ import annotations

import asyncio
import os
import random
import sys
from collections.abc import Callable
from pathlib import Path

import asyncpg
import pytest

from bench.traffic import drive
from core.settings import Settings
from eventstore import EventStore
from eventstore.audit.keys import known_verifiers
from eventstore.audit.verify import verify_log
from eventstore.pg import connect
from projections.catalog import PROJECTIONS
from projections.runner.contract import Projection
from projections.runner.rebuild import rebuild
from tests.projection_kit import checkpoint_of, create_table, live_positions, matching_positions, wait_until
from tests.reliability.crash import ROOT, kill_after
from tests.reliability.projection_child import POSITION_LOG

pytestmark = pytest.mark.integration

EVERY = (*PROJECTIONS, POSITION_LOG)
CHILD = "tests.reliability.projection_child"


async def kill_repeatedly(url: str, kills: int) -> None:
    """Kill the daemon ``kills`` times while traffic flows, then let one catch up."""
    async with await EventStore.connect(url, Settings(poll_interval=0.1)) as store:
        traffic = asyncio.create_task(drive(store, "k", seconds=600, rate=600, lanes=4))
        rng = random.Random(7)
        try:
            for _ in range(kills):
                await kill_after(
                    "tests.reliability.projection_child", url, lines=rng.randint(1, 8), timeout=60
                )
        finally:
            traffic.cancel()
            await asyncio.gather(traffic, return_exceptions=True)
        assert (await store.head_position()) > 0


async def catch_up(url: str) -> None:
    """One more daemon, left to finish: then every projection is at the head."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        CHILD,
        url,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=asyncio.subprocess.DEVNULL,
    )
    conn = await asyncpg.connect(url)
    try:
        head = await conn.fetchval("SELECT max(global_position) FROM events")

        async def there() -> bool:
            failed = await conn.fetch(
                "SELECT name, error FROM projection_checkpoints WHERE error IS NOT NULL"
            )
            assert not failed, f"a projection failed: {[tuple(r) for r in failed]}"
            for projection in EVERY:
                at = await checkpoint_of(conn, projection.name)
                if at is None or at[0] < head:
                    return False
            sealed = await conn.fetchval("SELECT max(global_position) FROM seals")
            return bool(sealed == head)

        await wait_until(there, timeout=120)
    finally:
        await conn.close()
        child.kill()
        await child.wait()


async def rows_of(conn: asyncpg.Connection, projection: Projection) -> dict[str, list[tuple[object, ...]]]:
    """Every row of the projection's live generation, without the generation, sorted."""
    found = {}
    for table in projection.tables:
        rows = await conn.fetch(
            f"SELECT * FROM {table} WHERE generation = "
            "(SELECT active_generation FROM projections WHERE name = $1)",
            projection.name,
        )
        found[table] = sorted((tuple(v for k, v in r.items() if k != "generation") for r in rows), key=repr)
    return found


async def check(url: str) -> None:
    sealing = await connect(url)
    try:
        report = await verify_log(sealing, await known_verifiers(sealing))
        assert report.ok, report.breaks
        assert report.sealed == report.events > 0 and report.checkpoints_checked > 1
    finally:
        await sealing.close()
    conn = await asyncpg.connect(url)
    try:
        at = await checkpoint_of(conn, POSITION_LOG.name)
        assert at is not None
        expected = await matching_positions(conn, None, at[0])
        assert await live_positions(conn, POSITION_LOG.name) == expected
        for projection in EVERY:
            position, applied = await checkpoint_of(conn, projection.name) or (0, 0)
            assert applied == len(await matching_positions(conn, projection.categories, position)), (
                projection.name
            )
            before = await rows_of(conn, projection)
            async with await EventStore.connect(url) as store:
                rebuilding = await connect(url)
                try:
                    await rebuild(store, rebuilding, projection)
                finally:
                    await rebuilding.close()
            assert await rows_of(conn, projection) == before, (
                f"{projection.name} differs from a fresh rebuild"
            )
    finally:
        await conn.close()


@pytest.fixture(autouse=True)
def signing_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHRONICLE_SIGNING_KEY_FILE", str(tmp_path / "signing.key"))


async def test_a_daemon_killed_ten_times_applies_every_event_once(new_database: Callable[[], str]) -> None:
    url = new_database()
    await create_table(url)
    await kill_repeatedly(url, kills=10)
    await catch_up(url)
    await check(url)


@pytest.mark.slow
async def test_a_daemon_killed_thirty_times_applies_every_event_once(new_database: Callable[[], str]) -> None:
    url = new_database()
    await create_table(url)
    await kill_repeatedly(url, kills=30)
    await catch_up(url)
    await check(url)
