"""Behaviour only the PostgreSQL store has: database-enforced rules, group commit, faults."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable

import asyncpg
import pytest

from core.errors import AppendOutcomeUnknown, SchemaNotAtHead, StoreUnavailable
from core.settings import Settings
from eventstore import EventStore, NewEvent, StorageError
from eventstore.migrate import downgrade, upgrade
from eventstore.pg import APPEND_LOCK

pytestmark = pytest.mark.integration


def ev(**data: object) -> NewEvent:
    return NewEvent("Happened", data)


def stream() -> str:
    return f"task-{uuid.uuid4().hex}"


@pytest.mark.parametrize(
    "statement",
    ["UPDATE events SET data = '{}'", "DELETE FROM events", "TRUNCATE events"],
)
async def test_database_refuses_changes_to_events(
    store: EventStore, database_url: str, statement: str
) -> None:
    """UPDATE, DELETE and TRUNCATE on events are refused by the database itself."""
    await store.append(stream(), [ev()])
    conn = await asyncpg.connect(database_url)
    try:
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute(statement)
    finally:
        await conn.close()


async def test_concurrent_appends_share_transactions(store: EventStore, database_url: str) -> None:
    """Group commit: 64 concurrent single-event appends commit in far fewer transactions."""
    streams = [stream() for _ in range(64)]
    await asyncio.gather(*(store.append(s, [ev()]) for s in streams))
    conn = await asyncpg.connect(database_url)
    try:
        transactions = await conn.fetchval(
            "SELECT count(DISTINCT xmin::text) FROM events WHERE stream_id = ANY($1)", streams
        )
    finally:
        await conn.close()
    assert transactions < 16


async def test_lone_append_waits_for_no_batch(store: EventStore) -> None:
    """A single append completes on its own, without other callers to fill a batch."""
    result = await asyncio.wait_for(store.append(stream(), [ev()]), 5)
    assert result.stream_version == 1


async def test_request_the_database_refuses_fails_only_itself(new_database: Callable[[], str]) -> None:
    """If the database refuses a batch, each request is retried alone and only the culprit fails."""
    url = new_database()
    conn = await asyncpg.connect(url)
    await conn.execute("ALTER TABLE events ADD CONSTRAINT no_poison CHECK (event_type <> 'Poison')")
    await conn.close()
    async with await EventStore.connect(url) as store:
        streams = [stream() for _ in range(20)]
        calls = [store.append(s, [ev()]) for s in streams]
        calls.insert(7, store.append(stream(), [NewEvent("Poison", {})]))
        results = await asyncio.gather(*calls, return_exceptions=True)
        failures = [r for r in results if isinstance(r, Exception)]
        assert len(failures) == 1
        assert isinstance(results[7], StorageError)
        assert "no_poison" in str(results[7])
        assert [await store.stream_version(s) for s in streams] == [1] * len(streams)


async def _kill_waiting_append(admin: asyncpg.Connection, skip: set[int]) -> int:
    """Terminate the backend that waits for the append lock; return its pid.

    Found through pg_locks (an advisory lock's objid is its key's low 32 bits), not through
    pg_stat_activity's query text, which can still show an earlier statement.
    """
    for _ in range(1000):  # until the append is waiting for the lock
        pid = await admin.fetchval(
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND NOT granted "
            "AND objid = $1 AND NOT (pid = ANY($2))",
            APPEND_LOCK & 0xFFFFFFFF,
            list(skip),
        )
        if pid:
            await admin.execute("SELECT pg_terminate_backend($1)", pid)
            return int(pid)
        await asyncio.sleep(0.01)
    raise AssertionError("the append never reached the database")


async def test_connection_lost_mid_append_is_retried_once_and_never_duplicates(
    store: EventStore, database_url: str
) -> None:
    """Killing the writer's connection mid-append: the batch goes again on a fresh connection,
    the caller sees success, and the events are stored once."""
    s = stream()
    events = [ev(i=1), ev(i=2)]
    blocker = await asyncpg.connect(database_url)
    try:
        tx = blocker.transaction()
        await tx.start()
        await blocker.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
        append = asyncio.create_task(store.append(s, events))
        await _kill_waiting_append(blocker, set())
        await tx.rollback()  # let the retry through
        result = await append
    finally:
        await blocker.close()
    assert result.stream_version == 2
    assert [e.data["i"] for e in await store.read_stream(s)] == [1, 2]


async def test_partition_during_append_is_outcome_unknown_and_a_retry_stores_once(database_url: str) -> None:
    """With the network cut mid-append and still cut for the retry, the caller gets
    AppendOutcomeUnknown; once healed, retrying the same events stores them exactly once."""
    from tests.integration.proxy import CuttableProxy

    proxy = CuttableProxy(database_url)
    s = stream()
    events = [ev(i=1), ev(i=2)]
    blocker = await asyncpg.connect(database_url)
    try:
        async with await EventStore.connect(await proxy.start(), Settings(pool_size=2)) as store:
            tx = blocker.transaction()
            await tx.start()
            await blocker.execute("SELECT pg_advisory_xact_lock($1)", APPEND_LOCK)
            append = asyncio.create_task(store.append(s, events))
            await _kill_waiting_append(blocker, set())  # make sure the append is in flight...
            proxy.cut()  # ...then partition: the retry cannot reach the server either
            with pytest.raises(AppendOutcomeUnknown):
                await append
            await tx.rollback()
            proxy.heal()
            first = await store.append(s, events)
            assert await store.append(s, events) == first
            assert [e.data["i"] for e in await store.read_stream(s)] == [1, 2]
    finally:
        await blocker.close()
        await proxy.close()


async def test_unreachable_database_is_a_retriable_error() -> None:
    """Connecting to a server that is not there raises StoreUnavailable, not a driver error."""
    with pytest.raises(StoreUnavailable):
        await EventStore.connect("postgresql://nobody@127.0.0.1:1/none", Settings(pool_size=2))


async def test_unmigrated_database_is_refused_at_connect(pg_server_url: str) -> None:
    """Connecting to a database without the schema names the fix: chronicle migrate."""
    from tests.conftest import _admin, with_database

    name = f"chronicle_empty_{uuid.uuid4().hex[:8]}"
    await _admin(pg_server_url, f'CREATE DATABASE "{name}"')
    try:
        with pytest.raises(SchemaNotAtHead, match="chronicle migrate"):
            await EventStore.connect(with_database(pg_server_url, name))
    finally:
        await _admin(pg_server_url, f'DROP DATABASE "{name}" WITH (FORCE)')


async def test_migrations_upgrade_downgrade_upgrade(new_database: Callable[[], str]) -> None:
    """The schema migrates down to nothing and back up to head, and works afterwards."""
    url = new_database()
    await downgrade(url, "base")
    conn = await asyncpg.connect(url)
    try:
        assert await conn.fetchval("SELECT to_regclass('events')") is None
    finally:
        await conn.close()
    await upgrade(url)
    async with await EventStore.connect(url) as store:
        assert (await store.append(stream(), [ev()])).stream_version == 1


async def test_database_refusing_the_schema_check_is_a_chronicle_error(
    new_database: Callable[[], str],
) -> None:
    """A role that may not read the schema gets StorageError at connect, not an asyncpg exception."""
    from urllib.parse import urlsplit, urlunsplit

    url = new_database()
    role = f"nobody_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(f"CREATE ROLE {role} LOGIN")
        await conn.execute(f"REVOKE ALL ON SCHEMA public FROM {role}")
        await conn.execute(f"REVOKE ALL ON alembic_version FROM {role}, PUBLIC")
        parts = urlsplit(url)
        netloc = parts.netloc.split("@", 1)[-1] if "@" in parts.netloc else parts.netloc
        other = urlunsplit(parts._replace(netloc=f"{role}@{netloc}"))
        with pytest.raises(StorageError, match="permission denied"):
            await EventStore.connect(other, Settings(pool_size=2))
    finally:
        await conn.execute(f"DROP OWNED BY {role}")
        await conn.execute(f"DROP ROLE {role}")
        await conn.close()
