"""Task handlers: plain functions registered by name. A handler gets the task's payload and a
context and returns a JSON object (the result); raising fails the attempt, and raising
``NonRetryable`` sends the task straight to the dead-letter state.

Users add their own with ``@handler("name")`` in a module passed to ``chronicle worker
--handlers module``.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["HANDLERS", "NonRetryable", "TaskContext", "handler"]


class NonRetryable(Exception):
    """Raised by a handler: this task cannot succeed by running again."""


@dataclass(frozen=True, slots=True)
class TaskContext:
    task_id: str
    attempt: int
    fencing_token: int
    worker: str
    tenant_id: str | None = None
    device: str = "auto"  # the worker's --device, for handlers that use torch
    event_log: Any = None  # the worker's event store, for handlers that record events
    data_dir: Path = Path(".chronicle")

    @property
    def idempotency_key(self) -> str:
        """One key per attempt, for the handler's side effects (a payment, an e-mail)."""
        return f"{self.task_id}:{self.fencing_token}"


Handler = Callable[[Mapping[str, Any], TaskContext], Awaitable[Mapping[str, Any]] | Mapping[str, Any]]
HANDLERS: dict[str, Handler] = {}


def handler(name: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[name] = fn
        return fn

    return register


async def run_handler(fn: Handler, payload: Mapping[str, Any], ctx: TaskContext) -> Mapping[str, Any]:
    """Run ``fn``: a coroutine function on the loop, a plain one in a thread."""
    if inspect.iscoroutinefunction(fn):
        result = await fn(payload, ctx)
    else:
        result = await asyncio.to_thread(fn, payload, ctx)
    if inspect.isawaitable(result):
        result = await result
    return dict(result or {})


@handler("echo")
async def echo(payload: Mapping[str, Any], ctx: TaskContext) -> Mapping[str, Any]:
    return {"echo": dict(payload)}


@handler("sleep")
async def sleep(payload: Mapping[str, Any], ctx: TaskContext) -> Mapping[str, Any]:
    seconds = float(payload.get("seconds", 1.0))
    await asyncio.sleep(seconds)
    return {"slept": seconds}


@handler("fail")
async def fail(payload: Mapping[str, Any], ctx: TaskContext) -> Mapping[str, Any]:
    if payload.get("retryable", True):
        raise RuntimeError(str(payload.get("error", "failed on purpose")))
    raise NonRetryable(str(payload.get("error", "failed on purpose, not retryable")))


@handler("train")
async def train(payload: Mapping[str, Any], ctx: TaskContext) -> Mapping[str, Any]:
    """The Tolaria-Kasmina-Tamiyo training loop on the worker's device, recorded in
    ``run-<run id>``. Payload: the options of ``chronicle train`` (epochs, seeds, batch_size,
    seed, lr, device, checkpoint_every). Each attempt is a run of its own: the task id, then
    ``<task id>-<attempt>`` for a retry."""
    import orjson

    # torch takes seconds to import: on the event loop that would stall the lease's heartbeat
    # and lose the task to another worker before the first epoch (seen with 3 s leases).
    training = await asyncio.to_thread(importlib.import_module, "api.services.training")
    run_id = ctx.task_id if ctx.attempt <= 1 else f"{ctx.task_id}-{ctx.attempt}"
    options = {"device": ctx.device, **payload, "run_id": run_id}
    if ctx.tenant_id:
        options["tenant_id"] = ctx.tenant_id
    from core.errors import InvalidInput

    try:
        summary = await training.train_task(
            options, event_log=ctx.event_log, checkpoint_root=ctx.data_dir / "runs"
        )
    except InvalidInput as exc:  # bad options, or no such device here: running again cannot help
        raise NonRetryable(str(exc)) from exc
    plain: dict[str, Any] = orjson.loads(orjson.dumps(summary, default=str))  # JSON, as a result must be
    return plain
