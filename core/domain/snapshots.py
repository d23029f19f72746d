"""Snapshots: a stream's folded state at a version, and the rules for when to take one.

A snapshot is a cache of a fold, never a source of truth: the events stay the record, and any
snapshot can be deleted (retention) or ignored (a stale state schema version) at the price of
a longer replay. So every choice here errs towards "replay more", never "trust more".

``SnapshotPolicy.due`` is pure: the snapshotter (``projections.snapshotter``) counts what each
stream did since its last snapshot and asks the policy; the policy reads no clock and no
database, so its four rules are unit-tested alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from core.errors import InvalidInput
from core.events import RecordedEvent

__all__ = [
    "DEFAULT_EVERY_BYTES",
    "DEFAULT_EVERY_EVENTS",
    "Progress",
    "Snapshot",
    "SnapshotPolicy",
    "SnapshotStore",
    "event_size",
]

DEFAULT_EVERY_EVENTS = 1_000
DEFAULT_EVERY_BYTES = 10 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state of ``stream_id`` after its event ``stream_version``, as ``state_to_json`` wrote it.

    ``schema_version`` is the aggregate's STATE_SCHEMA_VERSION when the snapshot was taken.
    ``global_position`` and ``recorded_at`` are those of the last event folded in; they let a
    load "as of" a position or a time start here. Both are None for snapshots written before
    the log recorded them, and such snapshots serve loads by version only.
    """

    stream_id: str
    stream_version: int
    schema_version: int
    state: Mapping[str, Any]
    global_position: int | None = None
    recorded_at: datetime | None = None


class SnapshotStore(Protocol):
    """Where snapshots live (``eventstore.state.snapshots``). Deleting one loses nothing but time."""

    async def save(self, snapshot: Snapshot) -> None:
        """Store ``snapshot`` whole or not at all, then drop what it supersedes (retention)."""
        ...

    async def latest(
        self,
        stream_id: str,
        schema_version: int,
        *,
        max_version: int | None = None,
        max_position: int | None = None,
        max_recorded_at: datetime | None = None,
    ) -> Snapshot | None:
        """The newest snapshot of ``schema_version`` at or before every bound given, or None."""
        ...


@dataclass(frozen=True, slots=True)
class Progress:
    """What a stream did since its last snapshot (or since the snapshotter first saw it)."""

    events: int
    bytes: int
    since: datetime | None  # recorded_at of the last snapshotted event, or of the first unsnapshotted one


@dataclass(frozen=True, slots=True)
class SnapshotPolicy:
    """When the snapshotter takes a snapshot of a stream; None switches a rule off.

    - ``every_events``: this many events since the last snapshot (default 1,000);
    - ``every_seconds``: the stream was active and its last snapshot (or first unsnapshotted
      event) is at least this old, measured in event time;
    - ``every_bytes``: this many bytes of event data and metadata since the last snapshot
      (default 10 MiB), so a few huge events get a snapshot before a thousand small ones would;
    - on demand: ``chronicle snapshot STREAM``, whatever the rules say.

    ``keep`` is the retention: how many snapshots per stream survive a new one. Older ones are
    superseded; one extra keeps time travel to recent versions cheap.
    """

    every_events: int | None = DEFAULT_EVERY_EVENTS
    every_seconds: float | None = None
    every_bytes: int | None = DEFAULT_EVERY_BYTES
    keep: int = 2

    def __post_init__(self) -> None:
        for name in ("every_events", "every_seconds", "every_bytes"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise InvalidInput(f"SnapshotPolicy.{name} must be > 0 or None, got {value!r}")
        if self.keep < 1:
            raise InvalidInput(f"SnapshotPolicy.keep must be >= 1, got {self.keep}")

    def due(self, progress: Progress, now: datetime) -> str | None:
        """The rule that makes a snapshot due ('events', 'bytes' or 'time'), or None."""
        if progress.events <= 0:
            return None
        if self.every_events is not None and progress.events >= self.every_events:
            return "events"
        if self.every_bytes is not None and progress.bytes >= self.every_bytes:
            return "bytes"
        if (
            self.every_seconds is not None
            and progress.since is not None
            and (now - progress.since).total_seconds() >= self.every_seconds
        ):
            return "time"
        return None


def event_size(event: RecordedEvent) -> int:
    """Bytes of the event's data and metadata as stored, without decoding them.

    The snapshotter sizes every event it tails; decoding JSON to measure it would cost more
    than everything else it does. Both stores hand over the stored bytes undecoded.
    """
    total = 0
    for raw in (event._data_raw, event._metadata_raw):
        total += len(raw) if isinstance(raw, bytes | str) else len(repr(raw))
    return total
