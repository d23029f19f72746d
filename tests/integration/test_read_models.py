"""The agent registry, task board, conversation history and training runs, kept by a real projection daemon
from commands handled against a real event store, and read back through their views.

The daemon starts on an empty log and applies everything live in batches of seven events, so
tasks, conversations and runs are folded across batch boundaries; the last test rebuilds each
model in one large batch and finds exactly the rows the live daemon wrote.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import random
from collections.abc import AsyncIterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from core.domain import (
    AGENT,
    CONVERSATION,
    DOMAIN_EVENTS,
    TASK,
    CommandContext,
    Decider,
    DomainEvent,
    handle,
    load,
)
from core.domain.agent import (
    AgentStatus,
    BringAgentOnline,
    DeregisterAgent,
    MarkAgentFailed,
    RegisterAgent,
    TakeAgentOffline,
)
from core.domain.conversation import AcknowledgeMessage, DeliverMessage, SendMessage, message_id_of
from core.domain.task import (
    AssignTask,
    CancelTask,
    CompleteTask,
    DeadLetterTask,
    FailTask,
    Priority,
    ReportTaskProgress,
    RequeueTask,
    ScheduleTaskRetry,
    StartTask,
    SubmitTask,
    TaskState,
    TaskStatus,
    TimeOutTask,
)
from core.triad.config import RunOptions
from core.triad.events import (
    BudgetExceeded,
    CheckpointSaved,
    DecisionMade,
    EpochCompleted,
    RunCompleted,
    RunResumed,
    RunStarted,
    SeedSummary,
    run_stream_id,
)
from eventstore import EventStore
from eventstore.pg import connect
from projections.models.agents import AgentRegistry, agent, agents
from projections.models.conversations import Conversations, conversation
from projections.models.runs import RunStatus, TrainingRuns, run, run_epochs, runs
from projections.models.tasks import TaskBoard, TaskRow, task, tasks
from projections.run_history import run_history
from projections.runner.contract import Projection
from projections.runner.daemon import ProjectionDaemon
from projections.runner.rebuild import rebuild
from tests.integration.histories import T0, next_task_command, random_run
from tests.waiting import wait_until

pytestmark = pytest.mark.integration

MODELS: tuple[Projection, ...] = (AgentRegistry(), TaskBoard(), Conversations(), TrainingRuns())
ACME = CommandContext("acme", "test")
GLOBEX = CommandContext("globex", "test")


@pytest.fixture(scope="module")
async def conn(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    c = await connect(database_url)
    yield c
    await c.close()


@pytest.fixture(scope="module")
async def daemon(store: EventStore, database_url: str) -> AsyncIterator[ProjectionDaemon]:
    running = ProjectionDaemon(
        store, database_url, MODELS, batch_size=7, poll_interval=0.05, lease_interval=0.05, name="test"
    )
    task_ = asyncio.create_task(running.run())
    yield running
    task_.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task_


async def caught_up(conn: asyncpg.Connection, store: EventStore, daemon: ProjectionDaemon) -> None:
    """Wait until every model's live generation has applied the log up to its head now."""
    head = await store.head_position()
    names = [m.name for m in MODELS]

    async def reached() -> bool:
        assert not daemon.failures, daemon.failures
        positions = await conn.fetch(
            "SELECT c.position FROM projections p JOIN projection_checkpoints c "
            "ON c.name = p.name AND c.generation = p.active_generation WHERE p.name = ANY($1)",
            names,
        )
        return len(positions) == len(names) and all(p["position"] >= head for p in positions)

    await wait_until(reached, timeout=10)


async def send(store: EventStore, command: Any, context: CommandContext = ACME) -> None:
    """Handle an agent, task or conversation command against the store."""
    decider: Decider[Any, Any]
    if hasattr(command, "task_id"):
        decider, aggregate_id = TASK, command.task_id
    elif hasattr(command, "agent_id"):
        decider, aggregate_id = AGENT, command.agent_id
    else:
        decider, aggregate_id = CONVERSATION, command.conversation_id
    await handle(store, decider.stream_id(aggregate_id), command, decider, context)


# -- the task board ------------------------------------------------------------------------------


