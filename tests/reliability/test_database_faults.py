"""A store under load rides through its database restarting, crashing, stalling and killing backends.

Each test runs 8 writers and a live subscriber on one EventStore against a scratch cluster of
its own (never the shared server), plays one fault, and then checks: the same store appends
again within a second of the server accepting connections; every writer goes on; every
acknowledged event is in the log exactly once; per-stream versions are contiguous; the
subscriber saw every event in order; and no caller met anything but a retriable error. The
slow suite plays every fault several times in a row, with longer outages.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import asyncpg
import pytest

from core.errors import StoreUnavailable
from core.settings import Settings
from eventstore import EventStore
from eventstore.migrate import upgrade
from tests.reliability.load import Load
from tests.reliability.scratch_pg import ScratchServer

pytestmark = pytest.mark.integration

BACK_WITHIN_S = 1.0


@pytest.fixture(scope="module")
def server() -> Iterator[ScratchServer]:
    # Not under pytest's tmp_path: another pytest process may make that 0700 again at any
    # moment, and the server runs as another user when we are root.
    scratch = ScratchServer(Path(tempfile.mkdtemp(prefix="chronicle-faults-")))
    scratch.init()
    yield scratch
    scratch.destroy()


async def new_database(server: ScratchServer) -> str:
    name = f"faults_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(server.url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    await upgrade(server.url_to(name))
    return name


@pytest.fixture
async def store(server: ScratchServer) -> AsyncIterator[EventStore]:
    settings = Settings(pool_size=4, poll_interval=0.2, reconnect_timeout=30)
    async with await EventStore.connect(server.url_to(await new_database(server)), settings) as s:
        yield s


async def accepting(url: str, timeout: float = 30) -> float:
    """Wait until the server accepts a connection and answers; return when (time.monotonic)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            conn = await asyncpg.connect(url, timeout=1)
            try:
                await conn.fetchval("SELECT 1")
            finally:
                await conn.close()
            return time.monotonic()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.01)


async def restart(server: ScratchServer, mode: str, down_for: float = 0.0) -> float:
    """Stop the server (``fast``: clean, ``immediate``: a crash), keep it down for a while,
    start it again; return when it accepted connections."""
    await asyncio.to_thread(server.stop, mode)
    await asyncio.sleep(down_for)  # the outage itself
    starting = asyncio.create_task(asyncio.to_thread(server.start))
    ready = await accepting(server.url)
    await starting
    return ready


async def stall(server: ScratchServer, seconds: float) -> float:
    """Freeze every server process for ``seconds``; return when they were let go."""
    server.stall()
    try:
        await asyncio.sleep(seconds)  # the stall itself
    finally:
        server.resume()
    return time.monotonic()


async def terminate_backends(server: ScratchServer) -> float:
    """End every session but the caller's, as an administrator or a failover proxy would."""
    admin = await asyncpg.connect(server.url)
    try:
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"
        )
    finally:
        await admin.close()
    return time.monotonic()


Fault = Callable[[ScratchServer], Awaitable[float]]

FAULTS: dict[str, Fault] = {
    "fast restart": lambda server: restart(server, "fast"),
    "crash, down 1 s": lambda server: restart(server, "immediate", down_for=1.0),
    "stall 2 s": lambda server: stall(server, 2.0),
    "terminate backends": terminate_backends,
}


async def play(load: Load, server: ScratchServer, fault: Fault, *, idle: bool) -> None:
    """One fault under load (or with the writers idle), then the store must be back at once."""
    if idle:
        await load.pause()
    ready = await fault(server)
    load.resume()
    assert await load.seconds_to_next_ack(ready) < BACK_WITHIN_S, "appends were not back within 1 s"
    await load.acks(each=20)


@pytest.mark.parametrize("name", list(FAULTS))
async def test_store_rides_through_fault_with_writers_busy(
    store: EventStore, server: ScratchServer, name: str
) -> None:
    """The fault strikes with appends in flight and the subscriber reading."""
    load = Load(store)
    load.start()
    await load.acks(each=10)
    await play(load, server, FAULTS[name], idle=False)
    await load.stop()
    await load.check()


async def test_store_appends_again_after_a_restart_while_idle(
    store: EventStore, server: ScratchServer
) -> None:
    """The server restarts while no append is in flight: the next appends succeed at once."""
    load = Load(store)
    load.start()
    await load.acks(each=10)
    await play(load, server, FAULTS["fast restart"], idle=True)
    await load.stop()
    await load.check()


async def test_subscription_gives_up_after_reconnect_timeout(server: ScratchServer) -> None:
    """A subscription whose database stays away longer than reconnect_timeout raises
    StoreUnavailable (a retriable error) instead of waiting for ever."""
    settings = Settings(pool_size=2, poll_interval=0.1, reconnect_timeout=0.5)
    async with await EventStore.connect(server.url_to(await new_database(server)), settings) as store:
        events = store.subscribe()
        waiting = asyncio.create_task(anext(events, None))
        await asyncio.to_thread(server.stop, "immediate")
        try:
            started = time.monotonic()
            with pytest.raises(StoreUnavailable):
                await asyncio.wait_for(waiting, 10)
            assert 0.5 <= time.monotonic() - started < 3
        finally:
            await asyncio.to_thread(server.start)
            await events.aclose()


@pytest.mark.slow
async def test_store_rides_through_every_fault_again_and_again(
    store: EventStore, server: ScratchServer
) -> None:
    """One store lives through every fault three times, busy and idle, with longer outages."""
    faults: list[Fault] = [
        *FAULTS.values(),
        lambda server: restart(server, "immediate", down_for=3.0),
        lambda server: stall(server, 5.0),
    ]
    load = Load(store)
    load.start()
    await load.acks(each=10)
    for _ in range(3):
        for fault in faults:
            for idle in (False, True):
                await play(load, server, fault, idle=idle)
    await load.stop()
    await load.check()
