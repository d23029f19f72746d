"""Reads of a stream's state raise StreamNotFound for a stream with no events; handling never does.

Run against the PostgreSQL stores and the in-memory stores alike. A point before an existing
stream's first event is not "not found": it is the initial state at version 0.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import timedelta

import pytest

from api.services.agent_checkpoints import restore
from bench.histories import T0, append_history
from core.domain import AGENT, TASK, CommandContext, handle
from core.domain.loading import AtPosition, AtTime, AtVersion, LogLoader, SnapshotLoader, Target, load_at
from core.domain.snapshots import SnapshotStore
from core.domain.task import SubmitTask
from core.errors import StreamNotFound
from core.ports import EventLog
from eventstore import EventStore, InMemoryEventStore
from eventstore.state.blobs import BlobStore
from eventstore.state.snapshots import InMemorySnapshotStore, PostgresSnapshotStore
from projections.snapshotter import take_snapshot
from projections.time_travel import compare, state_at, steps

pytestmark = pytest.mark.integration

TARGETS: list[Target | None] = [
    None,
    AtVersion(0),
    AtVersion(3),
    AtPosition(0),
    AtPosition(10**12),
    AtTime(T0 - timedelta(days=1)),
    AtTime(T0 + timedelta(days=36_500)),
]


@dataclass(frozen=True, slots=True)
class Stores:
    log: EventLog
    snapshots: SnapshotStore


@pytest.fixture(params=["postgres", "memory"])
async def stores(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[Stores]:
    if request.param == "memory":
        yield Stores(InMemoryEventStore(), InMemorySnapshotStore())
        return
    async with await EventStore.connect(database_url) as log:
        snapshots = await PostgresSnapshotStore.connect(database_url)
        yield Stores(log, snapshots)
        await snapshots.close()


def unknown_task() -> str:
    return f"task-never-{uuid.uuid4().hex}"


@pytest.mark.parametrize("target", TARGETS, ids=repr)
async def test_state_of_a_stream_with_no_events_is_not_found(stores: Stores, target: Target | None) -> None:
    """load_at and state_at raise StreamNotFound naming the stream, at now and at every kind of point."""
    stream = unknown_task()
    with pytest.raises(StreamNotFound) as raised:
        await load_at(stores.log, stores.snapshots, stream, TASK, target)
    assert raised.value.stream_id == stream and stream in str(raised.value)
    with pytest.raises(StreamNotFound):
        await state_at(stores.log, stores.snapshots, stream, target)


async def test_steps_diff_and_snapshot_of_a_stream_with_no_events_are_not_found(stores: Stores) -> None:
    """Stepping (at its first item), comparing and snapshotting on demand raise StreamNotFound."""
    stream = unknown_task()
    walk = steps(stores.log, stores.snapshots, stream)
    with pytest.raises(StreamNotFound):
        await anext(walk)
    with pytest.raises(StreamNotFound):
        await compare(stores.log, stores.snapshots, stream, AtVersion(0))
    with pytest.raises(StreamNotFound):
        await compare(stores.log, stores.snapshots, stream, AtVersion(1), AtVersion(2))
    with pytest.raises(StreamNotFound):
        await take_snapshot(stores.log, stores.snapshots, stream)


async def test_restoring_an_agent_never_written_is_not_found(database_url: str) -> None:
    """restore names the missing agent stream rather than saying it has no checkpoint."""
    agent_id = f"never-{uuid.uuid4().hex}"
    async with await EventStore.connect(database_url) as log:
        blobs = await BlobStore.connect(database_url)
        try:
            with pytest.raises(StreamNotFound, match=AGENT.stream_id(agent_id)):
                await restore(log, blobs, agent_id)
        finally:
            await blobs.close()


async def test_a_point_before_the_first_event_is_the_initial_state_at_version_zero(stores: Stores) -> None:
    """Version 0, a position or a time before an existing stream's first event give the initial state."""
    stream = await append_history(stores.log, uuid.uuid4().hex, 3)
    first = (await stores.log.read_stream(stream))[0]
    for target in (
        AtVersion(0),
        AtPosition(first.global_position - 1),
        AtTime(first.recorded_at - timedelta(microseconds=1)),
    ):
        loaded = await state_at(stores.log, stores.snapshots, stream, target)
        assert (loaded.version, loaded.state) == (0, TASK.initial_state), target
    assert [s async for s in steps(stores.log, stores.snapshots, stream, until=AtVersion(0))] == []
    assert (await compare(stores.log, stores.snapshots, stream, AtVersion(0))).before_version == 0


@pytest.mark.parametrize("loader_kind", ["log", "snapshot"])
async def test_handling_a_command_on_a_new_stream_starts_from_the_initial_state(
    stores: Stores, loader_kind: str
) -> None:
    """Command handling never raises StreamNotFound: a new stream is decided from version 0."""
    task_id = uuid.uuid4().hex
    loader = LogLoader(stores.log) if loader_kind == "log" else SnapshotLoader(stores.log, stores.snapshots)
    command = SubmitTask(task_id, "echo", T0, {})
    handled = await handle(
        stores.log, TASK.stream_id(task_id), command, TASK, CommandContext("t", "a"), loader=loader
    )
    assert handled.version == 1


class ProbeCountingLog(InMemoryEventStore):
    """The in-memory log, counting the ``stream_version`` probes made of it."""

    probes = 0

    async def stream_version(self, stream_id: str) -> int:
        self.probes += 1
        return await super().stream_version(stream_id)


async def test_not_found_costs_no_probe_when_the_read_from_version_one_proves_it() -> None:
    """At now or at a version >= 1 the empty read is the proof; handling a new stream never probes."""
    log = ProbeCountingLog()
    for target in (None, AtVersion(5)):
        with pytest.raises(StreamNotFound):
            await load_at(log, InMemorySnapshotStore(), unknown_task(), TASK, target)
    task_id = uuid.uuid4().hex
    loader = SnapshotLoader(log, InMemorySnapshotStore())
    await handle(
        log,
        TASK.stream_id(task_id),
        SubmitTask(task_id, "echo", T0, {}),
        TASK,
        CommandContext("t", "a"),
        loader=loader,
    )
    assert log.probes == 0
