"""The FastAPI app. Everything a request uses is built in the lifespan and hung on
``app.state``; nothing is kept between requests, so any number of replicas can run."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import orjson
import structlog
from fastapi import FastAPI
from prometheus_client import Counter, Histogram
from redis.asyncio import Redis
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.http import agents, audit, board, console, errors, health, records, tasks
from api.http.services import Services
from core.settings import Settings
from eventstore import EventStore
from eventstore.apikeys import KeyRing
from eventstore.pg import create_pool

__all__ = ["create_app"]

REQUESTS = Counter("chronicle_http_requests_total", "HTTP requests answered", ["method", "route", "status"])
LATENCY = Histogram(
    "chronicle_http_request_duration_seconds",
    "time to answer an HTTP request",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


class Measured:
    """Counts and times every request by method, route template and status (a plain ASGI
    middleware: the decorator kind costs a task and a queue per request)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500
        structlog.contextvars.clear_contextvars()
        request_id = dict(scope["headers"]).get(b"x-request-id", b"").decode()[:64] or uuid.uuid4().hex
        structlog.contextvars.bind_contextvars(request_id=request_id)

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []), (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            LATENCY.labels(scope["method"], route).observe(time.perf_counter() - started)
            REQUESTS.labels(scope["method"], route, str(status)).inc()


class BodyLimit:
    """Refuses a request body over ``max_bytes`` with 413 before reading it (by its declared
    length), or as soon as a body without one grows past it."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        seen = 0

        async def counting() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise _TooLarge
            return message

        try:
            await self.app(scope, counting, send)
        except _TooLarge:
            await self._refuse(send)

    async def _refuse(self, send: Send) -> None:
        body = orjson.dumps({"error": f"the request body is over {self.max_bytes} bytes", "field": None})
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 413, "headers": headers})
        await send({"type": "http.response.body", "body": body})


class _TooLarge(Exception):
    pass


def create_app(
    settings: Settings, database_url: str, redis_url: str, *, tenant_submit_rate: float = 0.0
) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await EventStore.connect(database_url, settings)
        pool = await create_pool(database_url, 4)
        redis = Redis.from_url(redis_url)
        app.state.services = Services(
            store, pool, redis, KeyRing(pool), tenant_submit_rate=tenant_submit_rate
        )
        try:
            yield
        finally:
            app.state.services.draining = True
            await redis.aclose()
            await pool.close()
            await store.close()

    app = FastAPI(
        title="Chronicle",
        version="1",
        description="Task orchestration over an event-sourced log. "
        "Authenticate with `Authorization: Bearer <key>`.",
        lifespan=lifespan,
    )
    errors.install(app)
    app.include_router(health.router)
    app.include_router(board.router)  # before tasks: /v1/tasks/live is not a task id
    app.include_router(tasks.router)
    app.include_router(agents.agents_router)
    app.include_router(agents.streams_router)
    app.include_router(audit.router)
    app.include_router(records.conversations_router)
    app.include_router(records.runs_router)
    console.mount(app)

    app.add_middleware(BodyLimit, max_bytes=settings.max_event_bytes)
    app.add_middleware(Measured)

    return app
