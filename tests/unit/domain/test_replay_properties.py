"""Replay properties over random valid command sequences, for every aggregate.

For each sequence the test keeps the state incrementally, event by event, as a live process
would, and checks that replay agrees with it: folding all events gives the final state, folding
the first k events gives the state at version k (time travel), and resuming from the state at
any version k (after a JSON round trip, as a snapshot would store it) over the remaining events
gives the final state again (snapshot plus tail).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from core.domain import AGENT, CONVERSATION, DOMAIN_EVENTS, TASK, CommandContext, Decider, DomainEvent, handle
from core.domain.agent import (
    AgentState,
    AgentStatus,
    BringAgentOnline,
    DeregisterAgent,
    MarkAgentFailed,
    RecoverAgent,
    RegisterAgent,
    TakeAgentOffline,
    UpdateAgentBeliefs,
)
from core.domain.conversation import (
    AcknowledgeMessage,
    ConversationState,
    DeliverMessage,
    MessageStatus,
    SendMessage,
)
from core.domain.task import (
    AssignTask,
    CancelTask,
    CompleteTask,
    DeadLetterTask,
    FailTask,
    Priority,
    RenewTaskLease,
    ReportTaskProgress,
    RequeueTask,
    ScheduleTaskRetry,
    StartTask,
    SubmitTask,
    TaskState,
    TaskStatus,
    TimeOutTask,
)
from eventstore import InMemoryEventStore

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
PROPERTY = settings(max_examples=60, deadline=None)

Draw = Callable[[st.SearchStrategy[Any]], Any]
# Given the draw function, the current state and the clock: the next valid command, or None
# when the aggregate has reached a final state.
NextCommand = Callable[[Draw, Any, datetime], Any]


@dataclass(frozen=True)
class Run:
    commands: list[Any]
    events: list[DomainEvent]
    states: list[Any]  # states[k]: the state after the first k events


def drive(decider: Decider[Any, Any], next_command: NextCommand, data: st.DataObject) -> Run:
    """Generate and apply valid commands, keeping the state incrementally after each event."""
    state, now = decider.initial_state, T0
    commands: list[Any] = []
    events: list[DomainEvent] = []
    states = [state]
    for _ in range(data.draw(st.integers(1, 40), label="length")):
        now += timedelta(seconds=data.draw(st.integers(0, 90), label="tick"))
        command = next_command(data.draw, state, now)
        if command is None:
            break
        now = max(now, command.at)
        commands.append(command)
        for event in decider.decide(command, state):
            state = decider.evolve(state, event)
            events.append(event)
            states.append(state)
    return Run(commands, events, states)


def check_replay(decider: Decider[Any, Any], run: Run) -> None:
    final = run.states[-1]
    assert decider.fold(run.events) == final
    stored = [DOMAIN_EVENTS.encode(e) for e in run.events]
    decoded = [
        DOMAIN_EVENTS.decode(n.type, n.schema_version, orjson.loads(orjson.dumps(n.data))) for n in stored
    ]
    assert decoded == run.events
    for k, state in enumerate(run.states):
        assert decider.fold(run.events[:k]) == state
        snapshot = orjson.loads(orjson.dumps(decider.state_to_json(state)))
        restored = decider.state_from_json(snapshot)
        assert restored == state
        assert decider.fold(run.events[k:], restored) == final


# Task --------------------------------------------------------------------------------------


def next_task_command(draw: Draw, state: TaskState, now: datetime) -> Any:
    s, token, tid = state.status, state.fencing_token, "t1"
    if s in (TaskStatus.FAILED, TaskStatus.TIMED_OUT):
        return draw(st.sampled_from(_after_attempt(state, now, draw)))()

    def lease() -> datetime:
        return now + timedelta(seconds=draw(st.integers(1, 300)))

    def cancel() -> CancelTask:
        return CancelTask(tid, "x", now)

    options: dict[TaskStatus, list[Callable[[], Any]]] = {
        TaskStatus.UNSUBMITTED: [
            lambda: SubmitTask(
                tid,
                "echo",
                now,
                {"n": draw(st.integers(-(2**31), 2**31))},
                "q",
                draw(st.sampled_from(Priority)),
                draw(st.integers(1, 3)),
            )
        ],
        TaskStatus.PENDING: [lambda: AssignTask(tid, "w", lease(), now), cancel],
        TaskStatus.RETRY_SCHEDULED: [lambda: _assign_when_due(state, now), cancel],
        TaskStatus.ASSIGNED: [
            lambda: StartTask(tid, token, now),
            lambda: RenewTaskLease(tid, token, lease(), now),
            lambda: FailTask(tid, token, "boom", now),
            lambda: _time_out(state, now),
            cancel,
        ],
        TaskStatus.RUNNING: [
            lambda: ReportTaskProgress(tid, token, draw(st.floats(0, 100)), now),
            lambda: RenewTaskLease(tid, token, lease(), now),
            lambda: CompleteTask(tid, token, now, {"ok": True}),
            lambda: FailTask(tid, token, "boom", now),
            lambda: _time_out(state, now),
            cancel,
        ],
        TaskStatus.DEAD_LETTERED: [lambda: RequeueTask(tid, now)],
    }
    choices = options.get(s)
    if not choices:
        return None
    if len(choices) > 1 and not _rarely(draw):
        choices = [c for c in choices if c.__name__ != "cancel"] or choices
    return draw(st.sampled_from(choices))()


def _rarely(draw: Draw) -> bool:
    """True one time in eight: cancelling ends a history, so it is offered sparingly to reach deep states."""
    return bool(draw(st.integers(0, 7)) == 0)


def _assign_when_due(state: TaskState, now: datetime) -> AssignTask:
    at = max(now, state.retry_not_before or now)
    return AssignTask(state.task_id, "w2", at + timedelta(minutes=1), at)


def _time_out(state: TaskState, now: datetime) -> TimeOutTask:
    return TimeOutTask(state.task_id, max(now, state.lease_expires_at or now))


def _after_attempt(state: TaskState, now: datetime, draw: Draw) -> list[Callable[[], Any]]:
    options: list[Callable[[], Any]] = [
        lambda: DeadLetterTask(state.task_id, "x", now),
        lambda: CancelTask(state.task_id, "x", now),
    ]
    if state.attempt < state.max_attempts:
        delay = timedelta(seconds=draw(st.integers(0, 60)))
        options.append(lambda: ScheduleTaskRetry(state.task_id, now + delay, now))
    return options


@PROPERTY
@given(st.data())
def test_task_replay_equals_the_incremental_state(data: st.DataObject) -> None:
    """For random valid task commands, full, prefix and snapshot-plus-tail replays equal the live state."""
    run = drive(TASK, next_task_command, data)
    check_replay(TASK, run)


@PROPERTY
@given(st.data())
def test_fencing_tokens_never_go_back(data: st.DataObject) -> None:
    """Along any valid task history the fencing token never decreases and attempts stay within budget."""
    run = drive(TASK, next_task_command, data)
    tokens = [s.fencing_token for s in run.states]
    assert tokens == sorted(tokens)
    assert all(s.attempt <= s.max_attempts for s in run.states if s.status is not TaskStatus.UNSUBMITTED)


# Agent -------------------------------------------------------------------------------------

DIGESTS = ["sha256:" + c * 64 for c in "abc"]


def next_agent_command(draw: Draw, state: AgentState, now: datetime) -> Any:
    aid = "a1"

    def beliefs() -> UpdateAgentBeliefs:
        return UpdateAgentBeliefs(aid, draw(st.sampled_from(DIGESTS)), draw(st.integers(0, 9)), now)

    options: dict[AgentStatus, list[Callable[[], Any]]] = {
        AgentStatus.UNREGISTERED: [
            lambda: RegisterAgent(aid, "p", tuple(draw(st.lists(st.sampled_from(["x", "y", "z"])))), now)
        ],
        AgentStatus.OFFLINE: [
            lambda: BringAgentOnline(aid, now),
            beliefs,
            lambda: DeregisterAgent(aid, "r", now),
        ],
        AgentStatus.ONLINE: [
            lambda: TakeAgentOffline(aid, now),
            lambda: MarkAgentFailed(aid, "f", now),
            beliefs,
            lambda: DeregisterAgent(aid, "r", now),
        ],
        AgentStatus.FAILED: [lambda: RecoverAgent(aid, now), lambda: DeregisterAgent(aid, "r", now)],
    }
    choices = options.get(state.status)
    return draw(st.sampled_from(choices))() if choices else None


@PROPERTY
@given(st.data())
def test_agent_replay_equals_the_incremental_state(data: st.DataObject) -> None:
    """For random valid agent commands, full, prefix and snapshot-plus-tail replays equal the live state."""
    check_replay(AGENT, drive(AGENT, next_agent_command, data))


# Conversation ------------------------------------------------------------------------------

PEOPLE = ["alice", "bob", "carol"]


def next_conversation_command(draw: Draw, state: ConversationState, now: datetime) -> Any:
    cid = "c1"
    deliverable = _deliverable(state)
    delivered = [m.sequence for m in state.in_flight if m.status is MessageStatus.DELIVERED]
    options: list[Callable[[], Any]] = [
        lambda: SendMessage(
            cid, draw(st.sampled_from(PEOPLE)), draw(st.sampled_from(PEOPLE)), now, {"t": "x"}
        )
    ]
    if deliverable:
        options.append(lambda: DeliverMessage(cid, draw(st.sampled_from(deliverable)), now))
    if delivered:
        options.append(lambda: AcknowledgeMessage(cid, draw(st.sampled_from(delivered)), now))
    return draw(st.sampled_from(options))()


def _deliverable(state: ConversationState) -> list[int]:
    """The earliest undelivered message to each recipient: the only ones in-order delivery allows."""
    first: dict[str, int] = {}
    for message in state.in_flight:
        if message.status is MessageStatus.SENT:
            first.setdefault(message.recipient, message.sequence)
    return sorted(first.values())


@PROPERTY
@given(st.data())
def test_conversation_replay_equals_the_incremental_state(data: st.DataObject) -> None:
    """For random valid conversation commands, full, prefix and snapshot-plus-tail replays equal live."""
    run = drive(CONVERSATION, next_conversation_command, data)
    check_replay(CONVERSATION, run)
    sent = [e.sequence for e in run.events if type(e).__name__ == "MessageSent"]
    assert sent == list(range(1, len(sent) + 1))


# Through the event log ---------------------------------------------------------------------


@settings(max_examples=25, deadline=None)
@given(st.data())
def test_handled_commands_load_back_to_the_live_state(data: st.DataObject) -> None:
    """Commands handled against the event log load back, whole or up to any version, as kept live."""
    run = drive(TASK, next_task_command, data)
    asyncio.run(_replay_through_the_log(run))


async def _replay_through_the_log(run: Run) -> None:
    log = InMemoryEventStore()
    context = CommandContext("acme", "prop")
    for command in run.commands:
        await handle(log, "task-t1", command, TASK, context)
    stored = await log.read_stream("task-t1")
    assert len(stored) == len(run.events)
    for k in range(len(stored) + 1):
        prefix = await log.read_stream("task-t1", to_version=k) if k else []
        assert TASK.fold(DOMAIN_EVENTS.read(e) for e in prefix) == run.states[k]
