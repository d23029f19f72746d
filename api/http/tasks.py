"""``/v1/tasks``: submit, look up, list and cancel tasks.

Submitting records ``TaskSubmitted`` (through the task decider) and then puts the task id on
its priority's Redis stream; the 202 goes back once the event is committed. If the process
dies between the two, the task is recorded and not dispatched; the reconciler re-dispatches
every pending task from PostgreSQL (Redis is only dispatch).

An ``Idempotency-Key`` names the task: its id is derived from the tenant and the key, and its
events' ids from the key, so any number of concurrent duplicates store one task and all get
its id back. The same key with a different request is a 422.
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import AsyncIterator, Mapping
from datetime import UTC, datetime
from typing import Annotated, Any

import orjson
import structlog
from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response
from fastapi.responses import StreamingResponse

from api.contract.v1 import (
    BulkFilter,
    BulkResult,
    ErrorBody,
    EventView,
    Priority,
    TaskAccepted,
    TaskList,
    TaskSubmission,
    TaskView,
)
from api.http.auth import requires
from api.http.errors import ERRORS
from api.http.services import Services, services, stream_or_404
from core.domain import TASK, CommandContext, handle
from core.domain.errors import CommandRefused
from core.domain.registry import DOMAIN_EVENTS
from core.domain.task import CancelTask, RequeueTask, SubmitTask, TaskState, TaskStatus
from core.domain.task.events import Priority as DomainPriority
from core.events import RecordedEvent, uuid7
from eventstore.apikeys import Principal
from eventstore.redis.queues import dispatch, take_token
from eventstore.tenancy import TenantReader
from projections.models.tasks import TaskRow, tasks

__all__ = ["router"]

router = APIRouter(prefix="/v1/tasks", tags=["tasks"])

# Fixed forever: changing it would give a retried submission a new task.
_IDEMPOTENT_TASKS = uuid.UUID("0b9f2f64-3c1e-4f6a-9d87-2a51c1f0e7d4")
NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorBody, "description": "no such task for this key's tenant"}
}
CONFLICT: dict[int | str, dict[str, Any]] = {
    409: {"model": ErrorBody, "description": "the task's state does not allow it (it has ended, say)"}
}
Writer = Annotated[Principal, Depends(requires("tasks:write"))]
Reader = Annotated[Principal, Depends(requires("tasks:read"))]
Svc = Annotated[Services, Depends(services)]


def _context(principal: Principal, command_id: str | None = None) -> CommandContext:
    """Who acts, and the request's id as the trace id its events carry (workers log it too)."""
    request_id = structlog.contextvars.get_contextvars().get("request_id")
    return CommandContext(principal.tenant_id, principal.actor, command_id=command_id, trace_id=request_id)


@router.post(
    "",
    status_code=202,
    response_model=TaskAccepted,
    responses={
        **ERRORS,
        202: {"description": "recorded; watch it at status_url (also in Location)"},
        429: {"model": ErrorBody, "description": "the tenant submits over its rate; retry after Retry-After"},
    },
)
async def submit(
    body: TaskSubmission,
    response: Response,
    principal: Writer,
    svc: Svc,
    idempotency_key: Annotated[str | None, Header(min_length=1, max_length=255)] = None,
) -> TaskAccepted:
    rate = svc.tenant_submit_rate
    if rate and not await take_token(svc.redis, f"submit:{principal.tenant_id}", rate):
        raise HTTPException(
            429, f"tenant {principal.tenant_id} submits over {rate:g} tasks a second", {"Retry-After": "1"}
        )
    if idempotency_key is not None:
        task_id = str(uuid.uuid5(_IDEMPOTENT_TASKS, f"{principal.tenant_id}\x00{idempotency_key}"))
    else:
        task_id = str(uuid7())
    command = SubmitTask(
        task_id,
        body.type,
        datetime.now(UTC),
        payload=body.payload,
        priority=DomainPriority(body.priority),
        max_attempts=body.max_attempts,
        requires=tuple(body.requires),
        ordering_key=body.ordering_key,
        callback=body.callback,
    )
    handled = await handle(
        svc.store, TASK.stream_id(task_id), command, TASK, _context(principal, idempotency_key)
    )
    if handled.duplicate:
        _same_request(handled.state, command)
    else:
        await dispatch(svc.redis, task_id, body.priority)
    url = f"/v1/tasks/{task_id}"
    response.headers["Location"] = url
    return TaskAccepted(task_id=task_id, status=handled.state.status.value, status_url=url)


