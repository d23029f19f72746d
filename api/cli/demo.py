"""`chronicle demo`: the main job, end to end, on real processes.

It starts the stack (``api.cli.stack``: the API, two workers and the projection daemon over the
configured or embedded PostgreSQL and Redis) and then, as a user would, through the HTTP API
only: registers agents, submits a batch of tasks and a training run, SIGKILLs the worker in the
middle of a task and watches it reclaimed and completed exactly once, shows that task's audit
trail, replays the training run to the epoch where a seed was pruned, checks an inclusion
proof offline (a separate process with no database), and says where the console is. Every
wait is for a condition the API reports, bounded by a deadline.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.rule import Rule
from rich.table import Table

from api.cli.runner import run_with_services
from api.cli.stack import CLI, TENANT, Stack, running_stack
from api.cli.stack import keep_running as serve_until_stopped
from api.client import AsyncClient, routes
from core.errors import ChronicleError
from core.settings import Settings
from eventstore.embedded import Services

__all__ = ["demo"]

T = TypeVar("T")
BATCH = 40
TRAIN = {"epochs": 12, "seed": 1, "seeds": 4}  # seed 1 prunes a seed at epoch 6 on this data


class DemoFailed(ChronicleError):
    """Something the story promises did not happen."""


async def _until(what: str, probe: Callable[[], Awaitable[T | None]], timeout_s: float = 90.0) -> T:
    """``probe()`` until it returns something other than None; DemoFailed after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = await probe()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise DemoFailed(f"gave up waiting {timeout_s:.0f} s for {what}")
        await asyncio.sleep(0.2)


