"""The projection daemon the projections benchmark measures, in a process of its own as in
production: every read model, with an observer that prints, per batch, the delay from each
event's commit to the commit of the batch that applied it (one JSON line per batch).

Run as ``python -m bench.projection_daemon URL``.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from datetime import datetime

import orjson
import structlog

from core.events import RecordedEvent
from core.settings import Settings
from eventstore import EventStore
from projections.catalog import PROJECTIONS
from projections.runner.daemon import ProjectionDaemon


class PrintingObserver:
    def applied(
        self,
        name: str,
        events: Sequence[RecordedEvent],
        position: int,
        head: int,
        applied_at: datetime | None,
    ) -> None:
        if applied_at is None or not events:
            return
        delays = [round((applied_at - e.recorded_at).total_seconds() * 1000, 3) for e in events]
        line = {"projection": name, "position": position, "head": head, "delays_ms": delays}
        sys.stdout.buffer.write(orjson.dumps(line) + b"\n")
        sys.stdout.buffer.flush()


async def main(url: str) -> None:
    # stdout carries the figures; the daemon's log goes to stderr
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(file=sys.stderr))
    async with await EventStore.connect(url, Settings(poll_interval=1.0)) as store:
        await ProjectionDaemon(store, url, PROJECTIONS, observer=PrintingObserver()).run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
