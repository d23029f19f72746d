"""Workers SIGKILLed at random moments while they run tasks: every task still completes, exactly
once, and its completion carries the fencing token of its last assignment. Five kills in
`make test`, thirty in `make test-slow`."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import asyncpg
import orjson
import pytest
import redis.asyncio as aioredis

from core.domain import TASK, CommandContext, handle
from core.domain.task import SubmitTask
from core.domain.task.events import Priority
from core.settings import Settings
from eventstore import EventStore
from eventstore.pg import connect
from eventstore.redis.queues import dispatch
from tests.waiting import eventually

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
CLI = [sys.executable, "-c", "from api.cli import main; main()"]


async def _flush(redis_url: str) -> None:
    redis = aioredis.Redis.from_url(redis_url)
    keys = [k async for k in redis.scan_iter("chronicle:*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


async def _start(env: dict[str, str], name: str) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        *CLI,
        "worker",
        "--name",
        name,
        "--concurrency",
        "4",
        "--lease-seconds",
        "1",
        "--backoff-seconds",
        "0.05",
        env=env,
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )


async def _kill_workers_while_tasks_run(database_url: str, redis_url: str, kills: int, seed: int) -> None:
    rng = random.Random(seed)
    await _flush(redis_url)
    env = {
        **os.environ,
        "CHRONICLE_DATABASE_URL": database_url,
        "CHRONICLE_REDIS_URL": redis_url,
        "CHRONICLE_LOG_LEVEL": "warning",
        "PYTHONPATH": str(ROOT),
    }
    # Enough work (about 30 x 0.33 s / 8 slots per kill) that every kill lands while tasks run.
    tasks = [f"t{i}" for i in range(30 * kills)]
    async with await EventStore.connect(database_url, Settings()) as store:
        redis = aioredis.Redis.from_url(redis_url)
        context = CommandContext("acme", "test")
        for task_id in tasks:
            seconds = round(rng.uniform(0.05, 0.6), 2)
            submit = SubmitTask(
                task_id,
                "sleep",
                datetime.now(UTC),
                {"seconds": seconds},
                max_attempts=20,
                priority=Priority.NORMAL,
            )
            await handle(store, TASK.stream_id(task_id), submit, TASK, context)
            await dispatch(redis, task_id, "normal")
        await redis.aclose()
    conn = await connect(database_url)
    workers = [await _start(env, f"w{i}") for i in range(2)]
    started = len(workers)
    try:
        for _ in range(kills):
            await asyncio.sleep(rng.uniform(0.3, 1.5))
            victim = workers.pop(rng.randrange(len(workers)))
            victim.send_signal(signal.SIGKILL)
            await victim.wait()
            workers.append(await _start(env, f"w{started}"))
            started += 1
        await eventually(
            lambda: _completed(conn),
            lambda n: n >= len(tasks),
            timeout=180,
            every=0.1,
            what="every task completed",
        )
        await _assert_each_completed_once_by_its_last_holder(conn, tasks)
        reclaimed = await conn.fetchval("SELECT count(*) FROM events WHERE event_type = 'TaskTimedOut'")
        assert reclaimed >= kills // 2, f"only {reclaimed} tasks were taken from killed workers"
    finally:
        for worker in workers:
            worker.send_signal(signal.SIGTERM)
        for worker in workers:
            await worker.wait()
        await conn.close()


async def _completed(conn: asyncpg.Connection) -> int:
    return int(await conn.fetchval("SELECT count(*) FROM events WHERE event_type = 'TaskCompleted'"))


async def _assert_each_completed_once_by_its_last_holder(conn: asyncpg.Connection, tasks: list[str]) -> None:
    rows = await conn.fetch(
        "SELECT stream_id, event_type, data FROM events WHERE stream_id LIKE 'task-%' "
        "ORDER BY global_position"
    )
    by_task: dict[str, list[tuple[str, dict[str, object]]]] = {}
    for row in rows:
        by_task.setdefault(row["stream_id"], []).append((row["event_type"], orjson.loads(row["data"])))
    for task_id in tasks:
        history = by_task[TASK.stream_id(task_id)]
        types = [t for t, _ in history]
        assert types.count("TaskCompleted") == 1 and types[-1] == "TaskCompleted", (task_id, types)
        last_token = [d["fencing_token"] for t, d in history if t == "TaskAssigned"][-1]
        assert history[-1][1]["fencing_token"] == last_token, (task_id, history)


async def test_workers_killed_five_times_complete_every_task_once(
    new_database: Callable[[], str], redis_url: str
) -> None:
    await _kill_workers_while_tasks_run(new_database(), redis_url, kills=5, seed=5)


@pytest.mark.slow
async def test_workers_killed_thirty_times_complete_every_task_once(
    new_database: Callable[[], str], redis_url: str
) -> None:
    await _kill_workers_while_tasks_run(new_database(), redis_url, kills=30, seed=30)
