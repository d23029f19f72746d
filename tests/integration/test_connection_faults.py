"""Connections the server closes under the store: every call goes on, no driver error escapes.

``pg_terminate_backend`` ends a backend as a fast restart does: the server sends FATAL 57P01
and closes the socket. The proxy's ``hold_close`` lets the FATAL through but delays the close,
which is what a client whose event loop is a little late sees; both orders must work.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from core.errors import ChronicleError
from core.settings import Settings
from eventstore import EventStore, NewEvent
from tests.integration.proxy import CuttableProxy

pytestmark = pytest.mark.integration


def stream() -> str:
    return f"task-{uuid.uuid4().hex}"


async def terminate_others(database_url: str) -> None:
    """End every backend of the database but this one, and return once they are gone."""
    admin = await asyncpg.connect(database_url)
    try:
        pids = [
            row[0]
            for row in await admin.fetch(
                "SELECT pid FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        ]
        assert pids, "the store had no connection to end"
        await admin.execute("SELECT pg_terminate_backend(pid) FROM unnest($1::int[]) AS pid", pids)
        for _ in range(500):
            if not await admin.fetchval("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY($1)", pids):
                return
        raise AssertionError("terminated backends did not go away")
    finally:
        await admin.close()


async def test_store_appends_again_after_its_idle_connections_are_closed(database_url: str) -> None:
    """A server that closes the idle writer connection (a restart in a quiet moment) does not
    stop the store from appending: the next appends all succeed."""
    async with await EventStore.connect(database_url, Settings(pool_size=2)) as store:
        s = stream()
        await store.append(s, [NewEvent("Happened", {"i": 0})])
        await terminate_others(database_url)
        for i in range(1, 4):
            assert (await store.append(s, [NewEvent("Happened", {"i": i})])).stream_version == i + 1
        assert [e.data["i"] for e in await store.read_stream(s)] == [0, 1, 2, 3]


async def _first(events: AsyncIterator[Any]) -> Any:
    async for event in events:
        return event
    raise AssertionError("the subscription ended without an event")


OPERATIONS: dict[str, Callable[[EventStore, str], Awaitable[object]]] = {
    "append": lambda store, s: store.append(s, [NewEvent("Happened", {})]),
    "read_stream": lambda store, s: store.read_stream(s),
    "read_all": lambda store, s: _first(store.read_all()),
    "subscribe": lambda store, s: _first(store.subscribe()),
    "head_position": lambda store, s: store.head_position(),
    "stream_version": lambda store, s: store.stream_version(s),
}


@pytest.mark.parametrize("operation", list(OPERATIONS))
async def test_call_right_after_the_server_ends_the_connections_succeeds(
    database_url: str, operation: str
) -> None:
    """With the server's FATAL already received and the close not yet seen, each call goes
    through on a fresh connection instead of raising asyncpg's InternalClientError."""
    proxy = CuttableProxy(database_url, hold_close=0.5)
    try:
        async with await EventStore.connect(await proxy.start(), Settings(pool_size=3)) as store:
            s = stream()
            await store.append(s, [NewEvent("Happened", {})])
            assert await store.read_stream(s)
            await terminate_others(database_url)
            try:
                await OPERATIONS[operation](store, s)
            except ChronicleError as exc:
                pytest.fail(f"{operation} failed although the server is up: {exc!r}")
    finally:
        await proxy.close()
