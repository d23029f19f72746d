"""Errors of the domain model: refused commands and events that cannot be read.

ChronicleError (core.errors)
├── DomainError
│   ├── CommandRefused                      a decider said no; nothing was written
│   │   ├── IllegalTransition               the command is not allowed in the aggregate's state
│   │   ├── StaleFencingToken               a writer that lost its lease wrote late
│   │   ├── LeaseNotExpired                 a time-out was asked for a lease still held
│   │   ├── RetryNotDue                     a retry was assigned before its back-off ended
│   │   ├── AttemptsExhausted               a retry was asked for a task out of attempts
│   │   └── OutOfOrderDelivery              a message would overtake an earlier one
│   ├── InvalidCommand (also ValueError)    a command is malformed, whatever the state
│   ├── UnreadableEvent                     a stored event cannot become a domain event
│   │   ├── UnknownEventType
│   │   ├── UnknownSchemaVersion
│   │   └── MalformedEvent
│   ├── InvalidShape (also ValueError)      a JSON value does not fit a dataclass
│   └── UnexpectedEvent                     evolve was given another aggregate's event
└── ConcurrencyError (core.errors)
    └── CommandRetriesExhausted             every reload-and-retry met a newer stream version
"""

from __future__ import annotations

from datetime import datetime

from core.errors import ChronicleError, ConcurrencyError

__all__ = [
    "AttemptsExhausted",
    "CommandRefused",
    "CommandRetriesExhausted",
    "DomainError",
    "IllegalTransition",
    "InvalidCommand",
    "InvalidShape",
    "LeaseNotExpired",
    "MalformedEvent",
    "OutOfOrderDelivery",
    "RetryNotDue",
    "StaleFencingToken",
    "UnexpectedEvent",
    "UnknownEventType",
    "UnknownSchemaVersion",
    "UnreadableEvent",
]


class DomainError(ChronicleError):
    """Base of the domain model's errors."""


class CommandRefused(DomainError):
    """A decider refused a command; the stream is unchanged."""


class IllegalTransition(CommandRefused):
    """The command is not allowed in the state the aggregate is in."""

    def __init__(self, aggregate: str, aggregate_id: str, state: str, command: str) -> None:
        self.aggregate = aggregate
        self.aggregate_id = aggregate_id
        self.state = state
        self.command = command
        super().__init__(f"{aggregate} {aggregate_id!r} is {state}: {command} is not allowed")


class StaleFencingToken(CommandRefused):
    """The writer's fencing token is not the task's current one (its lease was taken over)."""

    def __init__(self, task_id: str, command: str, given: int, current: int) -> None:
        self.task_id = task_id
        self.command = command
        self.given = given
        self.current = current
        super().__init__(
            f"task {task_id!r}: {command} carries fencing token {given}, the current token is "
            f"{current}; only the holder of the current lease may write"
        )


class LeaseNotExpired(CommandRefused):
    def __init__(self, task_id: str, lease_expires_at: datetime, now: datetime) -> None:
        self.task_id = task_id
        self.lease_expires_at = lease_expires_at
        self.now = now
        super().__init__(
            f"task {task_id!r}: the lease runs until {lease_expires_at.isoformat()}, "
            f"it is {now.isoformat()}: the task has not timed out"
        )


class RetryNotDue(CommandRefused):
    def __init__(self, task_id: str, not_before: datetime, now: datetime) -> None:
        self.task_id = task_id
        self.not_before = not_before
        self.now = now
        super().__init__(
            f"task {task_id!r}: the retry is due at {not_before.isoformat()}, it is {now.isoformat()}"
        )


class AttemptsExhausted(CommandRefused):
    def __init__(self, task_id: str, attempts: int, max_attempts: int) -> None:
        self.task_id = task_id
        self.attempts = attempts
        self.max_attempts = max_attempts
        super().__init__(
            f"task {task_id!r} has used {attempts} of {max_attempts} attempts: dead-letter it instead"
        )


class OutOfOrderDelivery(CommandRefused):
    def __init__(self, conversation_id: str, sequence: int, earlier: int) -> None:
        self.conversation_id = conversation_id
        self.sequence = sequence
        self.earlier = earlier
        super().__init__(
            f"conversation {conversation_id!r}: message {sequence} cannot be delivered before "
            f"message {earlier} to the same recipient"
        )


class InvalidCommand(DomainError, ValueError):
    """A command is malformed whatever the state: a naive datetime, an empty id, a bad digest."""

    def __init__(self, command: str, reason: str) -> None:
        self.command = command
        self.reason = reason
        super().__init__(f"{command}: {reason}")


class UnreadableEvent(DomainError):
    """A stored event cannot be turned into a current domain event."""


class UnknownEventType(UnreadableEvent):
    def __init__(self, event_type: str) -> None:
        self.event_type = event_type
        super().__init__(f"unknown event type {event_type!r}: no contract is registered for it")


class UnknownSchemaVersion(UnreadableEvent):
    def __init__(self, event_type: str, schema_version: int, current: int) -> None:
        self.event_type = event_type
        self.schema_version = schema_version
        self.current = current
        super().__init__(
            f"event type {event_type!r} has no contract or upcaster for schema version "
            f"{schema_version} (current version: {current})"
        )


class MalformedEvent(UnreadableEvent):
    def __init__(self, event_type: str, schema_version: int, reason: str) -> None:
        self.event_type = event_type
        self.schema_version = schema_version
        self.reason = reason
        super().__init__(f"event {event_type!r} v{schema_version} does not fit its contract: {reason}")


class InvalidShape(DomainError, ValueError):
    """A JSON value does not fit the dataclass it is read into; ``path`` names the field."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class UnexpectedEvent(DomainError):
    """evolve was handed an event of another aggregate: a stream was read with the wrong decider."""

    def __init__(self, aggregate: str, event_type: str) -> None:
        self.aggregate = aggregate
        self.event_type = event_type
        super().__init__(f"{aggregate} does not evolve on {event_type!r} events")


class CommandRetriesExhausted(ConcurrencyError):
    """Each attempt found the stream moved on; the command was not applied."""

    def __init__(self, stream_id: str, command: str, attempts: int) -> None:
        self.stream_id = stream_id
        self.command = command
        self.attempts = attempts
        super().__init__(
            f"stream {stream_id!r}: {command} met a concurrent write on each of {attempts} attempts"
        )
