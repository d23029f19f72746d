"""Sealing a personal value: it opens with its key, cannot be moved or altered unnoticed, and
redacts to a marker of its own kind; contracts can only mark fields a marker fits."""

from __future__ import annotations

import dataclasses
import os
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

import orjson
import pytest

from core.domain.contracts import DomainEvent, EventRegistry
from core.domain.conversation.events import MessageSent
from core.domain.conversation.state import ConversationState, evolve
from core.domain.registry import DOMAIN_EVENTS
from core.domain.serialization import to_json_value
from core.privacy import REDACTED_JSON, REDACTED_TEXT, Personal, open_value, seal_value, sealed_key_ids

KEY = os.urandom(32)
KEY_ID = uuid.uuid4()


@pytest.mark.parametrize(
    ("value", "clear"), [("a name", "a name"), ({"text": "hi there", "n": [1, 2]}, "hi there")]
)
def test_a_sealed_value_opens_with_its_key_and_shows_nothing_in_clear(value: Any, clear: str) -> None:
    envelope = seal_value(value, KEY, KEY_ID, "MessageSent", "body")
    assert clear not in orjson.dumps(envelope).decode()  # a space is never in base64: no false alarm
    assert open_value(envelope, KEY, "MessageSent", "body") == value
    assert sealed_key_ids({"body": envelope, "sender": "x"}) == {KEY_ID}


def test_two_seals_of_one_value_differ() -> None:
    """A fresh nonce each time: equal plaintexts are not linkable through their ciphertexts."""
    assert seal_value("x", KEY, KEY_ID, "T", "f")["ct"] != seal_value("x", KEY, KEY_ID, "T", "f")["ct"]


@pytest.mark.parametrize(
    ("where", "change"),
    [
        ("another field", lambda e: (e, "MessageSent", "sender")),
        ("another event type", lambda e: (e, "Other", "body")),
        (
            "altered bytes",
            lambda e: (
                {**e, "ct": e["ct"][:-4] + ("AAAA" if e["ct"][-4:] != "AAAA" else "BBBB")},
                "MessageSent",
                "body",
            ),
        ),
        ("another key id", lambda e: ({**e, "key": str(uuid.uuid4())}, "MessageSent", "body")),
    ],
)
def test_a_moved_or_altered_envelope_does_not_open(where: str, change: Any) -> None:
    envelope, event_type, field = change(seal_value({"text": "hi"}, KEY, KEY_ID, "MessageSent", "body"))
    with pytest.raises(ValueError, match="does not open"):
        open_value(envelope, KEY, event_type, field)


def test_a_destroyed_key_reads_as_the_marker_of_the_values_kind() -> None:
    assert open_value(seal_value("a name", KEY, KEY_ID, "T", "f"), None, "T", "f") == REDACTED_TEXT
    assert open_value(seal_value({"a": 1}, KEY, KEY_ID, "T", "f"), None, "T", "f") == REDACTED_JSON


def test_the_message_body_is_marked_personal_of_its_sender() -> None:
    assert DOMAIN_EVENTS.personal["MessageSent"] == Personal(subject="sender", fields=("body",))


def test_a_contract_may_mark_only_str_or_mapping_fields_with_a_str_subject() -> None:
    @dataclasses.dataclass(frozen=True, slots=True)
    class Tagged(DomainEvent):
        TYPE: ClassVar[str] = "Tagged"
        SCHEMA_VERSION: ClassVar[int] = 1
        PERSONAL: ClassVar[Personal | None] = Personal(subject="who", fields=("tags",))
        who: str
        tags: tuple[str, ...]

    with pytest.raises(TypeError, match="personal field 'tags' must be a str or a mapping"):
        EventRegistry([Tagged])

    @dataclasses.dataclass(frozen=True, slots=True)
    class NoSubject(DomainEvent):
        TYPE: ClassVar[str] = "NoSubject"
        SCHEMA_VERSION: ClassVar[int] = 1
        PERSONAL: ClassVar[Personal | None] = Personal(subject="who", fields=("note",))
        note: Mapping[str, Any]

    with pytest.raises(TypeError, match="subject 'who' must be a str field"):
        EventRegistry([NoSubject])


def test_a_conversations_state_keeps_no_personal_field() -> None:
    """Snapshots are serialised states: a state that copied a body would keep it in clear past
    its subject's forgetting. The conversation's state keeps only ids and statuses."""
    sent = MessageSent("c", 1, "m", "alice", "bob", {"text": "PERSONAL-MARKER"}, "m", None, datetime.now(UTC))
    state = evolve(ConversationState(), sent)
    assert "PERSONAL-MARKER" not in orjson.dumps(to_json_value(state)).decode()
