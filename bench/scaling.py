"""Costs as the log grows: `chronicle bench append --log-size 100000,1000000,10000000` and
`chronicle bench import`.

The scaling run measures every figure on a small log, then grows the log through the
importer to each size and measures the same figures again, in the same run, each beside its
raw ceiling at that size: appends (Chronicle at 1 and 32 producers and 100-event appends;
raw single-row INSERTs at 32 connections and 100-row INSERTs), ``read_all`` of a 100,000-event
window in the middle of the log against a raw keyset read of the same rows, ``read_stream``
of a 10,000-event stream, rehydrating a 10,000-event task against the raw read of its
events, and start-up recovery of 1,000 in-flight tasks. The filler is 400-byte events of an
``order`` category, ten to a stream, as a user's own domain would add; the task and agent
events recovery folds stay the same, so recovery shows what the rest of the log costs it.

The import run writes a JSON Lines file, imports it with `chronicle import` in a process of
its own (which reports its peak memory), and COPYs the same rows into ``events`` of another
fresh database as the ceiling.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import orjson

from bench.append import (
    READ_PAGE,
    ceiling_hundred,
    ceiling_single,
    chronicle_hundred,
    chronicle_single,
    read_stream_pair,
)
from bench.common import drop_database, fresh_database, machine, summary
from bench.histories import append_history
from bench.replay import _in_flight_tasks, _timed_alike
from core.domain import TASK
from core.domain.loading import load_at
from core.settings import Settings
from eventstore import EventStore
from eventstore.log.bulk import import_jsonl, parse_lines
from eventstore.pg import connect
from projections.recovery import recover

__all__ = ["MEASURED", "import_figures", "scaling_figures"]

WINDOW = 100_000


def filler(start: int, count: int) -> bytes:
    """``count`` lines of about 400 bytes, ten events to an ``order`` stream, from line ``start``."""
    out = []
    for i in range(start, start + count):
        line = {
            "stream_id": f"order-{i // 10}",
            "type": "OrderLineAdded",
            "data": {"line": i, "sku": f"SKU-{i % 977:05d}", "qty": i % 7 + 1, "note": "n" * 220},
            "metadata": {"tenant_id": "acme", "actor": "bench", "correlation_id": f"order-{i // 10}"},
        }
        out.append(orjson.dumps(line))
    return b"\n".join(out) + b"\n"


def write_file(path: Path, lines: int, start: int = 0) -> Path:
    with path.open("wb") as sink:
        for at in range(start, start + lines, 100_000):
            sink.write(filler(at, min(100_000, start + lines - at)))
    return path


async def _count(url: str) -> int:
    conn = await connect(url)
    try:
        return int(await conn.fetchval("SELECT coalesce(max(global_position), 0) FROM events"))
    finally:
        await conn.close()


async def grow(url: str, target: int, settings: Settings) -> dict[str, Any]:
    """Import filler until the log holds ``target`` events; the import's rate."""
    have = await _count(url)
    missing = target - have
    if missing <= 0:
        return {"events": have, "imported": 0}
    with tempfile.TemporaryDirectory() as folder:
        path = await asyncio.to_thread(write_file, Path(folder) / "fill.jsonl", missing, have)
        t0 = time.perf_counter()
        with path.open(encoding="utf-8") as source:
            report = await import_jsonl(url, source, settings.max_event_bytes)
        seconds = time.perf_counter() - t0
    return {
        "events": await _count(url),
        "imported": report.imported,
        "events_per_s": round(missing / seconds),
    }


