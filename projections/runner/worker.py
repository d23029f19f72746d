"""One projection's live loop: tail the log from its checkpoint and apply each page.

The loop reads the store's ``appends_seen`` before it looks at the log and waits with it
afterwards, so a notification that lands in between is not missed; without notifications it
polls every ``poll_interval``. While the database is away it pauses and tries again (the
checkpoint is in the database, so nothing is lost or applied twice). A projection that raises
stops here with ProjectionFailed, after the events before the bad one took effect; the
failure is recorded with its position for ``chronicle projections status``.
"""

from __future__ import annotations

import asyncio

import structlog

from core.errors import StoreUnavailable
from eventstore import EventStore
from eventstore.pg import DRIVER_ERRORS
from projections.runner import state
from projections.runner.batches import PositionMoved, ProjectionFailed, apply_page, read_page, record
from projections.runner.connection import Backoff, DedicatedConnection, as_outage
from projections.runner.contract import Projection
from projections.runner.metrics import BatchObserver

__all__ = ["LiveLoop"]

log = structlog.get_logger(__name__)


class LiveLoop:
    def __init__(
        self,
        store: EventStore,
        connection: DedicatedConnection,
        projection: Projection,
        observer: BatchObserver,
        *,
        batch_size: int = 1000,
        poll_interval: float = 1.0,
    ) -> None:
        self._store = store
        self._connection = connection
        self._projection = projection
        self._observer = observer
        self._batch_size = batch_size
        self._poll_interval = poll_interval

    async def run(self) -> None:
        """Apply the log to the active generation for ever; raises ProjectionFailed."""
        backoff = Backoff()
        generation: int | None = None
        position = 0
        while True:
            try:
                if generation is None:
                    generation, position = await self._live_checkpoint()
                    if generation is None:  # nothing built yet: a rebuild will swap one in
                        await asyncio.sleep(self._poll_interval)
                        continue
                position = await self._step(generation, position)
                backoff.reset()
            except PositionMoved:
                generation = None  # swapped, or applied by someone else: read where it is now
            except (StoreUnavailable, *DRIVER_ERRORS) as exc:
                outage = as_outage(exc, f"projection {self._projection.name}")
                self._connection.drop()
                generation = None
                await backoff.pause(outage, f"projection {self._projection.name}")

    async def _live_checkpoint(self) -> tuple[int | None, int]:
        conn = await self._connection.get()
        row = await state.load(conn, self._projection.name)
        if row is None or row.active_generation is None:
            return None, 0
        checkpoint = await state.checkpoint(conn, self._projection.name, row.active_generation)
        return (row.active_generation, checkpoint.position) if checkpoint is not None else (None, 0)

    async def _step(self, generation: int, position: int) -> int:
        """Apply the next page, or wait for one; the new position."""
        seen = self._store.appends_seen
        try:
            page = await read_page(self._store, self._projection, position, self._batch_size)
        except ProjectionFailed as failure:
            await record(await self._connection.get(), generation, failure)
            raise
        if page.through <= position:
            await self._store.wait_for_append(seen, self._poll_interval)
            return position
        conn = await self._connection.get()
        done = await apply_page(conn, self._projection, generation, page)
        self._observer.applied(self._projection.name, page.events, done.position, page.head, done.applied_at)
        return done.position
