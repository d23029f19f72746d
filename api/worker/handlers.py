"""Task handlers: plain functions registered by name. A handler gets the task's payload and a
context and returns a JSON object (the result); raising fails the attempt, and raising
``NonRetryable`` sends the task straight to the dead-letter state.

Users add their own with ``@handler("name")`` in a module passed to ``chronicle worker
--handlers module``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
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
