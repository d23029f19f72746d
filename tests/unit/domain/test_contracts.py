"""Event contracts: the registry, encoding, decoding, upcasting and the lenient mode."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import orjson
import pytest

from core.codec import encode_json
from core.domain import (
    AGENT,
    CONVERSATION,
    DOMAIN_EVENTS,
    TASK,
    DomainEvent,
    EventRegistry,
    MalformedEvent,
    UnexpectedEvent,
    UnknownEvent,
    UnknownEventType,
    UnknownSchemaVersion,
    Upcaster,
)
from core.domain.agent import (
    AgentBeliefsUpdated,
    AgentDeregistered,
    AgentFailed,
    AgentRecovered,
    AgentRegistered,
    AgentWentOffline,
    AgentWentOnline,
)
from core.domain.callback import CallbackAttempted
from core.domain.conversation import MessageAcknowledged, MessageDelivered, MessageSent
from core.domain.retention import StreamsArchived
from core.domain.subject import SubjectForgotten
from core.domain.task import (
    Priority,
    TaskAssigned,
    TaskCancelled,
    TaskCompleted,
    TaskDeadLettered,
    TaskFailed,
    TaskLeaseRenewed,
    TaskProgressed,
    TaskRequeued,
    TaskRetryScheduled,
    TaskStarted,
    TaskSubmitted,
    TaskTimedOut,
)
from core.events import RecordedEvent
from tests.unit.triad.samples import RUN_SAMPLES

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
LEASE = T0 + timedelta(minutes=1)

SAMPLES: list[DomainEvent] = [
    AgentRegistered("a1", "planner", ("plan", "search"), T0),
    AgentWentOnline("a1", T0),
    AgentWentOffline("a1", "drain", T0),
    AgentFailed("a1", "oom", T0),
    AgentRecovered("a1", T0),
    AgentBeliefsUpdated("a1", "sha256:" + "c" * 64, 2048, 3, T0),
    AgentDeregistered("a1", "retired", T0),
    TaskSubmitted("t1", "echo", {"nested": {"list": [1, 2.5, None]}}, "gpu", Priority.HIGH, 4, T0),
    TaskAssigned("t1", "worker-1", 7, 2, LEASE, T0),
    TaskStarted("t1", 7, T0),
    TaskLeaseRenewed("t1", 7, LEASE, T0),
    TaskProgressed("t1", 7, 12.5, "epoch 1", T0),
    TaskCompleted("t1", 7, {"score": 0.9}, T0),
    TaskFailed("t1", 7, "boom", T0),
    TaskTimedOut("t1", 7, LEASE, LEASE),
    TaskRetryScheduled("t1", 3, LEASE, T0),
    TaskCancelled("t1", "stop", T0),
    TaskDeadLettered("t1", "poison", T0),
    TaskRequeued("t1", T0),
    MessageSent("c1", 1, "m-1", "alice", "bob", {"text": "hi"}, "m-1", None, T0),
    MessageSent("c1", 2, "m-2", "bob", "alice", {}, "m-1", "m-1", T0),
    MessageDelivered("c1", 1, "bob", T0),
    MessageAcknowledged("c1", 1, "bob", T0),
    *RUN_SAMPLES,
    SubjectForgotten("alice", 2, "erasure request", T0),
    StreamsArchived("task", 90, True, T0, ("task-t1", "task-t2"), 9),
    CallbackAttempted("t1", "e1", 1, "https://example.com/hook", False, 500, None, T0),
]

V1_TASK_SUBMITTED = {
    "task_id": "t1",
    "name": "echo",
    "payload": {"x": 1},
    "priority": 8,
    "submitted_at": T0.isoformat(),
}
V2_TASK_SUBMITTED = TaskSubmitted("t1", "echo", {"x": 1}, "default", Priority.HIGH, 3, T0)


def test_samples_cover_every_registered_type() -> None:
    """The samples below hold at least one event of every type the registry knows."""
    assert {e.TYPE for e in SAMPLES} == DOMAIN_EVENTS.types


@pytest.mark.parametrize("event", SAMPLES, ids=lambda e: f"{e.TYPE}-{id(e) % 1000}")
def test_encode_then_decode_returns_an_equal_event(event: DomainEvent) -> None:
    """Every event survives encoding to NewEvent, JSON bytes and decoding unchanged."""
    new = DOMAIN_EVENTS.encode(event, {"tenant_id": "acme"})
    assert (new.type, new.schema_version, new.metadata) == (
        event.TYPE,
        event.SCHEMA_VERSION,
        {"tenant_id": "acme"},
    )
    stored = orjson.loads(encode_json(new.type, "data", new.data))
    assert DOMAIN_EVENTS.decode(new.type, new.schema_version, stored) == event


def test_encode_keeps_a_given_event_id() -> None:
    """An event id passed to encode is the NewEvent's id, so retries can reuse it."""
    event_id = uuid.uuid4()
    assert DOMAIN_EVENTS.encode(SAMPLES[0], event_id=event_id).id == event_id


