"""The event-log contract, run against the PostgreSQL store and the in-memory store alike."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import pytest

from core.errors import (
    EventIdConflict,
    EventTooLarge,
    InvalidEventData,
    InvalidEventType,
    InvalidExpectedVersion,
    InvalidInput,
    InvalidStreamId,
    TenantMismatch,
    WrongExpectedVersion,
)
from core.ports import EventLog
from core.settings import Settings
from eventstore import EventStore, ExpectedVersion, InMemoryEventStore, NewEvent, StreamAppend

pytestmark = pytest.mark.integration


@pytest.fixture(params=["postgres", "memory"])
async def log(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[EventLog]:
    settings = Settings(max_event_bytes=4096, poll_interval=0.2)
    if request.param == "postgres":
        store: EventLog = await EventStore.connect(database_url, settings)
    else:
        store = InMemoryEventStore(settings)
    yield store
    await store.close()


def stream(category: str = "task") -> str:
    return f"{category}-{uuid.uuid4().hex}"


def ev(type: str = "Happened", tenant: str | None = None, **data: object) -> NewEvent:
    return NewEvent(type, data, {"tenant_id": tenant} if tenant else {})


async def test_first_append_creates_stream_at_version_one(log: EventLog) -> None:
    """Appending to a new stream with NO_STREAM gives version 1 and one position."""
    s = stream()
    result = await log.append(s, [ev()], ExpectedVersion.NO_STREAM)
    assert result.stream_version == 1
    assert result.first_position == result.last_position
    assert await log.stream_version(s) == 1


async def test_multi_event_append_is_contiguous(log: EventLog) -> None:
    """An append of several events gets contiguous versions and increasing positions."""
    s = stream()
    await log.append(s, [ev()], ExpectedVersion.NO_STREAM)
    result = await log.append(s, [ev(i=i) for i in range(5)], 1)
    events = await log.read_stream(s)
    assert [e.stream_version for e in events] == [1, 2, 3, 4, 5, 6]
    assert result.stream_version == 6
    positions = [e.global_position for e in events[1:]]
    assert positions == sorted(positions)
    assert (positions[0], positions[-1]) == (result.first_position, result.last_position)
    assert [e.data["i"] for e in events[1:]] == [0, 1, 2, 3, 4]


@pytest.mark.parametrize(
    ("setup", "expected", "actual"),
    [
        (0, ExpectedVersion.STREAM_EXISTS, 0),
        (2, ExpectedVersion.NO_STREAM, 2),
        (2, 1, 2),
        (2, 3, 2),
        (0, 1, 0),
    ],
)
async def test_wrong_expected_version_names_stream_expected_and_actual(
    log: EventLog, setup: int, expected: int | ExpectedVersion, actual: int
) -> None:
    """A failed expectation raises WrongExpectedVersion(stream, expected, actual), writes nothing."""
    s = stream()
    if setup:
        await log.append(s, [ev() for _ in range(setup)])
    with pytest.raises(WrongExpectedVersion) as info:
        await log.append(s, [ev()], expected)
    assert (info.value.stream_id, info.value.expected, info.value.actual) == (s, expected, actual)
    assert await log.stream_version(s) == setup


@pytest.mark.parametrize(
    ("setup", "expected"),
    [
        (0, ExpectedVersion.ANY),
        (3, ExpectedVersion.ANY),
        (0, ExpectedVersion.NO_STREAM),
        (0, 0),
        (2, ExpectedVersion.STREAM_EXISTS),
        (2, 2),
    ],
)
async def test_met_expectations_append(log: EventLog, setup: int, expected: int | ExpectedVersion) -> None:
    """Each satisfied expectation appends exactly one event after the setup."""
    s = stream()
    if setup:
        await log.append(s, [ev() for _ in range(setup)])
    result = await log.append(s, [ev()], expected)
    assert result.stream_version == setup + 1


async def test_retry_with_same_event_ids_returns_original_result(log: EventLog) -> None:
    """Re-appending stored event ids returns the first result, marked as a duplicate, and
    stores nothing new."""
    s = stream()
    events = [ev(i=1), ev(i=2)]
    first = await log.append(s, events, ExpectedVersion.NO_STREAM)
    await log.append(s, [ev(i=3)], 2)
    again = await log.append(s, events, ExpectedVersion.NO_STREAM)
    assert again == first
    assert again.duplicate and not first.duplicate
    assert [e.data["i"] for e in await log.read_stream(s)] == [1, 2, 3]


async def test_event_id_reused_elsewhere_is_a_conflict(log: EventLog) -> None:
    """An event id stored in another stream, or a partial overlap, raises EventIdConflict."""
    s, other = stream(), stream()
    stored = ev()
    await log.append(s, [stored])
    with pytest.raises(EventIdConflict):
        await log.append(other, [stored])
    with pytest.raises(EventIdConflict):
        await log.append(s, [stored, ev()])
    assert await log.stream_version(other) == 0
    assert await log.stream_version(s) == 1


async def test_read_event_finds_a_stored_event_by_id_and_nothing_else(log: EventLog) -> None:
    """read_event returns the stored event with that id, and None for an id never stored."""
    s = stream()
    first, second = ev(n=1), ev(n=2)
    await log.append(s, [first, second], ExpectedVersion.NO_STREAM)
    found = await log.read_event(second.id)
    assert found is not None
    assert (found.stream_id, found.stream_version, found.data) == (s, 2, {"n": 2})
    assert await log.read_event(uuid.uuid4()) is None


async def test_read_stream_ranges_and_direction(log: EventLog) -> None:
    """read_stream honours inclusive version bounds, both directions."""
    s = stream()
    await log.append(s, [ev(i=i) for i in range(1, 11)])
    assert [e.stream_version for e in await log.read_stream(s, 3, 5)] == [3, 4, 5]
    assert [e.stream_version for e in await log.read_stream(s, 8)] == [8, 9, 10]
    assert [e.stream_version for e in await log.read_stream(s, backwards=True)][:3] == [10, 9, 8]
    assert [e.stream_version for e in await log.read_stream(s, 2, 4, backwards=True)] == [4, 3, 2]
    assert await log.read_stream(stream()) == []


async def test_recorded_event_carries_every_field(log: EventLog) -> None:
    """A read returns id, stream, version, position, type, schema version, data, metadata, tenant, time."""
    s = stream()
    new = NewEvent(
        "TaskSubmitted",
        {"n": "ü✓", "big": 2**60, "nested": {"l": [1, 2.5, None]}},
        {"tenant_id": "acme", "actor": "ann"},
        schema_version=3,
    )
    result = await log.append(s, [new])
    (got,) = await log.read_stream(s)
    assert got.event_id == new.event_id
    assert (got.stream_id, got.stream_version, got.global_position) == (s, 1, result.first_position)
    assert (got.type, got.schema_version, got.tenant_id) == ("TaskSubmitted", 3, "acme")
    assert got.data == new.data
    assert got.metadata == {"tenant_id": "acme", "actor": "ann"}
    assert got.recorded_at.tzinfo is not None


async def test_read_all_by_position_and_filters(log: EventLog) -> None:
    """read_all returns events in position order within bounds, filtered by category, type, tenant."""
    start = await log.head_position() + 1
    cat_a, cat_b = f"a{uuid.uuid4().hex[:8]}", f"b{uuid.uuid4().hex[:8]}"
    await log.append(f"{cat_a}-1", [ev("Made", tenant="t1"), ev("Used", tenant="t1")])
    await log.append(f"{cat_b}-1", [ev("Made", tenant="t2")])
    await log.append(f"{cat_a}-2", [ev("Made", tenant="t2")])
    mine = [e async for e in log.read_all(start)]
    assert [e.global_position for e in mine] == sorted(e.global_position for e in mine)
    assert len(mine) == 4

    async def ids(**filters: object) -> list[tuple[str, str]]:
        return [(e.stream_id, e.type) async for e in log.read_all(start, **filters)]  # type: ignore[arg-type]

    assert await ids(categories=[cat_a]) == [
        (f"{cat_a}-1", "Made"),
        (f"{cat_a}-1", "Used"),
        (f"{cat_a}-2", "Made"),
    ]
    assert await ids(categories=[cat_a], types=["Made"]) == [(f"{cat_a}-1", "Made"), (f"{cat_a}-2", "Made")]
    assert await ids(categories=[cat_a, cat_b], tenant_id="t2") == [
        (f"{cat_b}-1", "Made"),
        (f"{cat_a}-2", "Made"),
    ]
    second = mine[1].global_position
    assert [e.global_position async for e in log.read_all(second, second + 1)] == [second, second + 1]


async def test_append_multi_is_all_or_nothing(log: EventLog) -> None:
    """A multi-stream append with one failed expectation writes none of its streams."""
    a, b = stream(), stream()
    await log.append(b, [ev()])
    with pytest.raises(WrongExpectedVersion) as info:
        await log.append_multi(
            [
                StreamAppend(a, [ev()], ExpectedVersion.NO_STREAM),
                StreamAppend(b, [ev()], ExpectedVersion.NO_STREAM),
            ]
        )
    assert info.value.stream_id == b
    assert await log.stream_version(a) == 0
    results = await log.append_multi([StreamAppend(a, [ev(), ev()], 0), StreamAppend(b, [ev()], 1)])
    assert [(r.stream_id, r.stream_version) for r in results] == [(a, 2), (b, 2)]


async def test_stream_keeps_its_tenant(log: EventLog) -> None:
    """Appending another tenant's events to a stream raises TenantMismatch."""
    s = stream()
    await log.append(s, [ev(tenant="acme")])
    with pytest.raises(TenantMismatch) as info:
        await log.append(s, [ev(tenant="globex")])
    assert (info.value.stream_tenant, info.value.event_tenant) == ("acme", "globex")
    assert await log.stream_version(s) == 1


