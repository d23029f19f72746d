"""The projection runner against real PostgreSQL: exactly once, failures isolated, leases shared
and taken over, rebuilds under live traffic that readers never see half-built."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable, Sequence

import asyncpg
import pytest

from bench.traffic import drive
from core.settings import Settings
from eventstore import EventStore
from eventstore.pg import connect
from projections.runner.contract import Projection
from projections.runner.daemon import ProjectionDaemon
from projections.runner.rebuild import rebuild
from projections.runner.status import statuses
from tests.projection_kit import (
    PositionLog,
    checkpoint_of,
    create_table,
    live_positions,
    matching_positions,
    wait_until,
)

pytestmark = pytest.mark.integration


@pytest.fixture
async def url(new_database: Callable[[], str]) -> str:
    database = new_database()
    await create_table(database)
    return database


@pytest.fixture
async def store(url: str) -> AsyncIterator[EventStore]:
    async with await EventStore.connect(url, Settings(poll_interval=0.1)) as s:
        yield s


@pytest.fixture
async def conn(url: str) -> AsyncIterator[asyncpg.Connection]:
    c = await asyncpg.connect(url)
    yield c
    await c.close()


@contextlib.asynccontextmanager
async def running(
    store: EventStore, url: str, projections: Sequence[Projection], name: str = "daemon"
) -> AsyncIterator[ProjectionDaemon]:
    daemon = ProjectionDaemon(store, url, projections, poll_interval=0.1, lease_interval=0.1, name=name)
    task = asyncio.create_task(daemon.run())
    try:
        yield daemon
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def caught_up(conn: asyncpg.Connection, store: EventStore, *names: str) -> None:
    head = await store.head_position()

    async def all_there() -> bool:
        for name in names:
            at = await checkpoint_of(conn, name)
            if at is None or at[0] < head:
                return False
        return True

    await wait_until(all_there)


async def exactly_once(conn: asyncpg.Connection, projection: PositionLog) -> None:
    """The live generation holds every matching event up to its checkpoint, once, in order."""
    at = await checkpoint_of(conn, projection.name)
    assert at is not None
    expected = await matching_positions(conn, projection.categories, at[0])
    assert await live_positions(conn, projection.name) == expected
    assert at[1] == len(expected), "applied_events counts an event twice or misses one"


async def test_each_event_is_applied_once_and_status_shows_position_lag_and_owner(
    store: EventStore, url: str, conn: asyncpg.Connection
) -> None:
    """Events appended while the daemon runs are applied once each; status names the owner."""
    log = PositionLog(categories=("task", "agent"))
    async with running(store, url, [log], name="daemon-a"):
        await drive(store, "once", scenarios=10)
        await caught_up(conn, store, log.name)
        await exactly_once(conn, log)
        (found,) = await statuses(conn, [log])
        assert (found.state, found.owner, found.lag_events, found.lag_seconds) == (
            "running",
            "daemon-a",
            0,
            0.0,
        )
        assert found.applied_events == 10 * 18  # agent and task events of 10 scenarios


async def test_a_failing_projection_stops_alone_at_the_event_that_raised(
    store: EventStore, url: str, conn: asyncpg.Connection
) -> None:
    """The events before the bad one take effect, the failure is recorded at its position, and
    another projection in the same daemon goes on."""
    good, bad = PositionLog("good"), PositionLog("bad", categories=("task",), fail_on="TaskFailed")
    async with running(store, url, [good, bad]):
        await wait_until(lambda: _built(conn, "good", "bad"))
        await drive(store, "fail", scenarios=3, lanes=1)
        await caught_up(conn, store, good.name)
        await exactly_once(conn, good)
        first_failed = await conn.fetchval(
            "SELECT min(global_position) FROM events WHERE event_type = 'TaskFailed'"
        )
        await wait_until(lambda: _failed(conn, "bad"))
        found = {s.name: s for s in await statuses(conn, [good, bad])}
        assert found["bad"].state == "failed" and found["bad"].failed_position == first_failed
        assert "cannot fold TaskFailed" in (found["bad"].error or "")
        before_it = await matching_positions(conn, ("task",), first_failed - 1)
        assert await live_positions(conn, "bad") == before_it
        assert found["good"].state == "running"


async def _built(conn: asyncpg.Connection, *names: str) -> bool:
    for name in names:
        if await checkpoint_of(conn, name) is None:
            return False
    return True


async def _failed(conn: asyncpg.Connection, name: str) -> bool:
    return bool(
        await conn.fetchval("SELECT error IS NOT NULL FROM projection_checkpoints WHERE name = $1", name)
    )


async def test_two_daemons_share_the_projections_and_one_takes_over_from_the_other(
    store: EventStore, url: str, conn: asyncpg.Connection
) -> None:
    """Each projection is owned by exactly one of two daemons; when one stops, the other owns
    them all within seconds, and every event is still applied exactly once."""
    logs = [PositionLog(f"shared{i}") for i in range(4)]
    names = [p.name for p in logs]
    async with running(store, url, logs, name="daemon-b"):
        first = ProjectionDaemon(store, url, logs, poll_interval=0.1, lease_interval=0.1, name="daemon-a")
        first_task = asyncio.create_task(first.run())
        await wait_until(lambda: _owners_are(conn, logs, {"daemon-a", "daemon-b"}, exactly_one=True))
        traffic = asyncio.create_task(drive(store, "share", scenarios=20, rate=800))
        await asyncio.sleep(0.3)  # let both daemons apply some of it
        first_task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await first_task
        started = asyncio.get_running_loop().time()
        await wait_until(lambda: _owners_are(conn, logs, {"daemon-b"}, exactly_one=True), timeout=10)
        assert asyncio.get_running_loop().time() - started < 5
        await traffic
        await caught_up(conn, store, *names)
        for log in logs:
            await exactly_once(conn, log)


async def _owners_are(
    conn: asyncpg.Connection, projections: Sequence[Projection], allowed: set[str], exactly_one: bool
) -> bool:
    owners = {s.name: s.owner for s in await statuses(conn, projections)}
    held = [owners.get(p.name) for p in projections]
    return (
        all(o is not None for o in held)
        and set(held) <= allowed
        and (not exactly_one or len(held) == len(projections))
    )


async def test_a_rebuild_under_live_traffic_is_never_seen_half_built(
    store: EventStore, url: str, conn: asyncpg.Connection
) -> None:
    """While events keep arriving and a rebuild runs, every read of the model is a whole prefix
    of the log that never moves backwards; afterwards the new generation is exactly the log."""
    log = PositionLog("rebuilt")
    async with running(store, url, [log]):
        await wait_until(lambda: _built(conn, log.name))
        await drive(store, "before", scenarios=300)
        await caught_up(conn, store, log.name)
        writer = asyncio.create_task(drive(store, "during", seconds=30, rate=1500, lanes=4))
        samples: list[tuple[int, int, int]] = []
        reader = asyncio.create_task(_sample(url, log.name, samples))
        rebuilding = await connect(url)
        try:
            done = await rebuild(store, rebuilding, log, batch_size=300)
        finally:
            await rebuilding.close()
        during = len(samples)
        writer.cancel()
        await asyncio.gather(writer, return_exceptions=True)
        await caught_up(conn, store, log.name)
        reader.cancel()
        await asyncio.gather(reader, return_exceptions=True)
    assert done.replaced is not None and done.generation == done.replaced + 1
    assert during >= 10, "the reader must have looked while the rebuild ran"
    for count, highest, events_up_to in samples:
        assert count == events_up_to, f"a reader saw {count} rows for {events_up_to} events up to {highest}"
    highest_seen = [s[1] for s in samples]
    assert highest_seen == sorted(highest_seen), "the model went backwards"
    await exactly_once(conn, log)
    assert not await conn.fetchval(
        "SELECT count(*) FROM test_position_log_rows WHERE name = $1 AND generation <> $2",
        log.name,
        done.generation,
    ), "the retired generation's rows were not deleted"


async def _sample(url: str, name: str, samples: list[tuple[int, int, int]]) -> None:
    conn = await asyncpg.connect(url)
    try:
        while True:
            row = await conn.fetchrow(
                "WITH v AS (SELECT count(*) AS c, coalesce(max(global_position), 0) AS m "
                "FROM test_position_log_rows WHERE name = $1 AND generation = "
                "(SELECT active_generation FROM projections WHERE name = $1)) "
                "SELECT v.c, v.m, (SELECT count(*) FROM events WHERE global_position <= v.m) FROM v",
                name,
            )
            samples.append((row[0], row[1], row[2]))
            await asyncio.sleep(0.005)
    finally:
        await conn.close()


async def test_a_new_version_in_code_is_rebuilt_and_swapped_in_when_the_daemon_starts(
    store: EventStore, url: str, conn: asyncpg.Connection
) -> None:
    """Version 2 of a projection finds version 1's model, builds generation 2 beside it and
    swaps it in; readers had version 1 until then."""
    async with running(store, url, [PositionLog("versioned", version=1)]):
        await drive(store, "v1", scenarios=5)
        await caught_up(conn, store, "versioned")
    v2 = PositionLog("versioned", version=2)
    async with running(store, url, [v2]):
        await wait_until(lambda: _version_is(conn, "versioned", 2))
        await caught_up(conn, store, "versioned")
        await exactly_once(conn, v2)
    (found,) = await statuses(conn, [v2])
    assert (found.version, found.generation, found.rebuilding_generation) == (2, 2, None)


async def _version_is(conn: asyncpg.Connection, name: str, version: int) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT version = $2 AND rebuilding_generation IS NULL FROM projections WHERE name = $1",
            name,
            version,
        )
    )
