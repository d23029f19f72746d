"""The conversation state machine, one lifecycle per message, ordered per conversation.

    unsent --send--> sent --deliver--> delivered --acknowledge--> acknowledged

Order. Sending numbers messages 1, 2, 3, ... in the order the conversation accepted them, and
a message is delivered to its recipient only after every earlier message to that recipient:
a recipient reads the conversation in the order it was written, whatever order the transport
attempted deliveries in. Acknowledgements may come in any order.
"""

from __future__ import annotations

from core.domain.conversation.commands import (
    AcknowledgeMessage,
    ConversationCommand,
    DeliverMessage,
    SendMessage,
)
from core.domain.conversation.events import (
    ConversationEvent,
    MessageAcknowledged,
    MessageDelivered,
    MessageSent,
    message_id_of,
)
from core.domain.conversation.state import ConversationState, InFlightMessage, MessageStatus
from core.domain.errors import IllegalTransition, OutOfOrderDelivery
from core.domain.validation import check_same_aggregate

__all__ = ["ALLOWED", "decide"]

# The state machine as data: the message statuses in which each command is allowed.
ALLOWED: dict[type[ConversationCommand], frozenset[MessageStatus]] = {
    SendMessage: frozenset({MessageStatus.UNSENT}),
    DeliverMessage: frozenset({MessageStatus.SENT}),
    AcknowledgeMessage: frozenset({MessageStatus.DELIVERED}),
}


def decide(command: ConversationCommand, state: ConversationState) -> list[ConversationEvent]:
    """The events ``command`` produces in ``state``; raises a CommandRefused if it may not run."""
    check_same_aggregate(type(command).__name__, command.conversation_id, state.conversation_id)
    match command:
        case SendMessage():
            return [_sent(command, state)]
        case DeliverMessage():
            message = _require(command, state)
            _check_order(command, state, message)
            return [
                MessageDelivered(command.conversation_id, command.sequence, message.recipient, command.at)
            ]
        case AcknowledgeMessage():
            message = _require(command, state)
            return [
                MessageAcknowledged(command.conversation_id, command.sequence, message.recipient, command.at)
            ]


def _sent(command: SendMessage, state: ConversationState) -> MessageSent:
    sequence = state.last_sequence + 1
    message_id = message_id_of(command.conversation_id, sequence)
    return MessageSent(
        conversation_id=command.conversation_id,
        sequence=sequence,
        message_id=message_id,
        sender=command.sender,
        recipient=command.recipient,
        body=dict(command.body),
        correlation_id=command.correlation_id or message_id,
        causation_id=command.causation_id,
        at=command.at,
    )


def _require(command: DeliverMessage | AcknowledgeMessage, state: ConversationState) -> InFlightMessage:
    status = state.status_of(command.sequence)
    message = state.message(command.sequence)
    if status not in ALLOWED[type(command)] or message is None:
        raise IllegalTransition(
            "message", f"{command.conversation_id}#{command.sequence}", status.value, type(command).__name__
        )
    return message


def _check_order(command: DeliverMessage, state: ConversationState, message: InFlightMessage) -> None:
    for earlier in state.in_flight:
        if earlier.sequence >= message.sequence:
            return
        if earlier.recipient == message.recipient and earlier.status is MessageStatus.SENT:
            raise OutOfOrderDelivery(command.conversation_id, command.sequence, earlier.sequence)
