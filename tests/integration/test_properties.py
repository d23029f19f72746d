"""Hypothesis properties: reads by range and filter agree with a plain model of the log."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from core.ports import EventLog
from eventstore import EventStore, InMemoryEventStore, NewEvent

pytestmark = pytest.mark.integration

CATEGORIES = ["agent", "task", "conversation", "run"]
TYPES = ["Made", "Moved", "Ended"]
TENANTS = ["acme", "globex", "initech"]
STREAMS = [f"{c}-{i}" for c in CATEGORIES for i in range(3)]


@dataclass(frozen=True)
class Row:
    position: int
    stream_id: str
    version: int
    type: str
    tenant: str
    n: int


async def _fill(log: EventLog) -> list[Row]:
    rng = random.Random(7)
    rows: list[Row] = []
    tenant_of = {s: TENANTS[i % 3] for i, s in enumerate(STREAMS)}
    n = 0
    for _ in range(120):
        s = rng.choice(STREAMS)
        events = [
            NewEvent(rng.choice(TYPES), {"n": n + k}, {"tenant_id": tenant_of[s]})
            for k in range(rng.randint(1, 4))
        ]
        result = await log.append(s, events)
        for k, event in enumerate(events):
            rows.append(
                Row(
                    result.first_position + k,
                    s,
                    result.stream_version - len(events) + k + 1,
                    event.type,
                    tenant_of[s],
                    n + k,
                )
            )
        n += len(events)
    return rows


@pytest.fixture(scope="module")
async def logs(
    database_url: str,
) -> AsyncIterator[tuple[EventStore, InMemoryEventStore, list[Row], list[Row]]]:
    pg = await EventStore.connect(database_url)
    memory = InMemoryEventStore()
    pg_rows, memory_rows = await _fill(pg), await _fill(memory)
    yield pg, memory, pg_rows, memory_rows
    await pg.close()
    await memory.close()


maybe_subset = st.none() | st.lists(st.sampled_from(CATEGORIES), min_size=1, unique=True)
maybe_types = st.none() | st.lists(st.sampled_from(TYPES), min_size=1, unique=True)
maybe_tenant = st.none() | st.sampled_from(TENANTS)
common = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@common
@given(
    start=st.integers(0, 500),
    length=st.none() | st.integers(0, 500),
    categories=maybe_subset,
    types=maybe_types,
    tenant=maybe_tenant,
    page_size=st.integers(1, 50),
)
async def test_read_all_matches_the_model(
    logs: tuple[EventStore, InMemoryEventStore, list[Row], list[Row]],
    start: int,
    length: int | None,
    categories: list[str] | None,
    types: list[str] | None,
    tenant: str | None,
    page_size: int,
) -> None:
    """read_all over any position range, filter mix and page size returns exactly the model's rows."""
    for log, rows in ((logs[0], logs[2]), (logs[1], logs[3])):
        base = rows[0].position - 1
        first = base + start
        last = None if length is None else first + length
        expected = [
            r.n
            for r in rows
            if r.position >= first
            and (last is None or r.position <= last)
            and (categories is None or r.stream_id.split("-")[0] in categories)
            and (types is None or r.type in types)
            and (tenant is None or r.tenant == tenant)
        ]
        got = [
            e.data["n"]
            async for e in log.read_all(
                first, last, categories=categories, types=types, tenant_id=tenant, page_size=page_size
            )
        ]
        assert got == expected


@common
@example(stream_id=STREAMS[0], first=1, last=0, backwards=False)  # an empty range, not "no bound"
@example(stream_id=STREAMS[0], first=1, last=0, backwards=True)
@given(
    stream_id=st.sampled_from(STREAMS),
    first=st.integers(1, 60),
    last=st.none() | st.integers(0, 60),
    backwards=st.booleans(),
)
async def test_read_stream_matches_the_model(
    logs: tuple[EventStore, InMemoryEventStore, list[Row], list[Row]],
    stream_id: str,
    first: int,
    last: int | None,
    backwards: bool,
) -> None:
    """read_stream over any version range and direction returns exactly the model's rows."""
    for log, rows in ((logs[0], logs[2]), (logs[1], logs[3])):
        expected = [
            (r.version, r.n)
            for r in rows
            if r.stream_id == stream_id and r.version >= first and (last is None or r.version <= last)
        ]
        if backwards:
            expected.reverse()
        got = [
            (e.stream_version, e.data["n"]) for e in await log.read_stream(stream_id, first, last, backwards)
        ]
        assert got == expected
