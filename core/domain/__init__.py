"""Chronicle's domain model: versioned event contracts, pure deciders, command handling.

Modules:
- ``contracts``: DomainEvent, EventRegistry (type and version to class, upcasting), UnknownEvent
- ``registry``: DOMAIN_EVENTS, the registry of every agent, task, conversation and training-run event
- ``decider``: Decider, the shape every aggregate shares (decide, evolve, fold, state JSON)
- ``agent``, ``task``, ``conversation``: one package per aggregate (events, commands, state, decide)
- ``handling``: handle(), load-decide-append with retries, idempotency and metadata
- ``serialization``: frozen dataclasses to JSON-ready dicts and back
- ``errors``: the domain's errors, drawn as a tree in that module's docstring
"""

from core.domain.agent import AGENT
from core.domain.contracts import DomainEvent, EventRegistry, UnknownEvent, Upcaster
from core.domain.conversation import CONVERSATION
from core.domain.decider import Decider
from core.domain.errors import (
    AttemptsExhausted,
    CommandRefused,
    CommandRetriesExhausted,
    DomainError,
    IllegalTransition,
    InvalidCommand,
    InvalidShape,
    LeaseNotExpired,
    MalformedEvent,
    OutOfOrderDelivery,
    RetryNotDue,
    StaleFencingToken,
    UnexpectedEvent,
    UnknownEventType,
    UnknownSchemaVersion,
    UnreadableEvent,
)
from core.domain.handling import CommandContext, Handled, Loaded, command_event_id, handle, load
from core.domain.registry import DOMAIN_EVENTS
from core.domain.task import TASK

__all__ = [
    "AGENT",
    "CONVERSATION",
    "DOMAIN_EVENTS",
    "TASK",
    "AttemptsExhausted",
    "CommandContext",
    "CommandRefused",
    "CommandRetriesExhausted",
    "Decider",
    "DomainError",
    "DomainEvent",
    "EventRegistry",
    "Handled",
    "IllegalTransition",
    "InvalidCommand",
    "InvalidShape",
    "LeaseNotExpired",
    "Loaded",
    "MalformedEvent",
    "OutOfOrderDelivery",
    "RetryNotDue",
    "StaleFencingToken",
    "UnexpectedEvent",
    "UnknownEvent",
    "UnknownEventType",
    "UnknownSchemaVersion",
    "UnreadableEvent",
    "Upcaster",
    "command_event_id",
    "handle",
    "load",
]
