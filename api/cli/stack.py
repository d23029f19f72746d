"""The whole stack as processes: the API, workers and the projection daemon, over the configured
(or embedded) PostgreSQL and Redis. `chronicle up` starts it and keeps it running; `chronicle
demo` starts it, tells its story and stops it.

Each process is a real `chronicle` command with the servers' URLs in its environment, so the
embedded servers this process started are shared, not started again. Their logs (JSON lines)
go to ``<data dir>/logs/<name>.log``; the terminal stays for the story. A process that dies is
started again under a new name (``worker-1`` becomes ``worker-1.2``): a worker's name is its
identity in the log, and a task the dead one held is reclaimed by fencing, never resumed
under the same name.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Annotated

import httpx
import typer
from rich.console import Console
from rich.table import Table

from api.cli.runner import run_with_services
from core.errors import StoreUnavailable
from core.settings import Settings
from eventstore.embedded import Services

__all__ = ["Stack", "running_stack", "up"]

CLI = [sys.executable, "-m", "api.cli"]
ROOT = str(Path(__file__).resolve().parents[2])  # on the processes' PYTHONPATH: a checkout runs too
TENANT = "acme"


@dataclass
class Member:
    """One process of the stack: its role, the arguments it started with, its incarnation."""

    base: str
    args: list[str]
    process: subprocess.Popen[bytes] | None = None
    incarnation: int = 1
    log: IO[bytes] | None = None

    @property
    def name(self) -> str:
        return self.base if self.incarnation == 1 else f"{self.base}.{self.incarnation}"


@dataclass
class Stack:
    """The processes, their environment, and the API's address and key once started."""

    env: dict[str, str]
    logs: Path
    url: str
    key: str
    members: dict[str, Member] = field(default_factory=dict)

    def start(self, member: Member) -> None:
        args = [*member.args, "--name", member.name] if member.base.startswith("worker") else member.args
        member.log = (self.logs / f"{member.name}.log").open("ab")
        member.process = subprocess.Popen(  # noqa: S603 - our own CLI, arguments we built
            [*CLI, *args], env=self.env, stdout=member.log, stderr=subprocess.STDOUT
        )
        self.members[member.base] = member

    def kill(self, base: str) -> int:
        """SIGKILL a member (the demo's crash); returns its pid."""
        process = self.members[base].process
        assert process is not None
        process.kill()
        process.wait()
        return process.pid

    def revive(self) -> list[str]:
        """Start again, under a new incarnation, every member whose process has exited."""
        revived = []
        for member in self.members.values():
            if member.process is not None and member.process.poll() is not None:
                if member.log is not None:
                    member.log.close()
                member.incarnation += 1
                self.start(member)
                revived.append(member.name)
        return revived

    def stop(self, grace_s: float = 20.0) -> None:
        """SIGTERM every member (workers drain, the API stops at once), SIGKILL what is left."""
        alive = [m.process for m in self.members.values() if m.process and m.process.poll() is None]
        for process in alive:
            process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for process in alive:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for member in self.members.values():
            if member.log is not None:
                member.log.close()

    def table(self) -> Table:
        table = Table("process", "pid", "command", "log", title="Chronicle is running")
        for member in self.members.values():
            pid = str(member.process.pid) if member.process else "-"
            table.add_row(member.name, pid, "chronicle " + " ".join(member.args), f"logs/{member.name}.log")
        return table


def _port(host: str, wanted: int) -> int:
    """``wanted`` if it is free, else one the system picks (said on the terminal)."""
    with socket.socket() as s:
        try:
            s.bind((host, wanted))
        except OSError:
            s.bind((host, 0))
        return int(s.getsockname()[1])


async def _create_key(database_url: str) -> str:
    from eventstore.apikeys import create_key
    from eventstore.pg import connect

    conn = await connect(database_url)
    try:
        return await create_key(conn, TENANT, "console", ("admin",))
    finally:
        await conn.close()