def test_encode_refuses_an_unregistered_event() -> None:
    """Encoding an event whose type the registry does not know raises UnknownEventType."""

    @dataclasses.dataclass(frozen=True, slots=True)
    class Stray(DomainEvent):
        TYPE: ClassVar[str] = "Stray"
        SCHEMA_VERSION: ClassVar[int] = 1

    with pytest.raises(UnknownEventType, match="Stray"):
        DOMAIN_EVENTS.encode(Stray())


def test_task_submitted_v1_upcasts_to_v2() -> None:
    """A v1 TaskSubmitted reads as the v2 event: name becomes handler, urgency 8 the high band."""
    assert DOMAIN_EVENTS.decode("TaskSubmitted", 1, V1_TASK_SUBMITTED) == V2_TASK_SUBMITTED


@pytest.mark.parametrize(
    ("urgency", "band"),
    [
        (9, Priority.HIGH),
        (7, Priority.HIGH),
        (6, Priority.NORMAL),
        (3, Priority.NORMAL),
        (2, Priority.LOW),
        (0, Priority.LOW),
    ],
)
def test_v1_urgency_maps_to_the_band_the_v1_worker_used(urgency: int, band: Priority) -> None:
    """v1 urgencies 7-9 read as high, 3-6 as normal and 0-2 as low."""
    event = DOMAIN_EVENTS.decode("TaskSubmitted", 1, {**V1_TASK_SUBMITTED, "priority": urgency})
    assert isinstance(event, TaskSubmitted) and event.priority is band


def test_old_task_history_replays_to_the_same_state_as_its_upcast_form() -> None:
    """A task history opening with a v1 TaskSubmitted folds to the same state as with v2."""
    tail = [TaskAssigned("t1", "w", 1, 1, LEASE, T0), TaskStarted("t1", 1, T0), TaskFailed("t1", 1, "x", T0)]
    stored_tail = [(e.TYPE, e.SCHEMA_VERSION, DOMAIN_EVENTS.encode(e).data) for e in tail]
    old = [("TaskSubmitted", 1, V1_TASK_SUBMITTED), *stored_tail]
    new = [("TaskSubmitted", 2, DOMAIN_EVENTS.encode(V2_TASK_SUBMITTED).data), *stored_tail]
    old_state = TASK.fold(DOMAIN_EVENTS.decode(*row) for row in old)
    assert old_state == TASK.fold(DOMAIN_EVENTS.decode(*row) for row in new)
    assert old_state.max_attempts == 3 and old_state.handler == "echo"


def test_agent_registered_v1_capabilities_string_upcasts_to_a_sorted_list() -> None:
    """A v1 AgentRegistered with 'search, plan,,plan' folds like v2 with ('plan', 'search')."""
    v1 = {"agent_id": "a1", "name": "p", "capabilities": "search, plan,,plan", "at": T0.isoformat()}
    v2 = AgentRegistered("a1", "p", ("plan", "search"), T0)
    assert DOMAIN_EVENTS.decode("AgentRegistered", 1, v1) == v2
    assert AGENT.fold([DOMAIN_EVENTS.decode("AgentRegistered", 1, v1)]) == AGENT.fold([v2])


def test_unknown_type_names_the_type() -> None:
    """Reading a type no contract covers raises UnknownEventType naming it."""
    with pytest.raises(UnknownEventType, match="TaskTeleported") as caught:
        DOMAIN_EVENTS.decode("TaskTeleported", 1, {})
    assert caught.value.event_type == "TaskTeleported"


@pytest.mark.parametrize("version", [0, 4, 99])
def test_unknown_version_names_type_and_version(version: int) -> None:
    """Reading a version with no path to the current one raises UnknownSchemaVersion naming both."""
    with pytest.raises(UnknownSchemaVersion) as caught:
        DOMAIN_EVENTS.decode("TaskSubmitted", version, V1_TASK_SUBMITTED)
    assert (caught.value.event_type, caught.value.schema_version, caught.value.current) == (
        "TaskSubmitted",
        version,
        3,
    )
    assert f"schema version {version}" in str(caught.value)


