"""Command handling against the in-memory event log: metadata, concurrency and idempotency."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import pytest

from core.domain import (
    AGENT,
    DOMAIN_EVENTS,
    TASK,
    CommandContext,
    CommandRetriesExhausted,
    Decider,
    DomainEvent,
    EventRegistry,
    IllegalTransition,
    UnknownEvent,
    command_event_id,
    handle,
    load,
)
from core.domain.agent import RegisterAgent, UpdateAgentBeliefs
from core.domain.task import (
    AssignTask,
    CancelTask,
    CompleteTask,
    RenewTaskLease,
    ReportTaskProgress,
    StartTask,
    SubmitTask,
    TaskCancelled,
    TaskProgressed,
    TaskStatus,
    TaskSubmitted,
)
from core.errors import InvalidInput, TenantMismatch, WrongExpectedVersion
from core.events import AppendResult, ExpectedVersion, NewEvent, RecordedEvent
from eventstore import InMemoryEventStore

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
LEASE = T0 + timedelta(minutes=5)
STREAM = "task-t1"
CTX = CommandContext(tenant_id="acme", actor="user:ada")


async def running_task(log: Any) -> None:
    """Bring task t1 to running under fencing token 1."""
    for command in (SubmitTask("t1", "echo", T0), AssignTask("t1", "w1", LEASE, T0), StartTask("t1", 1, T0)):
        await handle(log, STREAM, command, TASK, CTX)


class Interfering:
    """An event log that lets another writer append right before each of our appends."""

    def __init__(self, inner: InMemoryEventStore, writes: Sequence[NewEvent | None]) -> None:
        self.inner = inner
        self.writes = list(writes)
        self.appends = 0

    async def read_stream(self, stream_id: str, *args: Any, **kwargs: Any) -> list[RecordedEvent]:
        return await self.inner.read_stream(stream_id, *args, **kwargs)

    async def append(
        self, stream_id: str, events: Sequence[NewEvent], expected_version: Any = ExpectedVersion.ANY
    ) -> AppendResult:
        self.appends += 1
        if self.writes:
            other = self.writes.pop(0)
            if other is not None:
                await self.inner.append(stream_id, [other])
        return await self.inner.append(stream_id, events, expected_version)


def by_another_writer(event: DomainEvent) -> NewEvent:
    return DOMAIN_EVENTS.encode(event, {"tenant_id": "acme"})


def cancel_event() -> NewEvent:
    return by_another_writer(TaskCancelled("t1", "operator", T0))


def progress_event() -> NewEvent:
    return by_another_writer(TaskProgressed("t1", 1, 10.0, "", T0))


async def test_handle_appends_the_decided_events_at_version_one() -> None:
    """Handling a submit on an empty stream appends TaskSubmitted as version 1 and returns the new state."""
    log = InMemoryEventStore()
    handled = await handle(log, STREAM, SubmitTask("t1", "echo", T0), TASK, CTX)
    assert (handled.version, handled.attempts, handled.duplicate) == (1, 1, False)
    assert handled.state.status is TaskStatus.PENDING
    assert [type(e) for e in handled.events] == [TaskSubmitted]
    stored = await log.read_stream(STREAM)
    assert [e.event_id for e in stored] == list(handled.event_ids)


async def test_every_event_records_tenant_actor_correlation_and_causation() -> None:
    """Each stored event's metadata names the tenant, actor, command and the flow it belongs to."""
    log = InMemoryEventStore()
    ctx = CommandContext(
        "acme", "user:ada", "cmd-1", correlation_id="flow-9", causation_id="evt-8", trace_id="tr"
    )
    await handle(log, STREAM, SubmitTask("t1", "echo", T0), TASK, ctx)
    [event] = await log.read_stream(STREAM)
    assert dict(event.metadata) == {
        "tenant_id": "acme",
        "actor": "user:ada",
        "command_id": "cmd-1",
        "command_type": "SubmitTask",
        "correlation_id": "flow-9",
        "causation_id": "evt-8",
        "trace_id": "tr",
    }
    assert event.tenant_id == "acme"


