"""`chronicle bench replay`: rehydration, replay throughput and start-up recovery, beside the raw read.

Every figure is measured in the same run as its ceiling: rehydrating a 10,000-event task
stream (read, upcast, decode, fold) against ``read_stream`` of the same events (which stops
at RecordedEvent and decodes nothing), with no snapshot and with the snapshotter's every-1,000
policy; full-replay throughput of decoded events; and start-up recovery of 10,000 in-flight
tasks. Medians and percentiles; the machine is shared and noisy, so compare ratios.

The raw read and the rehydration are timed alike, as bench/append.py times its sides: in
alternating order round by round, each call after ``gc.collect()`` with the collector paused.
Timed back to back with the collector running (as this benchmark first did), the two sides
met different machines (all raw rounds, then all rehydration rounds, on shared cores whose
load drifts) and paid for collections that land on whichever call crosses the allocation
threshold: a full collection walks every live object, the other side's garbage included, and
cost tens of milliseconds, which put p99 at 2-3x p50 and made the ratio move by 0.5 between
runs. What the fold allocates still shows as the time to allocate it; the collector's steady
cost belongs to the process, not to one call. The snapshot figure is an absolute target and
stays timed with the collector running, the stricter way.
"""

from __future__ import annotations

import gc
import time
from collections.abc import Awaitable, Callable
from dataclasses import replace
from typing import Any

from bench.common import drop_database, fresh_database, machine, summary
from bench.histories import METADATA, append_history, task_events
from core.domain import DOMAIN_EVENTS, TASK
from core.domain.loading import AtVersion, load_at
from core.domain.snapshots import Snapshot
from core.events import StreamAppend
from eventstore import EventStore
from eventstore.state.snapshots import PostgresSnapshotStore
from projections.recovery import recover

__all__ = ["run"]


async def _timed(rounds: int, step: Callable[[], Awaitable[Any]]) -> list[float]:
    await step()  # warm: plans cached, pages in memory
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        await step()
        samples.append(time.perf_counter() - started)
    return samples


async def _timed_alike(
    rounds: int, first: Callable[[], Awaitable[Any]], second: Callable[[], Awaitable[Any]]
) -> tuple[list[float], list[float]]:
    """Seconds per call of ``first`` and of ``second``, interleaved, each timed without GC."""
    await first()  # warm: plans cached, pages in memory
    await second()
    samples: tuple[list[float], list[float]] = ([], [])
    for round_ in range(rounds):
        # Alternate the order so neither side always runs first, after the other's garbage.
        for side in (0, 1) if round_ % 2 else (1, 0):
            samples[side].append(await _timed_without_gc((first, second)[side]))
    return samples


async def _timed_without_gc(step: Callable[[], Awaitable[Any]]) -> float:
    """Seconds for one call, timed as ``timeit`` does: after a collection, with GC paused."""
    gc.collect()
    gc.disable()
    try:
        started = time.perf_counter()
        await step()
        return time.perf_counter() - started
    finally:
        gc.enable()


async def _in_flight_tasks(store: EventStore, count: int) -> None:
    """``count`` tasks, each submitted, assigned and started (in flight), appended 500 streams a call."""
    history = task_events("template", 3)
    appends = []
    for i in range(count):
        task_id = f"r{i}"
        events = [DOMAIN_EVENTS.encode(_retarget(e, task_id), METADATA) for e in history]
        appends.append(StreamAppend(TASK.stream_id(task_id), events, 0))
    for start in range(0, count, 500):
        await store.append_multi(appends[start : start + 500])


def _retarget(event: Any, task_id: str) -> Any:
    return replace(event, task_id=task_id)


def _target(name: str, measured: float, goal: str, met: bool) -> dict[str, Any]:
    return {"target": name, "measured": measured, "goal": goal, "met": met}


async def run(
    server_url: str, *, events: int = 10_000, tasks: int = 10_000, rounds: int = 30
) -> dict[str, Any]:
    url = await fresh_database(server_url, "chronicle_bench_replay")
    try:
        async with await EventStore.connect(url) as store:
            snapshots = await PostgresSnapshotStore.connect(url, keep=events // 1000 + 1)
            try:
                return await _measure(url, store, snapshots, events, tasks, rounds)
            finally:
                await snapshots.close()
    finally:
        await drop_database(server_url, url)


async def _measure(
    url: str, store: EventStore, snapshots: PostgresSnapshotStore, events: int, tasks: int, rounds: int
) -> dict[str, Any]:
    stream = await append_history(store, "bench", events)
    raw, full = await _timed_alike(
        rounds, lambda: store.read_stream(stream), lambda: load_at(store, None, stream, TASK)
    )
    for version in range(1000, events + 1, 1000):
        await _snapshot_at(store, snapshots, stream, version)
    snap = await _timed(rounds * 10, lambda: load_at(store, snapshots, stream, TASK))
    throughput = events / min(full)
    await _in_flight_tasks(store, tasks)
    recovered = await recover(store)
    raw_s, full_s, snap_s = summary(raw), summary(full), summary(snap)
    ratio = full_s["p50_ms"] / raw_s["p50_ms"]
    return {
        "benchmark": "replay",
        "events_in_stream": events,
        "raw_read_stream": raw_s,
        "rehydrate_no_snapshot": full_s,
        "rehydrate_snapshots_every_1000": snap_s,
        "no_snapshot_vs_raw_read": round(ratio, 2),
        "full_replay_events_per_s": round(throughput),
        "recovery": {
            "tasks_in_flight": len(recovered.tasks),  # the 10,000 plus the rehydrated stream
            "events": recovered.events,
            "seconds": round(recovered.seconds, 3),
        },
        "targets": [
            _target(
                "rehydrate, no snapshot, vs raw read_stream (p50 ratio)",
                round(ratio, 2),
                "<= 2.0",
                ratio <= 2,
            ),
            _target(
                "rehydrate, snapshots every 1,000 (p50 ms)", snap_s["p50_ms"], "< 2 ms", snap_s["p50_ms"] < 2
            ),
            _target(
                f"start-up recovery of {tasks} in-flight tasks (s)",
                round(recovered.seconds, 3),
                "< 2 s",
                recovered.seconds < 2 and len(recovered.tasks) >= tasks,
            ),
        ],
        "machine": await machine(url),
    }


async def _snapshot_at(
    store: EventStore, snapshots: PostgresSnapshotStore, stream: str, version: int
) -> None:
    loaded = await load_at(store, snapshots, stream, TASK, AtVersion(version))
    last = loaded.recorded[-1]
    state = TASK.state_to_json(loaded.state)
    await snapshots.save(
        Snapshot(stream, version, TASK.state_schema_version, state, last.global_position, last.recorded_at)
    )