@pytest.mark.parametrize(
    ("stream_id", "events", "expected", "error", "fragment"),
    [
        ("no_dash", [NewEvent("T", {})], ExpectedVersion.ANY, InvalidStreamId, "'<category>-<id>'"),
        ("task-has space", [NewEvent("T", {})], ExpectedVersion.ANY, InvalidStreamId, "has space"),
        ("task-1", [NewEvent("bad type!", {})], ExpectedVersion.ANY, InvalidEventType, "bad type!"),
        ("task-1", [NewEvent("T", {"s": {1, 2}})], ExpectedVersion.ANY, InvalidEventData, "data"),
        ("task-1", [NewEvent("T", {"x": float("nan")})], ExpectedVersion.ANY, InvalidEventData, "nan"),
        ("task-1", [NewEvent("T", {"x": "a\x00b"})], ExpectedVersion.ANY, InvalidEventData, "NUL"),
        (
            "task-1",
            [NewEvent("T", {}, {"m": float("inf")})],
            ExpectedVersion.ANY,
            InvalidEventData,
            "metadata",
        ),
        ("task-1", [NewEvent("T", {"x": "y" * 5000})], ExpectedVersion.ANY, EventTooLarge, "limit is 4096"),
        ("task-1", [NewEvent("T", {})], -1, InvalidExpectedVersion, "-1"),
        ("task-1", [NewEvent("T", {})], "3", InvalidExpectedVersion, "'3'"),
        ("task-1", [NewEvent("T", {})], True, InvalidExpectedVersion, "True"),
        ("task-1", [], ExpectedVersion.ANY, InvalidInput, "non-empty"),
        ("task-1", [NewEvent("T", {}, {"tenant_id": 7})], ExpectedVersion.ANY, InvalidInput, "tenant_id"),
    ],
)
async def test_bad_input_is_refused_with_a_clear_error(
    log: EventLog,
    stream_id: str,
    events: list[NewEvent],
    expected: object,
    error: type[Exception],
    fragment: str,
) -> None:
    """Malformed input raises the named error, mentions what was wrong, and writes nothing."""
    head = await log.head_position()
    with pytest.raises(error) as info:
        await log.append(stream_id, events, expected)  # type: ignore[arg-type]
    assert fragment in str(info.value)
    assert await log.head_position() == head