async def test_the_board_follows_each_task_through_its_life(
    conn: asyncpg.Connection, store: EventStore, daemon: ProjectionDaemon
) -> None:
    """Completed, retried, dead-lettered and requeued, and cancelled tasks of two tenants show
    their status, holder, attempt, token, retry time, error and times."""
    t = T0
    acme: list[Any] = [
        SubmitTask("done", "echo", t, {}, "gpu", Priority.HIGH),
        AssignTask("done", "w1", t + timedelta(minutes=5), t),
        StartTask("done", 1, t + timedelta(seconds=1)),
        ReportTaskProgress("done", 1, 40.0, t + timedelta(seconds=2)),
        CompleteTask("done", 1, t + timedelta(seconds=3)),
        SubmitTask("retry", "echo", t + timedelta(seconds=1), max_attempts=2),
        AssignTask("retry", "w2", t + timedelta(minutes=5), t + timedelta(seconds=1)),
        StartTask("retry", 1, t + timedelta(seconds=2)),
        FailTask("retry", 1, "boom", t + timedelta(seconds=4)),
        ScheduleTaskRetry("retry", t + timedelta(seconds=30), t + timedelta(seconds=4)),
    ]
    globex: list[Any] = [
        SubmitTask("dead", "resize", t + timedelta(seconds=2), max_attempts=1),
        AssignTask("dead", "w1", t + timedelta(seconds=9), t + timedelta(seconds=3)),
        TimeOutTask("dead", t + timedelta(seconds=10)),
        DeadLetterTask("dead", "no attempts left", t + timedelta(seconds=11)),
        RequeueTask("dead", t + timedelta(seconds=12)),
        SubmitTask("gone", "resize", t + timedelta(seconds=3), queue="gpu"),
        CancelTask("gone", "not needed", t + timedelta(seconds=5)),
    ]
    for command in acme:
        await send(store, command)
    for command in globex:
        await send(store, command, GLOBEX)
    await caught_up(conn, store, daemon)

    done, retry, dead, gone = [await task(conn, i) for i in ("done", "retry", "dead", "gone")]
    assert done is not None and retry is not None and dead is not None and gone is not None
    assert (done.status, done.tenant_id, done.queue, done.priority) == (
        TaskStatus.COMPLETED,
        "acme",
        "gpu",
        Priority.HIGH,
    )
    assert (done.assignee, done.fencing_token, done.progress, done.lease_expires_at) == ("w1", 1, 100.0, None)
    assert (done.started_at, done.finished_at, done.version) == (
        t + timedelta(seconds=1),
        t + timedelta(seconds=3),
        5,
    )
    assert (retry.status, retry.attempt, retry.max_attempts, retry.error) == (
        TaskStatus.RETRY_SCHEDULED,
        1,
        2,
        "boom",
    )
    assert (retry.not_before, retry.assignee, retry.finished_at) == (t + timedelta(seconds=30), None, None)
    assert (dead.status, dead.attempt, dead.fencing_token, dead.tenant_id) == (
        TaskStatus.PENDING,
        0,
        1,
        "globex",
    )
    assert (dead.error, dead.reason, dead.started_at, dead.finished_at) == (None, None, None, None)
    assert (gone.status, gone.reason, gone.finished_at) == (
        TaskStatus.CANCELLED,
        "not needed",
        t + timedelta(seconds=5),
    )


async def test_the_board_filters_by_tenant_status_queue_and_priority_a_page_at_a_time(
    conn: asyncpg.Connection,
) -> None:
    """Each filter narrows the board, and keyset pages in submission order cover it once."""
    assert [r.task_id for r in await tasks(conn, tenant_id="globex")] == ["dead", "gone"]
    assert [r.task_id for r in await tasks(conn, status=TaskStatus.RETRY_SCHEDULED)] == ["retry"]
    assert [r.task_id for r in await tasks(conn, queue="gpu")] == ["done", "gone"]
    assert [r.task_id for r in await tasks(conn, queue="gpu", priority=Priority.NORMAL)] == ["gone"]
    assert await tasks(conn, tenant_id="acme", status=TaskStatus.CANCELLED) == []
    pages: list[TaskRow] = []
    page = await tasks(conn, limit=1)
    while page:
        pages += page
        page = await tasks(conn, after=page[-1].cursor, limit=1)
    assert [r.task_id for r in pages] == ["done", "retry", "dead", "gone"]


