"""Run a child process under load and kill it with SIGKILL part-way, as a crash would."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


async def kill_after(module: str, database_url: str, lines: int, timeout: float, delay: float = 0.0) -> None:
    """Start ``python -m module URL``, wait for ``lines`` progress lines (and ``delay`` seconds
    more), then SIGKILL it."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        module,
        database_url,
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert child.stdout is not None
    for _ in range(lines):  # let it get well under way, then kill it with writes in flight
        assert await asyncio.wait_for(child.stdout.readline(), timeout), f"{module} exited early"
    if delay:
        await asyncio.sleep(delay)  # the moment of the crash, chosen by the caller
    child.send_signal(signal.SIGKILL)
    await child.wait()


async def kill_when(args: Sequence[str], ready: Callable[[], bool], timeout: float) -> None:
    """Start ``python *args`` and SIGKILL it the moment ``ready()`` holds (checked every
    millisecond or so): for a crash at one precise point, such as a file appearing."""
    child = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=ROOT,
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert child.stderr is not None
    deadline = asyncio.get_running_loop().time() + timeout
    while not ready():
        if child.returncode is not None:
            raise AssertionError(f"{args} exited early:\n{(await child.stderr.read()).decode()}")
        assert asyncio.get_running_loop().time() < deadline, f"{args}: not ready after {timeout} s"
        await asyncio.sleep(0.001)
    child.send_signal(signal.SIGKILL)
    await child.wait()
