"""Row-level security, tested with raw SQL sessions: a transaction working for one tenant sees
none of another's rows in the log, the snapshots or any read model, even through a query with
no tenant filter; writes tagged with another tenant are refused; the auditor reads across.

Two tenants' agents, tasks, conversations and a training run are recorded through the domain,
the read models are built by a real daemon, and every table and view that has a tenant column
(found in the catalog, so a read model added later is covered too) is queried as each tenant.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import asyncpg
import orjson
import pytest

from core.domain import AGENT, CONVERSATION, DOMAIN_EVENTS, TASK, CommandContext, handle
from core.domain.agent import RegisterAgent
from core.domain.conversation import SendMessage
from core.domain.task import SubmitTask
from core.errors import InvalidInput
from core.triad.events import RunStarted, run_stream_id
from eventstore import EventStore
from eventstore.pg import connect
from eventstore.tenancy import as_auditor, as_tenant
from projections.catalog import PROJECTIONS
from projections.runner.daemon import ProjectionDaemon
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

T0 = datetime(2026, 12, 1, tzinfo=UTC)
TENANTS = ("acme", "globex")


@pytest.fixture(scope="module")
async def conn(database_url: str, store: EventStore) -> AsyncIterator[asyncpg.Connection]:
    """A raw connection as the tables' owner, after both tenants' data is recorded and every
    read model has applied it."""
    c = await connect(database_url)
    for tenant in TENANTS:
        context = CommandContext(tenant, f"{tenant}-admin")
        await handle(
            store, AGENT.stream_id(f"{tenant}-ag"), RegisterAgent(f"{tenant}-ag", "x", (), T0), AGENT, context
        )
        await handle(
            store, TASK.stream_id(f"{tenant}-t"), SubmitTask(f"{tenant}-t", "echo", T0), TASK, context
        )
        message = SendMessage(f"{tenant}-c", "alice", "bob", T0, {"text": "hi"})
        await handle(store, CONVERSATION.stream_id(f"{tenant}-c"), message, CONVERSATION, context)
        started = RunStarted(f"{tenant}-run", "cpu", 10, (), 3, 64, 7, 100.0, 0.01, 1)
        await store.append(
            run_stream_id(f"{tenant}-run"), [DOMAIN_EVENTS.encode(started, {"tenant_id": tenant})]
        )
        await c.execute(
            "INSERT INTO snapshots (stream_id, stream_version, schema_version, state) VALUES ($1, 1, 1, $2)",
            TASK.stream_id(f"{tenant}-t"),
            orjson.dumps({"tenant": tenant}),
        )
    await store.append("misc-untenanted", [DOMAIN_EVENTS.encode(started, {})])  # no tenant at all
    await _build_read_models(store, database_url, c)
    yield c
    await c.close()


async def _build_read_models(store: EventStore, url: str, c: asyncpg.Connection) -> None:
    daemon = ProjectionDaemon(store, url, PROJECTIONS, poll_interval=0.05, lease_interval=0.05)
    running = asyncio.create_task(daemon.run())
    head = await store.head_position()
    try:

        async def caught_up() -> bool:
            assert not daemon.failures, daemon.failures
            behind = await c.fetchval(
                "SELECT count(*) FROM projections p LEFT JOIN projection_checkpoints k "
                "ON k.name = p.name AND k.generation = p.active_generation "
                "WHERE k.position IS NULL OR k.position < $1",
                head,
            )
            built = await c.fetchval("SELECT count(*) FROM projections")
            return bool(built == len(PROJECTIONS) and behind == 0)

        await wait_until(caught_up)
    finally:
        running.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await running


async def _relations_with_tenants(conn: asyncpg.Connection, kinds: str) -> list[str]:
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = 'tenant_id' "
        "WHERE n.nspname = current_schema() AND c.relkind::text = ANY($1::text[]) AND NOT c.relispartition "
        "ORDER BY 1",
        list(kinds),
    )
    return [r["relname"] for r in rows]


async def test_every_relation_with_a_tenant_column_is_under_row_level_security(
    conn: asyncpg.Connection,
) -> None:
    tables = await _relations_with_tenants(conn, "rp")  # partitions are reached through their parent
    assert {"events", "events_archive", "streams", "task_board_rows", "audit_index_rows"} <= set(tables)
    unprotected = await conn.fetch(
        "SELECT relname FROM pg_class WHERE relname = ANY($1) AND NOT relrowsecurity", [*tables, "snapshots"]
    )
    assert unprotected == []
    views = await _relations_with_tenants(conn, "v")
    assert {"agent_registry", "task_board", "conversation_messages", "training_runs", "audit_index"} <= set(
        views
    )
    definer_views = await conn.fetch(
        "SELECT relname FROM pg_class WHERE relname = ANY($1) "
        "AND NOT coalesce('security_invoker=true' = ANY(reloptions), false)",
        views,
    )
    assert definer_views == []


@pytest.mark.parametrize("tenant", TENANTS)
async def test_a_tenant_sees_only_its_own_rows_in_every_table_and_view(
    conn: asyncpg.Connection, tenant: str
) -> None:
    """Every relation shows the tenant, with no filter, exactly the rows the owner counts for
    it; the log and every read model the fixture wrote to have some."""
    every = [*await _relations_with_tenants(conn, "rp"), *await _relations_with_tenants(conn, "v")]
    granted = await conn.fetch(
        "SELECT r FROM unnest($1::text[]) r WHERE has_table_privilege('chronicle_tenant', r, 'SELECT')", every
    )
    relations = [r[0] for r in granted]
    assert set(every) - set(relations) == {"subject_keys", "api_keys"}  # keys are never a tenant's to read
    owners_count = {
        r: await conn.fetchval(f"SELECT count(*) FROM {r} WHERE tenant_id = $1", tenant) for r in relations
    }
    empty_here = {
        "events_archive",
        "training_run_epochs",
        "training_run_epochs_rows",
    }  # nothing archived, no epoch
    assert all(n > 0 for r, n in owners_count.items() if r not in empty_here), owners_count
    async with as_tenant(conn, tenant):
        for relation in relations:
            seen = {r[0] for r in await conn.fetch(f"SELECT DISTINCT tenant_id FROM {relation}")}
            assert seen <= {tenant}, f"{relation} shows {seen} to {tenant}"
            assert await conn.fetchval(f"SELECT count(*) FROM {relation}") == owners_count[relation], relation
        snapshots = [r["state"] for r in await conn.fetch("SELECT state FROM snapshots")]
        assert [orjson.loads(s) for s in snapshots] == [{"tenant": tenant}]
        # Even asking for the other tenant by name finds nothing.
        other = next(t for t in TENANTS if t != tenant)
        assert await conn.fetchval("SELECT count(*) FROM events WHERE tenant_id = $1", other) == 0


async def test_a_transaction_with_no_tenant_set_sees_nothing(conn: asyncpg.Connection) -> None:
    async with conn.transaction():
        await conn.execute("SET LOCAL ROLE chronicle_tenant")
        assert await conn.fetchval("SELECT count(*) FROM events") == 0
        assert await conn.fetchval("SELECT count(*) FROM task_board") == 0
    # The role and the tenant end with the transaction: the owner sees everything again.
    assert await conn.fetchval("SELECT count(DISTINCT tenant_id) FROM events") == 2


async def test_the_auditor_reads_every_tenant_and_the_seals_but_writes_nothing(
    conn: asyncpg.Connection,
) -> None:
    async with as_auditor(conn):
        assert {r[0] for r in await conn.fetch("SELECT DISTINCT tenant_id FROM events")} == {*TENANTS, None}
        assert {r[0] for r in await conn.fetch("SELECT DISTINCT tenant_id FROM task_board")} == set(TENANTS)
        assert await conn.fetchval("SELECT count(*) FROM snapshots") == 2
        await conn.fetchval("SELECT count(*) FROM seals")
    with pytest.raises(asyncpg.InsufficientPrivilegeError):
        await _as_auditor_in_a_writable_transaction(conn, "DELETE FROM task_board_rows")


async def _as_auditor_in_a_writable_transaction(conn: asyncpg.Connection, statement: str) -> None:
    async with conn.transaction():
        await conn.execute("SET LOCAL ROLE chronicle_auditor")
        await conn.execute(statement)


def _append_args(stream: str, tenant: str) -> list[object]:
    return [[stream], [-1], [tenant], [0], [1], [uuid.uuid4()], ["Noted"], [1], [b'{"a":1}'], [b"{}"]]


APPEND = "SELECT outcome FROM chronicle_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"


async def test_a_tenant_appends_to_its_own_streams_and_cannot_write_anothers(
    conn: asyncpg.Connection,
) -> None:
    before = await conn.fetchval("SELECT max(global_position) FROM events")
    async with as_tenant(conn, "acme"):
        assert await conn.fetchval(APPEND, *_append_args("note-acme1", "acme")) == "ok"
    # Tagging an event with another tenant, or writing into another tenant's stream.
    for stream, tagged in (("note-acme2", "globex"), (TASK.stream_id("globex-t"), "acme")):
        with pytest.raises(asyncpg.PostgresError) as refused:
            async with as_tenant(conn, "acme"):
                await conn.fetchval(APPEND, *_append_args(stream, tagged))
        assert isinstance(refused.value, asyncpg.InsufficientPrivilegeError | asyncpg.UniqueViolationError)
    written = await conn.fetch("SELECT stream_id, tenant_id FROM events WHERE global_position > $1", before)
    assert [(r["stream_id"], r["tenant_id"]) for r in written] == [("note-acme1", "acme")]
    with pytest.raises(asyncpg.InsufficientPrivilegeError):  # the log stays append-only
        async with as_tenant(conn, "acme"):
            await conn.execute("DELETE FROM events WHERE stream_id = 'note-acme1'")


async def test_the_store_reads_as_a_tenant(store: EventStore, conn: asyncpg.Connection) -> None:
    reader = store.as_tenant("globex")
    page = await reader.read_all_page()
    assert page and {e.tenant_id for e in page} == {"globex"}
    assert await reader.read_stream(TASK.stream_id("acme-t")) == []
    assert [e.stream_id for e in await reader.read_stream(TASK.stream_id("globex-t"))] == [
        TASK.stream_id("globex-t")
    ]
    with pytest.raises(InvalidInput, match="tenant_id"):
        store.as_tenant("")