async def test_every_row_equals_the_task_as_the_domain_folds_it(
    conn: asyncpg.Connection, store: EventStore, daemon: ProjectionDaemon
) -> None:
    """For 60 random valid task histories, handled concurrently, each row holds the task's own
    state (``load`` on its stream) field by field, and its version."""
    rng = random.Random(20260201)
    ids = [f"r{i}" for i in range(60)]
    await asyncio.gather(*(_random_history(store, random.Random(rng.random()), i) for i in ids))
    await caught_up(conn, store, daemon)
    for task_id in ids:
        loaded = await load(store, TASK.stream_id(task_id), TASK)
        row = await task(conn, task_id)
        assert row is not None
        assert _as_state(row) == _without_payloads(loaded.state), task_id
        assert (row.version, row.tenant_id) == (loaded.version, "acme" if int(task_id[1:]) % 2 else "globex")
    statuses = {r.status for r in await tasks(conn, limit=1000)}
    assert {TaskStatus.COMPLETED, TaskStatus.RETRY_SCHEDULED, TaskStatus.DEAD_LETTERED} <= statuses


async def _random_history(store: EventStore, rng: random.Random, task_id: str) -> None:
    context = ACME if int(task_id[1:]) % 2 else GLOBEX
    state, now = TaskState(), T0
    for _ in range(rng.randint(1, 25)):
        now += timedelta(seconds=rng.randint(0, 90))
        command = next_task_command(rng, task_id, state, now)
        if command is None:
            return
        now = max(now, command.at)
        state = (await handle(store, TASK.stream_id(task_id), command, TASK, context)).state


def _as_state(row: TaskRow) -> TaskState:
    return TaskState(
        task_id=row.task_id,
        status=row.status,
        handler=row.handler,
        queue=row.queue,
        priority=row.priority,
        max_attempts=row.max_attempts,
        attempt=row.attempt,
        fencing_token=row.fencing_token,
        assignee=row.assignee,
        lease_expires_at=row.lease_expires_at,
        retry_not_before=row.not_before,
        progress=row.progress,
        error=row.error,
        reason=row.reason,
        updated_at=row.updated_at,
    )


def _without_payloads(state: TaskState) -> TaskState:
    """The state less what the board does not hold (the payload and the result)."""
    return dataclasses.replace(state, payload={}, result=None)


# -- conversations -------------------------------------------------------------------------------


async def test_a_conversation_lists_its_messages_in_order_with_their_times_and_ids(
    conn: asyncpg.Connection, store: EventStore, daemon: ProjectionDaemon
) -> None:
    """Each message has its sequence, ids, body and its sent, delivered and acknowledged times;
    a reply keeps the exchange's correlation id and names what it answers."""
    first = message_id_of("c1", 1)
    t = T0
    for command in (
        SendMessage("c1", "alice", "bob", t, {"text": "hello"}),
        SendMessage("c1", "bob", "alice", t + timedelta(seconds=2), {"text": "hi"}, first, first),
        SendMessage("c1", "alice", "bob", t + timedelta(seconds=3), {"text": "news", "n": [1, 2]}),
        DeliverMessage("c1", 1, t + timedelta(seconds=1)),
        DeliverMessage("c1", 2, t + timedelta(seconds=4)),
        AcknowledgeMessage("c1", 2, t + timedelta(seconds=5)),
        SendMessage("c2", "carol", "dave", t, {}),
    ):
        await send(store, command)
    await caught_up(conn, store, daemon)

    messages = await conversation(conn, "c1")
    assert [(m.sequence, m.sender, m.recipient, m.body) for m in messages] == [
        (1, "alice", "bob", {"text": "hello"}),
        (2, "bob", "alice", {"text": "hi"}),
        (3, "alice", "bob", {"text": "news", "n": [1, 2]}),
    ]
    assert [(m.message_id, m.correlation_id, m.causation_id) for m in messages] == [
        (first, first, None),
        (message_id_of("c1", 2), first, first),
        (message_id_of("c1", 3), message_id_of("c1", 3), None),
    ]
    assert [(m.delivered_at, m.acknowledged_at) for m in messages] == [
        (t + timedelta(seconds=1), None),
        (t + timedelta(seconds=4), t + timedelta(seconds=5)),
        (None, None),
    ]
    assert {m.tenant_id for m in messages} == {"acme"}
    assert [m.sequence for m in await conversation(conn, "c1", after=1, limit=1)] == [2]
    assert [m.sender for m in await conversation(conn, "c2")] == ["carol"]


# -- training runs -------------------------------------------------------------------------------