def _same_request(state: TaskState, command: SubmitTask) -> None:
    fields = ("handler", "payload", "priority", "max_attempts", "requires", "ordering_key", "callback")
    if any(_plain(getattr(state, f)) != _plain(getattr(command, f)) for f in fields):
        raise HTTPException(422, "Idempotency-Key was used before with a different request")


def _plain(value: object) -> object:
    return dict(value) if isinstance(value, Mapping) else value  # a mapping of the fold, or a dict


@router.get("/{task_id}", response_model=TaskView, responses={**ERRORS, **NOT_FOUND})
async def get_task(task_id: str, principal: Reader, svc: Svc) -> TaskView:
    """The task as its stream folds it now (not the read model: no lag)."""
    stream = stream_or_404(TASK.stream_id(task_id))
    events = await svc.store.as_tenant(principal.tenant_id).read_stream(stream)
    if not events:
        raise HTTPException(404, f"no task {task_id}")
    state = TASK.fold(DOMAIN_EVENTS.read(e) for e in events)
    return _view(state, events[0].tenant_id, events[0].recorded_at, len(events))


def _view(state: TaskState, tenant: str | None, submitted: datetime | None, version: int) -> TaskView:
    return TaskView(
        task_id=state.task_id,
        tenant_id=tenant,
        type=state.handler,
        status=state.status.value,
        priority=state.priority.value,
        payload=dict(state.payload),
        attempt=state.attempt,
        max_attempts=state.max_attempts,
        requires=list(state.requires),
        ordering_key=state.ordering_key,
        assignee=state.assignee,
        result=None if state.result is None else dict(state.result),
        error=state.error,
        version=version,
        submitted_at=submitted,
        updated_at=state.updated_at,
    )


_TERMINAL = {"TaskCompleted", "TaskCancelled", "TaskDeadLettered"}


@router.get(
    "/{task_id}/events",
    response_model=list[EventView],
    responses={
        **ERRORS,
        **NOT_FOUND,
        200: {
            "description": "the task's history; with `Accept: text/event-stream`, a live SSE stream "
            "(event ids are stream versions: reconnect with `Last-Event-ID` to resume after one)",
            "content": {"text/event-stream": {}},
        },
    },
)
async def task_events(
    task_id: str,
    request: Request,
    principal: Reader,
    svc: Svc,
    last_event_id: Annotated[int | None, Header(ge=0)] = None,
) -> Any:
    reader = svc.store.as_tenant(principal.tenant_id)
    stream = stream_or_404(TASK.stream_id(task_id))
    events = await reader.read_stream(stream)
    if not events:
        raise HTTPException(404, f"no task {task_id}")
    if "text/event-stream" not in request.headers.get("accept", ""):
        return [event_view(e) for e in events]
    return StreamingResponse(
        _live(svc, reader, stream, last_event_id or 0),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache"},
    )


async def _live(svc: Services, reader: TenantReader, stream: str, after: int) -> AsyncIterator[bytes]:
    """Every event after version ``after``, then each new one as it is appended; the stream
    ends after the task's terminal event. A comment every 15 s keeps proxies from closing it."""
    while True:
        seen = svc.store.appends_seen
        events = await reader.read_stream(stream, from_version=after + 1)
        for event in events:
            body = orjson.dumps(event_view(event).model_dump(mode="json"))
            yield b"id: %d\nevent: %s\ndata: %s\n\n" % (event.stream_version, event.type.encode(), body)
            after = event.stream_version
            if event.type in _TERMINAL:
                return
        if not events:
            yield b": waiting\n\n"
        await svc.store.wait_for_append(seen, 15.0)


def event_view(event: RecordedEvent) -> EventView:
    return EventView(
        version=event.stream_version,
        position=event.global_position,
        type=event.type,
        data=dict(event.data),
        actor=event.metadata.get("actor"),
        recorded_at=event.recorded_at,
        event_id=str(event.event_id),
        metadata=dict(event.metadata),
    )


