"""Concurrent writers and a live subscriber on one EventStore, and what must hold after a fault.

Each writer appends 1 to 3 events at a time to a stream of its own, with the exact expected
version. After a retriable error it retries the same NewEvent objects (same event ids) with
the same expected version, as the contract says; any other error is recorded and stops it.
The subscriber follows the whole log from the start.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID

from core.errors import RetriableError
from core.events import ExpectedVersion, NewEvent
from eventstore import EventStore

RETRY_PAUSE = 0.02  # a client's pause between retries


@dataclass
class Stats:
    acked: dict[str, list[UUID]] = field(default_factory=dict)
    ack_times: list[float] = field(default_factory=list)
    retriable: dict[str, int] = field(default_factory=dict)
    unexpected: list[BaseException] = field(default_factory=list)
    seen: list[tuple[int, UUID]] = field(default_factory=list)
    subscriber_error: BaseException | None = None


class Load:
    def __init__(self, store: EventStore, writers: int = 8) -> None:
        self.store = store
        self.streams = [f"fault-{uuid.uuid4().hex}" for _ in range(writers)]
        self.stats = Stats(acked={s: [] for s in self.streams})
        self._changed = asyncio.Condition()
        self._go = asyncio.Event()
        self._go.set()
        self._stopping = False
        self._in_flight = 0
        self._writers: list[asyncio.Task[None]] = []
        self._subscriber: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._subscriber = asyncio.create_task(self._subscribe())
        self._writers = [asyncio.create_task(self._write(s)) for s in self.streams]

    async def until(self, condition: Callable[[], bool], timeout: float, what: str) -> None:
        async def wait() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: condition() or self._broken())

        try:
            await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"not within {timeout} s: {what} ({self.summary()})") from None
        assert not self._broken(), f"a writer or the subscriber failed: {self.summary()}"

    async def acks(self, each: int, timeout: float = 30) -> None:
        """Wait until every writer has ``each`` more acknowledged appends than now."""
        target = {s: len(ids) + each for s, ids in self.stats.acked.items()}
        await self.until(
            lambda: all(len(self.stats.acked[s]) >= n for s, n in target.items()),
            timeout,
            f"{each} more acknowledged events from every writer",
        )

    async def seconds_to_next_ack(self, since: float, timeout: float = 10) -> float:
        """Seconds from ``since`` (time.monotonic) to the first append acknowledged after it."""
        await self.until(
            lambda: bool(self.stats.ack_times) and self.stats.ack_times[-1] >= since,
            timeout,
            "an append acknowledged after the server came back",
        )
        return next(t for t in self.stats.ack_times if t >= since) - since

    async def pause(self) -> None:
        """Let the writers finish what is in flight and start nothing new."""
        self._go.clear()
        await self.until(lambda: self._in_flight == 0, 30, "writers idle")

    def resume(self) -> None:
        self._go.set()

    async def stop(self) -> None:
        """Stop the writers, then the subscriber once it has seen the head of the log."""
        self._stopping = True
        self._go.set()
        await asyncio.gather(*self._writers)
        head = await self.store.head_position()
        await self.until(
            lambda: bool(self.stats.seen) and self.stats.seen[-1][0] >= head, 30, "subscriber at the head"
        )
        assert self._subscriber is not None
        self._subscriber.cancel()
        await asyncio.gather(self._subscriber, return_exceptions=True)

    def summary(self) -> str:
        acked = sum(len(ids) for ids in self.stats.acked.values())
        return (
            f"{acked} events acknowledged, {len(self.stats.seen)} seen by the subscriber, "
            f"retriable errors {self.stats.retriable}, other errors {self.stats.unexpected!r}, "
            f"subscription error {self.stats.subscriber_error!r}"
        )

    def _broken(self) -> bool:
        return bool(self.stats.unexpected) or self.stats.subscriber_error is not None

    async def _notify(self) -> None:
        async with self._changed:
            self._changed.notify_all()

    async def _write(self, stream_id: str) -> None:
        version = 0
        while True:
            await self._go.wait()
            if self._stopping:
                return
            events = [NewEvent("FaultTick", {"n": version + i}) for i in range(1 + version % 3)]
            self._in_flight += 1
            try:
                version = await self._append_until_acked(stream_id, events, version)
            except Exception as exc:
                self.stats.unexpected.append(exc)
                await self._notify()
                return
            finally:
                self._in_flight -= 1
            self.stats.acked[stream_id].extend(e.id for e in events)
            self.stats.ack_times.append(time.monotonic())
            await self._notify()

    async def _append_until_acked(self, stream_id: str, events: list[NewEvent], version: int) -> int:
        expected = version or ExpectedVersion.NO_STREAM
        while True:
            try:
                result = await self.store.append(stream_id, events, expected)
                return result.stream_version
            except RetriableError as exc:
                name = type(exc).__name__
                self.stats.retriable[name] = self.stats.retriable.get(name, 0) + 1
                await asyncio.sleep(RETRY_PAUSE)

    async def _subscribe(self) -> None:
        try:
            async for event in self.store.subscribe():
                self.stats.seen.append((event.global_position, event.event_id))
                await self._notify()
        except Exception as exc:
            self.stats.subscriber_error = exc
            await self._notify()

    async def check(self) -> None:
        """Every acknowledged event is in the log once, versions are contiguous per stream, and
        the subscriber saw exactly the log, in order."""
        assert not self.stats.unexpected, f"a caller got a non-retriable error: {self.stats.unexpected!r}"
        assert self.stats.subscriber_error is None, f"the subscription died: {self.stats.subscriber_error!r}"
        log = [event async for event in self.store.read_all()]
        ids = [event.event_id for event in log]
        assert len(ids) == len(set(ids)), "an event is stored twice"
        acked = [i for s in self.streams for i in self.stats.acked[s]]
        assert sorted(ids) == sorted(acked), "the log is not exactly the acknowledged events"
        for stream_id in self.streams:
            stored = [e for e in log if e.stream_id == stream_id]
            assert [e.stream_version for e in stored] == list(range(1, len(stored) + 1))
            assert [e.event_id for e in stored] == self.stats.acked[stream_id]
        assert self.stats.seen == [(e.global_position, e.event_id) for e in log], "subscriber gap or repeat"