def test_version_without_an_upcaster_is_unknown() -> None:
    """An old version of a type that has no upcaster for it raises UnknownSchemaVersion."""
    with pytest.raises(UnknownSchemaVersion, match="'TaskStarted'"):
        DOMAIN_EVENTS.decode("TaskStarted", 0, {})


@pytest.mark.parametrize(
    "data",
    [
        {"task_id": "t1", "fencing_token": 1},
        {"task_id": "t1", "fencing_token": "1", "at": T0.isoformat()},
        {"task_id": "t1", "fencing_token": True, "at": T0.isoformat()},
        {"task_id": "t1", "fencing_token": 1, "at": "yesterday"},
        {"task_id": "t1", "fencing_token": 1, "at": "2025-03-01T12:00:00"},
        {"task_id": "t1", "fencing_token": 1, "at": T0.isoformat(), "extra": 1},
    ],
    ids=["missing-field", "str-for-int", "bool-for-int", "bad-time", "naive-time", "unknown-field"],
)
def test_data_that_does_not_fit_the_contract_is_malformed(data: dict[str, Any]) -> None:
    """Data that misses, mistypes or adds a field raises MalformedEvent naming the type."""
    with pytest.raises(MalformedEvent, match="TaskStarted"):
        DOMAIN_EVENTS.decode("TaskStarted", 1, data)


def test_malformed_old_version_fails_in_its_upcaster_as_malformed() -> None:
    """A v1 event missing a field v1 had raises MalformedEvent, not a bare KeyError."""
    broken = {k: v for k, v in V1_TASK_SUBMITTED.items() if k != "name"}
    with pytest.raises(MalformedEvent, match="v1"):
        DOMAIN_EVENTS.decode("TaskSubmitted", 1, broken)


def test_bad_enum_value_is_malformed() -> None:
    """A priority outside the enum raises MalformedEvent listing the allowed values."""
    data = {**DOMAIN_EVENTS.encode(V2_TASK_SUBMITTED).data, "priority": "urgent"}
    with pytest.raises(MalformedEvent, match="high"):
        DOMAIN_EVENTS.decode("TaskSubmitted", 2, data)


@pytest.mark.parametrize(
    ("event_type", "version", "data"),
    [("TaskTeleported", 1, {"a": 1}), ("TaskSubmitted", 9, {}), ("TaskStarted", 1, {"task_id": "t1"})],
    ids=["unknown-type", "unknown-version", "malformed"],
)
def test_lenient_read_returns_a_generic_event(event_type: str, version: int, data: dict[str, Any]) -> None:
    """In lenient mode an unreadable event comes back as an UnknownEvent with its raw data and reason."""
    event = DOMAIN_EVENTS.decode(event_type, version, data, lenient=True)
    assert isinstance(event, UnknownEvent)
    assert (event.type, event.schema_version, event.data) == (event_type, version, data)
    assert event_type in event.reason


def test_lenient_read_of_a_good_event_is_the_domain_event() -> None:
    """Lenient mode decodes a readable event exactly as strict mode does."""
    assert DOMAIN_EVENTS.decode("TaskSubmitted", 1, V1_TASK_SUBMITTED, lenient=True) == V2_TASK_SUBMITTED


@pytest.mark.parametrize("decider", [AGENT, TASK, CONVERSATION], ids=lambda d: d.category)
def test_deciders_leave_state_unchanged_on_an_unknown_event(decider: Any) -> None:
    """Folding an UnknownEvent from a lenient read changes no aggregate's state."""
    unknown = UnknownEvent("Future", 1, {}, "unknown")
    assert decider.evolve(decider.initial_state, unknown) is decider.initial_state


@pytest.mark.parametrize(
    ("decider", "foreign"),
    [(AGENT, SAMPLES[8]), (TASK, SAMPLES[0]), (CONVERSATION, SAMPLES[0])],
    ids=["agent", "task", "conversation"],
)
def test_deciders_refuse_another_aggregates_events(decider: Any, foreign: DomainEvent) -> None:
    """Folding another aggregate's event raises UnexpectedEvent (a stream read with the wrong decider)."""
    with pytest.raises(UnexpectedEvent, match=foreign.TYPE):
        decider.evolve(decider.initial_state, foreign)


