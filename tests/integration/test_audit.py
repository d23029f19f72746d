"""The audit index and its queries against real PostgreSQL: rows that match the log exactly,
every filter against a brute-force reading of the log, the causation chain, cursors that hold
while events keep arriving, and exports that read back to the same events.

The module's log: mixed agent, task and conversation traffic (bench.traffic), a second tenant,
metadata that is odd (a number, nothing at all), a causation chain with an event-id cause and a
loop, and one event recorded before the event below it (a transaction that started early).
"""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from datetime import datetime, timedelta
from typing import Any

import asyncpg
import orjson
import pytest

from bench.traffic import drive
from core.errors import InvalidInput
from core.events import NewEvent, RecordedEvent
from core.settings import Settings
from eventstore import EventStore
from eventstore.log.bulk import event_json
from eventstore.pg import connect
from eventstore.privacy import Privacy
from projections.audit import (
    CSV_COLUMNS,
    AuditFilter,
    AuditIndexNotBuilt,
    ExportFormat,
    InvalidCursor,
    _page_sql,
    csv_row,
    export,
    query,
)
from projections.models.audit import AuditIndex
from projections.runner.daemon import ProjectionDaemon
from projections.runner.rebuild import rebuild
from tests.projection_kit import wait_until

pytestmark = pytest.mark.integration

APPEND_RAW = "SELECT * FROM chronicle_append($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb[], $10::jsonb[])"


def meta(command: str, cause: str, actor: str = "ops", tenant: str = "acme") -> dict[str, Any]:
    return {
        "tenant_id": tenant,
        "actor": actor,
        "command_id": command,
        "causation_id": cause,
        "correlation_id": "flow-1",
    }


async def append_odd_events(store: EventStore) -> None:
    """A second tenant, odd metadata, and a causation chain: root -> (event id) c2 -> c3, a loop
    l1 <-> l2 caused by c3, and an unrelated command."""
    await store.append("order-g1", [NewEvent("OrderPlaced", {"n": 1}, meta("g1", "g1", tenant="globex"))])
    await store.append("order-odd", [NewEvent("OrderNoted", {}, {"actor": 42, "correlation_id": {"x": 1}})])
    await store.append("order-bare", [NewEvent("OrderNoted", {})])
    root = await store.append("order-1", [NewEvent("OrderPlaced", {}, meta("root", "root"))])
    first = (await store.read_stream("order-1"))[root.stream_version - 1]
    await store.append("order-2", [NewEvent("OrderPacked", {}, meta("c2", str(first.event_id)))])
    await store.append(
        "order-2",
        [NewEvent("OrderShipped", {}, meta("c3", "c2")), NewEvent("OrderBilled", {}, meta("c3", "c2"))],
    )
    await store.append("order-3", [NewEvent("OrderLooped", {}, meta("l1", "l2"))])
    await store.append("order-3", [NewEvent("OrderLooped", {}, meta("l2", "l1"))])
    await store.append("order-3", [NewEvent("OrderLooped", {}, meta("l1", "c3"))])
    await store.append("order-9", [NewEvent("OrderPlaced", {}, meta("other", "elsewhere"))])


async def append_late_event(url: str, store: EventStore) -> None:
    """An event recorded before the one below it: its transaction started (and took its
    timestamp) before another append, and appended after it."""
    slow = await asyncpg.connect(url)
    try:
        async with slow.transaction():
            await slow.fetchval("SELECT now()")  # the transaction's timestamp is taken here
            await asyncio.sleep(0.05)
            await store.append("order-fast", [NewEvent("OrderPlaced", {}, meta("fast", "fast"))])
            await slow.fetch(
                APPEND_RAW,
                ["order-late"],
                [-1],
                ["acme"],
                [0],
                [1],
                [uuid.uuid4()],
                ["OrderPlaced"],
                [1],
                [orjson.dumps({}).decode()],
                [orjson.dumps(meta("late", "late")).decode()],
            )
    finally:
        await slow.close()


@pytest.fixture(scope="module")
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    c = await connect(database_url)
    yield c
    await c.close()


@pytest.fixture(scope="module")
async def log(store: EventStore, database_url: str, conn: asyncpg.Connection) -> list[RecordedEvent]:
    """The module's log, indexed: every event, in order."""
    await drive(store, "a", scenarios=6, lanes=3)
    await append_odd_events(store)
    await append_late_event(database_url, store)
    await drive(store, "b", scenarios=2, lanes=2)
    # Small batches, so the running maxima are carried from one batch to the next.
    await rebuild(store, conn, AuditIndex(), batch_size=17)
    return [e async for e in store.read_all()]


# -- the rows ---------------------------------------------------------------------------------


