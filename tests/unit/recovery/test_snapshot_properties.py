"""Snapshot plus tail, full replay and the incrementally kept state agree, for every interval.

Random valid command sequences (the same generators as the domain's replay properties) are
handled through the in-memory event log; snapshots are then taken every ``k`` events for
every ``k`` from 1 to the history's length, and loads through the snapshot store are checked
against the live states.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from core.domain import AGENT, CONVERSATION, DOMAIN_EVENTS, TASK, CommandContext, Decider, handle
from core.domain.loading import AtVersion, load_at
from core.domain.snapshots import Snapshot
from eventstore import InMemoryEventStore
from eventstore.state.snapshots import InMemorySnapshotStore
from tests.unit.domain.test_replay_properties import (
    NextCommand,
    Run,
    drive,
    next_agent_command,
    next_conversation_command,
    next_task_command,
)

PROPERTY = settings(max_examples=25, deadline=None)
STREAMS = {"task": "task-t1", "agent": "agent-a1", "conversation": "conversation-c1"}


async def _check(decider: Decider[Any, Any], run: Run) -> None:
    stream_id = STREAMS[decider.category]
    log = InMemoryEventStore()
    for command in run.commands:
        await handle(log, stream_id, command, decider, CommandContext("acme", "prop"))
    recorded = await log.read_stream(stream_id)
    final = run.states[-1]
    assert await _full(log, stream_id, decider) == final
    for interval in range(1, len(recorded) + 1):
        snapshots = InMemorySnapshotStore(keep=len(recorded))
        for event in recorded[interval - 1 :: interval]:
            state = run.states[event.stream_version]
            await snapshots.save(
                Snapshot(
                    stream_id,
                    event.stream_version,
                    decider.state_schema_version,
                    decider.state_to_json(state),
                    event.global_position,
                    event.recorded_at,
                )
            )
        latest = await load_at(log, snapshots, stream_id, decider)
        assert (latest.state, latest.version) == (final, len(recorded))
        for k in range(len(recorded) + 1):
            at_k = await load_at(log, snapshots, stream_id, decider, AtVersion(k))
            assert at_k.state == run.states[k]
            assert at_k.version == k


async def _full(log: InMemoryEventStore, stream_id: str, decider: Decider[Any, Any]) -> Any:
    return decider.fold(DOMAIN_EVENTS.read(e) for e in await log.read_stream(stream_id))


def _property(decider: Decider[Any, Any], next_command: NextCommand, data: st.DataObject) -> None:
    run = drive(decider, next_command, data)
    asyncio.run(_check(decider, run))


@PROPERTY
@given(st.data())
def test_task_snapshot_plus_tail_equals_full_replay_for_every_interval(data: st.DataObject) -> None:
    """Task: snapshot+tail at any interval equals full replay and live state; version k is the k-prefix."""
    _property(TASK, next_task_command, data)


@PROPERTY
@given(st.data())
def test_agent_snapshot_plus_tail_equals_full_replay_for_every_interval(data: st.DataObject) -> None:
    """Agent: snapshot+tail at any interval equals full replay and live state; version k is the k-prefix."""
    _property(AGENT, next_agent_command, data)


@PROPERTY
@given(st.data())
def test_conversation_snapshot_plus_tail_equals_full_replay_for_every_interval(data: st.DataObject) -> None:
    """Conversation: snapshot+tail at any interval equals full and live state; version k is the k-prefix."""
    _property(CONVERSATION, next_conversation_command, data)
