"""Chronicle's exceptions. Callers never see a driver exception; adapters translate them here.

ChronicleError
├── InvalidInput (also ValueError)          bad input; nothing was written
│   ├── InvalidStreamId
│   ├── InvalidEventType
│   ├── InvalidEventData
│   ├── EventTooLarge
│   └── InvalidExpectedVersion
├── ConcurrencyError
│   └── WrongExpectedVersion                 the stream was not at the expected version
├── EventIdConflict                          an event id is already stored elsewhere
├── TenantMismatch                           the stream belongs to another tenant
├── StreamNotFound                           a read of a stream's state found no events at all
├── RetriableError                           retrying with the same event ids is safe
│   ├── StoreUnavailable                     the database is away; nothing was written
│   └── AppendOutcomeUnknown                 the connection died while an append was in flight
├── StoreClosed                              the store was closed
└── SchemaNotAtHead                          the database needs `chronicle migrate`
"""

from __future__ import annotations

__all__ = [
    "AppendOutcomeUnknown",
    "ChronicleError",
    "ConcurrencyError",
    "EventIdConflict",
    "EventTooLarge",
    "InvalidEventData",
    "InvalidEventType",
    "InvalidExpectedVersion",
    "InvalidInput",
    "InvalidStreamId",
    "KeyUnavailable",
    "RetriableError",
    "SchemaNotAtHead",
    "StoreClosed",
    "StoreUnavailable",
    "StreamNotFound",
    "TenantMismatch",
    "WrongExpectedVersion",
]


class ChronicleError(Exception):
    """Base of every error Chronicle raises on purpose."""


class InvalidInput(ChronicleError, ValueError):
    """The caller passed something malformed; nothing was written."""


class InvalidStreamId(InvalidInput):
    def __init__(self, stream_id: object, reason: str) -> None:
        self.stream_id = stream_id
        super().__init__(f"invalid stream id {stream_id!r}: {reason}")


class InvalidEventType(InvalidInput):
    def __init__(self, event_type: object, reason: str) -> None:
        self.event_type = event_type
        super().__init__(f"invalid event type {event_type!r}: {reason}")


class InvalidEventData(InvalidInput):
    def __init__(self, event_type: str, field: str, reason: str) -> None:
        self.event_type = event_type
        self.field = field
        super().__init__(f"event {event_type!r}: {field} is not valid JSON: {reason}")


class EventTooLarge(InvalidInput):
    def __init__(self, event_type: str, size: int, limit: int) -> None:
        self.event_type = event_type
        self.size = size
        self.limit = limit
        super().__init__(f"event {event_type!r} is {size} bytes of data and metadata; the limit is {limit}")


class InvalidExpectedVersion(InvalidInput):
    def __init__(self, value: object) -> None:
        self.value = value
        super().__init__(
            f"invalid expected version {value!r}: use an int >= 0 or "
            "ExpectedVersion.ANY / NO_STREAM / STREAM_EXISTS"
        )


class ConcurrencyError(ChronicleError):
    """Another writer got there first."""


class WrongExpectedVersion(ConcurrencyError):
    """The stream was not at the version the caller expected; nothing was written.

    ``actual`` is the stream's version when the append was decided (0: no stream).
    """

    def __init__(self, stream_id: str, expected: object, actual: int) -> None:
        self.stream_id = stream_id
        self.expected = expected
        self.actual = actual
        super().__init__(f"stream {stream_id!r}: expected version {expected}, actual version {actual}")


class EventIdConflict(ChronicleError):
    """An event id of this append is already stored, but not as this append stored it."""

    def __init__(self, stream_id: str, event_id: object) -> None:
        self.stream_id = stream_id
        self.event_id = event_id
        super().__init__(
            f"stream {stream_id!r}: event id {event_id} is already stored under a different "
            "stream or position; a retry must resend the same events to the same stream"
        )


class TenantMismatch(ChronicleError):
    def __init__(self, stream_id: str, stream_tenant: str | None, event_tenant: str | None) -> None:
        self.stream_id = stream_id
        self.stream_tenant = stream_tenant
        self.event_tenant = event_tenant
        super().__init__(
            f"stream {stream_id!r} belongs to tenant {stream_tenant!r}; "
            f"the events carry tenant {event_tenant!r}"
        )


class StreamNotFound(ChronicleError):
    """A stream's state was asked for, but the stream has no events (it was never written).

    Command handling never raises it: deciding on a new stream starts from the initial state.
    Reads of a state (time travel, replay, diff) do, so a mistyped id is not shown as an
    empty state at version 0.
    """

    def __init__(self, stream_id: str) -> None:
        self.stream_id = stream_id
        super().__init__(f"stream {stream_id!r} does not exist (it has no events)")


class RetriableError(ChronicleError):
    """A transient fault. Retrying the same call with the same event ids is always safe."""


class StoreUnavailable(RetriableError):
    """The database could not be reached, or gave up on the call for a transient reason.

    Nothing was written. The same store works again as soon as the server does.
    """


class AppendOutcomeUnknown(RetriableError):
    """The connection failed while the append was in flight: it may or may not have committed.

    Retry with the same NewEvent objects (same event ids): if the first attempt committed,
    the retry returns its original result and stores nothing new.
    """


class StoreClosed(ChronicleError):
    """The event store was closed."""


class KeyUnavailable(ChronicleError):
    """A key Chronicle needs is not where the settings say: a master key file that wraps data
    keys in use, or a data key the database does not know. Never shown as a redaction."""


class SchemaNotAtHead(ChronicleError):
    def __init__(self, current: str | None, head: str) -> None:
        self.current = current
        self.head = head
        super().__init__(
            f"database schema is at {current or 'nothing'}, code expects {head}: run `chronicle migrate`"
        )