async def test_a_command_without_a_flow_starts_one() -> None:
    """Without correlation and causation ids, both default to the command's own id."""
    log = InMemoryEventStore()
    handled = await handle(log, STREAM, SubmitTask("t1", "echo", T0), TASK, CTX)
    [event] = await log.read_stream(STREAM)
    assert event.metadata["correlation_id"] == event.metadata["causation_id"] == handled.command_id


async def test_a_refused_command_writes_nothing() -> None:
    """A command the decider refuses raises its error and leaves the stream as it was."""
    log = InMemoryEventStore()
    await handle(log, STREAM, SubmitTask("t1", "echo", T0), TASK, CTX)
    with pytest.raises(IllegalTransition, match="pending"):
        await handle(log, STREAM, CompleteTask("t1", 1, T0), TASK, CTX)
    assert await log.stream_version(STREAM) == 1


async def test_repeating_a_command_id_stores_nothing_twice() -> None:
    """A command handled twice under one command id is stored once; the repeat returns the stored events."""
    log = InMemoryEventStore()
    await running_task(log)
    ctx = dataclasses.replace(CTX, command_id="complete-once")
    first = await handle(log, STREAM, CompleteTask("t1", 1, T0), TASK, ctx)
    again = await handle(log, STREAM, CompleteTask("t1", 1, T0), TASK, ctx)
    assert again.duplicate and not first.duplicate
    assert again.event_ids == first.event_ids and again.events == first.events
    assert again.version == first.version == await log.stream_version(STREAM) == 4


async def test_command_ids_derive_the_event_ids() -> None:
    """The events of a command with an id get ids derived from stream, command id and position."""
    log = InMemoryEventStore()
    ctx = dataclasses.replace(CTX, command_id="submit-1")
    handled = await handle(log, STREAM, SubmitTask("t1", "echo", T0), TASK, ctx)
    assert handled.event_ids == (command_event_id(STREAM, "submit-1", 0),)
    assert command_event_id("task-t2", "submit-1", 0) != handled.event_ids[0]


async def test_distinct_command_ids_are_distinct_commands() -> None:
    """Two progress reports under different command ids are both stored."""
    log = InMemoryEventStore()
    await running_task(log)
    for command_id in ("p-1", "p-2"):
        ctx = dataclasses.replace(CTX, command_id=command_id)
        await handle(log, STREAM, ReportTaskProgress("t1", 1, 10.0, T0), TASK, ctx)
    assert await log.stream_version(STREAM) == 5


async def test_commands_without_ids_are_not_deduplicated() -> None:
    """The same progress report sent twice without a command id is stored twice."""
    log = InMemoryEventStore()
    await running_task(log)
    for _ in range(2):
        await handle(log, STREAM, ReportTaskProgress("t1", 1, 10.0, T0), TASK, CTX)
    assert await log.stream_version(STREAM) == 5


async def test_a_lost_race_reloads_and_decides_again() -> None:
    """When another writer appends first, handle reloads and decides on the state that includes it."""
    inner = InMemoryEventStore()
    await running_task(inner)
    log = Interfering(inner, [progress_event()])
    handled = await handle(log, STREAM, CompleteTask("t1", 1, T0), TASK, CTX)
    assert handled.attempts == 2 and handled.version == 5
    assert handled.state.status is TaskStatus.COMPLETED
    assert [e.type for e in await inner.read_stream(STREAM, from_version=4)] == [
        "TaskProgressed",
        "TaskCompleted",
    ]


async def test_a_decision_made_stale_by_the_winner_is_refused_after_reload() -> None:
    """Completing a task that another writer cancelled meanwhile is refused, not written over it."""
    inner = InMemoryEventStore()
    await running_task(inner)
    log = Interfering(inner, [cancel_event()])
    with pytest.raises(IllegalTransition, match="cancelled"):
        await handle(log, STREAM, CompleteTask("t1", 1, T0), TASK, CTX)
    assert (await load(inner, STREAM, TASK)).state.status is TaskStatus.CANCELLED


