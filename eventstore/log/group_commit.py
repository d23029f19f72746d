"""Group commit: concurrent appends share one transaction, with no timer.

Every `append` puts its request on a queue and awaits a future. One writer task takes
everything queued, runs it as one call of the append function (one round trip, one
transaction, one WAL flush), resolves the futures and goes back for more. While that
transaction is in flight the next callers queue up, so the batch grows with the load by
itself ("natural batching"): a lone caller is written at once, 32 concurrent callers share
one commit. No caller ever waits for a timer.

Two rules keep the batch's requests independent, so the database decides each one on its
own and a conflict fails only its own caller:

- a batch holds at most one request per stream and each event id at most once; a request
  that collides with one already taken waits for the next batch;
- once a request is left behind, every later request that touches one of its streams or
  event ids is left behind too, so requests on a stream are written in the order they came.

If the process dies half-way, the transaction either committed or it did not: PostgreSQL
never keeps part of it. A caller that saw no answer retries with the same event ids and
gets the original result back if the first attempt committed.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import structlog

from core.codec import EncodedAppend
from core.errors import StoreClosed

__all__ = ["GroupCommit", "Pending"]

log = structlog.get_logger(__name__)


@dataclass(slots=True, eq=False)
class Pending:
    """One caller's request: several appends only for a multi-stream append (all or none)."""

    appends: tuple[EncodedAppend, ...]
    future: asyncio.Future[Sequence[Any]] = field(repr=False)

    @property
    def event_count(self) -> int:
        return sum(len(a.events) for a in self.appends)

    def keys(self) -> tuple[set[str], set[UUID]]:
        return {a.stream_id for a in self.appends}, {e.event_id for a in self.appends for e in a.events}


Flush = Callable[[list[Pending]], Awaitable[None]]


class GroupCommit:
    """Queues requests and writes them in batches through `flush`, one batch at a time.

    `flush` receives a batch and must resolve (or fail) the future of every request in it.
    """

    def __init__(self, flush: Flush, max_batch_events: int) -> None:
        self._flush = flush
        self._max_batch_events = max_batch_events
        self._queue: collections.deque[Pending] = collections.deque()
        self._wake = asyncio.Event()
        self._closing = False
        self._task = asyncio.get_running_loop().create_task(self._run(), name="chronicle-group-commit")

    async def submit(self, appends: tuple[EncodedAppend, ...]) -> Sequence[Any]:
        if self._closing:
            raise StoreClosed("the event store is closed")
        future: asyncio.Future[Sequence[Any]] = asyncio.get_running_loop().create_future()
        self._queue.append(Pending(appends, future))
        self._wake.set()
        return await future

    async def close(self) -> None:
        """Stop taking requests, write what is queued, then stop the writer."""
        self._closing = True
        self._wake.set()
        await self._task

    def take_batch(self) -> list[Pending]:
        batch: list[Pending] = []
        streams: set[str] = set()
        ids: set[UUID] = set()
        blocked_streams: set[str] = set()
        blocked_ids: set[UUID] = set()
        left: collections.deque[Pending] = collections.deque()
        events = 0
        while self._queue:
            pending = self._queue.popleft()
            if pending.future.done():  # the caller was cancelled while queued: nothing to write
                continue
            p_streams, p_ids = pending.keys()
            fits = batch == [] or events + pending.event_count <= self._max_batch_events
            if (
                fits
                and streams.isdisjoint(p_streams)
                and ids.isdisjoint(p_ids)
                and blocked_streams.isdisjoint(p_streams)
                and blocked_ids.isdisjoint(p_ids)
            ):
                batch.append(pending)
                streams |= p_streams
                ids |= p_ids
                events += pending.event_count
            else:
                left.append(pending)
                blocked_streams |= p_streams
                blocked_ids |= p_ids
        self._queue = left
        return batch

    async def _run(self) -> None:
        while True:
            if not self._queue:
                if self._closing:
                    return
                self._wake.clear()
                await self._wake.wait()
                continue
            batch = self.take_batch()
            if not batch:
                continue
            try:
                await self._flush(batch)
            except BaseException as exc:  # the writer must outlive any failure of one batch
                for pending in batch:
                    if not pending.future.done():
                        pending.future.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt | SystemExit):
                    raise
                log.exception("group_commit.flush_failed", batch=len(batch))
