from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import ClassVar

import pytest

from core.domain import DOMAIN_EVENTS, DomainEvent, EventRegistry
from core.errors import StoreUnavailable
from core.events import AppendResult, ExpectedVersion, NewEvent
from core.triad.contracts import TelemetryPacket
from core.triad.events import DecisionMade, EmissionFailed, RolledBack
from eventstore import InMemoryEventStore
from eventstore.triad.emission import EmissionConfig, EventBuffer, Flusher, InMemoryMetricsSink


@dataclass(frozen=True, slots=True)
class Numbered(DomainEvent):
    """A stand-in lifecycle event whose data says where it was in the emit order."""

    TYPE: ClassVar[str] = "Numbered"
    SCHEMA_VERSION: ClassVar[int] = 1

    n: int


REGISTRY = DOMAIN_EVENTS.merged_with(EventRegistry([Numbered]))


def metric(step: int) -> TelemetryPacket:
    return TelemetryPacket(0, step, (("loss", 1.0),))


async def test_the_flusher_writes_events_in_emit_order_to_the_run_stream() -> None:
    """Events emitted from a training thread land in run-<id>, in order, with JSON data."""
    store = InMemoryEventStore()
    buffer = EventBuffer(EmissionConfig(batch_size=7, poll_interval_s=0.01))
    flusher = Flusher(buffer, store, "r1", metadata={"tenant_id": "t"}, registry=REGISTRY)
    await flusher.start()

    def train() -> None:
        for i in range(50):
            buffer.emit(Numbered(i))

    await asyncio.to_thread(train)
    await flusher.close()
    recorded = await store.read_stream("run-r1")
    assert [e.data["n"] for e in recorded] == list(range(50))
    assert recorded[0].tenant_id == "t" and "emitted_at_ns" in recorded[0].metadata
    assert flusher.stats().events_written == 50


async def test_metrics_go_to_the_metrics_sink_not_the_log() -> None:
    """Per-step metrics reach the metrics sink; the event log holds none of them."""
    store, sink = InMemoryEventStore(), InMemoryMetricsSink()
    buffer = EventBuffer()
    flusher = Flusher(buffer, store, "r2", metrics_sink=sink)
    await flusher.start()
    for step in range(10):
        buffer.metric(metric(step))
    await flusher.close()
    assert [p.step for _, p in sink.packets] == list(range(10))
    assert await store.stream_version("run-r2") == 0


def test_metrics_are_dropped_and_counted_when_the_buffer_is_full() -> None:
    """With no flusher draining, metrics past capacity are dropped and counted, never queued."""
    buffer = EventBuffer(EmissionConfig(metric_capacity=5))
    for step in range(8):
        buffer.metric(metric(step))
    assert buffer.metrics_pending == 5 and buffer.metrics_dropped == 3


def test_lifecycle_events_are_never_dropped_when_the_buffer_is_full() -> None:
    """A full lifecycle buffer makes the emitter wait (counted) and then admits the event over
    capacity rather than losing it."""
    buffer = EventBuffer(EmissionConfig(event_capacity=3, block_timeout_s=0.01))
    for i in range(5):
        buffer.emit(Numbered(i))
    assert buffer.events_pending == 5
    assert buffer.emits_blocked == 2 and buffer.events_over_capacity == 2


def test_a_blocked_emitter_resumes_as_soon_as_the_flusher_takes_a_batch() -> None:
    """The step thread waiting for room wakes when the flusher's side takes events."""
    buffer = EventBuffer(EmissionConfig(event_capacity=2, block_timeout_s=30))
    buffer.emit(Numbered(0))
    buffer.emit(Numbered(1))
    done = threading.Event()
    emitter = threading.Thread(target=lambda: (buffer.emit(Numbered(2)), done.set()))
    emitter.start()
    while buffer.emits_blocked == 0:  # wait until the emitter is actually blocked
        time.sleep(0.001)
    assert not done.is_set()
    assert len(buffer.take_events(1)) == 1
    assert done.wait(5)
    emitter.join()
    assert buffer.events_over_capacity == 0


def test_emitting_costs_the_step_thread_under_5_us_at_p50() -> None:
    """One emit (append plus a length check) stays under the 5 us budget at the median."""
    buffer = EventBuffer(EmissionConfig(event_capacity=1_000_000))
    event = Numbered(1)
    timings = []
    for _ in range(5000):
        start = time.perf_counter_ns()
        buffer.emit(event)
        timings.append(time.perf_counter_ns() - start)
    timings.sort()
    assert timings[len(timings) // 2] < 5_000


class FlakyStore(InMemoryEventStore):
    """Fails the first append after the write succeeded, like a timeout after commit."""

    def __init__(self) -> None:
        super().__init__()
        self.failures_left = 1

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: int | ExpectedVersion = ExpectedVersion.ANY,
    ) -> AppendResult:
        result = await super().append(stream_id, events, expected_version)
        if self.failures_left:
            self.failures_left -= 1
            raise StoreUnavailable("connection reset after commit")
        return result


