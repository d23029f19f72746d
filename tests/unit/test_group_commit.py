"""Group commit forms batches by the rules that keep a batch's requests independent."""

from __future__ import annotations

import asyncio

from core.codec import EncodedAppend, encode_append
from core.events import ExpectedVersion, NewEvent
from eventstore.log.group_commit import GroupCommit, Pending


def append(stream_id: str, *events: NewEvent) -> EncodedAppend:
    return encode_append(stream_id, list(events) or [NewEvent("T", {})], ExpectedVersion.ANY, 10_000)


class Recorder:
    """A flush that records batches and holds each one until released."""

    def __init__(self) -> None:
        self.batches: list[list[tuple[str, ...]]] = []
        self.release = asyncio.Event()
        self.entered = asyncio.Event()

    async def __call__(self, batch: list[Pending]) -> None:
        self.batches.append([tuple(a.stream_id for a in p.appends) for p in batch])
        self.entered.set()
        await self.release.wait()
        for p in batch:
            p.future.set_result(["ok"])


async def test_lone_request_is_flushed_at_once() -> None:
    """A single request is written without waiting for company."""
    recorder = Recorder()
    recorder.release.set()
    commit = GroupCommit(recorder, 100)
    assert await asyncio.wait_for(commit.submit((append("a-1"),)), 1) == ["ok"]
    assert recorder.batches == [[("a-1",)]]
    await commit.close()


async def test_requests_arriving_during_a_flush_share_the_next_batch() -> None:
    """While one batch is in flight, later requests gather into one batch."""
    recorder = Recorder()
    commit = GroupCommit(recorder, 100)
    first = asyncio.create_task(commit.submit((append("a-1"),)))
    await recorder.entered.wait()
    rest = [asyncio.create_task(commit.submit((append(f"b-{i}"),))) for i in range(5)]
    await asyncio.sleep(0)
    recorder.release.set()
    await asyncio.gather(first, *rest)
    assert recorder.batches == [[("a-1",)], [(f"b-{i}",) for i in range(5)]]
    await commit.close()


def test_same_stream_or_event_id_waits_for_the_next_batch_in_order() -> None:
    """A batch holds a stream and an event id once; later requests on a deferred key wait too."""

    async def scenario() -> list[list[str]]:
        commit = GroupCommit(Recorder(), 100)
        shared = NewEvent("T", {})
        loop = asyncio.get_running_loop()
        for a in (
            append("s-1"),
            append("s-1"),
            append("t-1", shared),
            append("u-1", shared),
            append("u-1"),
            append("v-1"),
        ):
            commit._queue.append(Pending((a,), loop.create_future()))
        batches = []
        while commit._queue:
            batches.append([p.appends[0].stream_id for p in commit.take_batch()])
        commit._task.cancel()
        return batches

    assert asyncio.run(scenario()) == [["s-1", "t-1", "v-1"], ["s-1", "u-1"], ["u-1"]]


def test_batch_respects_the_event_limit_but_always_takes_one() -> None:
    """A batch stops at max_batch_events, yet a request larger than the limit still goes alone."""

    async def scenario() -> list[list[str]]:
        commit = GroupCommit(Recorder(), 3)
        loop = asyncio.get_running_loop()
        big = append("big-1", *[NewEvent("T", {}) for _ in range(5)])
        for a in (big, append("a-1"), append("b-1"), append("c-1"), append("d-1")):
            commit._queue.append(Pending((a,), loop.create_future()))
        batches = []
        while commit._queue:
            batches.append([p.appends[0].stream_id for p in commit.take_batch()])
        commit._task.cancel()
        return batches

    assert asyncio.run(scenario()) == [["big-1"], ["a-1", "b-1", "c-1"], ["d-1"]]


async def test_cancelled_caller_is_not_written() -> None:
    """A request whose caller gave up while it was queued is dropped from the batch."""
    recorder = Recorder()
    commit = GroupCommit(recorder, 100)
    first = asyncio.create_task(commit.submit((append("a-1"),)))
    await recorder.entered.wait()
    doomed = asyncio.create_task(commit.submit((append("gone-1"),)))
    kept = asyncio.create_task(commit.submit((append("kept-1"),)))
    await asyncio.sleep(0)
    doomed.cancel()
    recorder.release.set()
    await asyncio.gather(first, kept)
    assert recorder.batches[1] == [("kept-1",)]
    await commit.close()


async def test_close_writes_what_is_queued_then_refuses() -> None:
    """close() flushes queued requests; later submissions raise StoreClosed."""
    import pytest

    from core.errors import StoreClosed

    recorder = Recorder()
    recorder.release.set()
    commit = GroupCommit(recorder, 100)
    pending = [asyncio.create_task(commit.submit((append(f"q-{i}"),))) for i in range(3)]
    await asyncio.sleep(0)
    await commit.close()
    assert [await p for p in pending] == [["ok"]] * 3
    with pytest.raises(StoreClosed):
        await commit.submit((append("late-1"),))
