"""A writer that a test kills with SIGKILL part-way: 8 streams appended concurrently.

Event ids are derived from (stream, index), so a rerun of the same plan retries the very same
events. Prints one line per append that returned, so the test knows the run is under way.
"""

from __future__ import annotations

import asyncio
import sys
import uuid

from eventstore import EventStore, NewEvent

NAMESPACE = uuid.UUID("1c1e4b8a-6b55-4b7e-9a9b-2f0c6c9d1e11")
STREAMS = [f"crash-{i}" for i in range(8)]
PER_STREAM = 200
BATCH = 3


def planned(stream_id: str, step: int) -> list[NewEvent]:
    return [
        NewEvent("Planned", {"step": step, "k": k}, event_id=uuid.uuid5(NAMESPACE, f"{stream_id}/{step}/{k}"))
        for k in range(BATCH)
    ]


async def write_plan(store: EventStore, stream_id: str, report: bool) -> None:
    for step in range(PER_STREAM):
        await store.append(stream_id, planned(stream_id, step), step * BATCH)
        if report:
            print(stream_id, step, flush=True)


async def main(url: str) -> None:
    store = await EventStore.connect(url)
    await asyncio.gather(*(write_plan(store, s, report=True) for s in STREAMS))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
