"""`chronicle worker`: claim and run tasks until SIGTERM, which drains."""

from __future__ import annotations

import importlib
import os
import signal
import socket
from typing import Annotated

import typer

from api.cli.runner import run_with_services
from core.errors import InvalidInput
from core.settings import Settings
from eventstore.embedded import Services

__all__ = ["worker"]


def worker(
    queues: Annotated[
        str, typer.Option(help="priorities to claim from, comma-separated")
    ] = "high,normal,low",
    concurrency: Annotated[int, typer.Option(min=1, help="tasks run at once")] = 4,
    capabilities: Annotated[
        str, typer.Option(help="what this worker offers, comma-separated (gpu, ...)")
    ] = "",
    handlers: Annotated[
        list[str] | None, typer.Option(help="a module whose @handler functions to load")
    ] = None,
    name: Annotated[str | None, typer.Option(help="the worker's agent id [default: host-pid]")] = None,
    lease_seconds: Annotated[float, typer.Option(min=0.5, help="a task's lease; renewed every third")] = 10.0,
    backoff_seconds: Annotated[float, typer.Option(min=0.0, help="the first retry's longest wait")] = 1.0,
    metrics_port: Annotated[int | None, typer.Option(help="serve Prometheus metrics on this port")] = None,
    tenant_max_running: Annotated[
        int, typer.Option(min=0, help="tasks one tenant runs at once across all workers (0: no limit)")
    ] = 0,
    tenant_rate: Annotated[
        float, typer.Option(min=0.0, help="tasks one tenant starts a second across all workers (0: no limit)")
    ] = 0.0,
    device: Annotated[str, typer.Option(help="auto, cpu or cuda: where the train handler runs")] = "auto",
    reconcile_seconds: Annotated[
        float, typer.Option(min=0.1, help="how often one worker re-dispatches waiting tasks from the log")
    ] = 30.0,
) -> None:
    """Claim tasks from the priority queues and run them; SIGTERM stops claiming and lets the
    tasks in hand finish.

    Example: chronicle worker --queues high,normal --concurrency 8 --handlers myapp.tasks
    """
    import redis.asyncio as aioredis
    import uvloop

    from api.worker.worker import Worker, WorkerOptions
    from eventstore import EventStore
    from eventstore.pg import create_pool
    from eventstore.redis.queues import PRIORITIES

    chosen = tuple(q.strip() for q in queues.split(",") if q.strip())
    unknown = sorted(set(chosen) - set(PRIORITIES))
    if unknown or not chosen:
        raise InvalidInput(f"--queues must be some of {', '.join(PRIORITIES)}, got {queues!r}")
    for module in handlers or ():
        importlib.import_module(module)
    options = WorkerOptions(
        name=name or f"worker-{socket.gethostname()}-{os.getpid()}",
        queues=chosen,
        concurrency=concurrency,
        lease_s=lease_seconds,
        capabilities=tuple(c.strip() for c in capabilities.split(",") if c.strip()),
        backoff_base_s=backoff_seconds,
        tenant_max_running=tenant_max_running,
        tenant_rate=tenant_rate,
        device=_device(device),
        reconcile_every_s=reconcile_seconds,
    )

    async def work(settings: Settings, svc: Services) -> None:
        import asyncio
        import dataclasses

        if metrics_port is not None:
            from prometheus_client import start_http_server

            start_http_server(metrics_port)

        async with await EventStore.connect(svc.database_url, settings) as store:
            pool = await create_pool(svc.database_url, 2)
            redis = aioredis.Redis.from_url(svc.redis_url)
            running = Worker(store, redis, pool, dataclasses.replace(options, data_dir=settings.data_dir))
            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, running.drain)
            try:
                await running.run()
            finally:
                await redis.aclose()
                await pool.close()

    uvloop.install()  # asyncpg and redis on uvloop: measured faster per task on this machine
    run_with_services(work)


def _device(value: str) -> str:
    """The name's form only: torch (and so whether CUDA is there) loads when a train task runs,
    not at every worker's start."""
    if value in ("auto", "cpu", "cuda") or (value.startswith("cuda:") and value[5:].isdigit()):
        return value
    raise InvalidInput(f"--device {value!r}: use auto, cpu, cuda or cuda:N")
