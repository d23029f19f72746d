"""Conversation event contracts: messages sent, delivered and acknowledged, in order."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from core.domain.contracts import DomainEvent, Upcaster
from core.privacy import Personal

__all__ = [
    "CONVERSATION_EVENTS",
    "CONVERSATION_UPCASTERS",
    "ConversationEvent",
    "MessageAcknowledged",
    "MessageDelivered",
    "MessageSent",
    "message_id_of",
]

# Fixed forever: message ids derived under it are stored in events and cited as causation ids.
_MESSAGE_NAMESPACE = uuid.UUID("0d5f6a8e-43a1-4c6b-9f59-2f4c6d0e7b11")


def message_id_of(conversation_id: str, sequence: int) -> str:
    """The message's global id, derived from its place in the conversation.

    Deriving it (rather than taking one from the caller) means a message is named by its
    sequence inside the conversation and by this id everywhere else, and the two can never
    disagree; other streams cite it as a causation id.
    """
    return str(uuid.uuid5(_MESSAGE_NAMESPACE, f"{conversation_id}/{sequence}"))


@dataclass(frozen=True, slots=True)
class MessageSent(DomainEvent):
    """Message number ``sequence`` of the conversation, from ``sender`` to ``recipient``.

    ``correlation_id`` ties together every message of one exchange; ``causation_id`` names the
    message or event this one answers (None for an opening message).
    """

    TYPE: ClassVar[str] = "MessageSent"
    SCHEMA_VERSION: ClassVar[int] = 1
    PERSONAL: ClassVar[Personal | None] = Personal(subject="sender", fields=("body",))

    conversation_id: str
    sequence: int
    message_id: str
    sender: str
    recipient: str
    body: Mapping[str, Any]
    correlation_id: str
    causation_id: str | None
    at: datetime


@dataclass(frozen=True, slots=True)
class MessageDelivered(DomainEvent):
    TYPE: ClassVar[str] = "MessageDelivered"
    SCHEMA_VERSION: ClassVar[int] = 1

    conversation_id: str
    sequence: int
    recipient: str
    at: datetime


@dataclass(frozen=True, slots=True)
class MessageAcknowledged(DomainEvent):
    TYPE: ClassVar[str] = "MessageAcknowledged"
    SCHEMA_VERSION: ClassVar[int] = 1

    conversation_id: str
    sequence: int
    recipient: str
    at: datetime


ConversationEvent = MessageSent | MessageDelivered | MessageAcknowledged

CONVERSATION_EVENTS: tuple[type[DomainEvent], ...] = (MessageSent, MessageDelivered, MessageAcknowledged)

CONVERSATION_UPCASTERS: tuple[Upcaster, ...] = ()
