"""Checking a proof document offline: the JSON ``chronicle audit prove`` writes, the log's public
key, and nothing else (no database, no network, no Chronicle state).

An inclusion document holds a signed checkpoint, the event's canonical bytes (its ``entry``),
its leaf index, the tree size and the audit path; a consistency document holds two signed
checkpoints and the path between them. ``check`` opens the notes with the given keys, reads
the checkpoints, and verifies the path; any failure is a ``ProofError`` saying which step
failed. The entry's fields are read back from its bytes, so what was proven is shown, not
taken from the document's other fields.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from core.proofs.checkpoint import Checkpoint, parse_checkpoint
from core.proofs.merkle import leaf_hash, verify_consistency, verify_inclusion
from core.proofs.note import NoteError, Verifier, open_note

__all__ = ["ENTRY_FIELDS", "Checked", "ProofError", "check", "entry_fields"]

# The canonical bytes of an event: these fields joined by newlines (data and metadata as JSON)
ENTRY_FIELDS = (
    "event_id",
    "stream_id",
    "stream_version",
    "event_type",
    "schema_version",
    "tenant_id",
    "recorded_at_us",
    "data",
    "metadata",
)


class ProofError(ValueError):
    """The document does not prove what it claims; the message says which check failed."""


@dataclass(frozen=True, slots=True)
class Checked:
    kind: str  # "inclusion" or "consistency"
    checkpoint: Checkpoint  # the (newer) checkpoint the proof is against
    signed_by: list[str]
    event: dict[str, str] | None = None  # inclusion: the entry's fields, read from its bytes
    index: int | None = None
    old_checkpoint: Checkpoint | None = None  # consistency


def check(document: Mapping[str, Any], verifiers: Sequence[Verifier]) -> Checked:
    """Verify an inclusion or consistency document; raises ProofError."""
    kind = document.get("type")
    try:
        if kind == "inclusion":
            return _inclusion(document, verifiers)
        if kind == "consistency":
            return _consistency(document, verifiers)
    except (KeyError, TypeError, ValueError, binascii.Error) as exc:
        if isinstance(exc, ProofError):
            raise
        raise ProofError(f"malformed proof document: {type(exc).__name__}: {exc}") from None
    raise ProofError(f"unknown proof type {kind!r}: expected 'inclusion' or 'consistency'")


def entry_fields(entry: bytes) -> dict[str, str]:
    """The event's fields from its canonical bytes."""
    parts = entry.decode("utf-8").split("\n", len(ENTRY_FIELDS) - 1)
    if len(parts) != len(ENTRY_FIELDS):
        raise ProofError("the entry is not an event's canonical bytes")
    return dict(zip(ENTRY_FIELDS, parts, strict=True))


def _signed(note: str, verifiers: Sequence[Verifier]) -> tuple[Checkpoint, list[str]]:
    try:
        text, names = open_note(note, verifiers)
    except NoteError as exc:
        raise ProofError(f"checkpoint signature: {exc}") from None
    return parse_checkpoint(text), names


def _hashes(values: Sequence[str]) -> list[bytes]:
    return [base64.b64decode(v, validate=True) for v in values]


def _inclusion(document: Mapping[str, Any], verifiers: Sequence[Verifier]) -> Checked:
    checkpoint, names = _signed(document["checkpoint"], verifiers)
    index, size = document["index"], document["size"]
    if size != checkpoint.size:
        raise ProofError(f"the proof is for a tree of {size} leaves, the checkpoint has {checkpoint.size}")
    entry = base64.b64decode(document["entry"], validate=True)
    if not verify_inclusion(leaf_hash(entry), index, size, _hashes(document["inclusion"]), checkpoint.root):
        raise ProofError(f"the entry is not leaf {index} of the signed tree of {size} leaves")
    return Checked("inclusion", checkpoint, names, entry_fields(entry), index)


def _consistency(document: Mapping[str, Any], verifiers: Sequence[Verifier]) -> Checked:
    old, old_names = _signed(document["old_checkpoint"], verifiers)
    new, names = _signed(document["new_checkpoint"], verifiers)
    if old.origin != new.origin:
        raise ProofError(f"the checkpoints are of two logs: {old.origin!r} and {new.origin!r}")
    proof = _hashes(document["consistency"])
    if not verify_consistency(old.size, new.size, old.root, new.root, proof):
        raise ProofError(f"the tree of {old.size} leaves is not a prefix of the tree of {new.size}")
    return Checked("consistency", new, sorted(set(old_names) & set(names)), old_checkpoint=old)
