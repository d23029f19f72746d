"""Event contracts and encoding, without any service."""

from __future__ import annotations

import time
import uuid

import pytest

from core.codec import encode_append, encode_json
from core.errors import InvalidEventData, InvalidInput
from core.events import ExpectedVersion, NewEvent, RecordedEvent, category_of, uuid7


def test_uuid7_is_version_7_and_time_ordered() -> None:
    """uuid7 ids carry version 7, the RFC variant, and sort by creation millisecond."""
    first = uuid7()
    time.sleep(0.002)  # the ids encode milliseconds; two must fall in different ones
    second = uuid7()
    assert first.version == 7 and first.variant == uuid.RFC_4122
    assert first < second


def test_new_event_fixes_its_id_at_construction() -> None:
    """A NewEvent gets one id when built, so resending the same object resends the same id."""
    event = NewEvent("T", {})
    assert event.id == event.event_id
    assert NewEvent("T", {}, event_id=str(event.id)).id == event.id
    with pytest.raises(InvalidInput, match="not a UUID"):
        NewEvent("T", {}, event_id="nope")  # type: ignore[arg-type]


def test_null_values_are_kept_but_nan_is_refused() -> None:
    """JSON null is valid data; a float NaN, which orjson would write as null, is refused."""
    assert encode_json("T", "data", {"a": None}) == b'{"a":null}'
    with pytest.raises(InvalidEventData, match="nan"):
        encode_json("T", "data", {"a": [1, {"b": float("nan")}]})


def test_backslash_u0000_text_is_not_mistaken_for_nul() -> None:
    r"""A string holding the six characters \u0000 is fine; only a real NUL is refused."""
    assert encode_json("T", "data", {"a": "\\u0000"})
    with pytest.raises(InvalidEventData, match="NUL"):
        encode_json("T", "data", {"a\x00": 1})


def test_one_append_carries_one_tenant() -> None:
    """Events of one append must agree on the tenant."""
    with pytest.raises(InvalidInput, match="several tenants"):
        encode_append(
            "task-1",
            [NewEvent("T", {}, {"tenant_id": "a"}), NewEvent("T", {}, {"tenant_id": "b"})],
            ExpectedVersion.ANY,
            1000,
        )


def test_recorded_event_decodes_lazily_and_compares_by_content() -> None:
    """data and metadata decode on first access; equal events compare equal."""
    args = (uuid7(), "task-1", 1, 1, "T", 1, b'{"a":1}', b"{}", None, None)
    a, b = RecordedEvent(*args), RecordedEvent(*args)  # type: ignore[arg-type]
    assert a._data is None
    assert a.data == {"a": 1} and a._data is not None
    assert a == b and hash(a) == hash(b)
    assert category_of("task-1-2") == "task"


def test_forked_child_never_repeats_the_parents_event_ids() -> None:
    """After fork, the child draws fresh randomness: its next ids differ from the parent's."""
    import os

    uuid7()  # fill the parent's entropy buffer so the child would inherit it
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: report five ids, leave without running pytest's exit handlers
        os.write(write, b"".join(uuid7().bytes for _ in range(5)))
        os._exit(0)
    os.close(write)
    child = os.read(read, 80)
    os.close(read)
    os.waitpid(pid, 0)
    parent = b"".join(uuid7().bytes for _ in range(5))
    child_random = {child[i * 16 + 6 : i * 16 + 16] for i in range(5)}
    parent_random = {parent[i * 16 + 6 : i * 16 + 16] for i in range(5)}
    assert len(child) == 80
    assert child_random.isdisjoint(parent_random)
