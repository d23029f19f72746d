"""Conversation commands. Each checks its own shape when built."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.domain.errors import InvalidCommand
from core.domain.validation import check_aware, check_id, check_text

__all__ = ["AcknowledgeMessage", "ConversationCommand", "DeliverMessage", "SendMessage"]


def _check_base(command: object, conversation_id: str, at: datetime) -> None:
    name = type(command).__name__
    check_id(name, "conversation_id", conversation_id)
    check_aware(name, "at", at)


def _check_sequence(command: object, sequence: int) -> None:
    if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 1:
        raise InvalidCommand(type(command).__name__, f"sequence must be an int >= 1, got {sequence!r}")


@dataclass(frozen=True, slots=True)
class SendMessage:
    """Send a message; the conversation gives it the next sequence number and its id."""

    conversation_id: str
    sender: str
    recipient: str
    at: datetime
    body: Mapping[str, Any] = field(default_factory=dict)
    correlation_id: str | None = None
    causation_id: str | None = None

    def __post_init__(self) -> None:
        _check_base(self, self.conversation_id, self.at)
        check_text("SendMessage", "sender", self.sender)
        check_text("SendMessage", "recipient", self.recipient)
        for name in ("correlation_id", "causation_id"):
            value = getattr(self, name)
            if value is not None:
                check_text("SendMessage", name, value)


@dataclass(frozen=True, slots=True)
class DeliverMessage:
    conversation_id: str
    sequence: int
    at: datetime

    def __post_init__(self) -> None:
        _check_base(self, self.conversation_id, self.at)
        _check_sequence(self, self.sequence)


@dataclass(frozen=True, slots=True)
class AcknowledgeMessage:
    conversation_id: str
    sequence: int
    at: datetime

    def __post_init__(self) -> None:
        _check_base(self, self.conversation_id, self.at)
        _check_sequence(self, self.sequence)


ConversationCommand = SendMessage | DeliverMessage | AcknowledgeMessage