def text(value: object) -> str | None:
    """What ->> makes of a metadata value."""
    if value is None or isinstance(value, str):
        return value
    return orjson.dumps(value).decode().replace(",", ", ").replace(":", ": ")


async def test_every_event_has_one_row_with_its_fields(
    conn: asyncpg.Connection, log: list[RecordedEvent]
) -> None:
    """The index holds every event once, in order, with the event's fields and its metadata's
    actor, correlation, causation and command ids, and the running time maxima."""
    rows = await conn.fetch("SELECT * FROM audit_index ORDER BY global_position")
    assert [r["global_position"] for r in rows] == [e.global_position for e in log]
    latest, lateness = log[0].recorded_at, timedelta(0)
    for row, event in zip(rows, log, strict=True):
        latest = max(latest, event.recorded_at)
        lateness = max(lateness, latest - event.recorded_at)
        m = event.metadata
        assert dict(row) == {
            "global_position": event.global_position,
            "recorded_at": event.recorded_at,
            "recorded_max": latest,
            "lateness_max": lateness,
            "tenant_id": event.tenant_id,
            "actor": text(m.get("actor")),
            "event_type": event.type,
            "stream_id": event.stream_id,
            "category": event.category,
            "stream_version": event.stream_version,
            "event_id": event.event_id,
            "correlation_id": text(m.get("correlation_id")),
            "causation_id": text(m.get("causation_id")),
            "command_id": text(m.get("command_id")),
        }
    assert lateness > timedelta(0), "the log should hold a late event"


# -- every filter, against the log read by brute force ----------------------------------------


def chain(log: list[RecordedEvent], command: str) -> set[int]:
    """The causation chain of ``command``, by fixpoint over the whole log."""
    members: set[int] = set()
    causes = {command}
    while True:
        found = {
            e.global_position
            for e in log
            if e.metadata.get("causation_id") in causes or e.metadata.get("command_id") == command
        }
        if found <= members:
            return members
        members |= found
        for e in log:
            if e.global_position in members:
                causes |= {str(e.event_id), str(e.metadata.get("command_id"))}


def matches(e: RecordedEvent, f: AuditFilter, log: list[RecordedEvent]) -> bool:
    m = e.metadata
    checks = (
        f.actor is None or text(m.get("actor")) == f.actor,
        f.tenant_id is None or e.tenant_id == f.tenant_id,
        not f.types or e.type in f.types,
        f.stream_id is None or e.stream_id == f.stream_id,
        f.category is None or e.category == f.category,
        f.since is None or e.recorded_at >= f.since,
        f.until is None or e.recorded_at < f.until,
        f.correlation_id is None or text(m.get("correlation_id")) == f.correlation_id,
        f.caused_by is None or e.global_position in chain(log, f.caused_by),
    )
    return all(checks)


async def all_pages(
    conn: asyncpg.Connection, flt: AuditFilter, limit: int, privacy: Privacy | None = None
) -> list[RecordedEvent]:
    page = await query(conn, flt, limit=limit, privacy=privacy)
    found = list(page.events)
    while page.more:
        page = await query(conn, cursor=page.cursor, limit=limit, privacy=privacy)
        found.extend(page.events)
    return found


