"""The compiled decoders accept, refuse and build exactly what the generic decoder does."""

from __future__ import annotations

import dataclasses
import enum
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.domain import AGENT, CONVERSATION, DOMAIN_EVENTS, TASK, MalformedEvent, UnknownEvent, serialization
from core.domain.agent import AgentStatus
from core.domain.conversation import MessageStatus
from core.domain.errors import InvalidShape
from core.domain.serialization import decoder_of, from_json_value, to_json_value
from core.domain.task import Priority, TaskStatus
from core.events import RecordedEvent
from tests.unit.domain.test_contracts import SAMPLES

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)


class Level(enum.Enum):
    """An enum whose values are not strings, which the compiled decoder leaves to the plan."""

    LOW = 1
    HIGH = 2


@dataclasses.dataclass(frozen=True, slots=True)
class Leaf:
    level: Level
    on: bool


@dataclasses.dataclass(frozen=True, slots=True)
class Tree:
    leaves: tuple[Leaf, ...]
    root: Leaf | None = None
    tags: tuple[str, ...] = ()
    weight: float | None = None


@dataclasses.dataclass(frozen=True)
class Unslotted:
    name: str
    at: datetime


@dataclasses.dataclass(frozen=True, slots=True)
class Checked:
    low: int
    high: int

    def __post_init__(self) -> None:
        if self.low > self.high:
            raise InvalidShape(".low", "is above high")


def _states() -> list[object]:
    """Each aggregate's state after its sample events: every state field filled in somewhere."""
    return [
        decider.fold(e for e in SAMPLES if type(e).__module__ == f"core.domain.{decider.category}.events")
        for decider in (AGENT, TASK, CONVERSATION)
    ]


VALUES: list[object] = [
    *SAMPLES,
    *_states(),
    TASK.initial_state,
    Tree((Leaf(Level.LOW, True), Leaf(Level.HIGH, False)), Leaf(Level.HIGH, True), ("a", "b"), 2.5),
    Unslotted("u", T0),
    Checked(1, 2),
]

# Values that sit near the edges of the field checks: exact types against subclasses and
# look-alikes (bool for int, int for float, naive and aware timestamps, enum values and near
# misses), containers of the wrong kind, and numbers float() cannot hold.
_TIMES = st.sampled_from(
    [T0.isoformat(), "2025-03-01T12:00:00", "2025-03-01", "yesterday", "2025-03-01T12:00:00+25:00"]
)
_ENUM_VALUES = st.sampled_from(
    [m.value for e in (Priority, TaskStatus, AgentStatus, MessageStatus, Level) for m in e] + ["HIGH", 1.0]
)
_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.just(2**1100),
    st.floats(allow_nan=False),
    st.text(max_size=8),
    _TIMES,
    _ENUM_VALUES,
)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6,
)


# One value of every JSON kind, and the look-alikes each field check must tell apart.
EDGES: list[Any] = [
    *(None, True, False, 0, 1, -1, 1.5, 2**1100, "", "x", "high", "pending", "sha256:" + "c" * 64),
    *(T0.isoformat(), "2025-03-01T12:00:00", "not a time", [], ["x"], [1], [T0.isoformat()]),
    *({}, {"a": 1}, {"level": 1, "on": True}, [{"level": 1, "on": True}], [{"level": 3, "on": True}]),
]


@st.composite
def _payloads(draw: st.DrawFn, encoded: dict[str, Any]) -> Any:
    """A valid encoded object with one or two fields dropped, replaced or added, or not an object."""
    if draw(st.integers(0, 19)) == 0:
        return draw(_JSON)
    data = dict(encoded)
    for _ in range(draw(st.integers(0, 2))):
        name = draw(st.sampled_from(sorted(data))) if data else "extra"
        match draw(st.sampled_from(["drop", "replace", "deep", "add"])):
            case "drop":
                data.pop(name, None)
            case "deep" if isinstance(data.get(name), list) and data[name]:
                data[name] = [*data[name][:-1], draw(_JSON)]  # a bad item inside a list
            case "deep" if isinstance(data.get(name), dict) and data[name]:
                data[name] = {**data[name], draw(st.sampled_from(sorted(data[name]))): draw(_JSON)}
            case "add":
                data[draw(st.text(max_size=12))] = draw(_JSON)
            case _:
                data[name] = draw(_JSON)
    return data


def _outcome(decode: Any, cls: type, data: Any) -> tuple[Any, ...]:
    try:
        value = decode(cls, data)
    except Exception as exc:  # the generic path's own errors, OverflowError included
        return ("raised", type(exc), str(exc))
    return ("built", type(value), _typed(value))


