"""A projection daemon for a parent to SIGKILL at chosen moments.

Run as ``python -m tests.reliability.projection_child URL``: every read model Chronicle has,
the sealer (its key in ``CHRONICLE_SIGNING_KEY_FILE``), and a PositionLog that prints a line
as it starts applying a batch and then holds the batch's transaction open for 10 ms. A parent
that kills a few milliseconds after such a line hits the batch in flight, its commit, or what
follows it, as the delay it picks decides.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from datetime import datetime

import asyncpg

from core.events import RecordedEvent
from core.settings import Settings
from eventstore import EventStore
from eventstore.audit.keys import load_or_create
from projections.catalog import PROJECTIONS
from projections.runner.daemon import ProjectionDaemon
from projections.runner.sealing import SealerLoop
from tests.projection_kit import PositionLog

POSITION_LOG = PositionLog("killed_log", pause_s=0.01)


class AnnouncedLog(PositionLog):
    async def apply(self, conn: asyncpg.Connection, generation: int, events: Sequence[RecordedEvent]) -> None:
        print(f"applying {events[0].global_position}", flush=True)
        await super().apply(conn, generation, events)


class QuietObserver:
    def applied(
        self,
        name: str,
        events: Sequence[RecordedEvent],
        position: int,
        head: int,
        applied_at: datetime | None,
    ) -> None:
        return None


async def main(url: str) -> None:
    settings = Settings(poll_interval=0.1)
    key = load_or_create(settings.signing_key_path, settings.log_origin)
    async with await EventStore.connect(url, settings) as store:
        daemon = ProjectionDaemon(
            store,
            url,
            [*PROJECTIONS, AnnouncedLog(POSITION_LOG.name, pause_s=POSITION_LOG.pause_s)],
            observer=QuietObserver(),
            batch_size=200,
            rebuild_batch_size=500,
            poll_interval=0.1,
            lease_interval=0.2,
            sealer=SealerLoop(store, url, key, batch_size=300, poll_interval=0.1),
        )
        await daemon.run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
