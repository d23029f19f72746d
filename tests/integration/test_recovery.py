"""Snapshots, time travel, recovery, the state cache and agent checkpoints on real PostgreSQL and Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from datetime import timedelta

import asyncpg
import pytest
import redis.asyncio as aioredis
import torch
from prometheus_client import CollectorRegistry
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from api.services.agent_checkpoints import AgentMind, checkpoint, restore
from bench.histories import T0, append_history
from core.domain import AGENT, DOMAIN_EVENTS, TASK, CommandContext, handle, load
from core.domain.agent import BringAgentOnline, DeregisterAgent, RegisterAgent
from core.domain.loading import AtPosition, AtTime, AtVersion, LogLoader, load_at
from core.domain.snapshots import Snapshot, SnapshotPolicy
from core.domain.task import CancelTask, ReportTaskProgress, SubmitTask, TaskState
from core.events import RecordedEvent
from eventstore import EventStore
from eventstore.migrate import downgrade, upgrade
from eventstore.redis.keys import state_key
from eventstore.redis.state_cache import CachedLoader, CacheMetrics, StateCache
from eventstore.state.blobs import BlobNotFound, BlobStore
from eventstore.state.snapshots import PostgresSnapshotStore
from projections.recovery import recover
from projections.snapshotter import Snapshotter
from projections.time_travel import compare, steps

pytestmark = [pytest.mark.integration, pytest.mark.redis]
CTX = CommandContext("acme", "test")


@pytest.fixture(scope="module")
async def snapshots(database_url: str) -> AsyncIterator[PostgresSnapshotStore]:
    s = await PostgresSnapshotStore.connect(database_url, keep=2)
    yield s
    await s.close()


@pytest.fixture(scope="module")
async def blobs(database_url: str) -> AsyncIterator[BlobStore]:
    b = await BlobStore.connect(database_url)
    yield b
    await b.close()


async def test_snapshotter_keeps_snapshots_while_appends_run(
    store: EventStore, snapshots: PostgresSnapshotStore
) -> None:
    """Tailing the log, the snapshotter stores snapshots every 100 events that load back to full replay."""
    snapshotter = Snapshotter(store, snapshots, SnapshotPolicy(every_events=100, every_bytes=None))
    runner = asyncio.create_task(snapshotter.run(from_position=await store.head_position() + 1))
    stream = await append_history(store, "snap", 450, chunk=50)
    await asyncio.wait_for(snapshotter.wait_for(stream, 400), 20)
    runner.cancel()
    kept = await snapshots.all_of(stream)
    assert 1 <= len(kept) <= 2, "retention keeps at most two"
    for snap in kept:
        at = await load_at(store, None, stream, TASK, AtVersion(snap.stream_version))
        assert TASK.state_from_json(snap.state) == at.state
    via_snapshot = await load_at(store, snapshots, stream, TASK)
    assert via_snapshot.snapshot_version == kept[-1].stream_version
    assert via_snapshot.state == (await load(store, stream, TASK)).state


async def test_size_and_time_rules_trigger_snapshots(
    store: EventStore, snapshots: PostgresSnapshotStore
) -> None:
    """The bytes rule fires after enough event bytes; the time rule snapshots a quiet stream later."""
    by_size = Snapshotter(store, snapshots, SnapshotPolicy(every_events=None, every_bytes=2_000))
    by_time = Snapshotter(
        store, snapshots, SnapshotPolicy(every_events=None, every_bytes=None, every_seconds=0.3)
    )
    start = await store.head_position() + 1
    runners = [asyncio.create_task(s.run(from_position=start)) for s in (by_size, by_time)]
    big = await append_history(store, "big", 30, chunk=1)
    quiet = await append_history(store, "quiet", 2)
    sized = await asyncio.wait_for(by_size.wait_for(big, 1), 20)
    timed = await asyncio.wait_for(by_time.wait_for(quiet, 2), 20)
    for runner in runners:
        runner.cancel()
    assert (sized.reason, timed.reason) == ("bytes", "time")


async def test_time_travel_by_version_position_and_time(
    store: EventStore, snapshots: PostgresSnapshotStore
) -> None:
    """Loading at a version, at its event's position, or at its recorded time gives the k-event prefix."""
    stream = await append_history(store, "travel", 30, chunk=5)
    recorded = await store.read_stream(stream)
    at_ten = await load_at(store, None, stream, TASK, AtVersion(10))
    await snapshots.save(_snapshot_of(recorded[9], at_ten.state))
    for k in (1, 9, 10, 17, 30):
        expected = TASK.fold(DOMAIN_EVENTS.read(e) for e in recorded[:k])
        event = recorded[k - 1]
        assert (await load_at(store, snapshots, stream, TASK, AtVersion(k))).state == expected
        assert (
            await load_at(store, snapshots, stream, TASK, AtPosition(event.global_position))
        ).state == expected
        by_time = await load_at(store, snapshots, stream, TASK, AtTime(event.recorded_at))
        assert by_time.version >= k, "events of one append share a time"
    walked = [s async for s in steps(store, snapshots, stream, after=5, until=AtVersion(12))]
    assert [s.stream_version for s in walked] == list(range(6, 13))
    assert walked[-1].state == (await load_at(store, None, stream, TASK, AtVersion(12))).state
    changes = await compare(store, snapshots, stream, AtVersion(5), AtVersion(6))
    assert [c.path for c in changes.changes] == ["progress", "updated_at"]