def _typed(value: Any) -> Any:
    """``value`` with every leaf's type beside it, so that 1 and 1.0 or True and 1 differ."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return tuple((f.name, _typed(getattr(value, f.name))) for f in dataclasses.fields(value))
    if isinstance(value, Mapping):
        return (type(value), tuple((k, _typed(v)) for k, v in value.items()))
    if isinstance(value, list | tuple):
        return (type(value), tuple(_typed(v) for v in value))
    return (type(value), value)


def _generic(cls: type, data: Any) -> Any:
    try:
        return serialization._decode_dataclass(cls, data)
    except InvalidShape as exc:
        raise InvalidShape(cls.__name__ + exc.path, exc.reason) from exc


@settings(max_examples=400, deadline=None)
@given(data=st.data())
def test_compiled_decoder_agrees_with_the_generic_one(data: st.DataObject) -> None:
    """On valid, damaged and foreign payloads both decoders build the same value or raise the same error."""
    value = data.draw(st.sampled_from(VALUES))
    cls = type(value)
    payload = data.draw(_payloads(orjson.loads(orjson.dumps(to_json_value(value)))))
    assert _outcome(from_json_value, cls, payload) == _outcome(_generic, cls, payload)


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_every_field_meets_every_edge_value(value: object) -> None:
    """Each field replaced, dropped or joined by each edge value decodes as the generic decoder says."""
    cls = type(value)
    encoded = orjson.loads(orjson.dumps(to_json_value(value)))
    payloads: list[Any] = [encoded, *EDGES, *({**encoded, "extra": edge} for edge in EDGES)]
    for name in encoded:
        payloads.append({k: v for k, v in encoded.items() if k != name})
        payloads.extend({**encoded, name: edge} for edge in EDGES)
    for payload in payloads:
        assert _outcome(from_json_value, cls, payload) == _outcome(_generic, cls, payload), payload


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_valid_data_is_decoded_without_the_generic_path(
    value: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every contract and state decodes its own encoding on the compiled path, the one replay pays for."""

    def refuse(cls: type, data: Any) -> Any:
        raise AssertionError(f"{cls.__name__} fell back to the generic decoder")

    encoded = orjson.loads(orjson.dumps(to_json_value(value)))
    monkeypatch.setattr(serialization, "_decode_dataclass", refuse)
    assert decoder_of(type(value))(encoded) == value


def test_decoded_objects_are_copies_of_the_payload() -> None:
    """A Mapping field is a copy, so changing the stored payload afterwards changes no event."""
    encoded = orjson.loads(orjson.dumps(DOMAIN_EVENTS.encode(SAMPLES[7]).data))
    event = decoder_of(type(SAMPLES[7]))(encoded)
    encoded["payload"]["nested"] = "changed"
    assert event == SAMPLES[7]


def test_a_class_with_post_init_is_built_through_its_constructor() -> None:
    """A dataclass that checks itself in __post_init__ still gets to refuse a decoded value."""
    assert decoder_of(Checked)({"low": 1, "high": 2}) == Checked(1, 2)
    with pytest.raises(InvalidShape, match="above high"):
        decoder_of(Checked)({"low": 3, "high": 2})


@pytest.mark.parametrize(
    "data",
    [
        {"task_id": "t1", "fencing_token": 1},
        {"task_id": "t1", "fencing_token": True, "at": T0.isoformat()},
        {"task_id": "t1", "fencing_token": 1, "at": "2025-03-01T12:00:00"},
        {"task_id": "t1", "fencing_token": 1, "at": T0.isoformat(), "extra": 1},
        [1, 2],
    ],
    ids=["missing-field", "bool-for-int", "naive-time", "unknown-field", "not-an-object"],
)
def test_read_refuses_malformed_current_version_data_by_name(data: Any) -> None:
    """read() of a current-version event that does not fit raises MalformedEvent (lenient: UnknownEvent)."""
    recorded = RecordedEvent(
        uuid.uuid4(), "task-t1", 1, 1, "TaskStarted", 1, orjson.dumps(data), b"{}", None, T0
    )
    with pytest.raises(MalformedEvent, match="'TaskStarted' v1") as raised:
        DOMAIN_EVENTS.read(recorded)
    with pytest.raises(MalformedEvent) as decoded:
        DOMAIN_EVENTS.decode("TaskStarted", 1, data)
    assert str(raised.value) == str(decoded.value)
    lenient = DOMAIN_EVENTS.read(recorded, lenient=True)
    assert isinstance(lenient, UnknownEvent) and lenient.reason == str(decoded.value)