async def _ready(stack: Stack, timeout_s: float) -> None:
    """Until every read model is built and the API answers /ready, or a member exits.

    /ready counts the read models the database lists, and the daemon lists each only once it
    starts on it: a /ready asked before that says 200 and turns 503 a moment later. So the
    read models are checked by name here first."""
    from eventstore.pg import connect
    from projections.catalog import PROJECTIONS
    from projections.runner.status import lagging, statuses

    deadline = time.monotonic() + timeout_s
    conn = await connect(stack.env["CHRONICLE_DATABASE_URL"])
    try:
        async with httpx.AsyncClient(base_url=stack.url, timeout=2) as client:
            while True:
                for member in stack.members.values():
                    if member.process is not None and member.process.poll() is not None:
                        raise StoreUnavailable(
                            f"{member.name} exited at start (status {member.process.returncode}); "
                            f"see {stack.logs / (member.name + '.log')}"
                        )
                built = not lagging(await statuses(conn, PROJECTIONS), 60.0)
                with contextlib.suppress(httpx.TransportError):
                    if built and (await client.get("/ready")).status_code == 200:
                        return
                if time.monotonic() > deadline:
                    raise StoreUnavailable(
                        f"the stack did not become ready in {timeout_s:.0f} s; see {stack.logs}"
                    )
                await asyncio.sleep(0.2)
    finally:
        await conn.close()


@contextlib.asynccontextmanager
async def running_stack(
    settings: Settings,
    svc: Services,
    *,
    host: str = "127.0.0.1",
    port: int = 8000,
    workers: int = 2,
    lease_seconds: float = 10.0,
) -> AsyncIterator[Stack]:
    """Migrate, start the API, ``workers`` workers and the projection daemon, wait until the API
    is ready; stop them all on the way out, whatever happened."""
    from eventstore.migrate import upgrade

    await upgrade(svc.database_url)
    logs = settings.data_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "CHRONICLE_DATABASE_URL": svc.database_url,
        "CHRONICLE_REDIS_URL": svc.redis_url,
        "CHRONICLE_DATA_DIR": str(settings.data_dir.resolve()),
        "CHRONICLE_LOG_FORMAT": "json",
        "PYTHONPATH": os.pathsep.join(filter(None, [ROOT, os.environ.get("PYTHONPATH")])),
    }
    bound = _port(host, port)
    stack = Stack(env, logs, f"http://{host}:{bound}", await _create_key(svc.database_url))
    try:
        stack.start(Member("projections", ["projections", "run"]))
        stack.start(Member("api", ["serve", "--host", host, "--port", str(bound), "--drain-seconds", "0"]))
        for n in range(1, workers + 1):
            stack.start(
                Member(
                    f"worker-{n}",
                    ["worker", "--lease-seconds", str(lease_seconds), "--reconcile-seconds", "5"],
                )
            )
        await _ready(stack, 90.0)
        yield stack
    finally:
        stack.stop()


def up(
    host: Annotated[str, typer.Option(help="address the API listens on")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="the API's port (another is picked if it is taken)")] = 8000,
    workers: Annotated[int, typer.Option(min=0, max=32, help="worker processes")] = 2,
) -> None:
    """Start the API, the workers and the projection daemon as processes, on the configured
    servers or embedded ones, and keep them running (a process that dies is started again)
    until Ctrl-C or SIGTERM, which stop them all.

    Example: chronicle up --port 8000 --workers 2
    """

    async def work(settings: Settings, svc: Services) -> None:
        console = Console()
        async with contextlib.AsyncExitStack() as running:
            with console.status("starting the API, the workers and the projection daemon"):
                stack = await running.enter_async_context(
                    running_stack(settings, svc, host=host, port=port, workers=workers)
                )
            await keep_running(stack, console)
        console.print("stopped: nothing is left running")

    run_with_services(work)


async def keep_running(stack: Stack, console: Console) -> None:
    """Print where things are, then supervise until SIGINT or SIGTERM."""
    console.print(stack.table())
    console.print(f"API      {stack.url}   (OpenAPI: {stack.url}/docs)")
    console.print(f"console  {stack.url}/console")
    console.print(f"key      {stack.key}   (tenant {TENANT}, scope admin)")
    console.print("Ctrl-C stops everything.")
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopping.set)
    try:
        while not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), 1.0)
            for name in stack.revive():
                console.print(f"a process exited; started again as {name}")
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
