"""`chronicle bench console`: the list routes the web console pages through, over a board of
1,000,000 tasks and a log of 1,000,000 events, beside the same page read without HTTP.

The bench database is filled with SQL ``generate_series`` straight into the tables (the
``events`` table, and the ``task_board`` and ``audit_index`` read models' row tables under an
active generation), not through the importer and the projection daemon: it measures reads, and
a million appends and two rebuilds would take most of its run. The rows are shaped as the
console's tenant sees them: 1,000 task streams of 1,000 events each, a board whose statuses,
types and priorities vary as a real one's would.

Each route is asked ``rounds`` times, one request at a time, for a page of 100 starting at a
random place (a keyset cursor at a random row, a random stream version, a random time): p50,
p95 and p99 of the 200 in milliseconds. The ceiling is the same page read through asyncpg on
one connection as the tenant (the SQL the route runs, with no HTTP, JSON or pool in between);
the ratio is route over ceiling. Target: p95 under 300 ms for every route.
"""

from __future__ import annotations

import base64
import os
import random
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import httpx
import orjson

from bench.common import (
    ROOT,
    chronicle_process,
    drop_database,
    free_port,
    fresh_database,
    machine,
    percentile,
    until_up,
)
from core.domain.task import TaskStatus
from eventstore.apikeys import create_key
from eventstore.log.reads import read_stream_sql
from eventstore.pg import connect
from eventstore.tenancy import as_tenant
from projections.audit import AuditFilter, query
from projections.models.tasks import tasks

__all__ = ["run"]

TENANT = "bench"
T0 = datetime(2026, 1, 1, tzinfo=UTC)
STREAMS = 1000
PAGE = 100
P95_GOAL_MS = 300.0

# Every name and value is a constant here; the sizes are bind parameters.
FILL_EVENTS = """
INSERT INTO events (event_id, stream_id, stream_version, event_type, schema_version, data,
                    metadata, tenant_id, recorded_at)
SELECT gen_random_uuid(), 'task-bench-' || lpad((i % $1::int)::text, 6, '0'), i / $1::int + 1,
       CASE WHEN i / $1 = 0 THEN 'TaskSubmitted' ELSE 'TaskProgressReported' END, 1,
       jsonb_build_object('progress', (i / $1)::float / $2, 'note', repeat('x', 64)),
       jsonb_build_object('tenant_id', 'bench', 'actor', 'w' || (i % 16), 'correlation_id', i::text),
       'bench', $3::timestamptz + i * interval '1 millisecond'
FROM generate_series(0, $2::int * $1::int - 1) AS i ORDER BY i
"""
FILL_AUDIT = """
INSERT INTO audit_index_rows (generation, global_position, recorded_at, recorded_max, lateness_max,
    tenant_id, actor, event_type, stream_id, category, stream_version, event_id, correlation_id)
SELECT 1, global_position, recorded_at, recorded_at, interval '0', tenant_id, metadata->>'actor',
       event_type, stream_id, 'task', stream_version, event_id, metadata->>'correlation_id'
FROM events
"""
FILL_BOARD = """
INSERT INTO task_board_rows (generation, task_id, tenant_id, status, queue, priority, handler,
    assignee, attempt, max_attempts, fencing_token, lease_expires_at, not_before, progress, error,
    reason, submitted_at, started_at, finished_at, updated_at, version, updated_position)
SELECT 1, 'bench-' || lpad(i::text, 8, '0'), 'bench',
       (ARRAY['completed','completed','completed','completed','completed','completed','pending',
              'running','cancelled','dead_lettered'])[i % 10 + 1],
       'default', (ARRAY['high','normal','normal','low'])[i % 4 + 1],
       CASE WHEN i % 50 = 0 THEN 'train' ELSE 'echo' END,
       CASE WHEN i % 10 = 7 THEN 'w' || (i % 16) END, 1, 3, 1, NULL, NULL, 1.0, NULL, NULL,
       $2::timestamptz + i * interval '1 millisecond', NULL, NULL,
       $2::timestamptz + i * interval '1 millisecond', 4, i
FROM generate_series(0, $1 - 1) AS i
"""
ACTIVATE = """
INSERT INTO projections (name, version, active_generation) VALUES ('task_board', 1, 1), ('audit_index', 1, 1)
ON CONFLICT (name) DO UPDATE SET active_generation = 1
"""


