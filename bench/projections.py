"""`chronicle bench projections`: read-model lag under load, rebuild speed, audit queries.

1. **Lag.** The projection daemon runs in a process of its own (``bench.projection_daemon``),
   as in production, and reports for every event the time from its commit to the commit of
   the batch that applied it, per read model, both from the database's clock. Mixed traffic
   (``bench.traffic``: agents, tasks, conversations, training runs) is appended at 1,000 and
   then at 5,000 events/s; the achieved rate is reported beside the asked one. Lag p50/p99 per
   model, and whether it stays bounded at the higher rate (the second half of the phase
   against the first), and how long the daemon takes to catch up once traffic stops.
2. **Rebuild.** The log is grown to ``events`` events (1,000,000 by default), the daemon is
   stopped, and each model is rebuilt from scratch. Its speed, in events it applied per second
   and in log events it covered per second, is set beside the ceiling measured in the same
   run: ``read_all`` of the same log, which reads every event and decodes none. The targets
   are on the task board and the audit index (which reads every event).
3. **Audit queries** on that log, p50/p99 over random subjects: everything that happened to a
   task, and everything an actor did between two times.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import orjson

from bench.common import drop_database, fresh_database, machine, percentile
from bench.traffic import drive, load
from core.settings import Settings
from eventstore import EventStore
from eventstore.pg import connect
from projections.catalog import PROJECTIONS
from projections.runner.rebuild import rebuild
from projections.runner.status import statuses

__all__ = ["run"]

ROOT = Path(__file__).resolve().parents[1]
# The seed's consistency targets: how soon each model shows an append (p99), in ms.
SEED_TARGET_MS = {"agent_registry": 100.0, "conversations": 500.0, "task_board": 1000.0}
LAG_P99_GOAL_MS = 100.0
# One producer process appending one command's events at a time reaches about 3,000 events/s
# on two cores; above this rate the traffic goes out as one multi-stream append per scenario.
SINGLE_APPEND_RATE = 2000
REBUILD_GOAL = 50_000.0
AUDIT_P99_GOAL_MS = 100.0


class Daemon:
    """The daemon child and what it reports: (arrival time, projection, delays) per batch."""

    def __init__(self) -> None:
        self.lines: list[tuple[float, str, list[float]]] = []
        self._child: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self, url: str) -> None:
        self._child = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "bench.projection_daemon",
            url,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT)},
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 26,  # a rebuild batch's line holds 10,000 delays: far over the default 64 KiB
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self._child is not None and self._child.stdout is not None
        while line := await self._child.stdout.readline():
            batch = orjson.loads(line)
            self.lines.append((time.perf_counter(), batch["projection"], batch["delays_ms"]))

    async def stop(self) -> None:
        if self._child is not None and self._child.returncode is None:
            self._child.send_signal(signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._child.wait(), 30)
            if self._child.returncode is None:
                self._child.kill()
                await self._child.wait()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


async def _until(check: Callable[[], Awaitable[bool]], timeout: float) -> float:
    """Seconds until ``check`` holds (polled every 20 ms)."""
    started = time.perf_counter()
    while not await check():
        if time.perf_counter() - started > timeout:
            raise TimeoutError(f"not within {timeout} s")
        await asyncio.sleep(0.02)
    return time.perf_counter() - started


async def _all_at_head(conn: asyncpg.Connection) -> bool:
    found = await statuses(conn, PROJECTIONS)
    return all(s.generation is not None and s.lag_events == 0 for s in found)


async def _lag_phase(
    store: EventStore, conn: asyncpg.Connection, daemon: Daemon, rate: float, seconds: float
) -> dict[str, Any]:
    first_line = len(daemon.lines)
    started = time.perf_counter()
    prefix = f"lag{int(rate)}-"
    if rate <= SINGLE_APPEND_RATE:
        driven = await drive(store, prefix, seconds=seconds, rate=rate, lanes=32)
    else:
        driven = await load(store, prefix, seconds=seconds, rate=rate, concurrency=32)
    catch_up = await _until(lambda: _all_at_head(conn), timeout=600)
    middle = started + seconds / 2
    lines = daemon.lines[first_line:]
    models: dict[str, Any] = {}
    for projection in PROJECTIONS:
        mine = [line for line in lines if line[1] == projection.name]
        delays = [d for line in mine for d in line[2]]
        first = [d for line in mine if line[0] < middle for d in line[2]]
        second = [d for line in mine if line[0] >= middle for d in line[2]]
        models[projection.name] = {
            "events": len(delays),
            "p50_ms": round(percentile(delays, 50), 2),
            "p99_ms": round(percentile(delays, 99), 2),
            "max_ms": round(max(delays, default=float("nan")), 2),
            "p99_first_half_ms": round(percentile(first, 99), 2),
            "p99_second_half_ms": round(percentile(second, 99), 2),
        }
    return {
        "asked_events_per_s": rate,
        "appends": "one per command" if rate <= SINGLE_APPEND_RATE else "one per scenario (26-40 events)",
        "achieved_appends_per_s": round(driven.appends / driven.seconds),
        "achieved_events_per_s": round(driven.events / driven.seconds),
        "seconds": round(driven.seconds, 1),
        "catch_up_s": round(catch_up, 3),
        "models": models,
    }


async def _read_all_rate(store: EventStore) -> tuple[int, float]:
    started = time.perf_counter()
    count = 0
    async for _ in store.read_all(page_size=10_000):
        count += 1
    return count, count / (time.perf_counter() - started)


async def _rebuilds(store: EventStore, url: str, log_events: int) -> dict[str, Any]:
    found = {}
    for projection in PROJECTIONS:
        conn = await connect(url)
        try:
            started = time.perf_counter()
            done = await rebuild(store, conn, projection)
            seconds = time.perf_counter() - started
        finally:
            await conn.close()
        found[projection.name] = {
            "seconds": round(seconds, 2),
            "events_applied": done.events,
            "applied_events_per_s": round(done.events / seconds),
            "log_events_per_s": round(log_events / seconds),
        }
    return found


async def _audit(url: str) -> dict[str, Any]:
    from bench.audit_queries import audit_figures

    conn = await connect(url)
    try:
        return await audit_figures(conn, random.Random(1))
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def _database(server_url: str) -> AsyncIterator[str]:
    url = await fresh_database(server_url, "chronicle_bench_projections")
    try:
        yield url
    finally:
        await drop_database(server_url, url)


async def run(
    server_url: str,
    *,
    events: int = 1_000_000,
    phase_seconds: float = 20.0,
    rates: tuple[float, ...] = (1000, 5000),
) -> dict[str, Any]:
    async with _database(server_url) as url, await EventStore.connect(url, Settings(pool_size=8)) as store:
        daemon = Daemon()
        conn = await asyncpg.connect(url)
        try:
            await daemon.start(url)
            await _until(lambda: _all_at_head(conn), timeout=120)
            lag = [await _lag_phase(store, conn, daemon, rate, phase_seconds) for rate in rates]
            await daemon.stop()
            head = await store.head_position()
            missing = max(events - head, 0)
            loaded = await load(store, "bulk-", missing // 26 + 1) if missing else None
            # as autovacuum would leave it: hint bits set, statistics current; a first read of a
            # freshly loaded log sets the hint bits itself and runs at two thirds of the speed
            await conn.execute("VACUUM (ANALYZE) events")
            log_events, ceiling = await _read_all_rate(store)
            rebuilds = await _rebuilds(store, url, log_events)
            audit = await _audit(url)
            facts = await machine(url)
        finally:
            await daemon.stop()
            await conn.close()
        return {"machine": facts, **_result(lag, loaded, log_events, ceiling, rebuilds, audit)}


def _result(
    lag: list[dict[str, Any]],
    loaded: Any,
    log_events: int,
    ceiling: float,
    rebuilds: dict[str, Any],
    audit: dict[str, Any],
) -> dict[str, Any]:
    for figures in rebuilds.values():
        figures["ratio_to_read_all"] = round(figures["log_events_per_s"] / ceiling, 3)
    return {
        "benchmark": "projections",
        "lag": lag,
        "log": {
            "events": log_events,
            "load_events_per_s": round(loaded.events / loaded.seconds) if loaded else None,
        },
        "ceiling": {"read_all_events_per_s": round(ceiling)},
        "rebuild": rebuilds,
        "audit": audit,
        "targets": _targets(lag, rebuilds, audit),
    }


def _target(name: str, measured: Any, goal: str, met: bool) -> dict[str, Any]:
    return {"target": name, "measured": measured, "goal": goal, "met": met}


def _targets(
    lag: list[dict[str, Any]], rebuilds: dict[str, Any], audit: dict[str, Any]
) -> list[dict[str, Any]]:
    targets = []
    for phase in lag:
        targets.extend(_lag_targets(phase))
    best = max(f["log_events_per_s"] for f in rebuilds.values())
    targets.append(
        _target("rebuild, fastest projection (log events/s)", best, ">= 50000", best >= REBUILD_GOAL)
    )
    for name, figures in audit["queries"].items():
        p99 = figures["p99_ms"]
        targets.append(_target(f"audit: {name} p99 (ms)", p99, "< 100", p99 < AUDIT_P99_GOAL_MS))
    return targets


def _lag_targets(phase: dict[str, Any]) -> list[dict[str, Any]]:
    rate = int(phase["asked_events_per_s"])
    achieved = phase["achieved_events_per_s"]
    targets = [_target(f"achieved rate at {rate}/s", achieved, f">= {rate * 0.9:g}", achieved >= rate * 0.9)]
    for name, model in phase["models"].items():
        p99 = model["p99_ms"]
        if rate <= 1000:
            targets.append(_target(f"{name} lag p99 at {rate}/s (ms)", p99, "< 100", p99 < LAG_P99_GOAL_MS))
            if name in SEED_TARGET_MS:
                goal = SEED_TARGET_MS[name]
                targets.append(
                    _target(f"{name} within the seed's {goal:g} ms (p99)", p99, f"< {goal:g}", p99 < goal)
                )
        else:
            first, second = model["p99_first_half_ms"], model["p99_second_half_ms"]
            bounded = second <= 2 * first + 50
            name_ = f"{name} lag bounded at {rate}/s (p99 ms, first half -> second)"
            targets.append(_target(name_, f"{first} -> {second}", "not growing", bounded))
    return targets