async def test_retries_are_bounded() -> None:
    """A command that loses every race gives up after max_attempts with CommandRetriesExhausted."""
    inner = InMemoryEventStore()
    await running_task(inner)
    log = Interfering(inner, [progress_event() for _ in range(5)])
    with pytest.raises(CommandRetriesExhausted) as caught:
        await handle(log, STREAM, CompleteTask("t1", 1, T0), TASK, CTX, max_attempts=3)
    assert log.appends == 3 and caught.value.attempts == 3
    assert isinstance(caught.value.__cause__, WrongExpectedVersion)
    assert (await load(inner, STREAM, TASK)).state.status is TaskStatus.RUNNING


async def test_a_retry_after_a_lost_race_keeps_the_command_idempotent() -> None:
    """A command that lost a race and then won is still found as a duplicate when repeated."""
    inner = InMemoryEventStore()
    await running_task(inner)
    ctx = dataclasses.replace(CTX, command_id="complete-after-race")
    first = await handle(Interfering(inner, [progress_event()]), STREAM, CompleteTask("t1", 1, T0), TASK, ctx)
    again = await handle(inner, STREAM, CompleteTask("t1", 1, T0), TASK, ctx)
    assert again.duplicate and again.event_ids == first.event_ids


class Gate:
    """An event log whose reads wait until ``readers`` callers have all read, to force a race."""

    def __init__(self, inner: InMemoryEventStore, readers: int) -> None:
        self.inner = inner
        self.barrier = asyncio.Barrier(readers)
        self.first = True

    async def read_stream(self, stream_id: str, *args: Any, **kwargs: Any) -> list[RecordedEvent]:
        events = await self.inner.read_stream(stream_id, *args, **kwargs)
        if self.first:
            await self.barrier.wait()
        return events

    async def append(self, stream_id: str, events: Sequence[NewEvent], expected_version: Any) -> AppendResult:
        self.first = False
        return await self.inner.append(stream_id, events, expected_version)


async def test_racing_deliveries_of_one_command_store_it_once() -> None:
    """Two concurrent deliveries of one command id, both loaded before either appends, store it once."""
    inner = InMemoryEventStore()
    log = Gate(inner, readers=2)
    ctx = dataclasses.replace(CTX, command_id="submit-race")
    results = await asyncio.gather(
        *(handle(log, STREAM, SubmitTask("t1", "echo", T0), TASK, ctx) for _ in range(2))
    )
    assert await inner.stream_version(STREAM) == 1
    assert results[0].event_ids == results[1].event_ids


async def test_racing_distinct_commands_both_apply_in_some_order() -> None:
    """Two different commands racing on one stream are both applied, one after a reload."""
    inner = InMemoryEventStore()
    await running_task(inner)
    log = Gate(inner, readers=2)
    reports = [ReportTaskProgress("t1", 1, p, T0) for p in (10.0, 20.0)]
    results = await asyncio.gather(*(handle(log, STREAM, r, TASK, CTX) for r in reports))
    assert sorted(r.attempts for r in results) == [1, 2]
    assert await inner.stream_version(STREAM) == 5


async def test_nothing_to_record_appends_nothing() -> None:
    """A command the decider answers with no events appends nothing and reports no events."""
    log = InMemoryEventStore()
    digest = "sha256:" + "d" * 64
    for command in (RegisterAgent("a1", "p", (), T0), UpdateAgentBeliefs("a1", digest, 1, T0)):
        await handle(log, "agent-a1", command, AGENT, CTX)
    handled = await handle(log, "agent-a1", UpdateAgentBeliefs("a1", digest, 1, T0), AGENT, CTX)
    assert handled.events == () and handled.version == 2 == await log.stream_version("agent-a1")


async def test_load_of_an_empty_stream_is_the_initial_state_at_version_zero() -> None:
    """Loading a stream with no events gives the decider's initial state and version 0."""
    loaded = await load(InMemoryEventStore(), "task-nothing", TASK)
    assert (loaded.state, loaded.version, loaded.recorded) == (TASK.initial_state, 0, ())


