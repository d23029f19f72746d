"""Retention against real PostgreSQL: due streams move whole into the archive through
``chronicle_archive``, recorded as an event; they stay readable on request, provable, and in
rebuilt read models; nothing unsealed moves; a run killed with SIGKILL leaves every stream
whole on one side and finishes when run again."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from core.domain import DOMAIN_EVENTS, TASK, CommandContext, handle
from core.domain.task import CompleteTask, StartTask, SubmitTask
from core.domain.task.commands import AssignTask
from core.proofs import bundle
from eventstore import EventStore, NewEvent
from eventstore.audit.keys import SigningKey, known_verifiers, load_or_create
from eventstore.audit.proofs import inclusion_document
from eventstore.audit.sealer import seal_batch
from eventstore.audit.verify import verify_log
from eventstore.pg import connect
from eventstore.retention import Policy, archive_due, set_policy
from projections.models.tasks import TaskBoard, task
from projections.runner.rebuild import rebuild
from tests.waiting import eventually

pytestmark = pytest.mark.integration

ACME = CommandContext("acme", "test")
T0 = datetime(2026, 12, 1, tzinfo=UTC)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    c = await connect(database_url)
    yield c
    await c.close()


@pytest.fixture(scope="module")
def key(tmp_path_factory: pytest.TempPathFactory) -> SigningKey:
    return load_or_create(tmp_path_factory.mktemp("keys") / "signing.key", "retention.test/log")


async def seal_all(conn: asyncpg.Connection, key: SigningKey) -> None:
    while (sealed := await seal_batch(conn, key, checkpoint_now=True)) and sealed.events:
        pass


async def task_history(store: EventStore, task_id: str, *, complete: bool) -> None:
    stream = TASK.stream_id(task_id)
    await handle(store, stream, SubmitTask(task_id, "echo", T0), TASK, ACME)
    if complete:
        await handle(store, stream, AssignTask(task_id, "w1", T0 + timedelta(minutes=5), T0), TASK, ACME)
        await handle(store, stream, StartTask(task_id, 1, T0), TASK, ACME)
        await handle(store, stream, CompleteTask(task_id, 1, T0), TASK, ACME)


async def rows_of(conn: asyncpg.Connection, table: str, stream_id: str) -> list[tuple[object, ...]]:
    return [
        tuple(r)
        for r in await conn.fetch(
            f"SELECT global_position, event_id, stream_version, data::text FROM {table} "
            "WHERE stream_id = $1 ORDER BY 1",
            stream_id,
        )
    ]


async def test_due_streams_move_whole_and_stay_readable_provable_and_in_read_models(
    store: EventStore, conn: asyncpg.Connection, key: SigningKey
) -> None:
    await task_history(store, "done", complete=True)
    await task_history(store, "open", complete=False)
    await store.append("note-a", [NewEvent("Noted", {"n": i}, {"tenant_id": "acme"}) for i in range(3)])
    await seal_all(conn, key)
    before = {s: await rows_of(conn, "events", s) for s in (TASK.stream_id("done"), "note-a")}
    done_events = await store.read_stream(TASK.stream_id("done"))
    await set_policy(conn, Policy("task", 30, after_terminal=True))
    await set_policy(conn, Policy("note", 7))

    assert {(a.category, a.streams, a.events) for a in await archive_due(conn, now=datetime.now(UTC))} == {
        ("task", 0, 0),
        ("note", 0, 0),
    }  # nothing is old enough yet
    archived = await archive_due(conn, now=datetime.now(UTC) + timedelta(days=31))
    assert {(a.category, a.streams, a.events) for a in archived} == {("task", 1, 4), ("note", 1, 3)}

    # Moved whole, with their positions and bytes; the open task stays.
    for stream_id, rows in before.items():
        assert await rows_of(conn, "events", stream_id) == []
        assert await rows_of(conn, "events_archive", stream_id) == rows
    assert await rows_of(conn, "events", TASK.stream_id("open"))
    assert await conn.fetchval("SELECT archived FROM streams WHERE stream_id = $1", TASK.stream_id("done"))

    # Recorded through the one sanctioned path.
    (record,) = await store.read_stream("retention-task")
    archived_event = DOMAIN_EVENTS.read(record)
    assert (archived_event.streams, archived_event.events) == ((TASK.stream_id("done"),), 4)  # type: ignore[attr-defined]

    # Readable on request, everywhere.
    assert await store.read_stream(TASK.stream_id("done")) == []
    assert await store.read_stream(TASK.stream_id("done"), include_archived=True) == done_events
    everything = [e async for e in store.read_all(include_archived=True)]
    assert [e.global_position for e in everything] == sorted(
        r[0]
        for r in await conn.fetch(
            "SELECT global_position FROM events UNION ALL SELECT global_position FROM events_archive"
        )
    )

    # Provable: the whole log verifies, and an archived event's inclusion proof checks.
    await seal_all(conn, key)
    verifiers = await known_verifiers(conn)
    report = await verify_log(conn, verifiers)
    assert report.ok, report.breaks
    checked = bundle.check(await inclusion_document(conn, done_events[-1].event_id), verifiers)
    assert checked.index is not None

    # A rebuilt task board still has the archived task.
    await rebuild(store, conn, TaskBoard())
    row = await task(conn, "done")
    assert row is not None and row.status.value == "completed"


async def test_nothing_unsealed_moves_and_nothing_else_may_delete(
    store: EventStore, conn: asyncpg.Connection
) -> None:
    await store.append("note-fresh", [NewEvent("Noted", {}, {"tenant_id": "acme"})])  # not sealed
    archived = await archive_due(conn, now=datetime.now(UTC) + timedelta(days=31))
    assert ("note", 0, 0) in {(a.category, a.streams, a.events) for a in archived}
    with pytest.raises(asyncpg.ObjectNotInPrerequisiteStateError, match="unsealed"):
        await conn.fetchval(
            "SELECT chronicle_archive($1, 'retention-note', gen_random_uuid(), '{}'::jsonb, '{}'::jsonb)",
            ["note-fresh"],
        )
    assert await rows_of(conn, "events", "note-fresh")
    for statement in ("DELETE FROM events WHERE stream_id = 'note-fresh'", "DELETE FROM events_archive"):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await conn.execute(statement)


KILLED_RUN = """
import asyncio, sys
from datetime import UTC, datetime, timedelta
from eventstore.pg import connect
from eventstore.retention import archive_due

