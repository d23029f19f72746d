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
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import httpx
import orjson
import redis.asyncio as aioredis

from bench.common import (
    ROOT,
    chronicle_process,
    drop_database,
    free_port,
    fresh_database,
    machine,
    percentile,
    summary,
    until_up,
)
from eventstore.apikeys import create_key
from eventstore.pg import connect

__all__ = ["run"]

LEASE_S = 2.0


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


class Connection:
    """One keep-alive HTTP/1.1 connection that POSTs JSON and reads the answer: the load
    generator. httpx spent a whole core of this 2-core machine driving 32 connections (4.8 s of
    CPU in 5 s, against 2.1 s for the server), so it measured itself, not the API."""

    def __init__(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str, port: int
    ) -> None:
        self._reader, self._writer = reader, writer
        self._head = (
            f"POST /v1/tasks HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAuthorization: Bearer {key}\r\n"
            "Content-Type: application/json\r\nContent-Length: "
        ).encode()

    @classmethod
    async def open(cls, port: int, key: str) -> Connection:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        return cls(reader, writer, key, port)

    async def post(self, body: bytes) -> tuple[int, bytes]:
        self._writer.write(self._head + str(len(body)).encode() + b"\r\n\r\n" + body)
        head = await self._reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        return status, await self._reader.readexactly(length)

    def close(self) -> None:
        self._writer.close()


async def _connections(port: int, key: str, n: int) -> list[Connection]:
    return [await Connection.open(port, key) for _ in range(n)]


async def submits(port: int, key: str, seconds: float, clients: int = 32) -> dict[str, Any]:
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds
    body = orjson.dumps({"type": "noop_bench", "priority": "low"})
    conns = await _connections(port, key, clients)

    async def loop(conn: Connection) -> None:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            status, answer = await conn.post(body)
            assert status == 202, answer
            latencies.append(time.perf_counter() - t0)

    started = time.perf_counter()
    try:
        await asyncio.gather(*(loop(c) for c in conns))
    finally:
        for conn in conns:
            conn.close()
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
    port: int, key: str, conn: asyncpg.Connection, tasks: int, clients: int = 32
) -> dict[str, Any]:
    since = int(await conn.fetchval("SELECT coalesce(max(global_position), 0) FROM events"))
    body = orjson.dumps({"type": "echo", "priority": "high"})
    conns = await _connections(port, key, clients)
    started = time.perf_counter()
    queue = list(range(tasks))

    async def loop(c: Connection) -> None:
        while queue:
            queue.pop()
            status, answer = await c.post(body)
            assert status == 202, answer

    try:
        await asyncio.gather(*(loop(c) for c in conns))
    finally:
        for c in conns:
            c.close()

    async def all_done() -> bool:
        return await _completed(conn, since) >= tasks

    await _until(all_done, "the end-to-end tasks did not finish")
    elapsed = time.perf_counter() - started
    return {"tasks": tasks, "tasks_per_s": round(tasks / elapsed), "seconds": round(elapsed, 2)}


async def submit_to_start(
    port: int, key: str, conn: asyncpg.Connection, rate: float, seconds: float
) -> dict[str, Any]:
    """Submissions at ``rate`` per second, each on a free connection of a pool of 32."""
    body = orjson.dumps({"type": "echo", "priority": "high"})
    idle: asyncio.Queue[Connection] = asyncio.Queue()
    for c in await _connections(port, key, 32):
        idle.put_nowait(c)
    ids: list[str] = []

    async def one() -> None:
        c = await idle.get()
        try:
            status, answer = await c.post(body)
            assert status == 202, answer
            ids.append(orjson.loads(answer)["task_id"])
        finally:
            idle.put_nowait(c)

    start = time.perf_counter()
    pending = []
    for i in range(int(rate * seconds)):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        pending.append(asyncio.create_task(one()))
    await asyncio.gather(*pending)
    while not idle.empty():
        idle.get_nowait().close()
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
        "WHERE s.event_type = 'TaskStarted' AND s.stream_id = ANY($1)",
        streams,
    )
    waits = [r[0] for r in rows]
    return {"rate_per_s": rate, "tasks": len(waits), **summary(waits)}


def _reclaim_worker(env: dict[str, str], name: str) -> contextlib.AbstractAsyncContextManager[Any]:
    lease = str(LEASE_S)
    return chronicle_process(
        env, "worker", "--name", name, "--queues", "normal", "--lease-seconds", lease, "--concurrency", "1"
    )


async def reclaim(
    base: str, key: str, env: dict[str, str], conn: asyncpg.Connection, trials: int
) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    times: list[float] = []
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=30) as client:
        for trial in range(trials):
            async with _reclaim_worker(env, f"doomed-{trial}") as doomed:
                r = await client.post("/v1/tasks", json={"type": "sleep", "payload": {"seconds": 30}})
                task_id = r.json()["task_id"]
                await _until(functools.partial(_field_is, client, task_id, "status", "running"), "never ran")
                doomed.kill()
                killed = time.perf_counter()
                await doomed.wait()
                async with _reclaim_worker(env, f"heir-{trial}"):
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
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        async with chronicle_process(env, "serve", "--port", str(port), "--drain-seconds", "0"):
            await until_up(base)
            async with (
                chronicle_process(
                    env, "worker", "--name", "bench-1", "--queues", "high", "--concurrency", "16"
                ),
                chronicle_process(
                    env, "worker", "--name", "bench-2", "--queues", "high", "--concurrency", "16"
                ),
            ):
                result["end_to_end"] = await end_to_end(port, key, conn, tasks)
                result["submit_to_start"] = await submit_to_start(port, key, conn, 250.0, seconds)
            # Submitted to the low queue, which no worker of this bench serves.
            result["submits"] = await submits(port, key, seconds)
            result["reclaim"] = await reclaim(base, key, env, conn, trials)
        result["targets"] = _targets(result)
        return result
    finally:
        await conn.close()
        if not keep:
            await drop_database(server_url, url)