async def test_load_upcasts_old_events() -> None:
    """Loading a stream written under an old schema version folds its upcast form."""
    log = InMemoryEventStore()
    v1 = {"task_id": "t1", "name": "echo", "payload": {}, "priority": 1, "submitted_at": T0.isoformat()}
    await log.append(STREAM, [NewEvent("TaskSubmitted", v1, {"tenant_id": "t"}, schema_version=1)])
    handled = await handle(log, STREAM, CancelTask("t1", "stop", T0), TASK, CommandContext("t", "a"))
    assert handled.state.handler == "echo" and handled.state.status is TaskStatus.CANCELLED


async def test_handle_refuses_a_stream_of_another_category() -> None:
    """Handling a task command on an agent stream raises InvalidInput before touching the log."""
    with pytest.raises(InvalidInput, match="not a 'task' stream"):
        await handle(InMemoryEventStore(), "agent-t1", SubmitTask("t1", "echo", T0), TASK, CTX)


async def test_handle_needs_at_least_one_attempt() -> None:
    """max_attempts below 1 raises InvalidInput."""
    with pytest.raises(InvalidInput, match="max_attempts"):
        await handle(InMemoryEventStore(), STREAM, SubmitTask("t1", "echo", T0), TASK, CTX, max_attempts=0)


async def test_another_tenants_stream_is_refused_by_the_log() -> None:
    """A command for a stream owned by another tenant fails with the log's TenantMismatch."""
    log = InMemoryEventStore()
    await handle(log, STREAM, SubmitTask("t1", "echo", T0), TASK, CTX)
    with pytest.raises(TenantMismatch):
        await handle(log, STREAM, CancelTask("t1", "x", T0), TASK, CommandContext("other", "mallory"))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"tenant_id": "", "actor": "a"},
        {"tenant_id": "t", "actor": ""},
        {"tenant_id": "t", "actor": "a", "command_id": ""},
    ],
    ids=["no-tenant", "no-actor", "empty-command-id"],
)
def test_context_needs_tenant_and_actor(kwargs: dict[str, Any]) -> None:
    """A context without a tenant or actor, or with an empty command id, raises InvalidInput."""
    with pytest.raises(InvalidInput):
        CommandContext(**kwargs)


# A decider that records two events per command, to show every event of a command is deduplicated.
@dataclasses.dataclass(frozen=True, slots=True)
class Ticked(DomainEvent):
    TYPE: ClassVar[str] = "Ticked"
    SCHEMA_VERSION: ClassVar[int] = 1

    n: int


def _decide_ticks(command: int, state: int) -> list[DomainEvent]:
    return [Ticked(state + 1), Ticked(state + 2)]


def _evolve_ticks(state: int, event: DomainEvent | UnknownEvent) -> int:
    return event.n if isinstance(event, Ticked) else state


def _ticks_json(state: int) -> dict[str, Any]:
    return {"n": state}


def _ticks_from_json(data: Mapping[str, Any]) -> int:
    return int(data["n"])


TICKS: Decider[int, int] = Decider("ticks", 0, _decide_ticks, _evolve_ticks, 1, _ticks_json, _ticks_from_json)


async def test_every_event_of_a_multi_event_command_is_deduplicated() -> None:
    """A command that records two events returns both as duplicates when repeated, storing neither again."""
    log = InMemoryEventStore()
    registry = EventRegistry([Ticked])
    ctx = dataclasses.replace(CTX, command_id="tick")
    first = await handle(log, "ticks-1", 1, TICKS, ctx, registry=registry)
    again = await handle(log, "ticks-1", 1, TICKS, ctx, registry=registry)
    assert first.events == again.events == (Ticked(1), Ticked(2))
    assert again.duplicate and again.event_ids == first.event_ids
    assert await log.stream_version("ticks-1") == 2 and again.state == 2


