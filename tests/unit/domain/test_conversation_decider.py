"""The conversation state machine, given/when/then: every allowed and every refused transition."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from core.domain import CONVERSATION, IllegalTransition, InvalidCommand, OutOfOrderDelivery
from core.domain.conversation import (
    AcknowledgeMessage,
    DeliverMessage,
    MessageAcknowledged,
    MessageDelivered,
    MessageSent,
    MessageStatus,
    SendMessage,
    message_id_of,
)
from tests.unit.domain.spec import Spec

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
ID = "c1"
M1 = message_id_of(ID, 1)
M2 = message_id_of(ID, 2)


def sent(sequence: int, recipient: str = "bob", correlation: str | None = None) -> MessageSent:
    message_id = message_id_of(ID, sequence)
    return MessageSent(
        ID, sequence, message_id, "alice", recipient, {"n": sequence}, correlation or message_id, None, T0
    )


SENT = [sent(1)]
DELIVERED = [*SENT, MessageDelivered(ID, 1, "bob", T0)]
ACKNOWLEDGED = [*DELIVERED, MessageAcknowledged(ID, 1, "bob", T0)]

S = MessageStatus
HISTORY = {S.UNSENT: [], S.SENT: SENT, S.DELIVERED: DELIVERED, S.ACKNOWLEDGED: ACKNOWLEDGED}
COMMANDS = {"DeliverMessage": DeliverMessage(ID, 1, T0), "AcknowledgeMessage": AcknowledgeMessage(ID, 1, T0)}
# Written out here, independently of the decider's own table: the message statuses in which
# each command about message 1 is allowed.
EXPECTED_ALLOWED = {"DeliverMessage": {S.SENT}, "AcknowledgeMessage": {S.DELIVERED}}
REFUSED = [(s, n) for n, allowed in EXPECTED_ALLOWED.items() for s in MessageStatus if s not in allowed]


def conversation() -> Spec:
    return Spec(CONVERSATION)


def test_histories_reach_their_status() -> None:
    """Each given history leaves message 1 in the status it is filed under."""
    for status, history in HISTORY.items():
        assert CONVERSATION.fold(history).status_of(1) is status


@pytest.mark.parametrize(("status", "name"), REFUSED, ids=[f"{s.value}-{n}" for s, n in REFUSED])
def test_refused_transition_names_state_and_command(status: MessageStatus, name: str) -> None:
    """A command on a message outside its allowed statuses raises IllegalTransition naming both."""
    conversation().given(HISTORY[status]).when(COMMANDS[name]).then_raises(
        IllegalTransition, state=status.value, command=name, aggregate="message", aggregate_id=f"{ID}#1"
    )


def test_acknowledging_an_unsent_message_is_refused() -> None:
    """Acknowledging a message that was never sent raises an error that says it is unsent."""
    error = conversation().given(SENT).when(AcknowledgeMessage(ID, 2, T0)).then_raises(IllegalTransition)
    assert error.state == "unsent" and "AcknowledgeMessage" in str(error)


@pytest.mark.parametrize("status", list(MessageStatus), ids=lambda s: s.value)
def test_send_is_allowed_whatever_earlier_messages_are(status: MessageStatus) -> None:
    """Sending always records the next message, whatever state message 1 is in."""
    events = CONVERSATION.decide(SendMessage(ID, "alice", "bob", T0), CONVERSATION.fold(HISTORY[status]))
    expected = 1 if status is S.UNSENT else 2
    assert [type(e) for e in events] == [MessageSent] and events[0].sequence == expected


def test_first_message_is_numbered_one_with_a_derived_id() -> None:
    """The first message gets sequence 1, the id derived from it, and starts its own correlation."""
    state = conversation().when(SendMessage(ID, "alice", "bob", T0, {"n": 1})).then(sent(1))
    assert state.status_of(1) is S.SENT and state.last_sequence == 1


def test_reply_carries_correlation_and_causation() -> None:
    """A reply keeps the exchange's correlation id and names the message it answers as its cause."""
    conversation().given(SENT).when(
        SendMessage(ID, "bob", "alice", T0, {"ok": True}, correlation_id=M1, causation_id=M1)
    ).then(MessageSent(ID, 2, M2, "bob", "alice", {"ok": True}, M1, M1, T0))


def test_deliver_a_sent_message() -> None:
    """Delivering a sent message records MessageDelivered to its recipient."""
    state = (
        conversation().given(SENT).when(DeliverMessage(ID, 1, T0)).then(MessageDelivered(ID, 1, "bob", T0))
    )
    assert state.status_of(1) is S.DELIVERED


def test_acknowledge_a_delivered_message() -> None:
    """Acknowledging a delivered message records MessageAcknowledged and it leaves the in-flight set."""
    state = (
        conversation()
        .given(DELIVERED)
        .when(AcknowledgeMessage(ID, 1, T0))
        .then(MessageAcknowledged(ID, 1, "bob", T0))
    )
    assert state.status_of(1) is S.ACKNOWLEDGED and state.in_flight == ()


def test_delivery_may_not_overtake_an_earlier_message_to_the_same_recipient() -> None:
    """Delivering message 2 while message 1 to the same recipient is undelivered raises OutOfOrderDelivery."""
    conversation().given(sent(1), sent(2)).when(DeliverMessage(ID, 2, T0)).then_raises(
        OutOfOrderDelivery, sequence=2, earlier=1
    )


def test_delivery_to_another_recipient_is_not_held_back() -> None:
    """An undelivered message to one recipient does not hold back a later one to another."""
    conversation().given(sent(1, "bob"), sent(2, "carol")).when(DeliverMessage(ID, 2, T0)).then(
        MessageDelivered(ID, 2, "carol", T0)
    )


def test_acknowledgements_may_come_in_any_order() -> None:
    """Message 2 may be acknowledged before message 1."""
    history = [sent(1), sent(2), MessageDelivered(ID, 1, "bob", T0), MessageDelivered(ID, 2, "bob", T0)]
    state = (
        conversation()
        .given(history)
        .when(AcknowledgeMessage(ID, 2, T0))
        .then(MessageAcknowledged(ID, 2, "bob", T0))
    )
    assert (state.status_of(1), state.status_of(2)) == (S.DELIVERED, S.ACKNOWLEDGED)


def test_command_for_another_conversation_is_refused() -> None:
    """A command addressed to another conversation than the stream holds raises InvalidCommand."""
    conversation().given(SENT).when(DeliverMessage("c2", 1, T0)).then_raises(InvalidCommand)


def test_message_ids_differ_by_conversation_and_sequence() -> None:
    """Message ids are stable for one place in one conversation and differ for any other."""
    assert message_id_of(ID, 1) == M1
    assert len({message_id_of(ID, 1), message_id_of(ID, 2), message_id_of("c2", 1)}) == 3


@pytest.mark.parametrize(
    "build",
    [
        lambda: SendMessage(ID, "", "bob", T0),
        lambda: SendMessage(ID, "alice", "bob", T0, correlation_id=""),
        lambda: DeliverMessage(ID, 0, T0),
        lambda: AcknowledgeMessage(ID, True, T0),
    ],
    ids=["empty-sender", "empty-correlation", "sequence-zero", "sequence-bool"],
)
def test_malformed_commands_are_refused_when_built(build: object) -> None:
    """A malformed conversation command raises InvalidCommand at construction."""
    assert callable(build)
    with pytest.raises(InvalidCommand):
        build()
