"""Several projections in one process, each owned by exactly one daemon at a time.

Ownership is a lease: a session advisory lock per projection, held on one dedicated
connection of the daemon. Every ``lease_interval`` seconds the daemon checks that connection
with a query and tries to take the projections it does not hold. When a daemon dies, its
session ends, PostgreSQL releases its locks, and another daemon takes them at its next try:
within ``lease_interval`` seconds. If the lease connection is lost (the database restarted),
the daemon stops its projections and starts over once the server is back.

The lease saves work; it is not what makes applying safe. Every batch checks its checkpoint
under a row lock (``state.lock_for_batch``), so even two appliers of one projection could
never apply an event twice.

For each projection it owns, the daemon runs the live loop and, when the model in the
database is missing or was built by another code version (or a rebuild was interrupted), a
rebuild beside it that swaps in when done. A projection that fails stops alone; the daemon
keeps its lease (another daemon would only fail the same way) and the others go on.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
from collections.abc import Sequence

import asyncpg
import structlog

from core.errors import StoreUnavailable
from eventstore import EventStore
from eventstore.pg import DRIVER_ERRORS
from projections.runner import state
from projections.runner.batches import ProjectionFailed
from projections.runner.connection import Backoff, DedicatedConnection, as_outage
from projections.runner.contract import Projection
from projections.runner.metrics import BatchObserver, default_observer
from projections.runner.rebuild import LEASE_CLASS, RebuildInProgress, lock_key, rebuild, retire
from projections.runner.sealing import SealerLoop
from projections.runner.worker import LiveLoop

__all__ = ["ProjectionDaemon", "daemon_name"]

log = structlog.get_logger(__name__)


def daemon_name() -> str:
    """How this process shows as an owner (pg_stat_activity.application_name)."""
    return f"chronicle-projections {socket.gethostname()} pid {os.getpid()}"


class ProjectionDaemon:
    def __init__(
        self,
        store: EventStore,
        database_url: str,
        projections: Sequence[Projection],
        *,
        observer: BatchObserver | None = None,
        batch_size: int = 1000,
        rebuild_batch_size: int = 10_000,
        poll_interval: float = 1.0,
        lease_interval: float = 1.0,
        name: str | None = None,
        sealer: SealerLoop | None = None,
    ) -> None:
        names = [p.name for p in projections]
        assert len(set(names)) == len(names), f"projection names repeat: {names}"
        self._store = store
        self._url = database_url
        self._projections = list(projections)
        self._observer = observer or default_observer()
        self._batch_size = batch_size
        self._rebuild_batch_size = rebuild_batch_size
        self._poll_interval = poll_interval
        self._lease_interval = lease_interval
        self.name = name or daemon_name()
        self._owned: dict[str, asyncio.Task[None]] = {}
        self._sealer = sealer
        self.failures: dict[str, ProjectionFailed] = {}

    @property
    def owned(self) -> frozenset[str]:
        """The projections this daemon holds the lease of now."""
        return frozenset(self._owned)

    async def run(self) -> None:
        """Own and run projections (and seal the log, if given a sealer) until cancelled."""
        if self._sealer is None:
            await self._run()
            return
        sealing = asyncio.create_task(self._sealer.run(), name="sealer")
        try:
            await self._run()
        finally:
            sealing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sealing

    async def _run(self) -> None:
        backoff = Backoff()
        lease = DedicatedConnection(self._url, self.name)
        try:
            while True:
                try:
                    await self._hold_leases(await lease.get(), backoff)
                except (StoreUnavailable, *DRIVER_ERRORS) as exc:
                    reason = as_outage(exc, "projection leases")
                    await self._release_all()
                    lease.drop()
                    await backoff.pause(reason, "projection leases")
        finally:
            await self._release_all()
            await lease.close()

    async def _hold_leases(self, conn: asyncpg.Connection, backoff: Backoff) -> None:
        while True:
            await conn.fetchval("SELECT 1")  # the lease connection must be alive to hold anything
            backoff.reset()
            for projection in self._projections:
                if projection.name not in self._owned and await _try_lease(conn, projection.name):
                    log.info("projection.lease_taken", projection=projection.name, daemon=self.name)
                    self._owned[projection.name] = asyncio.create_task(
                        self._own(projection), name=f"projection-{projection.name}"
                    )
            await asyncio.sleep(self._lease_interval)

    async def _release_all(self) -> None:
        tasks, self._owned = list(self._owned.values()), {}
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    async def _own(self, projection: Projection) -> None:
        """Run one projection while this daemon holds its lease: the live loop, and a rebuild
        beside it when the database's model is missing, stale or half rebuilt."""
        live = DedicatedConnection(self._url, self.name)
        rebuilding: asyncio.Task[None] | None = None
        try:
            needed, built = await self._needs_rebuild(live, projection)
            if needed:
                rebuilding = asyncio.create_task(self._rebuild(projection), name=f"rebuild-{projection.name}")
                if not built:  # nothing to tail until the first build swaps in
                    await asyncio.wait({rebuilding})
            loop = LiveLoop(
                self._store,
                live,
                projection,
                self._observer,
                batch_size=self._batch_size,
                poll_interval=self._poll_interval,
            )
            await loop.run()
        except ProjectionFailed as exc:
            self.failures[projection.name] = exc
            log.error("projection.failed", projection=projection.name, position=exc.position, error=str(exc))
        finally:
            if rebuilding is not None:
                rebuilding.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await rebuilding
            await live.close()

    async def _needs_rebuild(
        self, connection: DedicatedConnection, projection: Projection
    ) -> tuple[bool, bool]:
        """(whether a rebuild is needed, whether a generation is active now)."""
        backoff = Backoff()
        while True:
            try:
                conn = await connection.get()
                row = await state.ensure(conn, projection.name, projection.version)
                await retire(conn, projection)  # leftovers of a rebuild that died
                built = row.active_generation is not None
                stale = row.version != projection.version or row.rebuilding_generation is not None
                return not built or stale, built
            except (StoreUnavailable, *DRIVER_ERRORS) as exc:
                reason = as_outage(exc, f"projection {projection.name}")
                connection.drop()
                await backoff.pause(reason, f"projection {projection.name}")

    async def _rebuild(self, projection: Projection) -> None:
        connection = DedicatedConnection(self._url, self.name)
        backoff = Backoff()
        try:
            while True:
                try:
                    rebuilt = await rebuild(
                        self._store, await connection.get(), projection, batch_size=self._rebuild_batch_size
                    )
                    log.info(
                        "projection.swapped_in", projection=projection.name, generation=rebuilt.generation
                    )
                    return
                except RebuildInProgress:
                    log.info("projection.rebuild_elsewhere", projection=projection.name)
                    return
                except ProjectionFailed as exc:
                    self.failures[projection.name] = exc
                    log.error("projection.rebuild_failed", projection=projection.name, error=str(exc))
                    return
                except (StoreUnavailable, *DRIVER_ERRORS) as exc:
                    reason = as_outage(exc, f"rebuild of {projection.name}")
                    connection.drop()
                    await backoff.pause(reason, f"rebuild of {projection.name}")
        finally:
            await connection.close()


async def _try_lease(conn: asyncpg.Connection, name: str) -> bool:
    return bool(await conn.fetchval("SELECT pg_try_advisory_lock($1, $2)", LEASE_CLASS, lock_key(name)))