async def test_a_retried_batch_is_not_duplicated() -> None:
    """After an ambiguous failure the flusher retries the same event ids; the log holds each
    event once."""
    store = FlakyStore()
    buffer = EventBuffer(EmissionConfig(retry_backoff_s=0.001))
    flusher = Flusher(buffer, store, "r3", registry=REGISTRY)
    await flusher.start()
    for i in range(5):
        buffer.emit(Numbered(i))
    await flusher.close()
    assert [e.data["n"] for e in await store.read_stream("run-r3")] == list(range(5))
    assert flusher.stats().append_retries == 1


async def test_an_unserialisable_payload_is_recorded_as_an_emission_failure() -> None:
    """A payload that cannot become JSON is replaced by an EmissionFailed event, never lost
    silently and never blocking the events behind it."""
    store = InMemoryEventStore()
    buffer = EventBuffer()
    flusher = Flusher(buffer, store, "r4")
    await flusher.start()
    buffer.emit(RolledBack(0, "fast", "bad", -1, float("nan")))
    buffer.emit(object())  # type: ignore[arg-type]  # what the step thread must never send
    buffer.emit(DecisionMade(1, 0, "WAIT", {}, "policy", ""))
    await flusher.close()
    types = [e.type for e in await store.read_stream("run-r4")]
    assert types == [EmissionFailed.TYPE, EmissionFailed.TYPE, DecisionMade.TYPE]
    assert flusher.stats().unrecordable_events == 2


async def test_a_second_writer_on_the_same_run_is_fenced_off() -> None:
    """If another process appends to the run's stream, this flusher stops with
    WrongExpectedVersion instead of interleaving its events."""
    from core.errors import WrongExpectedVersion

    store = InMemoryEventStore()
    buffer = EventBuffer(EmissionConfig(poll_interval_s=0.01))
    flusher = Flusher(buffer, store, "r5", registry=REGISTRY)
    await flusher.start()
    await store.append("run-r5", [NewEvent("Intruder", {})])
    buffer.emit(Numbered(0))
    with pytest.raises(WrongExpectedVersion):
        await flusher.close()
    buffer.emit(Numbered(1))  # a dead flusher never makes the step thread hang


async def test_a_barrier_returns_once_every_event_emitted_before_it_is_in_the_log() -> None:
    """The checkpoint writer's wait: it wakes the flusher (no poll interval to sit out) and
    returns True once the events emitted before the barrier are appended."""
    store = InMemoryEventStore()
    buffer = EventBuffer(EmissionConfig(poll_interval_s=60))
    flusher = Flusher(buffer, store, "r6", registry=REGISTRY)
    await flusher.start()
    for i in range(3):
        buffer.emit(Numbered(i))
    wait = buffer.barrier()
    buffer.emit(Numbered(3))
    assert await asyncio.wait_for(asyncio.to_thread(wait), 5)
    assert [e.data["n"] for e in await store.read_stream("run-r6")][:3] == [0, 1, 2]
    await flusher.close()


async def test_a_barrier_gives_up_when_the_flusher_stops_without_writing() -> None:
    """A flusher fenced off by another writer never writes the events: the wait says so
    instead of hanging."""
    from core.errors import WrongExpectedVersion

    store = InMemoryEventStore()
    buffer = EventBuffer(EmissionConfig(poll_interval_s=60))
    flusher = Flusher(buffer, store, "r7", registry=REGISTRY)
    await flusher.start()
    await store.append("run-r7", [NewEvent("Intruder", {})])
    buffer.emit(Numbered(0))
    assert not await asyncio.wait_for(asyncio.to_thread(buffer.barrier()), 5)
    with pytest.raises(WrongExpectedVersion):
        await flusher.close()


class DownStore(InMemoryEventStore):
    """Refuses the first ``failures`` appends as a store that is away would, writing nothing."""

    def __init__(self, failures: int) -> None:
        super().__init__()
        self.failures_left = failures

    async def append(
        self,
        stream_id: str,
        events: Sequence[NewEvent],
        expected_version: int | ExpectedVersion = ExpectedVersion.ANY,
    ) -> AppendResult:
        if self.failures_left:
            self.failures_left -= 1
            raise StoreUnavailable("server is starting up")
        return await super().append(stream_id, events, expected_version)


class TimedFlusher(Flusher):
    """A flusher that notes each pause it takes (and hardly waits), to read its backoff."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.pauses: list[float] = []

    async def _sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)
        await super()._sleep(0.0)


async def test_retries_back_off_doubling_up_to_the_configured_ceiling() -> None:
    """While the store is away the flusher waits retry_backoff_s, doubling, never longer than
    max_retry_backoff_s, and then writes the batch once."""
    store = DownStore(failures=6)
    buffer = EventBuffer(EmissionConfig(retry_backoff_s=0.01, max_retry_backoff_s=0.04))
    flusher = TimedFlusher(buffer, store, "r8", registry=REGISTRY)
    buffer.emit(Numbered(0))
    await flusher.start()
    await flusher.close()
    assert flusher.pauses == pytest.approx([0.01, 0.02, 0.04, 0.04, 0.04, 0.04])
    assert [e.data["n"] for e in await store.read_stream("run-r8")] == [0]