class Story:
    def __init__(self, stack: Stack, client: AsyncClient, console: Console, settings: Settings) -> None:
        self.stack, self.client, self.console, self.settings = stack, client, console, settings
        self.run = uuid.uuid4().hex[:6]

    def chapter(self, title: str) -> None:
        self.console.print(Rule(f"[bold]{title}"))

    async def status(self, task_id: str) -> str:
        return (await self.client.get(task_id)).status

    async def agents(self) -> None:
        self.chapter("1. Agents register")
        for name, caps in (("planner", ["plan"]), ("reviewer", ["review"]), ("trainer", ["train", "gpu"])):
            await self.client.call(routes.register_agent(f"{name}-{self.run}", name, caps))

        async def listed() -> list[dict[str, Any]] | None:  # the registry is a read model: within its lag
            rows = (await self.client.call(routes.agents(limit=1000)))["agents"]
            ours = [r for r in rows if r["agent_id"].endswith(self.run)]
            return ours if len(ours) == 3 else None

        table = Table("agent", "status", "capabilities", title="GET /v1/agents")
        for row in await _until("the agents in the registry", listed, 30):
            table.add_row(
                row["agent_id"], str(row.get("status", "")), " ".join(row.get("capabilities") or [])
            )
        self.console.print(table)

    async def batch(self) -> str:
        self.chapter(f"2. A batch of {BATCH} tasks and a training run, submitted over HTTP")
        ids: list[str] = []
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=self.console) as progress:
            submitting = progress.add_task("submitted", total=BATCH)
            for n in range(BATCH):
                kind, payload = ("sleep", {"seconds": 0.2}) if n % 4 == 0 else ("echo", {"n": n})
                priority = ("high", "normal", "low")[n % 3]
                ids.append((await self.client.submit(kind, payload, priority=priority)).task_id)
                progress.advance(submitting)
            train = (
                await self.client.submit("train", dict(TRAIN), idempotency_key=f"demo-{self.run}")
            ).task_id
            done = progress.add_task("completed", total=BATCH)
            training = progress.add_task(f"training task {train} ({TRAIN['epochs']} epochs)", total=1)

            async def finished() -> bool | None:
                states = await asyncio.gather(*(self.status(t) for t in ids))
                progress.update(done, completed=sum(s == "completed" for s in states))
                if await self.status(train) == "completed":
                    progress.update(training, completed=1)
                return True if all(s == "completed" for s in states) else None

            await _until("the batch to complete", finished, 120)
            await _until("the training run", lambda: self._completed(train), 150)
            progress.update(training, completed=1)
        result = (await self.client.get(train)).result or {}
        return str(result["run_id"])  # the attempt's run: the task id, or <task id>-<attempt> after a retry

    async def _completed(self, task_id: str) -> bool | None:
        status = await self.status(task_id)
        if status in ("dead_lettered", "cancelled"):
            raise DemoFailed(f"task {task_id} ended {status}")
        return True if status == "completed" else None

    async def crash(self) -> str:
        self.chapter("3. A worker is SIGKILLed in the middle of a task")
        task_id = (await self.client.submit("sleep", {"seconds": 3})).task_id

        async def holder() -> str | None:
            task = await self.client.get(task_id)
            return task.assignee if task.status == "running" else None

        name = await _until("the task to start", holder, 60)
        base = next(b for b, m in self.stack.members.items() if m.name == name)
        pid = self.stack.kill(base)
        self.console.print(f"task {task_id} was running on {name}: [red]SIGKILL[/red] to pid {pid}")
        started = time.monotonic()
        await _until("the task to be reclaimed and completed", lambda: self._completed(task_id), 90)
        took = time.monotonic() - started
        events = await self.client.events(task_id)
        completed = [e for e in events if e.type == "TaskCompleted"]
        if len(completed) != 1:
            raise DemoFailed(f"task {task_id} completed {len(completed)} times")
        table = Table("version", "event", "worker", "fencing token", title=f"task-{task_id}, from its stream")
        for e in events:
            table.add_row(
                str(e.version),
                e.type,
                str(e.data.get("agent_id") or e.actor or ""),
                str(e.data.get("fencing_token", "")),
            )
        self.console.print(table)
        token = completed[0].data.get("fencing_token")
        self.console.print(
            f"reclaimed once its 3 s lease ran out, and completed [bold]once[/bold] under fencing token "
            f"{token}, {took:.1f} s after the kill (the lease, a retry's back-off, the task's 3 s); "
            "a write the dead worker made under token 1 would be refused."
        )
        revived = self.stack.revive()
        self.console.print(f"{name} is started again as {', '.join(revived)}")
        return task_id

    async def audit(self, task_id: str) -> list[dict[str, Any]]:
        self.chapter(f"4. The audit trail of task {task_id}")

        async def indexed() -> list[dict[str, Any]] | None:
            page = await self.client.call(routes.audit_events(stream=f"task-{task_id}"))
            return (
                page["events"] if page["events"] and page["events"][-1]["type"] == "TaskCompleted" else None
            )

        events = await _until("the audit index", indexed, 30)
        table = Table("position", "recorded at", "event", "actor", "tenant", title="GET /v1/audit/events")
        for e in events:
            table.add_row(
                str(e["global_position"]),
                str(e["recorded_at"])[11:23],
                e["type"],
                str(e["metadata"].get("actor", "")),
                str(e["tenant_id"]),
            )
        self.console.print(table)
        return events

    async def replay(self, run_id: str) -> None:
        self.chapter(f"5. The training run replayed to the epoch where a seed was pruned (run-{run_id})")

        async def epochs() -> list[dict[str, Any]] | None:
            rows = (await self.client.call(routes.run_epochs(run_id)))["items"]
            return rows if len(rows) >= TRAIN["epochs"] else None

        rows = await _until("the run's epochs in the read model", epochs, 30)
        pruned = next(
            (r for r in rows if any(s.get("stage") == "PRUNED" for s in r["seeds"])),
            None,
        )
        shown = rows if pruned is None else [r for r in rows if r["epoch"] <= pruned["epoch"]]
        table = Table(
            "epoch",
            "train loss",
            "val loss",
            "val acc",
            "decision",
            "seed stages",
            title="GET /v1/runs/.../epochs",
        )
        for r in shown:
            stages = " ".join(f"{s.get('slot')}:{s.get('stage')}" for s in r["seeds"])
            table.add_row(
                str(r["epoch"]),
                _number(r["train_loss"]),
                _number(r["val_loss"]),
                _number(r["val_accuracy"]),
                f"{r['decision'] or ''} {r['decision_reason'] or ''}".strip(),
                stages,
            )
        self.console.print(table)
        if pruned is None:
            self.console.print("no seed was pruned in this run; every epoch is shown")
            return
        page = await self.client.call(
            routes.audit_events(stream=f"run-{run_id}", type=["SeedStageChanged"], limit=1000)
        )
        version = next(e["stream_version"] for e in page["events"] if e["data"].get("to") == "PRUNED")
        self.console.print(
            f"epoch {pruned['epoch']}: a seed was pruned ({pruned['decision_reason'] or 'by Tamiyo'}); "
            f"the run's state there is above, replayed from its events. Step through it with:\n"
            f"  chronicle replay run-{run_id} --at {version}"
        )

    async def proof(self, event: dict[str, Any]) -> None:
        self.chapter("6. A proof checked offline")
        event_id = event["event_id"]

        async def sealed() -> dict[str, Any] | None:
            with contextlib.suppress(Exception):
                return dict(await self.client.call(routes.proof(event_id)))
            return None

        document = await _until("the event to be sealed under a signed checkpoint", sealed, 60)
        folder = self.settings.data_dir / "demo"
        folder.mkdir(parents=True, exist_ok=True)
        good, bad = folder / "proof.json", folder / "tampered.json"
        good.write_text(json.dumps(document))
        entry = base64.b64decode(document["entry"])  # the event's canonical bytes, as sealed
        altered = entry.replace(b"TaskCompleted", b"TaskCancelled", 1)  # the record rewritten
        bad.write_text(json.dumps({**document, "entry": base64.b64encode(altered).decode()}))
        from eventstore.audit.keys import load_or_create

        key = load_or_create(self.settings.signing_key_path, self.settings.log_origin).verifier_key
        # The check runs in a process of its own with no database or Redis URL: only the proof
        # file and the log's public key, as an auditor would hold them.
        offline = {
            k: v for k, v in os.environ.items() if k not in ("CHRONICLE_DATABASE_URL", "CHRONICLE_REDIS_URL")
        }
        for path in (good, bad):
            self.console.print(f"$ chronicle audit check {path} --public-key {key[:32]}...")
            checked = await asyncio.create_subprocess_exec(
                *CLI,
                "audit",
                "check",
                str(path),
                "--public-key",
                key,
                env={**offline, "PYTHONPATH": self.stack.env["PYTHONPATH"]},
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
            )
            line = (await checked.communicate())[0].decode().strip()
            self.console.print(f"  {line}  [dim](exit {checked.returncode})[/dim]")
            if (checked.returncode == 0) != (path == good):
                raise DemoFailed(f"the offline check of {path.name} exited {checked.returncode}: {line}")

    def console_at(self) -> None:
        self.chapter("7. The console")
        self.console.print(f"{self.stack.url}/console   key {self.stack.key}   (tenant {TENANT})")


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:.3f}"


