"""`chronicle bench api`: the HTTP tier and the workers as real processes, all on this machine
with PostgreSQL and Redis, beside raw ceilings measured in the same run.

- ceilings: one raw Redis stream round trip (XADD, XREADGROUP, XACK on one connection), and
  raw single-event appends (one INSERT per transaction) at 32 connections;
- submits: 32 concurrent clients POST /v1/tasks for a few seconds: submits/s and 202 latency;
- end to end: a burst of ``echo`` tasks, submitted as fast as 32 clients can, until the last
  completes: tasks/s, with two workers;
- submit to start: tasks submitted at a fixed rate; each task's TaskStarted time minus its
  TaskSubmitted time, as recorded by the database;
- reclaim: a worker SIGKILLed while it runs a task; the time until another worker holds it.

The bench flushes every ``chronicle:*`` key of the Redis it is given first.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import os
import signal
import socket
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import redis.asyncio as aioredis

from bench.common import drop_database, fresh_database, machine, percentile, summary
from eventstore.apikeys import create_key
from eventstore.pg import connect

__all__ = ["run"]

ROOT = Path(__file__).resolve().parents[1]
CLI = [sys.executable, "-c", "from api.cli import app; app()"]
LEASE_S = 2.0


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.asynccontextmanager
async def _process(env: dict[str, str], *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    child = await asyncio.create_subprocess_exec(
        *CLI, *args, env=env, cwd=ROOT, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        yield child
    finally:
        if child.returncode is None:
            child.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(child.wait(), 20)
            except TimeoutError:
                child.kill()
                await child.wait()


async def _until_up(url: str) -> None:
    async with httpx.AsyncClient() as client:
        for _ in range(600):
            with contextlib.suppress(httpx.TransportError):
                if (await client.get(f"{url}/health")).status_code == 200:
                    return
            await asyncio.sleep(0.1)
    raise TimeoutError("chronicle serve did not come up")


async def ceiling_redis(redis_url: str, seconds: float) -> dict[str, Any]:
    redis = aioredis.Redis.from_url(redis_url)
    key = f"bench:ceiling:{uuid.uuid4().hex[:6]}"
    await redis.xgroup_create(key, "g", id="0", mkstream=True)
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    try:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            await redis.xadd(key, {"task_id": "x"})
            reply: Any = await redis.xreadgroup("g", "c", {key: ">"}, count=1)
            await redis.xack(key, "g", reply[0][1][0][0])
            latencies.append(time.perf_counter() - t0)
    finally:
        await redis.delete(key)
        await redis.aclose()
    return {"round_trips_per_s": round(len(latencies) / seconds), **summary(latencies)}


async def ceiling_append(url: str, seconds: float, connections: int = 32) -> dict[str, Any]:
    from bench.append import ceiling_single

    return await ceiling_single(url, connections, seconds)


async def submits(base: str, key: str, seconds: float, clients: int = 32) -> dict[str, Any]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    headers = {"Authorization": f"Bearer {key}"}
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(base_url=base, headers=headers, limits=limits, timeout=30) as client:

        async def loop() -> None:
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                r = await client.post("/v1/tasks", json={"type": "noop_bench", "priority": "low"})
                assert r.status_code == 202, r.text
                latencies.append(time.perf_counter() - t0)

        started = time.perf_counter()
        await asyncio.gather(*(loop() for _ in range(clients)))
        elapsed = time.perf_counter() - started
    return {"clients": clients, "submits_per_s": round(len(latencies) / elapsed), **summary(latencies)}


async def _field_is(client: httpx.AsyncClient, task_id: str, field: str, value: str) -> bool:
    return bool((await client.get(f"/v1/tasks/{task_id}")).json()[field] == value)


async def _completed(conn: asyncpg.Connection, since: int) -> int:
    return int(
        await conn.fetchval(
            "SELECT count(*) FROM events WHERE event_type = 'TaskCompleted' AND global_position > $1", since
        )
    )


async def end_to_end(
    base: str, key: str, conn: asyncpg.Connection, tasks: int, clients: int = 32
) -> dict[str, Any]:
    since = int(await conn.fetchval("SELECT coalesce(max(global_position), 0) FROM events"))
    headers = {"Authorization": f"Bearer {key}"}
    started = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        queue = list(range(tasks))

        async def loop() -> None:
            while queue:
                queue.pop()
                r = await client.post("/v1/tasks", json={"type": "echo", "priority": "high"})
                assert r.status_code == 202

        await asyncio.gather(*(loop() for _ in range(clients)))

    async def all_done() -> bool:
        return await _completed(conn, since) >= tasks

    await _until(all_done, "the end-to-end tasks did not finish")
    elapsed = time.perf_counter() - started
    return {"tasks": tasks, "tasks_per_s": round(tasks / elapsed), "seconds": round(elapsed, 2)}


async def submit_to_start(
    base: str, key: str, conn: asyncpg.Connection, rate: float, seconds: float
) -> dict[str, Any]:
    since = int(await conn.fetchval("SELECT coalesce(max(global_position), 0) FROM events"))
    headers = {"Authorization": f"Bearer {key}"}
    ids: list[str] = []
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        start = time.perf_counter()
        pending: list[asyncio.Task[httpx.Response]] = []
        for i in range(int(rate * seconds)):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            pending.append(
                asyncio.create_task(client.post("/v1/tasks", json={"type": "echo", "priority": "high"}))
            )
        for response in await asyncio.gather(*pending):
            ids.append(response.json()["task_id"])
    streams = [f"task-{i}" for i in ids]

    async def all_started() -> bool:
        started = await conn.fetchval(
            "SELECT count(*) FROM events WHERE event_type = 'TaskStarted' AND stream_id = ANY($1)", streams
        )
        return bool(started == len(streams))

    await _until(all_started, "the timed tasks did not all start")
    rows = await conn.fetch(
        "SELECT extract(epoch FROM s.recorded_at - b.recorded_at)::float8 FROM events s "
        "JOIN events b ON b.stream_id = s.stream_id AND b.stream_version = 1 "
        "WHERE s.event_type = 'TaskStarted' AND s.stream_id = ANY($1) AND s.global_position > $2",
        streams,
        since,
    )
    waits = [r[0] for r in rows]
    return {"rate_per_s": rate, "tasks": len(waits), **summary(waits)}


async def reclaim(
    base: str, key: str, env: dict[str, str], conn: asyncpg.Connection, trials: int
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    times: list[float] = []
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        for trial in range(trials):
            async with _process(
                env,
                "worker",
                "--name",
                f"doomed-{trial}",
                "--queues",
                "normal",
                "--lease-seconds",
                str(LEASE_S),
                "--concurrency",
                "1",
            ) as doomed:
                r = await client.post("/v1/tasks", json={"type": "sleep", "payload": {"seconds": 30}})
                task_id = r.json()["task_id"]
                await _until(functools.partial(_field_is, client, task_id, "status", "running"), "never ran")
                doomed.kill()
                killed = time.perf_counter()
                await doomed.wait()
                async with _process(
                    env,
                    "worker",
                    "--name",
                    f"heir-{trial}",
                    "--queues",
                    "normal",
                    "--lease-seconds",
                    str(LEASE_S),
                    "--concurrency",
                    "1",
                ):
                    held = functools.partial(_field_is, client, task_id, "assignee", f"heir-{trial}")
                    await _until(held, "never reclaimed")
                    times.append(time.perf_counter() - killed)
                    await client.post(f"/v1/tasks/{task_id}/cancel")
    return {
        "trials": trials,
        "lease_s": LEASE_S,
        "p50_s": round(percentile(times, 50), 2),
        "p99_s": round(percentile(times, 99), 2),
        "max_s": round(max(times), 2),
    }


async def _until(condition: Callable[[], Awaitable[bool]], what: str, timeout: float = 600) -> None:
    deadline = time.perf_counter() + timeout
    for _ in itertools.count():
        if await condition():
            return
        if time.perf_counter() > deadline:
            raise TimeoutError(what)
        await asyncio.sleep(0.02)


def _targets(r: dict[str, Any]) -> list[dict[str, Any]]:
    def target(name: str, measured: float, goal: float, higher_is_better: bool = True) -> dict[str, Any]:
        met = measured >= goal if higher_is_better else measured <= goal
        return {"target": name, "measured": measured, "goal": goal, "met": met}

    return [
        target("end-to-end echo tasks/s", r["end_to_end"]["tasks_per_s"], 500),
        target("submit to start p50 ms at 250 tasks/s", r["submit_to_start"]["p50_ms"], 5, False),
        target("submit to start p99 ms at 250 tasks/s", r["submit_to_start"]["p99_ms"], 25, False),
        target("202 p99 ms, 32 clients", r["submits"]["p99_ms"], 15, False),
        target("reclaim after a SIGKILLed worker, p99 s", r["reclaim"]["p99_s"], 10, False),
    ]


async def run(
    server_url: str,
    redis_url: str,
    *,
    seconds: float = 5.0,
    tasks: int = 2000,
    trials: int = 5,
    keep: bool = False,
) -> dict[str, Any]:
    url = await fresh_database(server_url, "chronicle_bench_api")
    redis = aioredis.Redis.from_url(redis_url)
    stale = [k async for k in redis.scan_iter("chronicle:*")]
    if stale:
        await redis.delete(*stale)
    await redis.aclose()
    env = {
        **os.environ,
        "CHRONICLE_DATABASE_URL": url,
        "CHRONICLE_REDIS_URL": redis_url,
        "CHRONICLE_LOG_LEVEL": "warning",
        "PYTHONPATH": str(ROOT),
    }
    conn = await connect(url)
    try:
        result: dict[str, Any] = {"machine": await machine(url)}
        result["ceiling"] = {
            "redis_stream_round_trip": await ceiling_redis(redis_url, seconds),
            "raw_single_event_append_32": await ceiling_append(url, seconds),
        }
        key = await create_key(conn, "bench", "bench", ("admin",))
        port = _port()
        base = f"http://127.0.0.1:{port}"
        async with _process(env, "serve", "--port", str(port)):
            await _until_up(base)
            async with (
                _process(env, "worker", "--name", "bench-1", "--queues", "high", "--concurrency", "16"),
                _process(env, "worker", "--name", "bench-2", "--queues", "high", "--concurrency", "16"),
            ):
                result["end_to_end"] = await end_to_end(base, key, conn, tasks)
                result["submit_to_start"] = await submit_to_start(base, key, conn, 250.0, seconds)
            # Submitted to the low queue, which no worker of this bench serves.
            result["submits"] = await submits(base, key, seconds)
            result["reclaim"] = await reclaim(base, key, env, conn, trials)
        result["targets"] = _targets(result)
        return result
    finally:
        await conn.close()
        if not keep:
            await drop_database(server_url, url)
