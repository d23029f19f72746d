"""Waiting for a condition in a test: poll it until it holds, then go on at once.

The one place tests poll. A test never sleeps a fixed time to let something happen; it names
what it waits for, and fails with that name when it does not happen in time.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["eventually", "wait_until"]

T = TypeVar("T")


async def eventually(
    probe: Callable[[], Awaitable[T]],
    accept: Callable[[T], object] = bool,
    *,
    timeout: float = 30.0,
    every: float = 0.02,
    what: str | None = None,
) -> T:
    """The first value of ``probe()`` that ``accept`` takes, asked every ``every`` seconds."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        value = await probe()
        if accept(value):
            return value
        if asyncio.get_running_loop().time() > deadline:
            name = what or getattr(probe, "__name__", repr(probe))
            raise AssertionError(f"not within {timeout} s: {name} (last: {value!r})")
        await asyncio.sleep(every)


async def wait_until(check: Callable[[], object], timeout: float = 30.0, every: float = 0.02) -> None:
    """Poll a condition (a function returning a truthy value, or a coroutine of one) until it holds."""

    async def probe() -> object:
        result = check()
        return await result if asyncio.iscoroutine(result) else result

    await eventually(probe, timeout=timeout, every=every, what=getattr(check, "__name__", repr(check)))
