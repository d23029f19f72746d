"""LISTEN/NOTIFY wakes subscribers in other processes; polling covers a lost listener."""

from __future__ import annotations

import asyncio
import uuid

import asyncpg
import pytest

from core.settings import Settings
from eventstore import EventStore, NewEvent

pytestmark = pytest.mark.integration


async def _first_event(store: EventStore, category: str) -> str:
    async for event in store.subscribe(categories=[category]):
        return event.type
    raise AssertionError("subscription ended without an event")


async def _until_parked(store: EventStore) -> None:
    """Wait until a subscriber has read to the head and sleeps on its wake-up."""
    for _ in range(1000):
        if store._wakeup._event._waiters:  # asyncio.Event internals: someone waits on it
            return
        await asyncio.sleep(0.005)
    raise AssertionError("the subscriber never went to sleep")


async def test_notify_wakes_a_subscriber_of_another_store_before_its_poll(database_url: str) -> None:
    """An append through one store reaches a subscriber of another long before its 60 s poll."""
    category = f"n{uuid.uuid4().hex[:8]}"
    async with (
        await EventStore.connect(database_url, Settings(poll_interval=60)) as reader,
        await EventStore.connect(database_url) as writer,
    ):
        waiting = asyncio.create_task(_first_event(reader, category))
        await _until_parked(reader)  # so only a notification, not catch-up, can deliver it
        await writer.append(f"{category}-1", [NewEvent("Woken", {})])
        assert await asyncio.wait_for(waiting, 10) == "Woken"


async def test_subscriber_keeps_going_when_its_listener_connection_dies(database_url: str) -> None:
    """With the LISTEN connection killed, new events still arrive by polling."""
    category = f"p{uuid.uuid4().hex[:8]}"
    async with (
        await EventStore.connect(database_url, Settings(poll_interval=0.2)) as reader,
        await EventStore.connect(database_url) as writer,
    ):
        await reader._listener.ensure()
        admin = await asyncpg.connect(database_url)
        try:
            killed = await admin.fetchval(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                "WHERE query LIKE 'LISTEN%' AND datname = current_database()"
            )
        finally:
            await admin.close()
        assert killed >= 1
        waiting = asyncio.create_task(_first_event(reader, category))
        await _until_parked(reader)
        await writer.append(f"{category}-1", [NewEvent("Polled", {})])
        assert await asyncio.wait_for(waiting, 10) == "Polled"
