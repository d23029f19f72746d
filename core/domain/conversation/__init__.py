"""The conversation aggregate: messages sent, delivered and acknowledged, ordered per conversation."""

from __future__ import annotations

from core.domain.conversation.commands import (
    AcknowledgeMessage,
    ConversationCommand,
    DeliverMessage,
    SendMessage,
)
from core.domain.conversation.decide import ALLOWED, decide
from core.domain.conversation.events import (
    CONVERSATION_EVENTS,
    CONVERSATION_UPCASTERS,
    ConversationEvent,
    MessageAcknowledged,
    MessageDelivered,
    MessageSent,
    message_id_of,
)
from core.domain.conversation.state import (
    CONVERSATION_STATE_SCHEMA_VERSION,
    ConversationState,
    InFlightMessage,
    MessageStatus,
    evolve,
)
from core.domain.decider import Decider

__all__ = [
    "ALLOWED",
    "CONVERSATION",
    "CONVERSATION_EVENTS",
    "CONVERSATION_STATE_SCHEMA_VERSION",
    "CONVERSATION_UPCASTERS",
    "AcknowledgeMessage",
    "ConversationCommand",
    "ConversationEvent",
    "ConversationState",
    "DeliverMessage",
    "InFlightMessage",
    "MessageAcknowledged",
    "MessageDelivered",
    "MessageSent",
    "MessageStatus",
    "SendMessage",
    "decide",
    "evolve",
    "message_id_of",
]

CONVERSATION: Decider[ConversationCommand, ConversationState] = Decider(
    category="conversation",
    initial_state=ConversationState(),
    decide=decide,
    evolve=evolve,
    state_schema_version=CONVERSATION_STATE_SCHEMA_VERSION,
    state_to_json=ConversationState.to_json,
    state_from_json=ConversationState.from_json,
)
