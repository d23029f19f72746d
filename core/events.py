"""The event contracts every store speaks: what a caller appends and what a reader gets back."""

from __future__ import annotations

import enum
import os
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID

import orjson

from core.errors import InvalidEventType, InvalidExpectedVersion, InvalidInput, InvalidStreamId

__all__ = [
    "AppendResult",
    "ExpectedVersion",
    "NewEvent",
    "RecordedEvent",
    "StreamAppend",
    "Version",
    "category_of",
    "check_expected_version",
    "check_stream_id",
    "uuid7",
]

_STREAM_ID = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,63}-[A-Za-z0-9_.:@=+-]{1,190}")
_EVENT_TYPE = re.compile(r"[A-Za-z][A-Za-z0-9_.]{0,127}")
_known_types: set[object] = set()


class ExpectedVersion(enum.Enum):
    """Named expectations for `append`; an int >= 0 asks for that exact version (0: no events)."""

    ANY = "any"
    NO_STREAM = "no_stream"
    STREAM_EXISTS = "stream_exists"

    def __str__(self) -> str:
        return self.name


Version = int | ExpectedVersion


def check_expected_version(value: object) -> Version:
    if isinstance(value, ExpectedVersion):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**31:
        return value
    raise InvalidExpectedVersion(value)


def check_stream_id(stream_id: object) -> str:
    if not isinstance(stream_id, str):
        raise InvalidStreamId(stream_id, "must be a str")
    if not _STREAM_ID.fullmatch(stream_id):
        raise InvalidStreamId(
            stream_id,
            "must be '<category>-<id>': a category of letters, digits and '_' starting with a "
            "letter (at most 64), then '-', then 1-190 of letters, digits and _.:@=+-",
        )
    return stream_id


def check_event_type(event_type: object) -> str:
    if event_type in _known_types:  # a handful of types repeat across millions of events
        return event_type  # type: ignore[return-value]  # only valid str are ever added
    if not isinstance(event_type, str) or not _EVENT_TYPE.fullmatch(event_type):
        raise InvalidEventType(
            event_type, "must be 1-128 letters, digits, '_' or '.', starting with a letter"
        )
    if len(_known_types) < 10_000:
        _known_types.add(event_type)
    return event_type


def category_of(stream_id: str) -> str:
    return stream_id.split("-", 1)[0]


class _Entropy:
    """Random bytes from os.urandom, read 4 KiB at a time instead of one syscall per id.

    The buffer is dropped in a forked child: a copy would hand parent and child the same
    bytes, hence the same event ids, and a repeated id is taken for a retry and not stored.
    """

    def __init__(self) -> None:
        self._buffer = b""
        self._offset = 0
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self._buffer, self._offset = b"", 0

    def take(self, n: int) -> bytes:
        if self._offset + n > len(self._buffer):
            self._buffer, self._offset = os.urandom(4096), 0
        start = self._offset
        self._offset = start + n
        return self._buffer[start : start + n]


_entropy = _Entropy()
_VERSION_AND_VARIANT = (0x7 << 76) | (0b10 << 62)


def uuid7() -> UUID:
    """A time-ordered UUID (RFC 9562 version 7).

    Event ids are generated on the client so that a retry reuses them. Time-ordered ids keep
    inserts into the unique event_id index at the right edge of the B-tree instead of
    scattering them over every page, which matters once the log holds millions of events.
    """
    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(_entropy.take(10), "big")
    rand_a = rand >> 68  # 12 bits
    rand_b = rand & ((1 << 62) - 1)
    return UUID(int=(ms << 80) | _VERSION_AND_VARIANT | (rand_a << 64) | rand_b)


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event to append. Its id is fixed at construction, so retrying the same object is safe."""

    type: str
    data: Mapping[str, Any]
    metadata: Mapping[str, Any] = field(default_factory=dict)
    event_id: UUID | None = None
    schema_version: int = 1

    def __post_init__(self) -> None:
        given: object = self.event_id
        if given is None:
            object.__setattr__(self, "event_id", uuid7())
        elif not isinstance(given, UUID):
            try:
                object.__setattr__(self, "event_id", UUID(str(given)))
            except ValueError as exc:
                raise InvalidInput(f"event {self.type!r}: event_id {given!r} is not a UUID") from exc

    @property
    def id(self) -> UUID:
        assert self.event_id is not None  # set in __post_init__
        return self.event_id


@dataclass(frozen=True, slots=True)
class StreamAppend:
    """One stream's part of a multi-stream append."""

    stream_id: str
    events: tuple[NewEvent, ...] | list[NewEvent]
    expected_version: Version = ExpectedVersion.ANY


@dataclass(frozen=True, slots=True)
class AppendResult:
    """Where an append's events are stored: the stream's version after them, their positions.

    ``duplicate`` is True when this call stored nothing because every one of its event ids
    was already stored by an earlier append (a retry after an ambiguous failure, a second
    delivery of the same command): the version and positions are that append's. Results of
    the same append compare equal whether or not they were duplicates.
    """

    stream_id: str
    stream_version: int
    first_position: int
    last_position: int
    duplicate: bool = field(default=False, compare=False)


class RecordedEvent:
    """An event as stored. ``data`` and ``metadata`` are decoded from JSON on first access.

    Readers that route on type or stream (projections, filters, replays to a version) never
    pay for decoding payloads they do not look at.
    """

    __slots__ = (
        "_data",
        "_data_raw",
        "_metadata",
        "_metadata_raw",
        "event_id",
        "global_position",
        "recorded_at",
        "schema_version",
        "stream_id",
        "stream_version",
        "tenant_id",
        "type",
    )

    def __init__(
        self,
        event_id: UUID,
        stream_id: str,
        stream_version: int,
        global_position: int,
        type: str,
        schema_version: int,
        data: bytes | Mapping[str, Any],
        metadata: bytes | Mapping[str, Any],
        tenant_id: str | None,
        recorded_at: datetime,
    ) -> None:
        self.event_id = event_id
        self.stream_id = stream_id
        self.stream_version = stream_version
        self.global_position = global_position
        self.type = type
        self.schema_version = schema_version
        self.tenant_id = tenant_id
        self.recorded_at = recorded_at
        self._data_raw = data
        self._metadata_raw = metadata
        self._data: Mapping[str, Any] | None = None
        self._metadata: Mapping[str, Any] | None = None

    @property
    def data(self) -> Mapping[str, Any]:
        if self._data is None:
            raw = self._data_raw
            self._data = orjson.loads(raw) if isinstance(raw, bytes | str) else raw
        return self._data

    @property
    def metadata(self) -> Mapping[str, Any]:
        if self._metadata is None:
            raw = self._metadata_raw
            self._metadata = orjson.loads(raw) if isinstance(raw, bytes | str) else raw
        return self._metadata

    @property
    def category(self) -> str:
        return category_of(self.stream_id)

    def _key(self) -> tuple[object, ...]:
        return (
            self.event_id,
            self.stream_id,
            self.stream_version,
            self.global_position,
            self.type,
            self.schema_version,
            self.tenant_id,
            self.recorded_at,
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RecordedEvent):
            return NotImplemented
        return self._key() == other._key() and self.data == other.data and self.metadata == other.metadata

    def __hash__(self) -> int:
        return hash((self.event_id, self.global_position))

    def __repr__(self) -> str:
        return (
            f"RecordedEvent({self.stream_id}@{self.stream_version}, pos={self.global_position}, "
            f"type={self.type!r}, id={self.event_id})"
        )
