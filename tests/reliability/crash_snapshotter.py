"""A child process that snapshots large task states and writes large blobs until it is killed.

Each loop appends one event to each stream, snapshots the stream, and stores a 1 MiB blob,
printing one line per write so the parent can kill it with writes in flight.
"""

from __future__ import annotations

import asyncio
import os
import sys

from bench.histories import T0, task_events
from core.domain import DOMAIN_EVENTS, TASK
from core.domain.loading import load_at
from core.domain.task import ReportTaskProgress, SubmitTask
from eventstore import EventStore
from eventstore.state.blobs import BlobStore
from eventstore.state.snapshots import PostgresSnapshotStore
from projections.snapshotter import take_snapshot

STREAMS = [f"task-crash{i}" for i in range(4)]
BIG = "x" * 400_000  # a 400 kB payload makes every snapshot row large, so a kill lands mid-write


async def main(url: str) -> None:
    async with await EventStore.connect(url) as store:
        snapshots = await PostgresSnapshotStore.connect(url)
        blobs = await BlobStore.connect(url)
        for stream in STREAMS:
            task_id = stream.removeprefix("task-")
            submit = SubmitTask(task_id, "echo", T0, {"big": BIG})
            events = [*TASK.decide(submit, TASK.initial_state), *task_events(task_id, 3)[1:]]
            await store.append(stream, [DOMAIN_EVENTS.encode(e, {"tenant_id": "acme"}) for e in events], 0)
        step = 0
        while True:
            step += 1
            for stream in STREAMS:
                progress = ReportTaskProgress(stream.removeprefix("task-"), 1, float(step % 100), T0)
                state = (await load_at(store, snapshots, stream, TASK)).state
                events = TASK.decide(progress, state)
                await store.append(stream, [DOMAIN_EVENTS.encode(e, {"tenant_id": "acme"}) for e in events])
                await take_snapshot(store, snapshots, stream)
                print("snapshot", stream, flush=True)
                await blobs.put(os.urandom(1 << 20))
                print("blob", flush=True)


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