class BeforeFirstAppend:
    """An event log that runs ``meanwhile`` after our load and before our first append: the
    pause (GC, a busy loop) in which a heartbeat and another delivery get there first."""

    def __init__(self, inner: InMemoryEventStore, meanwhile: Callable[[], Awaitable[None]]) -> None:
        self.inner = inner
        self.meanwhile: Callable[[], Awaitable[None]] | None = meanwhile

    async def read_stream(self, stream_id: str, *args: Any, **kwargs: Any) -> list[RecordedEvent]:
        return await self.inner.read_stream(stream_id, *args, **kwargs)

    async def read_event(self, event_id: Any) -> RecordedEvent | None:
        return await self.inner.read_event(event_id)

    async def append(self, stream_id: str, events: Sequence[NewEvent], expected_version: Any) -> AppendResult:
        if self.meanwhile is not None:
            meanwhile, self.meanwhile = self.meanwhile, None
            await meanwhile()
        return await self.inner.append(stream_id, events, expected_version)


class RememberingLoader:
    """A write-through loader that keeps every state it is told was stored."""

    def __init__(self, log: Any) -> None:
        self.log = log
        self.stored_states: list[tuple[int, Any]] = []

    async def load(self, stream_id: str, decider: Any, registry: Any, *, fresh: bool = False) -> Any:
        return await load(self.log, stream_id, decider, registry)

    async def stored(self, stream_id: str, decider: Any, state: Any, version: int) -> None:
        self.stored_states.append((version, state))


async def test_a_delivery_answered_as_a_duplicate_reports_the_streams_real_state() -> None:
    """Delivery 2 decides on v3; a lease renewal (v4) and delivery 1 (v5) land before its append.
    It must report the stream's real state (the renewed lease), never its stale fold."""
    inner = InMemoryEventStore()
    await running_task(inner)
    progress = ReportTaskProgress("t1", 1, 50.0, T0, "half")
    delivery = dataclasses.replace(CTX, command_id="progress-1")
    renewed = T0 + timedelta(hours=1)

    async def meanwhile() -> None:
        await handle(inner, STREAM, RenewTaskLease("t1", 1, renewed, T0), TASK, CTX)
        await handle(inner, STREAM, progress, TASK, delivery)

    loader = RememberingLoader(inner)
    late = await handle(BeforeFirstAppend(inner, meanwhile), STREAM, progress, TASK, delivery, loader=loader)
    truth = await load(inner, STREAM, TASK)
    assert truth.version == 5 and truth.state.lease_expires_at == renewed
    assert late.duplicate and late.version == 5 and late.state == truth.state
    assert all(state.lease_expires_at == renewed for version, state in loader.stored_states if version == 5)


def _decide_by_parity(command: int, state: int) -> list[DomainEvent]:
    """Two events on an even state, one on an odd one: deliveries on different states differ."""
    return [Ticked(state + 1), Ticked(state + 2)] if state % 2 == 0 else [Ticked(state + 1)]


BY_PARITY: Decider[int, int] = dataclasses.replace(TICKS, decide=_decide_by_parity)


async def test_a_delivery_that_decided_other_events_gets_the_stored_ones() -> None:
    """Delivery 1 stored one event; delivery 2, decided on an older state, would store two with
    the same first id. The log refuses it (EventIdConflict) and handling reports delivery 1's run."""
    inner = InMemoryEventStore()
    registry = EventRegistry([Ticked])
    delivery = dataclasses.replace(CTX, command_id="tick-by-parity")
    await handle(inner, "ticks-1", 0, BY_PARITY, CTX, registry=registry)  # state 2

    async def meanwhile() -> None:
        await inner.append("ticks-1", [registry.encode(Ticked(3), {"tenant_id": "acme"})])  # state 3
        await handle(inner, "ticks-1", 0, BY_PARITY, delivery, registry=registry)  # one event: 4

    log = BeforeFirstAppend(inner, meanwhile)
    late = await handle(log, "ticks-1", 0, BY_PARITY, delivery, registry=registry)
    assert late.duplicate and late.events == (Ticked(4),)
    assert late.version == 4 and late.state == 4
    assert await inner.stream_version("ticks-1") == 4