def filters(log: list[RecordedEvent]) -> Iterable[AuditFilter]:
    late = next(e for e in log if e.stream_id == "order-late")
    fast = next(e for e in log if e.stream_id == "order-fast")
    middle, later = log[len(log) // 3].recorded_at, log[2 * len(log) // 3].recorded_at
    task = next(e.stream_id for e in log if e.category == "task")
    correlation = next(e.metadata["correlation_id"] for e in log if e.category == "conversation")
    return (
        AuditFilter(),
        AuditFilter(actor="operator"),
        AuditFilter(actor="42"),
        AuditFilter(tenant_id="globex"),
        AuditFilter(types=("TaskCompleted",)),
        AuditFilter(types=("TaskCompleted", "TaskFailed", "MessageSent")),
        AuditFilter(stream_id=task),
        AuditFilter(category="conversation"),
        AuditFilter(since=middle),
        AuditFilter(until=middle),
        AuditFilter(since=middle, until=later),
        # The late event is recorded before `fast` but stored after it: the time range must
        # still find it, and only it.
        AuditFilter(since=late.recorded_at, until=late.recorded_at + timedelta(microseconds=1)),
        AuditFilter(until=fast.recorded_at, category="order"),
        AuditFilter(correlation_id=correlation),
        AuditFilter(correlation_id='{"x": 1}'),
        AuditFilter(caused_by="root"),
        AuditFilter(caused_by="c2"),
        AuditFilter(caused_by="l1"),
        AuditFilter(caused_by="nothing"),
        AuditFilter(actor="api", since=middle, until=later),
        AuditFilter(tenant_id="acme", types=("TaskSubmitted", "AgentRegistered"), category="task"),
        AuditFilter(stream_id=task, since=middle),
        AuditFilter(actor="ops", caused_by="root", correlation_id="flow-1"),
    )


async def test_every_filter_pages_through_exactly_its_matches(
    conn: asyncpg.Connection, log: list[RecordedEvent], store: EventStore
) -> None:
    """For each filter (and some combinations), pages of 7 concatenated are exactly the events
    of the log that match it, in log order, with their data (personal fields opened, as the
    store reads them) and metadata."""
    for flt in filters(log):
        expected = [e for e in log if matches(e, flt, log)]
        assert await all_pages(conn, flt, 7, store.privacy) == expected, flt


async def test_the_causation_chain_follows_commands_and_event_ids(
    conn: asyncpg.Connection, log: list[RecordedEvent]
) -> None:
    """From "root": its event, the command c2 caused by that event's id, c3 caused by c2, and
    the loop caused by c3; nothing unrelated, and the loop ends."""
    found = await all_pages(conn, AuditFilter(caused_by="root"), 100)
    commands = [e.metadata["command_id"] for e in found]
    assert commands == ["root", "c2", "c3", "c3", "l1", "l2", "l1"]
    # c2's own event names the root event as its cause, yet it belongs to c2's chain.
    assert [e.metadata["command_id"] for e in await all_pages(conn, AuditFilter(caused_by="c2"), 100)] == [
        "c2",
        "c3",
        "c3",
        "l1",
        "l2",
        "l1",
    ]


async def test_the_named_queries_are_ordered_index_range_scans(
    conn: asyncpg.Connection, log: list[RecordedEvent]
) -> None:
    """ "Everything that happened to task X" and "everything actor Y did between T1 and T2" are
    each one range scan of their index, in position order, with no sort (the log here is too
    small for the planner to prefer an index, so sequential scans are switched off)."""
    task = next(e.stream_id for e in log if e.category == "task")
    cases = {
        "audit_stream_idx": AuditFilter(stream_id=task),
        "audit_actor_idx": AuditFilter(actor="api", since=log[10].recorded_at, until=log[-10].recorded_at),
    }
    await conn.execute("ANALYZE audit_index_rows")
    async with conn.transaction():
        await conn.execute("SET LOCAL enable_seqscan = off")
        await conn.execute("SET LOCAL enable_bitmapscan = off")
        for index, flt in cases.items():
            sql, args = _page_sql(flt, 1, log[-1].global_position, 101)
            plan = "\n".join(r[0] for r in await conn.fetch("EXPLAIN " + sql, *args))
            assert f"Index Only Scan using {index}" in plan or f"Index Scan using {index}" in plan, plan
            assert "Sort" not in plan, plan
            assert "AND (global_position >= " in plan, "the page's range must bound the scan"


# -- cursors and bad input --------------------------------------------------------------------


async def test_a_cursor_of_another_query_or_a_malformed_one_is_refused(
    conn: asyncpg.Connection, log: list[RecordedEvent]
) -> None:
    """A cursor carries its filter: passing a different filter with it, or a string that is not
    a cursor, is InvalidCursor; bad filters and limits are InvalidInput."""
    page = await query(conn, AuditFilter(actor="api"), limit=2)
    assert (await query(conn, AuditFilter(actor="api"), cursor=page.cursor)).events[0].global_position > (
        page.events[-1].global_position
    )
    with pytest.raises(InvalidCursor, match="belongs to another query"):
        await query(conn, AuditFilter(actor="ops"), cursor=page.cursor)
    for bad in ("nope", "e30", page.cursor[:-3] + "!!!"):
        with pytest.raises(InvalidCursor, match="is not a cursor of an audit query"):
            await query(conn, cursor=bad)
    with pytest.raises(InvalidInput, match="limit"):
        await query(conn, limit=0)
    with pytest.raises(InvalidInput, match="time zone"):
        AuditFilter(since=datetime(2026, 1, 1))  # naive: which zone would it be?
    with pytest.raises(InvalidInput, match="is after until"):
        AuditFilter(since=log[-1].recorded_at, until=log[0].recorded_at)
    with pytest.raises(InvalidInput, match="not a str"):
        AuditFilter(types="TaskSubmitted")  # type: ignore[arg-type]


async def test_an_index_that_is_not_built_says_so(new_database: Callable[[], str]) -> None:
    """Before any generation is live, a query raises AuditIndexNotBuilt naming the commands."""
    c = await connect(new_database())
    try:
        with pytest.raises(AuditIndexNotBuilt, match="chronicle projections rebuild audit_index"):
            await query(c, AuditFilter(actor="x"))
    finally:
        await c.close()


@contextlib.asynccontextmanager
async def live_index(store: EventStore, url: str) -> AsyncIterator[None]:
    daemon = ProjectionDaemon(store, url, [AuditIndex()], poll_interval=0.05, lease_interval=0.1, name="t")
    task = asyncio.create_task(daemon.run())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def indexed_through(conn: asyncpg.Connection, position: int) -> bool:
    return bool(
        await conn.fetchval(
            "SELECT c.position >= $1 FROM projection_checkpoints c JOIN projections p "
            "ON p.name = c.name AND p.active_generation = c.generation WHERE c.name = 'audit_index'",
            position,
        )
    )


async def test_paging_while_events_arrive_never_repeats_or_skips(new_database: Callable[[], str]) -> None:
    """A reader pages through one actor's events in pages of 5 while a writer appends more and
    the daemon indexes them: the pages joined are exactly the final answer, in order, and the
    events appended after the reader started came on its later pages."""
    url = new_database()
    async with await EventStore.connect(url, Settings(poll_interval=0.05)) as store:
        c = await connect(url)
        try:
            await drive(store, "early", scenarios=2, lanes=2)
            async with live_index(store, url):
                await wait_until(lambda: indexed_through(c, 1))
                started_at = await store.head_position()
                writer = asyncio.create_task(drive(store, "late", scenarios=12, lanes=3, rate=400))
                seen = await read_until_quiet(c, AuditFilter(actor="api"), writer, store)
            final = [e async for e in store.read_all() if e.metadata.get("actor") == "api"]
        finally:
            await c.close()
    positions = [e.global_position for e in seen]
    assert positions == sorted(set(positions)), "a page repeated or reordered an event"
    assert seen == final
    assert any(p > started_at for p in positions), "no event appended later showed up"


async def read_until_quiet(
    c: asyncpg.Connection, flt: AuditFilter, writer: asyncio.Task[Any], store: EventStore
) -> list[RecordedEvent]:
    """Page on from each cursor until a page comes back empty although, before it was read, the
    writer had finished and the index had caught up with the log."""
    page = await query(c, flt, limit=5)
    seen, pages = list(page.events), 1
    while True:
        quiet = writer.done() and await indexed_through(c, await store.head_position())
        page = await query(c, cursor=page.cursor, limit=5)
        seen.extend(page.events)
        pages += 1
        if not page.events:
            if quiet:
                break
            await asyncio.sleep(0.01)
    await writer
    assert pages > 5
    return seen


# -- export -----------------------------------------------------------------------------------


async def test_a_jsonl_export_reads_back_as_the_events(
    conn: asyncpg.Connection, log: list[RecordedEvent]
) -> None:
    """JSON Lines are `chronicle export`'s lines, one per match, in order; an export stopped by
    its limit continues from its cursor with no event lost or repeated."""
    flt = AuditFilter(category="task")
    expected = [orjson.loads(orjson.dumps(event_json(e))) for e in log if matches(e, flt, log)]
    first, rest = io.StringIO(), io.StringIO()
    done = await export(conn, first, ExportFormat.JSONL, flt, limit=10, page_size=3)
    more = await export(conn, rest, ExportFormat.JSONL, cursor=done.cursor, page_size=4)
    lines = (first.getvalue() + rest.getvalue()).splitlines()
    assert (done.events, more.events) == (10, len(expected) - 10)
    assert [orjson.loads(line) for line in lines] == expected
    again = io.StringIO()
    assert (await export(conn, again, ExportFormat.JSONL, cursor=more.cursor)).events == 0


async def test_a_csv_export_reads_back_as_the_events(
    conn: asyncpg.Connection, log: list[RecordedEvent]
) -> None:
    """CSV has a header and one row per match; data and metadata parse back to the events'."""
    flt = AuditFilter(category="order")
    sink = io.StringIO()
    done = await export(conn, sink, ExportFormat.CSV, flt, page_size=4)
    rows = list(csv.DictReader(io.StringIO(sink.getvalue())))
    events = [e for e in log if matches(e, flt, log)]
    assert done.events == len(rows) == len(events)
    assert list(rows[0]) == list(CSV_COLUMNS)
    for row, event in zip(rows, events, strict=True):
        assert list(row.values()) == [str(v) for v in csv_row(event)]
        assert orjson.loads(row["data"]) == event.data and orjson.loads(row["metadata"]) == event.metadata
        assert int(row["global_position"]) == event.global_position
        assert uuid.UUID(row["event_id"]) == event.event_id
