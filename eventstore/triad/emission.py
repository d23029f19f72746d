"""Asynchronous emission, the adapter of ``core.triad.ports.EventSink``: the step thread drops
frozen run events into a bounded buffer; a flusher on an asyncio loop encodes them through the
event registry, writes them to the run's stream in batches and sends metrics to a metrics sink.

Concurrency. Training runs in a plain thread; the flusher is a task on an asyncio loop in
another thread. They share two ``collections.deque`` objects, one for lifecycle events and one
for metrics. ``deque.append`` and ``deque.popleft`` are atomic in CPython (they run under the
GIL without releasing it), so the step thread appends and the flusher pops without a lock, and
``emit`` costs an append and a length check. Each counter has exactly one writer thread (the
step thread counts drops and blocks, the flusher counts writes and failures), so the counters
need no lock either; readers on other threads see values at most a moment old. The one place
where the step thread waits for the flusher is a full lifecycle buffer: the step thread waits on
a ``threading.Condition`` that the flusher notifies after each batch it takes. That wait is
bounded (``block_timeout_s``); if the flusher is stuck past it, the event is admitted over
capacity and counted as an overflow, because losing a lifecycle event or hanging a run are both
worse than using a little more memory. Metrics never wait: a full metrics buffer drops the
sample and counts it.

The flusher is woken by its poll interval, or sooner by the step thread when the buffer
reaches half its capacity; that wake-up crosses threads with ``call_soon_threadsafe`` once per
crossing, not once per event, because a cross-thread wake costs microseconds and an emit must
cost less than one.

Encoding (the registry's walk of each event's fields into JSON-ready data) happens in
``Flusher._new_event``, on the flusher's side: the step thread pays for building a frozen
object and one deque append, never for JSON.

Appends carry the stream version the flusher expects, so a second process writing the same run
fails with WrongExpectedVersion instead of interleaving. A retriable store error retries the
same NewEvent objects (same event ids), which the store deduplicates.

Barriers. A checkpoint must never be ahead of the log: if it were, a run killed after the
checkpoint appeared and before the flusher wrote that epoch's events would resume past events
the log never got. ``barrier()`` is how the checkpoint writer waits for them. The step thread
calls it after emitting an epoch's events and gets a wait bound to ``events_emitted`` at that
moment (a counter read, no I/O). Events leave the deque in the order they entered it, and the
flusher counts ``events_recorded`` only after an append that holds them has returned (a bad
event counts once its ``EmissionFailed`` stand-in is appended), so ``events_recorded >= mark``
means every event emitted before the barrier is in the log. The wait runs on the checkpoint
writer's thread, never on the step thread; it wakes the flusher first, so publishing a
checkpoint waits one append, not a poll interval. While the store is away the flusher retries
as usual and the wait goes on with it; if the flusher stops for good, the wait returns False
and the checkpoint is not published.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.domain.contracts import DomainEvent, EventRegistry
from core.domain.registry import DOMAIN_EVENTS
from core.errors import ChronicleError, InvalidInput, RetriableError
from core.events import ExpectedVersion, NewEvent
from core.ports import EventLog
from core.triad.contracts import TelemetryPacket
from core.triad.events import EmissionFailed, run_stream_id
from core.triad.ports import MetricsSink

__all__ = ["EmissionConfig", "EmissionStats", "EventBuffer", "Flusher", "InMemoryMetricsSink"]


class InMemoryMetricsSink:
    """A ``MetricsSink`` that keeps every packet, for tests and benchmarks."""

    def __init__(self) -> None:
        self.packets: list[tuple[str, TelemetryPacket]] = []

    async def write(self, run_id: str, packets: Sequence[TelemetryPacket]) -> None:
        self.packets.extend((run_id, p) for p in packets)


@dataclass(frozen=True, slots=True)
class EmissionConfig:
    event_capacity: int = 4096
    metric_capacity: int = 16384
    batch_size: int = 512
    poll_interval_s: float = 0.05
    block_timeout_s: float = 2.0
    retry_backoff_s: float = 0.1
    max_retry_backoff_s: float = 2.0


@dataclass(frozen=True, slots=True)
class EmissionStats:
    events_emitted: int
    events_written: int
    events_pending: int
    emits_blocked: int
    events_over_capacity: int
    metrics_emitted: int
    metrics_dropped: int
    metrics_written: int
    metrics_failed: int
    append_retries: int
    unrecordable_events: int


class EventBuffer:
    """The step thread's side. See the module docstring for why this needs no lock."""

    def __init__(self, config: EmissionConfig | None = None) -> None:
        self.config = config or EmissionConfig()
        self._events: deque[tuple[DomainEvent, int]] = deque()
        self._metrics: deque[TelemetryPacket] = deque()
        self._room = threading.Condition()
        self._recorded = threading.Condition()
        self._half = max(self.config.event_capacity // 2, 1)
        self.on_pressure: Callable[[], None] | None = None
        self.flusher_alive = True
        # written by the step thread only
        self.events_emitted = 0
        self.emits_blocked = 0
        self.events_over_capacity = 0
        self.metrics_emitted = 0
        self.metrics_dropped = 0
        # written by the flusher only
        self.events_recorded = 0

    def emit(self, event: DomainEvent) -> None:
        events = self._events
        if len(events) >= self.config.event_capacity:
            self._wait_for_room()
        events.append((event, time.time_ns()))
        self.events_emitted += 1
        if len(events) == self._half and self.on_pressure is not None:
            self.on_pressure()

    def metric(self, packet: TelemetryPacket) -> None:
        if len(self._metrics) >= self.config.metric_capacity:
            self.metrics_dropped += 1
            return
        self._metrics.append(packet)
        self.metrics_emitted += 1

    def _wait_for_room(self) -> None:
        self.emits_blocked += 1
        if self.on_pressure is not None:
            self.on_pressure()
        with self._room:
            has_room = self._room.wait_for(
                lambda: len(self._events) < self.config.event_capacity or not self.flusher_alive,
                self.config.block_timeout_s,
            )
        if not has_room or len(self._events) >= self.config.event_capacity:
            self.events_over_capacity += 1

    def barrier(self) -> Callable[[], bool]:
        """See the module docstring: a wait for the first ``events_emitted`` events."""
        return functools.partial(self._wait_recorded, self.events_emitted)

    def _wait_recorded(self, mark: int) -> bool:
        if self.on_pressure is not None:
            self.on_pressure()  # write them now rather than at the next poll
        with self._recorded:
            self._recorded.wait_for(lambda: self.events_recorded >= mark or not self.flusher_alive)
        return self.events_recorded >= mark

    def wake_waiters(self) -> None:
        """The flusher stopped: nobody waiting for room or for the log may wait any longer."""
        with self._room:
            self._room.notify_all()
        with self._recorded:
            self._recorded.notify_all()

    # -- the flusher's side --------------------------------------------------------------------

    def take_events(self, limit: int) -> list[tuple[DomainEvent, int]]:
        taken = _take(self._events, limit)
        if taken:
            with self._room:
                self._room.notify_all()
        return taken

    def mark_recorded(self, count: int) -> None:
        """``count`` more of the events taken so far are in the log (or their failure is)."""
        with self._recorded:
            self.events_recorded += count
            self._recorded.notify_all()

    def take_metrics(self, limit: int) -> list[TelemetryPacket]:
        return _take(self._metrics, limit)

    @property
    def events_pending(self) -> int:
        return len(self._events)

    @property
    def metrics_pending(self) -> int:
        return len(self._metrics)


def _take(queue: deque[Any], limit: int) -> list[Any]:
    taken = []
    try:
        for _ in range(limit):
            taken.append(queue.popleft())
    except IndexError:
        pass  # drained: the step thread may refill it at any moment, which is fine
    return taken


class Flusher:
    """The asyncio side: drains the buffer into ``EventLog.append`` (each event encoded through
    ``registry``, ``DOMAIN_EVENTS`` by default) and the metrics into a ``MetricsSink``."""

    def __init__(
        self,
        buffer: EventBuffer,
        event_log: EventLog,
        run_id: str,
        *,
        metrics_sink: MetricsSink | None = None,
        metadata: Mapping[str, Any] | None = None,
        registry: EventRegistry = DOMAIN_EVENTS,
    ) -> None:
        self.buffer = buffer
        self.event_log = event_log
        self.run_id = run_id
        self.stream_id = run_stream_id(run_id)
        self.metrics_sink = metrics_sink
        self.metadata = dict(metadata or {})
        self.registry = registry
        self.version: int | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self._retry: list[NewEvent] = []
        # written by the flusher only
        self.events_written = 0
        self.metrics_written = 0
        self.metrics_failed = 0
        self.append_retries = 0
        self.unrecordable_events = 0

    async def start(self) -> None:
        self.version = await self.event_log.stream_version(self.stream_id)
        loop = asyncio.get_running_loop()

        def wake_from_another_thread() -> None:
            loop.call_soon_threadsafe(self._wake.set)

        self.buffer.on_pressure = wake_from_another_thread
        self._task = asyncio.create_task(self._run(), name=f"flusher-{self.stream_id}")

    async def close(self) -> None:
        """Write everything emitted so far, then stop. Raises what stopped the flusher, if anything."""
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            await self._task
        self.buffer.on_pressure = None

    def stats(self) -> EmissionStats:
        b = self.buffer
        return EmissionStats(
            events_emitted=b.events_emitted,
            events_written=self.events_written,
            events_pending=b.events_pending + len(self._retry),
            emits_blocked=b.emits_blocked,
            events_over_capacity=b.events_over_capacity,
            metrics_emitted=b.metrics_emitted,
            metrics_dropped=b.metrics_dropped,
            metrics_written=self.metrics_written,
            metrics_failed=self.metrics_failed,
            append_retries=self.append_retries,
            unrecordable_events=self.unrecordable_events,
        )

    async def _run(self) -> None:
        try:
            await self._loop()
        finally:
            # Whatever stopped us, a step thread waiting for room must not wait for a dead flusher.
            self.buffer.flusher_alive = False
            self.buffer.wake_waiters()

    async def _loop(self) -> None:
        config = self.buffer.config
        backoff = 0.0
        while True:
            try:
                await self.flush_once()
                backoff = 0.0
            except RetriableError:
                self.append_retries += 1
                backoff = min(max(backoff * 2, config.retry_backoff_s), config.max_retry_backoff_s)
            if self._stopping and not self._retry and self.buffer.events_pending == 0:
                await self._flush_metrics()
                return
            if backoff or (self.buffer.events_pending == 0 and not self._retry):
                await self._sleep(backoff or self.buffer.config.poll_interval_s)

    async def _sleep(self, seconds: float) -> None:
        self._wake.clear()
        if self._stopping:
            await asyncio.sleep(seconds if self._retry else 0)
            return
        with contextlib.suppress(TimeoutError):  # the poll interval passed: look anyway
            await asyncio.wait_for(self._wake.wait(), seconds)

    async def flush_once(self) -> int:
        """Write one batch of events (retrying a failed one first) and one batch of metrics."""
        batch = self._retry or self._next_batch()
        written = 0
        if batch:
            self._retry = batch
            written = await self._append(batch)
            self._retry = []
        await self._flush_metrics()
        return written

    def _next_batch(self) -> list[NewEvent]:
        taken = self.buffer.take_events(self.buffer.config.batch_size)
        return [self._new_event(event, at) for event, at in taken]

    def _new_event(self, event: DomainEvent, emitted_ns: int) -> NewEvent:
        """The stored form of ``event``, built here rather than on the step thread."""
        metadata = {**self.metadata, "emitted_at_ns": emitted_ns}
        try:
            return self.registry.encode(event, metadata)
        except (ChronicleError, TypeError, ValueError, AttributeError) as exc:  # not a registered event
            self.unrecordable_events += 1
            failed = EmissionFailed(getattr(event, "TYPE", type(event).__name__), str(exc))
            return self.registry.encode(failed, metadata)

    async def _append(self, batch: list[NewEvent]) -> int:
        expected = ExpectedVersion.NO_STREAM if not self.version else self.version
        try:
            result = await self.event_log.append(self.stream_id, batch, expected)
        except InvalidInput:
            return await self._append_one_by_one(batch)
        self.version = result.stream_version
        self.events_written += len(batch)
        self.buffer.mark_recorded(len(batch))
        return len(batch)

    async def _append_one_by_one(self, batch: list[NewEvent]) -> int:
        """A batch the store refused as invalid: find the bad events, record their loss."""
        for index, event in enumerate(batch):
            try:
                await self._append_single(event)
            except InvalidInput as exc:
                self.unrecordable_events += 1
                failed = self.registry.encode(EmissionFailed(event.type, str(exc)), self.metadata)
                await self._append_single(failed)
            self.buffer.mark_recorded(1)
            self._retry = batch[index + 1 :]  # a retry after a transient error resumes here
        return len(batch)

    async def _append_single(self, event: NewEvent) -> None:
        expected = ExpectedVersion.NO_STREAM if not self.version else self.version
        result = await self.event_log.append(self.stream_id, [event], expected)
        self.version = result.stream_version
        self.events_written += 1

    async def _flush_metrics(self) -> None:
        while True:
            packets = self.buffer.take_metrics(self.buffer.config.batch_size * 4)
            if not packets:
                return
            if self.metrics_sink is None:
                continue
            try:
                await self.metrics_sink.write(self.run_id, packets)
                self.metrics_written += len(packets)
            except Exception:  # metrics are droppable by contract: count them and go on
                self.metrics_failed += len(packets)