async def read_window(url: str, store: EventStore, rounds: int = 3) -> dict[str, Any]:
    """100,000 events from the middle of the log: Chronicle's ``read_all`` against raw pages."""
    start = max(1, (await _count(url)) // 2 - WINDOW // 2)
    conn = await connect(url)

    async def raw() -> int:
        count, position = 0, start
        while count < WINDOW:
            page = await conn.fetch(READ_PAGE, position, min(5000, WINDOW - count))
            count += len(page)
            if not page:
                return count  # a log shorter than the window
            position = page[-1][3] + 1
        return count

    async def ours() -> int:
        count = 0
        async for _ in store.read_all(from_position=start, page_size=5000):
            count += 1
            if count == WINDOW:
                break
        return count

    raw_rates: list[float] = []
    our_rates: list[float] = []
    try:
        for _ in range(rounds):
            for fn, rates in ((raw, raw_rates), (ours, our_rates)):
                t0 = time.perf_counter()
                rates.append(await fn() / (time.perf_counter() - t0))
    finally:
        await conn.close()
    return {
        "raw_events_per_s": round(sorted(raw_rates)[rounds // 2]),
        "chronicle_events_per_s": round(sorted(our_rates)[rounds // 2]),
    }


async def measure(url: str, store: EventStore, history: str, duration: float) -> dict[str, Any]:
    """Every figure at the log's current size."""
    raw, full = await _timed_alike(
        15, lambda: store.read_stream(history), lambda: load_at(store, None, history, TASK)
    )
    recovered = await recover(store)
    return {
        "events_in_log": await _count(url),
        "append": {
            "chronicle_single_1": await chronicle_single(store, 1, duration),
            "chronicle_single_32": await chronicle_single(store, 32, duration),
            "chronicle_hundred": await chronicle_hundred(store, duration),
            "raw_single_32": await ceiling_single(url, 32, duration),
            "raw_hundred": await ceiling_hundred(url, duration),
        },
        "read_all_window": await read_window(url, store),
        "read_stream": await read_stream_pair(url, store, rounds=11),
        "rehydrate": {"raw_read_stream": summary(raw), "rehydrate_no_snapshot": summary(full)},
        "recovery": {"seconds": round(recovered.seconds, 3), "tasks": len(recovered.tasks)},
    }


def _headline(m: dict[str, Any]) -> dict[str, float]:
    """The figures the flatness targets compare: rates (higher is better) and times."""
    a = m["append"]
    return {
        "append single 1 producer ev/s": a["chronicle_single_1"]["events_per_s"],
        "append single 32 producers ev/s": a["chronicle_single_32"]["events_per_s"],
        "append 100-event ev/s": a["chronicle_hundred"]["events_per_s"],
        "raw INSERT 32 connections ev/s": a["raw_single_32"]["events_per_s"],
        "raw 100-row INSERT ev/s": a["raw_hundred"]["events_per_s"],
        "read_all window ev/s": m["read_all_window"]["chronicle_events_per_s"],
        "raw window read ev/s": m["read_all_window"]["raw_events_per_s"],
        "read_stream 10k p50 ms": m["read_stream"]["chronicle_p50_ms"],
        "rehydrate 10k p50 ms": m["rehydrate"]["rehydrate_no_snapshot"]["p50_ms"],
        "recovery s": m["recovery"]["seconds"],
    }


async def scaling_figures(server_url: str, sizes: list[int], duration: float = 3.0) -> dict[str, Any]:
    url = await fresh_database(server_url, "chronicle_bench_scaling")
    settings = Settings(pool_size=4)
    try:
        async with await EventStore.connect(url, settings) as store:
            history = await append_history(store, "scaling", 10_000)
            await _in_flight_tasks(store, 1000)
            result: dict[str, Any] = {"machine": await machine(url), "duration_s": duration}
            small = await measure(url, store, history, duration)
            result["small"] = small
            result["sizes"] = {}
            for size in sorted(sizes):
                fill = await grow(url, size, settings)
                result["sizes"][str(size)] = {"fill": fill, **await measure(url, store, history, duration)}
        base = _headline(small)
        largest = result["sizes"][str(max(sizes))]
        targets = []
        for name, value in _headline(largest).items():
            # Within 20% of the small log: a rate at least 0.8 of it, a time at most 1.2 of it.
            ratio = value / base[name] if base[name] else float("inf")
            faster_is_lower = name.endswith((" ms", " s"))
            met = ratio <= 1.2 if faster_is_lower else ratio >= 0.8
            targets.append(
                {
                    "target": f"{name} at {max(sizes):,} events / small log",
                    "measured": round(ratio, 2),
                    "goal": "<= 1.2" if faster_is_lower else ">= 0.8",
                    "met": met,
                }
            )
        result["table"] = {
            "small": _headline(small),
            **{size: _headline(m) for size, m in result["sizes"].items()},
        }
        result["targets"] = targets
        return result
    finally:
        await drop_database(server_url, url)


# -- the importer ---------------------------------------------------------------------------------

# `chronicle` in a process of its own that reports its peak resident memory (KiB) on exit:
# VmHWM, since getrusage's ru_maxrss keeps the high-water mark of the process it forked from.
MEASURED = (
    "import sys\n"
    "from api.cli import main\n"
    "try:\n"
    "    main()\n"
    "finally:\n"
    "    with open('/proc/self/status') as status:\n"
    "        hwm = next(line for line in status if line.startswith('VmHWM:'))\n"
    "    print('peak_kib', hwm.split()[1], file=sys.stderr)\n"
)


async def _copy_ceiling(url: str, path: Path, settings: Settings) -> float:
    """The same rows, encoded and numbered beforehand, COPYed in 20,000-row transactions."""
    versions: dict[str, int] = {}
    rows = []
    with path.open(encoding="utf-8") as source:
        for _, event_id, stream_id, event_type, version, data, metadata, tenant in parse_lines(
            source, settings.max_event_bytes
        ):
            versions[stream_id] = versions.get(stream_id, 0) + 1
            rows.append(
                (event_id, stream_id, versions[stream_id], event_type, version, data, metadata, tenant)
            )
            if len(rows) == 2_000_000:
                break  # enough for the rate; a larger file would not fit in memory here
    columns = ["event_id", "stream_id", "stream_version", "event_type", "schema_version", "data"]
    columns += ["metadata", "tenant_id"]
    conn = await connect(url)
    try:
        t0 = time.perf_counter()
        for start in range(0, len(rows), 20_000):
            async with conn.transaction():
                await conn.copy_records_to_table(
                    "events", records=rows[start : start + 20_000], columns=columns
                )
        return len(rows) / (time.perf_counter() - t0)
    finally:
        await conn.close()


async def import_figures(server_url: str, lines: int, settings: Settings) -> dict[str, Any]:
    """`chronicle import` of ``lines`` lines, beside raw COPY of the same rows."""
    ours = await fresh_database(server_url, "chronicle_bench_import")
    theirs = await fresh_database(server_url, "chronicle_bench_copy")
    try:
        with tempfile.TemporaryDirectory() as folder:
            path = await asyncio.to_thread(write_file, Path(folder) / "import.jsonl", lines)
            size = path.stat().st_size
            env = {**os.environ, "CHRONICLE_DATABASE_URL": ours, "CHRONICLE_LOG_FORMAT": "json"}
            t0 = time.perf_counter()
            done = await asyncio.to_thread(
                subprocess.run,
                [sys.executable, "-c", MEASURED, "import", str(path)],
                env=env,
                capture_output=True,
                text=True,
                check=False,
            )
            seconds = time.perf_counter() - t0
            if done.returncode != 0:
                raise RuntimeError(f"chronicle import failed: {done.stderr[-2000:]}")
            peak = next(int(x.split()[1]) for x in done.stderr.splitlines() if x.startswith("peak_kib"))
            ceiling = await _copy_ceiling(theirs, path, settings)
        rate = lines / seconds
        return {
            "lines": lines,
            "file_mb": round(size / 1e6),
            "import_seconds": round(seconds, 1),
            "import_events_per_s": round(rate),
            "import_peak_rss_mb": round(peak / 1024),
            "raw_copy_events_per_s": round(ceiling),
            "import_over_copy": round(rate / ceiling, 2),
            "targets": [
                {
                    "target": "import rate / raw COPY of the same rows",
                    "measured": round(rate / ceiling, 2),
                    "goal": ">= 0.5",
                    "met": rate / ceiling >= 0.5,
                },
                {
                    "target": f"import peak memory for {lines:,} lines (MB)",
                    "measured": round(peak / 1024),
                    "goal": "< 300",
                    "met": peak / 1024 < 300,
                },
            ],
        }
    finally:
        await drop_database(server_url, ours)
        await drop_database(server_url, theirs)