def demo(
    keep_running: Annotated[
        bool, typer.Option("--keep-running", help="keep the stack serving after the story (Ctrl-C stops it)")
    ] = False,
    port: Annotated[int, typer.Option(help="the API's port (another is picked if it is taken)")] = 8000,
) -> None:
    """Start the API, two workers and the projection daemon (on embedded PostgreSQL and Redis
    unless URLs are configured) and tell the main job's story through the API: agents, a batch
    of tasks and a training run, a worker SIGKILLed mid-task, an audit trail, a replay to the
    epoch a seed was pruned, a proof checked offline. Stops everything at the end.

    Example: chronicle demo --keep-running
    """

    async def work(settings: Settings, svc: Services) -> None:
        console = Console(width=max(Console().width, 120))
        began = time.monotonic()
        where = (
            "embedded servers in " + str(settings.data_dir)
            if settings.database_url is None
            else "your servers"
        )
        async with contextlib.AsyncExitStack() as running:
            with console.status(f"starting the API, two workers and the projection daemon on {where}"):
                stack = await running.enter_async_context(
                    running_stack(settings, svc, port=port, lease_seconds=3.0)
                )
            console.print(stack.table())
            client = await running.enter_async_context(AsyncClient(stack.url, stack.key))
            story = Story(stack, client, console, settings)
            await story.agents()
            train = await story.batch()
            crashed = await story.crash()
            trail = await story.audit(crashed)
            await story.replay(train)
            await story.proof(trail[-1])
            story.console_at()
            console.print(Rule())
            console.print(f"the story took {time.monotonic() - began:.0f} s")
            if keep_running:
                await serve_until_stopped(stack, console)
        console.print("stopped: nothing is left running")

    run_with_services(work)
