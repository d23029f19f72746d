"""The cost of sealing, for `chronicle bench append`: appends with the sealer running beside them
(chains, leaves, tree nodes, a signed checkpoint a second) against appends with nothing hashed,
in the same run, alternating off, on, three times, so that drift on a noisy machine hits both; and
how long each event waits to be sealed.

The sealer runs in a process of its own (``python -m bench.sealing URL KEYFILE``), as it does in
the projection daemon. Before each "on" phase it first seals the backlog the "off" phase left,
so that the phase measures sealing at the rate appends arrive.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from bench.common import percentile
from core.settings import Settings
from eventstore import EventStore
from eventstore.pg import connect

__all__ = ["sealing_figures"]

ROOT = Path(__file__).resolve().parents[1]
Phase = Callable[[], Awaitable[dict[str, Any]]]


async def _unsealed(url: str) -> int:
    conn = await connect(url)
    try:
        return int(
            await conn.fetchval(
                "SELECT count(*) FROM events WHERE global_position > "
                "coalesce((SELECT global_position FROM seals ORDER BY leaf DESC LIMIT 1), 0)"
            )
        )
    finally:
        await conn.close()


async def _until_sealed(url: str, timeout: float = 600) -> None:
    deadline = time.perf_counter() + timeout
    while await _unsealed(url):
        if time.perf_counter() > deadline:
            raise TimeoutError("the sealer did not catch up")
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def _sealer(url: str, key_file: Path):  # type: ignore[no-untyped-def]
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.sealing",
        url,
        str(key_file),
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        yield
    finally:
        child.send_signal(signal.SIGTERM)
        await child.wait()


async def _latencies(url: str, after: int) -> list[float]:
    """Seconds from each event's commit (its recorded_at) to its seal's commit, after ``after``."""
    conn = await connect(url)
    try:
        rows = await conn.fetch(
            "SELECT extract(epoch FROM s.sealed_at - e.recorded_at)::float8 FROM seals s "
            "JOIN events e USING (global_position) WHERE e.global_position > $1",
            after,
        )
        return [r[0] for r in rows]
    finally:
        await conn.close()


async def sealing_figures(url: str, store: EventStore, phases: dict[str, Phase]) -> dict[str, Any]:
    """Each phase run off, on, three times over; medians per state, their ratio, and how long
    each event of the "on" runs waited to be sealed (p50, p99, max)."""
    runs: dict[str, dict[str, list[float]]] = {name: {"off": [], "on": []} for name in phases}
    delays: dict[str, list[float]] = {name: [] for name in phases}
    with tempfile.TemporaryDirectory() as keys:
        key_file = Path(keys) / "signing.key"
        for state in ("off", "on") * 3:
            for name, phase in phases.items():
                if state == "off":
                    runs[name][state].append((await phase())["events_per_s"])
                    continue
                async with _sealer(url, key_file):
                    await _until_sealed(url)
                    start = await store.head_position()
                    runs[name][state].append((await phase())["events_per_s"])
                    await _until_sealed(url)
                    delays[name] += await _latencies(url, start)
    figures: dict[str, Any] = {}
    for name, by_state in runs.items():
        off, on = (statistics.median(by_state[s]) for s in ("off", "on"))
        ms = [d * 1000 for d in delays[name]]
        figures[name] = {
            "off_events_per_s": round(off),
            "on_events_per_s": round(on),
            "on_over_off": round(on / off, 3),
            "seal_latency_p50_ms": round(percentile(ms, 50), 1),
            "seal_latency_p99_ms": round(percentile(ms, 99), 1),
            "seal_latency_max_ms": round(max(ms, default=float("nan")), 1),
        }
    return figures


async def _child(url: str, key_file: str) -> None:
    import logging

    import structlog

    from eventstore.audit.keys import load_or_create
    from projections.runner.sealing import SealerLoop

    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
    )
    key = load_or_create(Path(key_file), "bench.chronicle/log")
    async with await EventStore.connect(url, Settings(pool_size=2, poll_interval=0.5)) as store:
        task = asyncio.ensure_future(SealerLoop(store, url, key).run())
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, task.cancel)
        with contextlib.suppress(asyncio.CancelledError):
            await task


if __name__ == "__main__":
    asyncio.run(_child(sys.argv[1], sys.argv[2]))