@router.get("", response_model=TaskList, responses=ERRORS)
async def list_tasks(
    principal: Reader,
    svc: Svc,
    status: TaskStatus | None = None,
    type: str | None = None,
    priority: Priority | None = None,
    cursor: str | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> TaskList:
    """The task board (a read model: new tasks show within its lag), in submission order."""
    after = _decode_cursor(cursor) if cursor else None
    async with svc.as_tenant(principal.tenant_id) as conn:
        rows = await tasks(
            conn,
            tenant_id=principal.tenant_id,  # what row-level security enforces anyway; uses the index
            status=status,
            priority=None if priority is None else DomainPriority(priority),
            handler=type,
            after=after,
            limit=limit,
        )
    nxt = _encode_cursor(rows[-1]) if len(rows) == limit else None
    return TaskList(tasks=[_row_view(r) for r in rows], cursor=nxt)


def _row_view(row: TaskRow) -> TaskView:
    return TaskView(
        task_id=row.task_id,
        tenant_id=row.tenant_id,
        type=row.handler,
        status=row.status.value,
        priority=row.priority.value,
        payload={},
        attempt=row.attempt,
        max_attempts=row.max_attempts,
        assignee=row.assignee,
        result=None,
        error=row.error,
        version=row.version,
        submitted_at=row.submitted_at,
        updated_at=row.updated_at,
    )


def _encode_cursor(row: TaskRow) -> str:
    raw = orjson.dumps([row.submitted_at.isoformat() if row.submitted_at else None, row.task_id])
    return base64.urlsafe_b64encode(raw).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, str]:
    try:
        at, task_id = orjson.loads(base64.urlsafe_b64decode(cursor.encode()))
        return datetime.fromisoformat(at), str(task_id)
    except (ValueError, TypeError) as exc:
        raise HTTPException(422, "cursor: not a cursor this API gave out") from exc


@router.post("/{task_id}/cancel", response_model=TaskView, responses={**ERRORS, **NOT_FOUND, **CONFLICT})
async def cancel(task_id: str, principal: Writer, svc: Svc, reason: str = "cancelled by request") -> TaskView:
    """Cancel a task that has not ended; a queued one can never start afterwards."""
    stream = TASK.stream_id(task_id)
    first = await svc.first_event(principal.tenant_id, stream)
    handled = await handle(
        svc.store, stream, CancelTask(task_id, reason, datetime.now(UTC)), TASK, _context(principal)
    )
    return _view(handled.state, first.tenant_id, first.recorded_at, handled.version)


@router.post("/{task_id}/retry", response_model=TaskView, responses={**ERRORS, **NOT_FOUND, **CONFLICT})
async def retry(task_id: str, principal: Writer, svc: Svc) -> TaskView:
    """Put a dead-lettered task back in its queue, with its attempts counted afresh."""
    stream = TASK.stream_id(task_id)
    first = await svc.first_event(principal.tenant_id, stream)
    handled = await handle(
        svc.store, stream, RequeueTask(task_id, datetime.now(UTC)), TASK, _context(principal)
    )
    await dispatch(svc.redis, task_id, handled.state.priority.value)
    return _view(handled.state, first.tenant_id, first.recorded_at, handled.version)


@router.post("/bulk-cancel", response_model=BulkResult, responses=ERRORS)
async def bulk_cancel(body: BulkFilter, principal: Writer, svc: Svc) -> BulkResult:
    """Cancel every task of the key's tenant that the filter matches on the task board (a read
    model: a task submitted in the last moments may not be on it yet). Tasks that ended
    meanwhile are counted as refused."""
    return await _bulk(body, principal, svc, lambda task_id, at: CancelTask(task_id, body.reason, at))


@router.post("/bulk-retry", response_model=BulkResult, responses=ERRORS)
async def bulk_retry(body: BulkFilter, principal: Writer, svc: Svc) -> BulkResult:
    """Requeue every dead-lettered task the filter matches (``status`` defaults to it)."""
    flt = body if body.status is not None else body.model_copy(update={"status": "dead_lettered"})
    return await _bulk(flt, principal, svc, lambda task_id, at: RequeueTask(task_id, at), dispatching=True)


async def _bulk(
    flt: BulkFilter, principal: Principal, svc: Services, command: Any, *, dispatching: bool = False
) -> BulkResult:
    matched = done = refused = 0
    after = None
    while True:
        async with svc.as_tenant(principal.tenant_id) as conn:
            rows = await tasks(
                conn,
                tenant_id=principal.tenant_id,
                status=None if flt.status is None else TaskStatus(flt.status),
                priority=None if flt.priority is None else DomainPriority(flt.priority),
                handler=flt.type,
                after=after,
                limit=500,
            )
        for row in rows:
            matched += 1
            try:
                handled = await handle(
                    svc.store,
                    TASK.stream_id(row.task_id),
                    command(row.task_id, datetime.now(UTC)),
                    TASK,
                    _context(principal),
                )
            except CommandRefused:
                refused += 1
                continue
            done += 1
            if dispatching:
                await dispatch(svc.redis, row.task_id, handled.state.priority.value)
        if len(rows) < 500:
            return BulkResult(matched=matched, changed=done, refused=refused)
        after = rows[-1].cursor
