"""The audit queries the projections benchmark times on its large log: everything that happened
to a task, and everything an actor did between two times, each a page of up to 100 events with
their data, p50/p99 over random subjects drawn from the log."""

from __future__ import annotations

import random
import time
from datetime import timedelta
from typing import Any

import asyncpg

from bench.common import percentile
from projections.audit import AuditFilter, query

__all__ = ["audit_figures"]


async def audit_figures(conn: asyncpg.Connection, rng: random.Random, rounds: int = 200) -> dict[str, Any]:
    """``conn`` must carry Chronicle's codecs (``eventstore.pg.connect``)."""
    tasks = [
        r[0]
        for r in await conn.fetch(
            "SELECT DISTINCT stream_id FROM audit_index WHERE category = 'task' "
            "AND global_position % 97 = 0 LIMIT $1",
            rounds,
        )
    ]
    actors = await conn.fetch(
        "SELECT actor, min(recorded_at), max(recorded_at) FROM audit_index "
        "WHERE actor LIKE 'w%' AND global_position % 89 = 0 GROUP BY actor LIMIT $1",
        rounds,
    )
    rng.shuffle(tasks)
    by_task = [AuditFilter(stream_id=task) for task in tasks]
    by_actor = [
        AuditFilter(actor=actor, since=first, until=last + timedelta(microseconds=1))
        for actor, first, last in actors
    ]
    return {
        "subjects": {"tasks": len(by_task), "actors": len(by_actor)},
        "queries": {
            "everything that happened to task X": await _time(conn, by_task),
            "everything actor Y did between T1 and T2": await _time(conn, by_actor),
        },
    }


async def _time(conn: asyncpg.Connection, filters: list[AuditFilter]) -> dict[str, Any]:
    if filters:
        await query(conn, filters[0])  # warm: plans cached
    samples, found = [], 0
    for flt in filters:
        started = time.perf_counter()
        page = await query(conn, flt, limit=100)
        samples.append((time.perf_counter() - started) * 1000)
        found += len(page.events)
    return {
        "p50_ms": round(percentile(samples, 50), 3),
        "p99_ms": round(percentile(samples, 99), 3),
        "queries": len(samples),
        "events_per_query": round(found / len(samples), 1) if samples else 0,
    }
