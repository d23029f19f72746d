"""`chronicle demo`: the event log end to end on whatever servers are configured (or embedded)."""

from __future__ import annotations

import uuid

import orjson
from rich.console import Console
from rich.table import Table

from core.settings import Settings
from eventstore import EventStore, ExpectedVersion, NewEvent, StreamAppend
from eventstore.embedded import Services
from eventstore.migrate import upgrade

__all__ = ["run_demo"]


async def run_demo(settings: Settings, svc: Services) -> None:
    await upgrade(svc.database_url)
    run = uuid.uuid4().hex[:8]
    meta = {"tenant_id": "acme", "actor": "demo", "correlation_id": str(uuid.uuid4())}
    agent, task, conversation = f"agent-{run}", f"task-{run}", f"conversation-{run}"
    async with await EventStore.connect(svc.database_url, settings) as store:
        await store.append(
            agent,
            [NewEvent("AgentRegistered", {"capabilities": ["echo", "train"]}, meta)],
            ExpectedVersion.NO_STREAM,
        )
        await store.append(agent, [NewEvent("AgentWentOnline", {}, meta)], 1)
        await store.append(
            task,
            [NewEvent("TaskSubmitted", {"handler": "echo", "queue": "normal"}, meta)],
            ExpectedVersion.NO_STREAM,
        )
        # Assignment touches the task and the agent: one atomic multi-stream append.
        await store.append_multi(
            [
                StreamAppend(task, [NewEvent("TaskAssigned", {"agent": agent, "fencing_token": 1}, meta)], 1),
                StreamAppend(agent, [NewEvent("AgentTookTask", {"task": task}, meta)], 2),
            ]
        )
        await store.append(task, [NewEvent("TaskCompleted", {"result": "hello"}, meta)], 2)
        await store.append(
            conversation,
            [
                NewEvent("MessageSent", {"from": agent, "text": "done"}, meta),
                NewEvent("MessageDelivered", {}, meta),
            ],
            ExpectedVersion.NO_STREAM,
        )
        table = Table("position", "stream", "version", "type", "data", title=f"Chronicle demo run {run}")
        count = 0
        for stream_id in (agent, task, conversation):
            for event in await store.read_stream(stream_id):
                data = orjson.dumps(event.data).decode()
                table.add_row(
                    str(event.global_position), stream_id, str(event.stream_version), event.type, data
                )
                count += 1
    console = Console(width=max(Console().width, 120))
    console.print(table)
    where = (
        f"the embedded servers in {settings.data_dir}" if settings.database_url is None else "your database"
    )
    console.print(f"{count} events appended and read back from {where}.")
