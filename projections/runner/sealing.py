"""The sealer's loop: follows the log and seals each batch (``eventstore.audit.sealer``), waking
on the store's append notifications, and back within a quarter of a second while some leaves
wait for a checkpoint, so every event is in a signed checkpoint about a second after commit.

Two daemons may each run one: a sealing transaction takes a try-lock, and the one that misses
it waits for the next wake-up. While the database is away it pauses and carries on from the
last committed leaf; a crash loses no seal, because a batch's seals, nodes and checkpoint
commit together or not at all.
"""

from __future__ import annotations

from core.errors import StoreUnavailable
from eventstore import EventStore
from eventstore.audit.keys import SigningKey
from eventstore.audit.sealer import seal_batch
from eventstore.pg import DRIVER_ERRORS
from projections.runner.connection import Backoff, DedicatedConnection, as_outage

__all__ = ["SealerLoop"]

PENDING_WAKE_S = 0.25


class SealerLoop:
    def __init__(
        self,
        store: EventStore,
        database_url: str,
        key: SigningKey,
        *,
        name: str = "chronicle-sealer",
        batch_size: int = 5000,
        poll_interval: float = 1.0,
    ) -> None:
        self._store = store
        self._connection = DedicatedConnection(database_url, name)
        self._key = key
        self._batch_size = batch_size
        self._poll_interval = poll_interval

    async def run(self) -> None:
        """Seal for ever (until cancelled)."""
        backoff = Backoff()
        try:
            while True:
                seen = self._store.appends_seen
                try:
                    sealed = await seal_batch(await self._connection.get(), self._key, self._batch_size)
                except (StoreUnavailable, *DRIVER_ERRORS) as exc:
                    self._connection.drop()
                    await backoff.pause(as_outage(exc, "sealer"), "sealer")
                    continue
                backoff.reset()
                if sealed is not None and sealed.events == self._batch_size:
                    continue  # more waiting: no pause
                pending = sealed is None or sealed.unsigned > 0
                await self._store.wait_for_append(seen, PENDING_WAKE_S if pending else self._poll_interval)
        finally:
            await self._connection.close()
