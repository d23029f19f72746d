"""``/v1/tasks/live`` and ``/v1/workers``: what the console's task board watches.

The live feed tails the log by global position as the key's tenant and names every task whose
stream moved, after its event committed; a client then reads the task itself
(``GET /v1/tasks/{id}`` folds the stream: no read-model lag). Event ids are log positions, so
a client that reconnects with ``Last-Event-ID`` resumes after the last change it saw. Reading by
position skips nothing: the log shows a position only once every lower one has committed
(eventstore/log), and a page that holds no task events still moves the id forward (a ``tick``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import StreamingResponse

from api.contract.v1 import WorkerList, WorkerView
from api.http.auth import requires
from api.http.errors import ERRORS
from api.http.services import Services, services
from core.domain.task import TaskStatus
from eventstore.apikeys import Principal
from eventstore.tenancy import TenantReader
from projections.models.tasks import TaskRow, tasks

__all__ = ["router"]

router = APIRouter(tags=["tasks"])
Reader = Annotated[Principal, Depends(requires("tasks:read"))]
Svc = Annotated[Services, Depends(services)]
PAGE = 1000
KEEPALIVE_SECONDS = 15.0
LIVE_DOC: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "SSE: an event `task` per task change, data `{task_id, type, version, position}`; "
        "`tick` when only other streams moved. Ids are log positions: reconnect with `Last-Event-ID`.",
        "content": {"text/event-stream": {}},
    }
}


@router.get("/v1/tasks/live", responses={**ERRORS, **LIVE_DOC})
async def live(
    principal: Reader,
    svc: Svc,
    last_event_id: Annotated[int | None, Header(ge=0)] = None,
    after: Annotated[int | None, Query(ge=0, description="a log position; default: the head now")] = None,
) -> StreamingResponse:
    """The tenant's task changes after position ``Last-Event-ID`` (or ``after``; by default
    from now on), as they commit."""
    start = last_event_id if last_event_id is not None else after
    if start is None:
        start = await svc.store.head_position()
    return StreamingResponse(
        _changes(svc, svc.store.as_tenant(principal.tenant_id), start),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _changes(svc: Services, reader: TenantReader, after: int) -> AsyncIterator[bytes]:
    yield b"retry: 1000\nid: %d\nevent: tick\ndata: {}\n\n" % after
    while True:
        seen = svc.store.appends_seen  # read before the log: an append in between still wakes us
        page = await reader.read_all_page(after + 1, PAGE)
        for event in page:
            if event.stream_id.startswith("task-"):
                body = orjson.dumps(
                    {
                        "task_id": event.stream_id.split("-", 1)[1],
                        "type": event.type,
                        "version": event.stream_version,
                        "position": event.global_position,
                    }
                )
                yield b"id: %d\nevent: task\ndata: %s\n\n" % (event.global_position, body)
        if page:
            after = page[-1].global_position
            if not page[-1].stream_id.startswith("task-"):  # so a reconnect starts past them
                yield b"id: %d\nevent: tick\ndata: {}\n\n" % after
        if len(page) < PAGE:
            await svc.store.wait_for_append(seen, KEEPALIVE_SECONDS)
            yield b": waiting\n\n"


@router.get("/v1/workers", response_model=WorkerList, responses=ERRORS)
async def workers(principal: Reader, svc: Svc) -> WorkerList:
    """Each worker holding the tenant's tasks now (from the task board, a read model): its
    tasks, its last heartbeat (its newest lease renewal) and when its earliest lease ends."""
    held: list[TaskRow] = []
    async with svc.as_tenant(principal.tenant_id) as conn:
        for status in (TaskStatus.ASSIGNED, TaskStatus.RUNNING):
            held += await tasks(conn, tenant_id=principal.tenant_id, status=status, limit=1000)
    grouped: dict[str, list[TaskRow]] = {}
    for row in held:
        if row.assignee:
            grouped.setdefault(row.assignee, []).append(row)
    return WorkerList(workers=[_worker(name, rows) for name, rows in sorted(grouped.items())])


def _worker(name: str, rows: list[TaskRow]) -> WorkerView:
    leases = [r.lease_expires_at for r in rows if r.lease_expires_at is not None]
    beat: datetime = max(r.updated_at for r in rows)
    return WorkerView(
        worker=name,
        tasks=[r.task_id for r in rows],
        last_heartbeat=beat,
        lease_expires_at=min(leases) if leases else None,
    )
