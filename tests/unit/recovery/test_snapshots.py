"""Snapshot policy rules, snapshot-aware loading and command handling, on the in-memory stores."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bench.histories import T0, append_history
from core.domain import TASK, CommandContext, handle
from core.domain.diff import Change, diff_json
from core.domain.loading import AtVersion, SnapshotLoader, load, load_at
from core.domain.snapshots import Progress, Snapshot, SnapshotPolicy
from core.domain.task import ReportTaskProgress, TaskState
from core.errors import InvalidInput
from eventstore import InMemoryEventStore
from eventstore.state.snapshots import InMemorySnapshotStore
from projections.snapshotter import Snapshotter, take_snapshot

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("progress", "policy", "reason"),
    [
        (Progress(1000, 10, NOW), SnapshotPolicy(), "events"),
        (Progress(999, 10, NOW), SnapshotPolicy(), None),
        (Progress(3, 10 * 1024 * 1024, NOW), SnapshotPolicy(), "bytes"),
        (Progress(3, 10, NOW - timedelta(seconds=61)), SnapshotPolicy(every_seconds=60), "time"),
        (Progress(3, 10, NOW - timedelta(seconds=59)), SnapshotPolicy(every_seconds=60), None),
        (Progress(0, 10**9, NOW - timedelta(days=1)), SnapshotPolicy(every_seconds=1), None),
        (Progress(10**6, 10**9, NOW), SnapshotPolicy(every_events=None, every_bytes=None), None),
    ],
)
def test_policy_names_the_rule_that_makes_a_snapshot_due(
    progress: Progress, policy: SnapshotPolicy, reason: str | None
) -> None:
    """Each rule fires at its threshold and not before; a stream with no new events is never due."""
    assert policy.due(progress, NOW) == reason


def test_policy_refuses_nonsense_thresholds() -> None:
    """A zero or negative threshold, or keeping no snapshot, is refused when the policy is built."""
    with pytest.raises(InvalidInput, match="every_events"):
        SnapshotPolicy(every_events=0)
    with pytest.raises(InvalidInput, match="keep"):
        SnapshotPolicy(keep=0)


def test_diff_lists_each_changed_leaf() -> None:
    """diff_json names the path of every leaf that differs, and nothing for equal values."""
    before = {"status": "running", "payload": {"n": 1}, "tags": ["a", "b"]}
    after = {"status": "completed", "payload": {"n": 1}, "tags": ["a", "c"], "result": {"ok": True}}
    assert diff_json(before, after) == [
        Change("result", "<absent>", {"ok": True}),
        Change("status", "running", "completed"),
        Change("tags[1]", "b", "c"),
    ]
    assert diff_json(after, after) == []


async def test_stale_snapshot_is_ignored_and_current_one_is_used() -> None:
    """A snapshot under another state schema version is skipped; one under the current version is used."""
    log, snapshots = InMemoryEventStore(), InMemorySnapshotStore(keep=5)
    stream = await append_history(log, "t1", 12)
    truth = await load(log, stream, TASK)
    bogus = TaskState(task_id="t1", handler="from-snapshot").to_json()
    await snapshots.save(Snapshot(stream, 12, TASK.state_schema_version - 1, bogus))
    assert (await load_at(log, snapshots, stream, TASK)).state == truth.state
    await snapshots.save(Snapshot(stream, 12, TASK.state_schema_version, bogus))
    used = await load_at(log, snapshots, stream, TASK)
    assert used.state.handler == "from-snapshot"
    assert (used.snapshot_version, used.recorded) == (12, ())


async def test_retention_keeps_the_newest_and_drops_stale_versions() -> None:
    """Saving keeps the newest `keep` current-schema snapshots and deletes every older-schema one."""
    snapshots = InMemorySnapshotStore(keep=2)
    schema = TASK.state_schema_version
    saves = ((5, schema - 1), (10, schema), (20, schema), (25, schema - 1), (30, schema))
    for version, schema_version in saves:
        await snapshots.save(Snapshot("task-r", version, schema_version, {}))
    assert [s.stream_version for s in await snapshots.all_of("task-r")] == [20, 30]


async def test_handle_stays_idempotent_when_a_snapshot_hides_the_first_delivery() -> None:
    """A command retried after a snapshot covered its events is reported as a duplicate, not applied twice."""
    log, snapshots = InMemoryEventStore(), InMemorySnapshotStore()
    stream = await append_history(log, "t1", 3)
    loader = SnapshotLoader(log, snapshots)
    context = CommandContext("acme", "worker:1", command_id="progress-1")
    command = ReportTaskProgress("t1", 1, 50.0, T0, "half")
    first = await handle(log, stream, command, TASK, context, loader=loader)
    await append_history_tail(log, stream)
    assert await take_snapshot(log, snapshots, stream) is not None
    again = await handle(log, stream, command, TASK, context, loader=loader)
    assert again.duplicate
    assert again.event_ids == first.event_ids
    assert again.version == await log.stream_version(stream) == 6


async def append_history_tail(log: InMemoryEventStore, stream: str) -> None:
    for n in range(2):
        await handle(
            log, stream, ReportTaskProgress("t1", 1, 60.0 + n, T0, "more"), TASK, CommandContext("acme", "w")
        )


async def test_snapshotter_snapshots_every_n_events_off_the_append_path() -> None:
    """With every_events=5 the background snapshotter stores a snapshot that loads to the full replay."""
    log, snapshots = InMemoryEventStore(), InMemorySnapshotStore()
    snapshotter = Snapshotter(log, snapshots, SnapshotPolicy(every_events=5, every_bytes=None))
    runner = asyncio.create_task(snapshotter.run(from_position=1))
    stream = await append_history(log, "t1", 12, chunk=1)
    taken = await asyncio.wait_for(snapshotter.wait_for(stream, 10), 5)
    runner.cancel()
    assert taken.reason == "events"
    stored = await snapshots.latest(stream, TASK.state_schema_version)
    assert stored is not None and stored.stream_version >= 10
    at_snapshot = await load_at(log, None, stream, TASK, AtVersion(stored.stream_version))
    assert TASK.state_from_json(stored.state) == at_snapshot.state
