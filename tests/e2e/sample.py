"""A small sample history for the CLI tests: an agent takes a task and reports back, through
the domain's deciders (nine events: an agent, a task, a conversation), printed back.

Run as ``python -m tests.e2e.sample`` with CHRONICLE_* settings, as the `chronicle` commands
under test are. Every step is a command handled as an application would: load the stream,
decide, append at the loaded version.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import orjson
from rich.console import Console
from rich.table import Table

from api.cli.runner import run_with_services
from core.domain import AGENT, CONVERSATION, TASK, CommandContext, handle, load
from core.domain.agent.commands import BringAgentOnline, RegisterAgent
from core.domain.conversation.commands import AcknowledgeMessage, DeliverMessage, SendMessage
from core.domain.task.commands import AssignTask, CompleteTask, StartTask, SubmitTask
from core.settings import Settings
from eventstore import EventStore
from eventstore.embedded import Services
from eventstore.migrate import upgrade

__all__ = ["run_sample"]


async def run_sample(settings: Settings, svc: Services) -> None:
    await upgrade(svc.database_url)
    run = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    context = CommandContext(tenant_id="acme", actor="demo", correlation_id=f"demo-{run}")
    agent_id, task_id, conversation_id = f"worker{run}", f"t{run}", f"c{run}"
    agent, task, talk = (
        AGENT.stream_id(agent_id),
        TASK.stream_id(task_id),
        CONVERSATION.stream_id(conversation_id),
    )
    async with await EventStore.connect(svc.database_url, settings) as store:
        steps = [
            (agent, RegisterAgent(agent_id, "demo worker", ("echo", "train"), now), AGENT),
            (agent, BringAgentOnline(agent_id, now), AGENT),
            (task, SubmitTask(task_id, "echo", now, payload={"message": "hello"}), TASK),
            (task, AssignTask(task_id, agent_id, now + timedelta(seconds=30), now), TASK),
        ]
        for stream_id, command, decider in steps:
            await handle(store, stream_id, command, decider, context)  # type: ignore[arg-type]
        token = (await load(store, task, TASK)).state.fencing_token
        for stream_id, command, decider in [
            (task, StartTask(task_id, token, now), TASK),
            (task, CompleteTask(task_id, token, now, result={"echo": "hello"}), TASK),
            (
                talk,
                SendMessage(conversation_id, agent_id, "operator", now, body={"text": "done"}),
                CONVERSATION,
            ),
            (talk, DeliverMessage(conversation_id, 1, now), CONVERSATION),
            (talk, AcknowledgeMessage(conversation_id, 1, now), CONVERSATION),
        ]:
            await handle(store, stream_id, command, decider, context)  # type: ignore[arg-type]
        table = Table("position", "stream", "version", "type", "data", title=f"Chronicle demo run {run}")
        count = 0
        for stream_id in (agent, task, talk):
            for event in await store.read_stream(stream_id):
                shown = {k: v for k, v in event.data.items() if k != "at" and not k.endswith("_id")}
                data = orjson.dumps(shown).decode()
                table.add_row(
                    str(event.global_position), stream_id, str(event.stream_version), event.type, data
                )
                count += 1
        conversation = (await load(store, talk, CONVERSATION)).state
        replayed = {
            agent: (await load(store, agent, AGENT)).state.status.value,
            task: (await load(store, task, TASK)).state.status.value,
            talk: f"{conversation.last_sequence} message(s), {len(conversation.in_flight)} unacknowledged",
        }
    console = Console(width=max(Console().width, 120))
    console.print(table)
    for stream_id, state in replayed.items():
        console.print(f"{stream_id} replayed from its events: {state}")
    where = (
        f"the embedded servers in {settings.data_dir}" if settings.database_url is None else "your database"
    )
    console.print(f"{count} events appended and read back from {where}.")
    console.print(f"Step through one: chronicle replay {task} --steps")


if __name__ == "__main__":
    run_with_services(run_sample)