def _snapshot_of(last: RecordedEvent, state: TaskState) -> Snapshot:
    return Snapshot(
        last.stream_id,
        last.stream_version,
        TASK.state_schema_version,
        TASK.state_to_json(state),
        last.global_position,
        last.recorded_at,
    )


async def test_recovery_rebuilds_live_agents_and_in_flight_tasks(new_database: Callable[[], str]) -> None:
    """Recovery keeps registered agents and unfinished tasks, drops deregistered and finished ones."""
    async with await EventStore.connect(new_database()) as log:
        for agent_id in ("a1", "a2", "a3"):
            await handle(log, f"agent-{agent_id}", RegisterAgent(agent_id, "n", ("x",), T0), AGENT, CTX)
        await handle(log, "agent-a2", BringAgentOnline("a2", T0), AGENT, CTX)
        await handle(log, "agent-a3", DeregisterAgent("a3", "gone", T0), AGENT, CTX)
        await append_history(log, "running", 5)
        await handle(log, "task-pending", SubmitTask("pending", "echo", T0), TASK, CTX)
        await handle(log, "task-done", SubmitTask("done", "echo", T0), TASK, CTX)
        await handle(log, "task-done", CancelTask("done", "no", T0), TASK, CTX)
        done = await recover(log)
    assert sorted(done.agents) == ["agent-a1", "agent-a2"]
    assert sorted(done.tasks) == ["task-pending", "task-running"]
    assert done.events == 13 and done.seconds > 0


async def test_cache_hits_and_a_stale_entry_only_causes_a_conflict_and_reload(
    store: EventStore, redis_url: str
) -> None:
    """Cached state is served and written through; a stale entry costs a conflict and a reload only."""
    task = f"cached{uuid.uuid4().hex[:12]}"  # Redis outlives the test database: a fresh key
    client = aioredis.Redis.from_url(redis_url)
    metrics = CacheMetrics(CollectorRegistry())
    loader = CachedLoader(StateCache(client, metrics=metrics), LogLoader(store))
    stream = await append_history(store, task, 3)
    await handle(store, stream, _progress(task, 10.0), TASK, CTX, loader=loader)  # miss, then write-through
    await handle(store, stream, _progress(task, 20.0), TASK, CTX, loader=loader)  # hit
    assert (metrics.hits._value.get(), metrics.misses._value.get()) == (1.0, 1.0)
    assert 0 < await client.ttl(state_key(stream)) <= 300
    await handle(store, stream, _progress(task, 30.0), TASK, CTX)  # a writer that skips the cache
    late = await handle(store, stream, _progress(task, 40.0), TASK, CTX, loader=loader)
    assert late.attempts == 2, "the stale cached version met a conflict first"
    assert late.version == 7
    truth = await load(store, stream, TASK)
    assert late.state == truth.state and truth.state.progress == 40.0
    assert [e.data["percent"] for e in await store.read_stream(stream, from_version=4)] == [10, 20, 30, 40]
    await client.aclose()