async def test_every_run_agrees_with_its_run_history(
    conn: asyncpg.Connection, store: EventStore, daemon: ProjectionDaemon
) -> None:
    """For 30 random run streams (resumes, late checkpoints, rollbacks, failures), the epochs
    that are not abandoned are ``run_history``'s rows, and the run row counts them."""
    rng = random.Random(7)
    expected = {f"run{i}": random_run(rng, f"run{i}") for i in range(30)}
    for run_id, made in expected.items():
        metadata = {"tenant_id": "acme" if len(run_id) % 2 else "globex", "run_id": run_id}
        await store.append(run_stream_id(run_id), [DOMAIN_EVENTS.encode(e, metadata) for e in made.events])
    await caught_up(conn, store, daemon)
    for run_id, made in expected.items():
        recorded = await store.read_stream(run_stream_id(run_id))
        row = await run(conn, run_id)
        assert row is not None
        assert (row.status.value, row.reason) == (made.status, made.reason), run_id
        assert row.attempts == 1 + sum(isinstance(e, RunResumed) for e in made.events)
        assert row.tenant_id == ("acme" if len(run_id) % 2 else "globex")
        _assert_agrees(run_id, row, await run_epochs(conn, run_id), recorded)
    assert {r.status for r in await runs(conn, limit=1000)} == set(RunStatus)


def _assert_agrees(run_id: str, row: Any, epochs: Sequence[Any], recorded: Sequence[Any]) -> None:
    history = run_history(recorded)
    assert [_epoch_fields(e) for e in epochs] == [_history_fields(h) for h in history], run_id
    done = [h for h in history if h.completed]
    accuracies = [h.val_accuracy for h in done if h.val_accuracy is not None]
    assert row.epochs_completed == len(done)
    assert row.val_accuracy == (done[-1].val_accuracy if done else None)
    assert row.best_val_accuracy == (max(accuracies) if accuracies else None)
    assert row.rollbacks == sum(1 for h in history if h.rollbacks)
    assert row.budget_overruns == sum(len(h.overruns) for h in history)
    assert row.last_checkpoint_epoch == max((h.epoch for h in history if h.checkpoint), default=None)


def _epoch_fields(e: Any) -> tuple[Any, ...]:
    seeds = [(s["slot"], s["stage"], s["blueprint"], s["alpha"], s["contribution"]) for s in e.seeds]
    losses = (e.train_loss, e.val_loss, e.val_accuracy, e.train_accuracy, e.learning_rate)
    return (
        e.epoch,
        e.attempt,
        e.completed_at is not None,
        *losses,
        e.decision,
        e.decision_reason,
        seeds,
        e.rolled_back,
        e.budget_overruns,
        e.checkpoint_sha256,
    )


def _history_fields(h: Any) -> tuple[Any, ...]:
    seeds = [(s.slot, s.stage, s.blueprint, s.alpha, s.contribution) for s in h.seeds]
    losses = (h.train_loss, h.val_loss, h.val_accuracy, h.train_accuracy, h.learning_rate)
    decision = (None, None) if h.decision is None else (h.decision.kind, h.decision.reason)
    sha = None if h.checkpoint is None else h.checkpoint.sha256
    return (
        h.epoch,
        h.attempt,
        h.completed,
        *losses,
        *decision,
        seeds,
        bool(h.rollbacks),
        len(h.overruns),
        sha,
    )


async def test_a_resume_abandons_the_epochs_after_its_checkpoint_and_records_them_again(
    conn: asyncpg.Connection, store: EventStore, daemon: ProjectionDaemon
) -> None:
    """Attempt 1 completes epochs 0-2 and checkpoints 0 and 1; attempt 2 resumes from 1 and
    records epochs 2 and 3 again. The history is 0, 1 (attempt 1), 2, 3 (attempt 2); attempt
    1's epoch 2 is kept, abandoned; the run's counts are the history's."""
    sha = {epoch: str(epoch) * 64 for epoch in range(4)}
    events = [
        RunStarted("hand", "cpu", 10, (), 3, 64, 7, 100.0, 0.01, 1),
        *_epoch(0, 0.5),
        *_epoch(1, 0.7),
        CheckpointSaved(0, "ckpt-0.pt", sha[0], 1),
        *_epoch(2, 0.9),
        BudgetExceeded(2, "total", 9.0, 1.0),
        CheckpointSaved(1, "ckpt-1.pt", sha[1], 1),
        RunResumed(1, sha[1], "ckpt-1.pt", 4),
        *_epoch(2, 0.6),
        *_epoch(3, 0.65),
        RunCompleted("hand", 4, False, 0.3, 0.65, 0.6, 0.05, (), {}, 0, 0, {}, 1),
    ]
    await store.append(
        run_stream_id("hand"), [DOMAIN_EVENTS.encode(e, {"tenant_id": "acme"}) for e in events]
    )
    await caught_up(conn, store, daemon)

    every = await run_epochs(conn, "hand", include_abandoned=True)
    assert [(e.epoch, e.attempt, e.abandoned) for e in every] == [
        (0, 1, False),
        (1, 1, False),
        (2, 1, True),
        (2, 2, False),
        (3, 2, False),
    ]
    assert [(e.epoch, e.val_accuracy, e.checkpoint_sha256) for e in await run_epochs(conn, "hand")] == [
        (0, 0.5, sha[0]),
        (1, 0.7, sha[1]),
        (2, 0.6, None),
        (3, 0.65, None),
    ]
    row = await run(conn, "hand")
    assert row is not None
    assert (row.status, row.attempts, row.epochs_planned, row.epochs_completed) == (
        RunStatus.COMPLETED,
        2,
        4,
        4,
    )
    assert (row.val_accuracy, row.best_val_accuracy, row.budget_overruns) == (0.65, 0.7, 0)
    assert (row.last_checkpoint_epoch, row.device, row.tenant_id) == (1, "cpu", "acme")