def test_registry_reads_recorded_events() -> None:
    """read() decodes a RecordedEvent by its type, schema version and data."""
    recorded = RecordedEvent(
        uuid.uuid4(), "task-t1", 1, 1, "TaskSubmitted", 1, orjson.dumps(V1_TASK_SUBMITTED), b"{}", None, T0
    )
    assert DOMAIN_EVENTS.read(recorded) == V2_TASK_SUBMITTED


# A contract with two historical versions, to show upcasters chain.
@dataclasses.dataclass(frozen=True, slots=True)
class Measured(DomainEvent):
    TYPE: ClassVar[str] = "Measured"
    SCHEMA_VERSION: ClassVar[int] = 3

    metres: float
    label: str


def _v1_to_v2(data: Mapping[str, Any]) -> dict[str, Any]:
    return {"centimetres": data["cm"], "label": "unlabelled"}


def _v2_to_v3(data: Mapping[str, Any]) -> dict[str, Any]:
    return {"metres": data["centimetres"] / 100, "label": data["label"]}


def test_upcasters_chain_from_the_oldest_version() -> None:
    """A v1 event runs through the v1->v2 and v2->v3 upcasters in order."""
    registry = EventRegistry(
        [Measured], [Upcaster("Measured", 2, _v2_to_v3), Upcaster("Measured", 1, _v1_to_v2)]
    )
    assert registry.decode("Measured", 1, {"cm": 250}) == Measured(2.5, "unlabelled")
    assert registry.decode("Measured", 2, {"centimetres": 50, "label": "x"}) == Measured(0.5, "x")


def test_a_gap_in_the_upcaster_chain_is_an_unknown_version() -> None:
    """Without a v1->v2 upcaster a v1 event raises UnknownSchemaVersion even though v2->v3 exists."""
    registry = EventRegistry([Measured], [Upcaster("Measured", 2, _v2_to_v3)])
    with pytest.raises(UnknownSchemaVersion):
        registry.decode("Measured", 1, {"cm": 250})


@pytest.mark.parametrize(
    ("contracts", "upcasters", "error"),
    [
        ([Measured, Measured], [], ValueError),
        ([Measured], [Upcaster("Other", 1, _v1_to_v2)], ValueError),
        ([Measured], [Upcaster("Measured", 3, _v1_to_v2)], ValueError),
        ([Measured], [Upcaster("Measured", 1, _v1_to_v2), Upcaster("Measured", 1, _v1_to_v2)], ValueError),
    ],
    ids=["type-twice", "upcaster-for-unknown-type", "upcaster-from-current", "upcaster-twice"],
)
def test_inconsistent_registries_are_refused_when_built(
    contracts: list, upcasters: list, error: type
) -> None:
    """A registry with a type twice or an upcaster that leads nowhere cannot be built."""
    with pytest.raises(error):
        EventRegistry(contracts, upcasters)


def test_a_mutable_contract_is_refused() -> None:
    """Only frozen dataclasses can be contracts, so a decoded event cannot be changed afterwards."""

    @dataclasses.dataclass
    class Loose(DomainEvent):
        TYPE: ClassVar[str] = "Loose"
        SCHEMA_VERSION: ClassVar[int] = 1

    with pytest.raises(TypeError, match="frozen"):
        EventRegistry([Loose])


def test_merged_registry_reads_both() -> None:
    """A merged registry decodes the domain's events and the added contracts."""
    merged = DOMAIN_EVENTS.merged_with(EventRegistry([Measured]))
    assert merged.decode("Measured", 3, {"metres": 1.0, "label": "x"}) == Measured(1.0, "x")
    assert merged.decode("TaskSubmitted", 1, V1_TASK_SUBMITTED) == V2_TASK_SUBMITTED


def test_a_v2_submission_upcasts_to_one_that_requires_nothing() -> None:
    v2 = {k: v for k, v in DOMAIN_EVENTS.encode(V2_TASK_SUBMITTED).data.items() if k != "requires"}
    assert DOMAIN_EVENTS.decode("TaskSubmitted", 2, v2).requires == ()  # type: ignore[attr-defined]
    gpu = TaskSubmitted("t2", "train", {}, "default", Priority.HIGH, 3, T0, ("gpu",))
    encoded = DOMAIN_EVENTS.encode(gpu)
    assert DOMAIN_EVENTS.decode("TaskSubmitted", 3, encoded.data) == gpu
