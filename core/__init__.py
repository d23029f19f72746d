"""Chronicle's pure core: event contracts, errors, settings, the domain's deciders and the
training loop's decisions, and the ports (``ports``, ``triad.ports``) that the outer packages
implement. No I/O happens in this package; import-linter fails the build if a module imports
an event loop, a thread, a file or a driver (the one exception, os for uuid7's entropy, is
named in pyproject.toml)."""

from core.errors import (
    AppendOutcomeUnknown,
    ChronicleError,
    ConcurrencyError,
    EventIdConflict,
    EventTooLarge,
    InvalidEventData,
    InvalidEventType,
    InvalidExpectedVersion,
    InvalidInput,
    InvalidStreamId,
    RetriableError,
    SchemaNotAtHead,
    StoreClosed,
    StoreUnavailable,
    TenantMismatch,
    WrongExpectedVersion,
)
from core.events import (
    AppendResult,
    ExpectedVersion,
    NewEvent,
    RecordedEvent,
    StreamAppend,
    category_of,
    uuid7,
)
from core.settings import Settings

__all__ = [
    "AppendOutcomeUnknown",
    "AppendResult",
    "ChronicleError",
    "ConcurrencyError",
    "EventIdConflict",
    "EventTooLarge",
    "ExpectedVersion",
    "InvalidEventData",
    "InvalidEventType",
    "InvalidExpectedVersion",
    "InvalidInput",
    "InvalidStreamId",
    "NewEvent",
    "RecordedEvent",
    "RetriableError",
    "SchemaNotAtHead",
    "Settings",
    "StoreClosed",
    "StoreUnavailable",
    "StreamAppend",
    "TenantMismatch",
    "WrongExpectedVersion",
    "category_of",
    "uuid7",
]
