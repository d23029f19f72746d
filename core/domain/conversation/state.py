"""A conversation's state and ``evolve``.

The state keeps only the messages still in flight (sent or delivered, not yet acknowledged),
not the whole history: sequence numbers are dense, so any message at or below
``last_sequence`` that is not in flight has been acknowledged. A long conversation therefore
folds in time linear in its events and snapshots to a size set by what is unacknowledged; the
history itself is the conversation read model's job.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping
from datetime import datetime
from typing import Any, ClassVar

from core.domain.contracts import DomainEvent, UnknownEvent
from core.domain.conversation.events import MessageAcknowledged, MessageDelivered, MessageSent
from core.domain.decider import with_changes
from core.domain.errors import UnexpectedEvent
from core.domain.serialization import from_json_value, to_json_value

__all__ = [
    "CONVERSATION_STATE_SCHEMA_VERSION",
    "ConversationState",
    "InFlightMessage",
    "MessageStatus",
    "evolve",
]

CONVERSATION_STATE_SCHEMA_VERSION = 1


class MessageStatus(enum.Enum):
    UNSENT = "unsent"
    SENT = "sent"
    DELIVERED = "delivered"
    ACKNOWLEDGED = "acknowledged"


@dataclasses.dataclass(frozen=True, slots=True)
class InFlightMessage:
    sequence: int
    message_id: str
    sender: str
    recipient: str
    status: MessageStatus
    correlation_id: str


@dataclasses.dataclass(frozen=True, slots=True)
class ConversationState:
    STATE_SCHEMA_VERSION: ClassVar[int] = CONVERSATION_STATE_SCHEMA_VERSION

    conversation_id: str = ""
    last_sequence: int = 0
    in_flight: tuple[InFlightMessage, ...] = ()  # ordered by sequence
    updated_at: datetime | None = None

    def to_json(self) -> dict[str, Any]:
        return to_json_value(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> ConversationState:
        return from_json_value(cls, data)

    def message(self, sequence: int) -> InFlightMessage | None:
        for message in self.in_flight:
            if message.sequence == sequence:
                return message
        return None

    def status_of(self, sequence: int) -> MessageStatus:
        """Where message ``sequence`` is in its lifecycle, whether or not it is still in flight."""
        if not 1 <= sequence <= self.last_sequence:
            return MessageStatus.UNSENT
        message = self.message(sequence)
        return MessageStatus.ACKNOWLEDGED if message is None else message.status


def evolve(state: ConversationState, event: DomainEvent | UnknownEvent) -> ConversationState:
    """The state after ``event``. Facts are applied as recorded, without re-checking rules."""
    match event:
        case MessageSent():
            sent = InFlightMessage(
                event.sequence,
                event.message_id,
                event.sender,
                event.recipient,
                MessageStatus.SENT,
                event.correlation_id,
            )
            return ConversationState(
                event.conversation_id, event.sequence, (*state.in_flight, sent), event.at
            )
        case MessageDelivered():
            in_flight = tuple(
                with_changes(m, status=MessageStatus.DELIVERED) if m.sequence == event.sequence else m
                for m in state.in_flight
            )
            return with_changes(state, in_flight=in_flight, updated_at=event.at)
        case MessageAcknowledged():
            in_flight = tuple(m for m in state.in_flight if m.sequence != event.sequence)
            return with_changes(state, in_flight=in_flight, updated_at=event.at)
        case UnknownEvent():
            return state
        case _:
            raise UnexpectedEvent("conversation", type(event).__name__)
