"""The FastAPI app. Everything a request uses is built in the lifespan and hung on
``app.state``; nothing is kept between requests, so any number of replicas can run."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request, Response
from fastapi.responses import ORJSONResponse
from prometheus_client import Counter, Histogram
from redis.asyncio import Redis

from api.http import errors, health, tasks
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


def create_app(settings: Settings, database_url: str, redis_url: str) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        store = await EventStore.connect(database_url, settings)
        pool = await create_pool(database_url, 4)
        redis = Redis.from_url(redis_url)
        app.state.services = Services(store, pool, redis, KeyRing(pool))
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
        default_response_class=ORJSONResponse,
    )
    errors.install(app)
    app.include_router(health.router)
    app.include_router(tasks.router)

    @app.middleware("http")
    async def measure(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        started = time.perf_counter()
        response = await call_next(request)
        route = request.scope.get("route")
        path = getattr(route, "path", "unmatched")
        LATENCY.labels(request.method, path).observe(time.perf_counter() - started)
        REQUESTS.labels(request.method, path, str(response.status_code)).inc()
        return response

    return app