def _epoch(epoch: int, val_accuracy: float) -> list[DomainEvent]:
    seed = SeedSummary(0, "DORMANT", None, 0.0, 0, epoch, None, None)
    return [
        DecisionMade(epoch + 1, epoch, "WAIT", {}, "policy", "nothing to do"),
        EpochCompleted(epoch, epoch + 1, 1.0, 0.5, 0.9, val_accuracy, 0.01, None, (seed,), {}),
    ]


@pytest.mark.slow
async def test_a_real_run_and_its_resume_agree_with_run_history(
    conn: asyncpg.Connection, store: EventStore, daemon: ProjectionDaemon, tmp_path: Path
) -> None:
    """A real three-epoch run checkpointed at epoch 1, resumed to five epochs: the rows agree
    with ``run_history`` and the run's own summary."""
    from api.services.training import run_training
    from tests.unit.triad.runs import small_options

    def options(epochs: int) -> RunOptions:
        base = small_options(epochs)
        return dataclasses.replace(
            base, run_id="real", training=dataclasses.replace(base.training, checkpoint_every=2)
        )

    await run_training(options(3), event_log=store, checkpoint_root=tmp_path, tenant_id="acme")
    summary = await run_training(
        options(5), event_log=store, checkpoint_root=tmp_path, resume=True, tenant_id="acme"
    )
    await caught_up(conn, store, daemon)
    row = await run(conn, "real")
    assert row is not None
    _assert_agrees(
        "real", row, await run_epochs(conn, "real"), await store.read_stream(run_stream_id("real"))
    )
    assert (row.status, row.attempts, row.epochs_completed, row.tenant_id) == (
        RunStatus.COMPLETED,
        2,
        5,
        "acme",
    )
    assert (row.rollbacks, row.budget_overruns) == (summary["rollbacks"], summary["budget_overruns"])
    assert [(e.epoch, e.attempt) for e in await run_epochs(conn, "real", include_abandoned=True)] == [
        (0, 1),
        (1, 1),
        (2, 1),
        (2, 2),
        (3, 2),
        (4, 2),
    ]


# -- the agent registry --------------------------------------------------------------------------