async def test_cache_down_means_the_database_answers(store: EventStore) -> None:
    """With Redis unreachable, commands still load from the database and the errors are counted."""
    dead = aioredis.Redis(
        unix_socket_path="/nonexistent/redis.sock", socket_connect_timeout=0.2, retry=Retry(NoBackoff(), 0)
    )
    metrics = CacheMetrics(CollectorRegistry())
    loader = CachedLoader(StateCache(dead, metrics=metrics), LogLoader(store))
    stream = await append_history(store, "nocache", 3)
    handled = await handle(store, stream, _progress("nocache", 5.0), TASK, CTX, loader=loader)
    assert handled.version == 4
    assert metrics.errors._value.get() >= 2 and metrics.hits._value.get() == 0
    await dead.aclose()


def _progress(task_id: str, percent: float) -> ReportTaskProgress:
    return ReportTaskProgress(task_id, 1, percent, T0 + timedelta(seconds=percent), "p")


def _bits(tensor: torch.Tensor) -> bytes:
    return tensor.contiguous().flatten().view(torch.uint8).numpy().tobytes()


async def test_checkpoint_restores_tensors_bit_exactly_and_dedups(
    store: EventStore, blobs: BlobStore
) -> None:
    """checkpoint/restore round-trips beliefs, state_dicts and plain state bit for bit; dedup by digest."""
    await handle(store, "agent-mind", RegisterAgent("mind", "m", ("learn",), T0), AGENT, CTX)
    policy = torch.nn.Linear(4, 3)
    beliefs = {
        "prior": torch.tensor([1.5, float("nan"), -0.0, 1e-45], dtype=torch.float32),
        "half": torch.randn(3, 2).to(torch.bfloat16),
        "counts": torch.arange(5, dtype=torch.int64),
    }
    mind = AgentMind(beliefs, {"policy": policy.state_dict()}, {"epsilon": 0.1, "seen": [1, 2]})
    first = await checkpoint(store, blobs, "mind", mind, CTX, T0)
    back = await restore(store, blobs, "mind")
    for name, tensor in beliefs.items():
        assert back.beliefs[name].dtype == tensor.dtype and _bits(back.beliefs[name]) == _bits(tensor)
    for name, tensor in policy.state_dict().items():
        assert _bits(back.modules["policy"][name]) == _bits(tensor)
    assert back.plain == {"epsilon": 0.1, "seen": [1, 2]}
    again = await checkpoint(store, blobs, "mind", mind, CTX, T0 + timedelta(seconds=1))
    assert again.events == () and again.version == first.version, "unchanged beliefs record nothing"
    assert first.state.beliefs is not None
    assert (await blobs.put(await blobs.get(first.state.beliefs.digest))).new is False


async def test_garbage_collection_removes_only_unreferenced_blobs(
    store: EventStore, blobs: BlobStore
) -> None:
    """Collection deletes a blob no event names once past its grace period, and keeps referenced ones."""
    await handle(store, "agent-gc", RegisterAgent("gc", "g", (), T0), AGENT, CTX)
    kept = await checkpoint(store, blobs, "gc", AgentMind(plain={"v": 1}), CTX, T0)
    orphan = await blobs.put(b"orphan bytes no event names")
    assert await blobs.collect_garbage(grace_seconds=3600) == 0, "young blobs are kept"
    assert await blobs.collect_garbage(grace_seconds=0) >= 1
    with pytest.raises(BlobNotFound):
        await blobs.get(orphan.digest)
    assert kept.state.beliefs is not None
    assert (await restore(store, blobs, "gc")).plain == {"v": 1}


async def test_snapshot_written_under_0001_survives_the_upgrade(new_database: Callable[[], str]) -> None:
    """A snapshot row from schema 0001 serves loads by version after 0002 but not loads by position."""
    url = new_database()
    await downgrade(url, "0001")
    conn = await asyncpg.connect(url)
    try:
        await conn.execute(
            "INSERT INTO snapshots (stream_id, stream_version, schema_version, state) VALUES ($1, 3, $2, $3)",
            "task-old",
            TASK.state_schema_version,
            '{"task_id": "old"}',
        )
    finally:
        await conn.close()
    await upgrade(url)
    old = await PostgresSnapshotStore.connect(url)
    try:
        found = await old.latest("task-old", TASK.state_schema_version)
        assert found is not None and found.stream_version == 3 and found.global_position is None
        assert await old.latest("task-old", TASK.state_schema_version, max_position=10**9) is None
    finally:
        await old.close()
