"""``/health`` (the process answers; no dependency), ``/ready`` (it can serve: PostgreSQL,
Redis, the schema at head, the read models within their lag, not draining) and ``/metrics``."""

from __future__ import annotations

import contextlib
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest

from api.http.services import Services, services
from core.domain.task import TaskStatus
from eventstore.migrate import check_at_head
from eventstore.redis.queues import PRIORITIES, queue_depth
from projections.runner.status import lagging, statuses

__all__ = ["router"]

router = APIRouter(tags=["operations"])


@router.get("/health", responses={200: {"description": "the process answers"}})
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/ready", responses={200: {"description": "ready"}, 503: {"description": "not ready; the body says why"}}
)
async def ready(svc: Annotated[Services, Depends(services)]) -> JSONResponse:
    problems: list[str] = []
    if svc.draining:
        problems.append("draining")
    try:
        async with svc.pool.acquire() as conn:
            await check_at_head(conn)
            behind = lagging(await statuses(conn), svc.max_lag_seconds)
            problems += [f"read model {p.name} lags over {svc.max_lag_seconds:g} s" for p in behind]
    except Exception as exc:  # any failure here is the answer: not ready, and why
        problems.append(f"postgresql: {exc}")
    try:
        await svc.redis.ping()
    except Exception as exc:
        problems.append(f"redis: {exc}")
    body: dict[str, Any] = {"ready": not problems, "problems": problems}
    return JSONResponse(body, status_code=503 if problems else 200)


TASKS = Gauge("chronicle_tasks", "tasks on the task board, by status (every tenant)", ["status"])
QUEUE_DEPTH = Gauge(
    "chronicle_queue_depth", "tasks dispatched and not yet acknowledged, by priority", ["priority"]
)


@router.get("/metrics", response_class=Response, responses={200: {"description": "Prometheus text format"}})
async def metrics(svc: Annotated[Services, Depends(services)]) -> Response:
    with contextlib.suppress(Exception):  # Redis away: the other metrics still answer
        for priority in PRIORITIES:
            QUEUE_DEPTH.labels(priority).set(await queue_depth(svc.redis, priority))
    with contextlib.suppress(Exception):  # the task board not built yet, or the database away
        async with svc.pool.acquire() as conn:
            counts = dict(await conn.fetch("SELECT status, count(*) FROM task_board GROUP BY status"))
        for status in TaskStatus:
            if status is not TaskStatus.UNSUBMITTED:
                TASKS.labels(status.value).set(counts.get(status.value, 0))
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