async def main():
    conn = await connect(sys.argv[1])
    await archive_due(conn, now=datetime.now(UTC) + timedelta(days=31), batch_streams=20)

asyncio.run(main())
"""


async def test_a_run_killed_half_way_leaves_every_stream_whole_and_the_next_run_finishes(
    store: EventStore, conn: asyncpg.Connection, key: SigningKey, database_url: str
) -> None:
    streams = [f"bulk-{i}" for i in range(600)]
    for i in range(0, len(streams), 100):
        await store.append_multi(
            [_one(s) for s in streams[i : i + 100]]  # two events per stream
        )
    await seal_all(conn, key)
    await set_policy(conn, Policy("bulk", 1))
    child = await asyncio.create_subprocess_exec(
        sys.executable, "-c", KILLED_RUN, database_url, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}
    )
    try:

        async def archived() -> int:
            assert child.returncode is None, "the run finished before it could be killed"
            return int(
                await conn.fetchval("SELECT count(*) FROM streams WHERE category = 'bulk' AND archived")
            )

        await eventually(archived, lambda n: n >= 40, every=0.005)  # the first batches have committed
        child.send_signal(signal.SIGKILL)
    finally:
        await child.wait()
    moved = await conn.fetchval("SELECT count(*) FROM streams WHERE category = 'bulk' AND archived")
    assert 40 <= moved < len(streams), moved
    await _assert_whole_and_recorded(conn)

    await archive_due(conn, now=datetime.now(UTC) + timedelta(days=31))
    assert await conn.fetchval("SELECT count(*) FROM streams WHERE category = 'bulk' AND NOT archived") == 0
    await _assert_whole_and_recorded(conn)
    await seal_all(conn, key)
    report = await verify_log(conn, await known_verifiers(conn))
    assert report.ok, report.breaks


def _one(stream_id: str) -> object:
    from core.events import StreamAppend

    return StreamAppend(stream_id, [NewEvent("Noted", {"k": 1}, {"tenant_id": "acme"}) for _ in range(2)])


async def _assert_whole_and_recorded(conn: asyncpg.Connection) -> None:
    """No stream is split between the tables; each archived stream is named by exactly one
    StreamsArchived record, whose count of events is right."""
    split = await conn.fetchval(
        "SELECT count(*) FROM (SELECT stream_id FROM events WHERE stream_id LIKE 'bulk-%' "
        "INTERSECT SELECT stream_id FROM events_archive WHERE stream_id LIKE 'bulk-%') s"
    )
    assert split == 0
    records = await conn.fetch(
        "SELECT data FROM events WHERE stream_id = 'retention-bulk' ORDER BY global_position"
    )
    import orjson

    named = [s for r in records for s in orjson.loads(r["data"])["streams"]]
    archived = {
        r[0] for r in await conn.fetch("SELECT stream_id FROM streams WHERE category = 'bulk' AND archived")
    }
    assert sorted(named) == sorted(archived)
    assert sum(orjson.loads(r["data"])["events"] for r in records) == 2 * len(archived)
