"""Personal fields, sealed with their subject's data key so that forgetting the subject is
destroying one key (crypto-shredding).

An event contract names its personal fields and the field that says whose data they are:
``PERSONAL = Personal(subject="sender", fields=("body",))``. On append each personal value is
replaced by an envelope,

    {"$personal": 1, "key": "<data key id>", "kind": "string" | "json", "ct": "<base64>"}

where ``ct`` is AES-256-GCM (12-byte nonce, then ciphertext and tag) of the value's JSON, with
the event type, the field name and the key id as associated data, so a ciphertext cannot be
moved to another field or event type unnoticed. What is stored, hashed, sealed and proven is
the envelope: destroying the key changes no stored byte, so every proof still verifies.

On read an envelope opens back to its value, or, once the key is destroyed, to the redaction
marker of its kind: ``REDACTED_TEXT`` for a string, ``REDACTED_JSON`` for anything else. A
personal field must therefore be a ``str`` or a mapping, so that the marker fits its type.

Subjects are named by opaque ids (an agent id, a user id), never by personal data: the id is
stored in clear in the key table and in the ``SubjectForgotten`` event.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import orjson
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = [
    "ENVELOPE",
    "REDACTED_JSON",
    "REDACTED_TEXT",
    "Personal",
    "open_value",
    "redacted",
    "seal_value",
    "sealed_key_ids",
    "subject_stream_id",
]

ENVELOPE = "$personal"
REDACTED_TEXT = "[redacted]"
REDACTED_JSON: Mapping[str, Any] = {"$redacted": True}
NONCE_BYTES = 12


@dataclass(frozen=True, slots=True)
class Personal:
    """Which fields of a contract are personal, and which field names their subject."""

    subject: str
    fields: tuple[str, ...]


def _aad(event_type: str, field: str, key_id: UUID) -> bytes:
    return f"{event_type}\x00{field}\x00{key_id}".encode()


def seal_value(value: Any, key: bytes, key_id: UUID, event_type: str, field: str) -> dict[str, Any]:
    """The envelope holding ``value`` encrypted under the data key ``key``."""
    nonce = secrets.token_bytes(NONCE_BYTES)
    ct = AESGCM(key).encrypt(nonce, orjson.dumps(value), _aad(event_type, field, key_id))
    return {
        ENVELOPE: 1,
        "key": str(key_id),
        "kind": "string" if isinstance(value, str) else "json",
        "ct": base64.b64encode(nonce + ct).decode(),
    }


def is_envelope(value: object) -> bool:
    return isinstance(value, dict) and value.get(ENVELOPE) == 1


def open_value(envelope: Mapping[str, Any], key: bytes | None, event_type: str, field: str) -> Any:
    """The value an envelope holds, or its redaction marker when ``key`` is None (destroyed).

    A key that does not open the envelope (wrong key, altered bytes) raises ValueError: that
    is tampering or a bug, never a redaction.
    """
    if key is None:
        return redacted(envelope)
    raw = base64.b64decode(envelope["ct"])
    try:
        plain = AESGCM(key).decrypt(
            raw[:NONCE_BYTES], raw[NONCE_BYTES:], _aad(event_type, field, UUID(envelope["key"]))
        )
    except InvalidTag as exc:
        raise ValueError(f"{event_type}.{field}: the envelope does not open with its key") from exc
    return orjson.loads(plain)


def redacted(envelope: Mapping[str, Any]) -> Any:
    return REDACTED_TEXT if envelope.get("kind") == "string" else dict(REDACTED_JSON)


def sealed_key_ids(data: Mapping[str, Any]) -> set[UUID]:
    """The data keys of every envelope among ``data``'s top-level fields."""
    return {UUID(v["key"]) for v in data.values() if is_envelope(v)}


def subject_stream_id(tenant_id: str | None, subject: str) -> str:
    """The stream that records a subject's forgetting (a hash: stream ids allow few characters)."""
    digest = hashlib.sha256(f"{tenant_id or ''}\x00{subject}".encode()).hexdigest()[:40]
    return f"subject-{digest}"