async def test_the_registry_shows_each_agents_status_capabilities_last_seen_and_current_task(
    conn: asyncpg.Connection, store: EventStore, daemon: ProjectionDaemon
) -> None:
    """An agent holds the task last assigned to it until that task ends or moves to another
    agent; its status and reason follow its own stream; lists filter by tenant and status."""
    t = T0
    commands: list[tuple[Any, CommandContext]] = [
        (RegisterAgent("ag-a", "alpha", ("gpu", "cpu"), t), ACME),
        (BringAgentOnline("ag-a", t + timedelta(seconds=1)), ACME),
        (RegisterAgent("ag-b", "beta", ("cpu",), t), ACME),
        (BringAgentOnline("ag-b", t + timedelta(seconds=1)), ACME),
        (RegisterAgent("ag-c", "gamma", (), t), GLOBEX),
        (BringAgentOnline("ag-c", t + timedelta(seconds=1)), GLOBEX),
        (SubmitTask("ag-t1", "echo", t), ACME),
        (AssignTask("ag-t1", "ag-a", t + timedelta(minutes=5), t + timedelta(seconds=2)), ACME),
        (SubmitTask("ag-t2", "echo", t), ACME),
        (AssignTask("ag-t2", "ag-b", t + timedelta(minutes=5), t + timedelta(seconds=2)), ACME),
        (StartTask("ag-t2", 1, t + timedelta(seconds=2)), ACME),
        (CompleteTask("ag-t2", 1, t + timedelta(seconds=3)), ACME),  # b lets go
        (SubmitTask("ag-t3", "echo", t), ACME),
        (AssignTask("ag-t3", "ag-b", t + timedelta(seconds=9), t + timedelta(seconds=3)), ACME),
        (TimeOutTask("ag-t3", t + timedelta(seconds=10)), ACME),
        (DeadLetterTask("ag-t3", "stuck", t + timedelta(seconds=10)), ACME),
        (RequeueTask("ag-t3", t + timedelta(seconds=11)), ACME),
        (AssignTask("ag-t3", "ag-a", t + timedelta(minutes=5), t + timedelta(seconds=12)), ACME),
        (MarkAgentFailed("ag-b", "out of memory", t + timedelta(seconds=13)), ACME),
        (TakeAgentOffline("ag-c", t + timedelta(seconds=14), "maintenance"), GLOBEX),
        (DeregisterAgent("ag-c", "retired", t + timedelta(seconds=15)), GLOBEX),
    ]
    for command, context in commands:
        await send(store, command, context)
    await caught_up(conn, store, daemon)

    a, b, c = [await agent(conn, i) for i in ("ag-a", "ag-b", "ag-c")]
    assert a is not None and b is not None and c is not None
    assert (a.status, a.capabilities, a.tenant_id) == (AgentStatus.ONLINE, ("cpu", "gpu"), "acme")
    assert a.current_task == "ag-t3"  # its latest assignment; t1 is still running too
    assert (a.last_seen_at, a.registered_at) == (t + timedelta(seconds=1), t)
    assert (b.status, b.status_reason, b.current_task) == (AgentStatus.FAILED, "out of memory", None)
    assert b.last_seen_at == t + timedelta(seconds=13)
    assert (c.status, c.status_reason, c.tenant_id) == (AgentStatus.DEREGISTERED, "retired", "globex")
    assert await agent(conn, "nobody") is None

    acme = await agents(conn, tenant_id="acme")
    assert [r.agent_id for r in acme if r.agent_id.startswith("ag-")] == ["ag-a", "ag-b"]
    online = await agents(conn, tenant_id="acme", status=AgentStatus.ONLINE)
    assert [r.agent_id for r in online if r.agent_id.startswith("ag-")] == ["ag-a"]
    first = await agents(conn, tenant_id="acme", limit=1)
    assert [r.agent_id for r in await agents(conn, tenant_id="acme", after=first[-1].cursor)] == [
        r.agent_id for r in acme[1:]
    ]


# -- rebuilding ----------------------------------------------------------------------------------


async def test_a_rebuild_produces_exactly_the_rows_of_the_live_projection(
    conn: asyncpg.Connection, store: EventStore, database_url: str, daemon: ProjectionDaemon
) -> None:
    """Each model rebuilt from the log in one large batch has the rows the daemon wrote live in
    batches of seven, and the daemon goes on applying new events to the new generation."""
    await caught_up(conn, store, daemon)
    before = {view: await _view(conn, view, order) for view, order in VIEWS}
    rebuilder = await connect(database_url)
    try:
        for model in MODELS:
            rebuilt = await rebuild(store, rebuilder, model, batch_size=5000)
            assert rebuilt.replaced is not None and rebuilt.generation != rebuilt.replaced
    finally:
        await rebuilder.close()
    assert {view: await _view(conn, view, order) for view, order in VIEWS} == before
    await send(store, SubmitTask("after-rebuild", "echo", T0))
    await caught_up(conn, store, daemon)
    row = await task(conn, "after-rebuild")
    assert row is not None and row.status is TaskStatus.PENDING


VIEWS = (
    ("task_board", "task_id"),
    ("conversation_messages", "conversation_id, sequence"),
    ("training_runs", "run_id"),
    ("training_run_epochs", "run_id, attempt, epoch"),
)


async def _view(conn: asyncpg.Connection, view: str, order: str) -> list[dict[str, Any]]:
    return [dict(r) for r in await conn.fetch(f"SELECT * FROM {view} ORDER BY {order}")]