async def test_bad_event_in_a_batch_fails_only_itself(log: EventLog) -> None:
    """Concurrent appends where one is invalid and one conflicts: the others are all written."""
    streams = [stream() for _ in range(10)]
    calls = [log.append(s, [ev()], ExpectedVersion.NO_STREAM) for s in streams]
    calls.append(log.append(stream(), [NewEvent("T", {"x": float("nan")})]))
    calls.append(log.append(streams[0], [ev()], ExpectedVersion.NO_STREAM))
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(r.stream_version == 1 for r in results[:10])  # type: ignore[union-attr]
    assert isinstance(results[10], InvalidEventData)
    assert isinstance(results[11], WrongExpectedVersion)


async def test_subscribe_catches_up_then_follows_live(log: EventLog) -> None:
    """A subscription yields stored events, then new ones as they are appended."""
    cat = f"sub{uuid.uuid4().hex[:8]}"
    await log.append(f"{cat}-1", [ev(i=0), ev(i=1)])
    received: list[int] = []
    done = asyncio.Event()

    async def follow() -> None:
        async for event in log.subscribe(categories=[cat]):
            received.append(event.data["i"])
            if len(received) == 4:
                done.set()
                return

    task = asyncio.create_task(follow())
    await log.append(f"{cat}-2", [ev(i=2)])
    await log.append(f"{cat}-1", [ev(i=3)])
    await asyncio.wait_for(done.wait(), 10)
    await task
    assert received == [0, 1, 2, 3]


async def test_subscription_ends_when_the_store_closes(log: EventLog) -> None:
    """An idle subscription finishes its iteration when the store is closed."""
    cat = f"end{uuid.uuid4().hex[:8]}"
    started = asyncio.Event()

    async def follow() -> int:
        count = 0
        started.set()
        async for _ in log.subscribe(categories=[cat]):
            count += 1
        return count

    task = asyncio.create_task(follow())
    await started.wait()
    await log.append(f"{cat}-1", [ev()])
    await log.close()
    assert await asyncio.wait_for(task, 10) in (0, 1)