async def fill(conn: asyncpg.Connection, board: int, events: int) -> dict[str, float]:
    """The board and the log, by SQL; seconds each took."""
    took: dict[str, float] = {}
    for name, sql, args in (
        ("events", FILL_EVENTS, (STREAMS, events // STREAMS, T0)),
        ("audit_index", FILL_AUDIT, ()),
        ("task_board", FILL_BOARD, (board, T0)),
        ("activate", ACTIVATE, ()),
    ):
        started = time.perf_counter()
        await conn.execute(sql, *args)
        took[name] = round(time.perf_counter() - started, 1)
    await conn.execute("VACUUM (ANALYZE) events, audit_index_rows, task_board_rows")
    return took


def task_cursor(submitted_at: datetime, task_id: str) -> str:
    """A keyset cursor as the tasks list gives them out (api/http/tasks.py): this row, then on."""
    return base64.urlsafe_b64encode(orjson.dumps([submitted_at.isoformat(), task_id])).decode()


class Pages:
    """Random starting points of each page and the two ways to read it: the route, the ceiling."""

    def __init__(self, board: int, events: int, rng: random.Random) -> None:
        self.board, self.per_stream, self.rng = board, events // STREAMS, rng

    def row(self) -> tuple[datetime, str]:
        i = self.rng.randrange(self.board)
        return T0 + timedelta(milliseconds=i), f"bench-{i:08d}"

    def stream(self) -> tuple[str, int]:
        return f"task-bench-{self.rng.randrange(STREAMS):06d}", self.rng.randrange(
            1, max(2, self.per_stream - PAGE)
        )

    def since(self) -> tuple[str, datetime]:
        return f"w{self.rng.randrange(16)}", T0 + timedelta(
            milliseconds=self.rng.randrange(STREAMS * self.per_stream)
        )


def _routes(pages: Pages, client: httpx.AsyncClient) -> dict[str, Callable[[], Awaitable[Any]]]:
    async def get(path: str, params: dict[str, Any]) -> None:
        r = await client.get(path, params=params)
        assert r.status_code == 200, r.text

    return {
        "tasks page": lambda: get("/v1/tasks", {"limit": PAGE, "cursor": task_cursor(*pages.row())}),
        "tasks page, status=dead_lettered": lambda: get(
            "/v1/tasks", {"limit": PAGE, "status": "dead_lettered", "cursor": task_cursor(*pages.row())}
        ),
        "stream events page": lambda: _stream_page(get, *pages.stream()),
        "audit events page, actor since T": lambda: _audit_page(get, *pages.since()),
    }


async def _stream_page(
    get: Callable[[str, dict[str, Any]], Awaitable[None]], stream: str, version: int
) -> None:
    await get(f"/v1/streams/{stream}/events", {"from_version": version, "limit": PAGE})


async def _audit_page(
    get: Callable[[str, dict[str, Any]], Awaitable[None]], actor: str, since: datetime
) -> None:
    await get("/v1/audit/events", {"actor": actor, "since": since.isoformat(), "limit": PAGE})


def _ceilings(pages: Pages, conn: asyncpg.Connection) -> dict[str, Callable[[], Awaitable[Any]]]:
    async def board(status: TaskStatus | None) -> None:
        async with as_tenant(conn, TENANT):
            await tasks(conn, tenant_id=TENANT, status=status, after=pages.row(), limit=PAGE)

    async def stream() -> None:
        name, version = pages.stream()
        async with as_tenant(conn, TENANT):
            await conn.fetch(read_stream_sql(False), name, version, version + PAGE - 1)

    async def audit() -> None:
        actor, since = pages.since()
        async with as_tenant(conn, TENANT):
            await query(conn, AuditFilter(actor=actor, tenant_id=TENANT, since=since), limit=PAGE)

    return {
        "tasks page": lambda: board(None),
        "tasks page, status=dead_lettered": lambda: board(TaskStatus.DEAD_LETTERED),
        "stream events page": stream,
        "audit events page, actor since T": audit,
    }


async def _time(ask: Callable[[], Awaitable[Any]], rounds: int) -> dict[str, float]:
    for _ in range(10):  # warm: plans cached, pages of the indexes in memory
        await ask()
    samples = []
    for _ in range(rounds):
        started = time.perf_counter()
        await ask()
        samples.append((time.perf_counter() - started) * 1000)
    return {q: round(percentile(samples, n), 3) for q, n in (("p50_ms", 50), ("p95_ms", 95), ("p99_ms", 99))}


async def run(
    server_url: str,
    redis_url: str,
    *,
    board: int = 1_000_000,
    events: int = 1_000_000,
    rounds: int = 200,
    keep: bool = False,
) -> dict[str, Any]:
    url = await fresh_database(server_url, "chronicle_bench_console")
    conn = await connect(url)
    env = {
        **os.environ,
        "CHRONICLE_DATABASE_URL": url,
        "CHRONICLE_REDIS_URL": redis_url,
        "PYTHONPATH": str(ROOT),
    }
    env["CHRONICLE_LOG_LEVEL"] = "warning"
    try:
        result: dict[str, Any] = {"machine": await machine(url), "board": board, "events": events}
        result["fill_seconds"] = await fill(conn, board, events)
        key = await create_key(conn, TENANT, "bench", ("admin",))
        port = free_port()
        headers = {"Authorization": f"Bearer {key}"}
        async with (
            chronicle_process(env, "serve", "--port", str(port), "--drain-seconds", "0"),
            httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", headers=headers, timeout=30) as client,
        ):
            await until_up(f"http://127.0.0.1:{port}")
            routes = _routes(Pages(board, events, random.Random(1)), client)
            ceilings = _ceilings(Pages(board, events, random.Random(1)), conn)
            figures: dict[str, dict[str, Any]] = {}
            for name, ask in routes.items():
                route, ceiling = await _time(ask, rounds), await _time(ceilings[name], rounds)
                ratio = round(route["p95_ms"] / max(ceiling["p95_ms"], 0.001), 1)
                figures[name] = {"route": route, "ceiling": ceiling, "ratio_p95": ratio}
        result["pages"] = figures
        result["targets"] = [
            {"target": f"{name} p95 ms", "measured": f["route"]["p95_ms"], "goal": P95_GOAL_MS,
             "met": f["route"]["p95_ms"] < P95_GOAL_MS}
            for name, f in figures.items()
        ]  # fmt: skip
        return result
    finally:
        await conn.close()
        if not keep:
            await drop_database(server_url, url)
