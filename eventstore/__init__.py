"""The adapters of core's ports, grouped by concern.

- ``log``: the event log (PostgreSQL with group commit, its in-memory twin, bulk import/export)
- ``state``: snapshots and content-addressed blobs, stored beside the log
- ``redis``: the state cache and the training-metrics stream; every Redis key is in ``redis.keys``
- ``triad``: the training loop's emission flusher and checkpoint files
- ``pg``: asyncpg plumbing every PostgreSQL adapter shares; ``migrate``: the schema runner
- ``embedded``: the PostgreSQL and Redis started when no URL is configured

This package re-exports the event log's public names.
"""

from core.errors import (
    AppendOutcomeUnknown,
    ChronicleError,
    EventIdConflict,
    RetriableError,
    StoreClosed,
    StoreUnavailable,
    TenantMismatch,
    WrongExpectedVersion,
)
from core.events import AppendResult, ExpectedVersion, NewEvent, RecordedEvent, StreamAppend
from eventstore.log.memory import InMemoryEventStore
from eventstore.log.store import EventStore
from eventstore.pg import StorageError

__all__ = [
    "AppendOutcomeUnknown",
    "AppendResult",
    "ChronicleError",
    "EventIdConflict",
    "EventStore",
    "ExpectedVersion",
    "InMemoryEventStore",
    "NewEvent",
    "RecordedEvent",
    "RetriableError",
    "StorageError",
    "StoreClosed",
    "StoreUnavailable",
    "StreamAppend",
    "TenantMismatch",
    "WrongExpectedVersion",
]
