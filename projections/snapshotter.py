"""The background snapshotter: tails the log, counts per stream, snapshots what a policy says.

Why it never slows an append. Appends do not know it exists: nothing on the append path
counts, asks or waits. The snapshotter is a reader like any other. It tails ``subscribe()``
(the store's read pool, never the group-commit writer's connection), and writes snapshots
through its own pool into a table that appends never touch and whose writes take no lock that
appends take. A slow or dead snapshotter only makes loads replay a longer tail.

Why a snapshot is never wrong even though appends run while it is taken. A snapshot is
built by a normal load (newest usable snapshot plus the committed tail) and stored with the
version of the last event it folded. Appends after that read only make it older than the
head; every later load replays from its version on. Two snapshotters taking the same stream
at the same version write the same state (the fold is deterministic), so their race is
harmless (``ON CONFLICT`` keeps one row).

Two tasks split the work so that a slow snapshot write never holds up counting: the tail task
counts each stream's events and bytes since its last snapshot and queues the stream when the
policy says so; the worker takes queued streams one at a time. A stream queued twice before the
worker reaches it is snapshotted once, at whatever version the log then holds.

Counting starts when the snapshotter starts (by default at the head of the log): after a
restart a stream's next snapshot comes up to one policy period late, never wrong. A failed
snapshot is logged and dropped; the stream is queued again when it has done another period's
worth of events.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import structlog

from core.domain.contracts import EventRegistry
from core.domain.decider import Decider
from core.domain.loading import DECIDERS, decider_for, load_at
from core.domain.registry import DOMAIN_EVENTS
from core.domain.snapshots import Progress, Snapshot, SnapshotPolicy, SnapshotStore, event_size
from core.errors import ChronicleError
from core.events import RecordedEvent
from core.ports import EventLog

__all__ = ["Snapshotter", "take_snapshot"]

log = structlog.get_logger(__name__)


async def take_snapshot(
    events: EventLog,
    snapshots: SnapshotStore,
    stream_id: str,
    decider: Decider[Any, Any] | None = None,
    registry: EventRegistry = DOMAIN_EVENTS,
) -> Snapshot:
    """Snapshot ``stream_id`` at its current version now (on demand).

    The state comes from the newest usable snapshot plus the tail, so an on-demand snapshot of
    a long stream costs only the events since the last one; a stream that has not moved since
    its last snapshot gets that one back. Raises StreamNotFound if the stream has no events.
    """
    decider = decider or decider_for(stream_id)
    loaded = await load_at(events, snapshots, stream_id, decider, None, registry)
    if loaded.version == loaded.snapshot_version:
        existing = await snapshots.latest(stream_id, decider.state_schema_version, max_version=loaded.version)
        if existing is not None:
            return existing
    # The tail holds the last event unless the stream has not moved since a snapshot that
    # retention has just removed; then one read finds it.
    last = (
        loaded.recorded[-1] if loaded.recorded else (await events.read_stream(stream_id, loaded.version))[-1]
    )
    snapshot = Snapshot(
        stream_id,
        loaded.version,
        decider.state_schema_version,
        decider.state_to_json(loaded.state),
        last.global_position,
        last.recorded_at,
    )
    await snapshots.save(snapshot)
    return snapshot


@dataclass(frozen=True, slots=True)
class Taken:
    """One snapshot the snapshotter stored, and the policy rule that asked for it."""

    stream_id: str
    stream_version: int
    reason: str


class Snapshotter:
    """Run with ``await snapshotter.run()`` in a task; cancel the task (or close the log) to stop."""

    def __init__(
        self,
        events: EventLog,
        snapshots: SnapshotStore,
        policy: SnapshotPolicy | None = None,
        *,
        deciders: Mapping[str, Decider[Any, Any]] = DECIDERS,
        registry: EventRegistry = DOMAIN_EVENTS,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._events = events
        self._snapshots = snapshots
        self._policy = policy or SnapshotPolicy()
        self._deciders = deciders
        self._registry = registry
        self._clock = clock
        self._progress: dict[str, Progress] = {}
        self._queue: dict[str, str] = {}  # stream -> reason; a dict keeps arrival order, once each
        self._wake = asyncio.Event()
        self._taken = asyncio.Condition()
        # The most recent snapshots taken, for tools and tests; bounded so a long run keeps no history.
        self.taken: deque[Taken] = deque(maxlen=1024)
        self.failures = 0

    async def run(self, from_position: int | None = None) -> None:
        """Tail the log from ``from_position`` (default: its head now) and snapshot as the policy says."""
        start = await self._events.head_position() + 1 if from_position is None else from_position
        policy = self._policy
        log.info(
            "snapshotter.started",
            from_position=start,
            every_events=policy.every_events,
            every_seconds=policy.every_seconds,
            every_bytes=policy.every_bytes,
            keep=policy.keep,
        )
        worker = asyncio.create_task(self._work(), name="snapshotter-worker")
        try:
            async for event in self._events.subscribe(start, categories=list(self._deciders)):
                self._count(event)
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    async def wait_for(self, stream_id: str, version: int) -> Taken:
        """Wait until a snapshot of ``stream_id`` at ``version`` or later has been stored."""
        async with self._taken:
            while True:
                for taken in self.taken:
                    if taken.stream_id == stream_id and taken.stream_version >= version:
                        return taken
                await self._taken.wait()

    def _count(self, event: RecordedEvent) -> None:
        before = self._progress.get(event.stream_id)
        since = before.since if before is not None else event.recorded_at
        count = before.events if before is not None else 0
        size = before.bytes if before is not None else 0
        progress = Progress(count + 1, size + event_size(event), since)
        reason = self._policy.due(progress, event.recorded_at)
        if reason is None:
            self._progress[event.stream_id] = progress
        else:
            self._queue_stream(event.stream_id, reason, event.recorded_at)

    def _queue_stream(self, stream_id: str, reason: str, now: datetime) -> None:
        # The snapshot will cover at least this event, so counting restarts here, with the
        # time rule measured from now.
        self._progress.pop(stream_id, None)
        self._queue.setdefault(stream_id, reason)
        self._wake.set()

    async def _work(self) -> None:
        while True:
            await self._next_wake()
            self._sweep_time_rule()
            while self._queue:
                stream_id = next(iter(self._queue))
                reason = self._queue.pop(stream_id)
                await self._snapshot(stream_id, reason)

    async def _next_wake(self) -> None:
        # With a time rule, look at quiet streams every half period even when nothing arrives.
        period = self._policy.every_seconds
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), period / 2 if period else None)
        self._wake.clear()

    def _sweep_time_rule(self) -> None:
        now = self._clock()
        for stream_id, progress in list(self._progress.items()):
            if self._policy.due(progress, now) == "time":
                self._queue_stream(stream_id, "time", now)

    async def _snapshot(self, stream_id: str, reason: str) -> None:
        decider = self._deciders[stream_id.split("-", 1)[0]]
        try:
            snapshot = await take_snapshot(self._events, self._snapshots, stream_id, decider, self._registry)
        except ChronicleError as exc:
            self.failures += 1
            log.warning("snapshot.failed", stream_id=stream_id, reason=reason, error=str(exc))
            return
        log.debug("snapshot.taken", stream_id=stream_id, version=snapshot.stream_version, reason=reason)
        async with self._taken:
            self.taken.append(Taken(stream_id, snapshot.stream_version, reason))
            self._taken.notify_all()
