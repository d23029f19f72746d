"""Chronicle's event log: the PostgreSQL store, its in-memory twin, migrations and servers."""

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
from eventstore.memory import InMemoryEventStore
from eventstore.pg import StorageError
from eventstore.store import EventStore

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
