"""Signed notes with Ed25519 keys, as C2SP signed-note v1.0.0 specifies (https://c2sp.org/signed-note).

A note is UTF-8 text ending in a newline, a blank line, then one signature line per key::

    — <key name> base64(key ID (4 bytes, big-endian) || Ed25519 signature)

The key ID is the first four bytes of SHA-256(name || 0x0A || 0x01 || public key), 0x01 being
the Ed25519 signature type. A verifier key ("vkey") is ``<name>+<hex key ID>+base64(0x01 ||
public key)``; the signer key carries the 32-byte private seed instead, after ``PRIVATE+KEY+``,
in the format of golang.org/x/mod/sumdb/note.

Opening a note ignores signatures from keys the caller does not know, as the spec requires, so
witnesses can cosign and logs can rotate keys; a bad signature from a known key rejects the
whole note, as the spec recommends.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

__all__ = [
    "NoteError",
    "Signer",
    "Verifier",
    "key_hash",
    "open_note",
    "parse_signer_key",
    "parse_verifier_key",
    "sign_note",
    "signer_key",
    "verifier_key",
]

ED25519 = 0x01
KEY_SIZE = 32
SIGNATURE_PREFIX = "— "  # em dash U+2014, then a space
SIGNER_PREFIX = "PRIVATE+KEY+"
# The spec asks verifiers to cap the signatures they look at, and to accept at least 16.
MAX_SIGNATURES = 100


class NoteError(ValueError):
    """A note, key or signature is malformed, or no known key verified the note."""


@dataclass(frozen=True, slots=True)
class Verifier:
    """A trusted Ed25519 public key, known by its name and key ID."""

    name: str
    key_hash: int
    public_key: bytes


@dataclass(frozen=True, slots=True)
class Signer:
    """An Ed25519 signing key with its name; the key stays out of reprs so it never reaches a log."""

    name: str
    key_hash: int
    private_key: Ed25519PrivateKey = field(repr=False, compare=False)


def key_hash(name: str, public_key: bytes) -> int:
    """The key ID of an Ed25519 key: SHA-256(name || 0x0A || 0x01 || public key)[:4], big-endian."""
    _check_name(name)
    _check_size(public_key, "public key")
    digest = hashlib.sha256(name.encode() + b"\n" + bytes([ED25519]) + public_key).digest()
    return int.from_bytes(digest[:4], "big")


def verifier_key(name: str, public_key: bytes) -> str:
    return f"{name}+{key_hash(name, public_key):08x}+{_b64(bytes([ED25519]) + public_key)}"


def signer_key(name: str, private_key: bytes) -> str:
    """The ``PRIVATE+KEY+...`` string of a 32-byte Ed25519 private key (its seed); keep it secret."""
    _check_size(private_key, "private key")
    public = _public_bytes(Ed25519PrivateKey.from_private_bytes(private_key))
    return f"{SIGNER_PREFIX}{name}+{key_hash(name, public):08x}+{_b64(bytes([ED25519]) + private_key)}"


def parse_verifier_key(text: str) -> Verifier:
    name, hash_hex, public_key = _parse_key(text)
    if key_hash(name, public_key) != int(hash_hex, 16):
        raise NoteError(f"verifier key {text!r}: the key ID does not match the name and key")
    try:
        Ed25519PublicKey.from_public_bytes(public_key)
    except ValueError:
        raise NoteError(f"verifier key {text!r} is not an Ed25519 public key") from None
    return Verifier(name, int(hash_hex, 16), public_key)


def parse_signer_key(text: str) -> Signer:
    if not text.startswith(SIGNER_PREFIX):
        raise NoteError(f"a signer key starts with {SIGNER_PREFIX!r}")
    name, hash_hex, seed = _parse_key(text.removeprefix(SIGNER_PREFIX))
    private_key = Ed25519PrivateKey.from_private_bytes(seed)
    if key_hash(name, _public_bytes(private_key)) != int(hash_hex, 16):
        raise NoteError("signer key: the key ID does not match the name and key")
    return Signer(name, int(hash_hex, 16), private_key)


def sign_note(text: str, name: str, private_key: Ed25519PrivateKey) -> str:
    """The note: ``text`` (non-empty, ending in a newline), a blank line and one signature line."""
    if not text.endswith("\n"):
        raise NoteError("note text must be non-empty and end with a newline")
    message = _check_text(text)
    hashed = key_hash(name, _public_bytes(private_key))
    signature = hashed.to_bytes(4, "big") + private_key.sign(message)
    return f"{text}\n{SIGNATURE_PREFIX}{name} {_b64(signature)}\n"


def open_note(note: str, verifiers: Sequence[Verifier]) -> tuple[str, list[str]]:
    """The note's text and the names of the known keys that signed it, each once, in note order.

    Raises NoteError if the note is malformed, if a known key's signature does not verify, or
    if no known key signed it. Signatures from unknown keys are ignored.
    """
    _check_text(note)
    text, signatures = _split(note)
    message = text.encode()
    known = _index(verifiers)
    names: list[str] = []
    for name, hashed, signature in signatures:
        verifier = known.get((name, hashed))
        if verifier is None:
            continue
        try:
            Ed25519PublicKey.from_public_bytes(verifier.public_key).verify(signature, message)
        except InvalidSignature:
            raise NoteError(f"invalid signature for key {name}+{hashed:08x}") from None
        if name not in names:
            names.append(name)
    if not names:
        raise NoteError("no signature from a known key")
    return text, names


def _split(note: str) -> tuple[str, list[tuple[str, int, bytes]]]:
    """The text and the parsed signature lines; the last blank line separates them."""
    cut = note.rfind("\n\n")
    if cut < 0 or not note.endswith("\n"):
        raise NoteError("malformed note: no blank line before the signatures, or no final newline")
    lines = note[cut + 2 : -1].split("\n")
    if len(lines) > MAX_SIGNATURES:
        raise NoteError(f"malformed note: more than {MAX_SIGNATURES} signatures")
    return note[: cut + 1], [_signature(line) for line in lines]


def _signature(line: str) -> tuple[str, int, bytes]:
    name, _, encoded = line.removeprefix(SIGNATURE_PREFIX).partition(" ")
    raw = _b64decode(encoded)
    if not (line.startswith(SIGNATURE_PREFIX) and _is_name(name) and raw is not None and len(raw) > 4):
        raise NoteError(f"malformed signature line {line!r}")
    return name, int.from_bytes(raw[:4], "big"), raw[4:]


def _index(verifiers: Sequence[Verifier]) -> dict[tuple[str, int], Verifier]:
    """Verifiers by (name, key ID); two different keys under one name and ID are a configuration error."""
    known: dict[tuple[str, int], Verifier] = {}
    for verifier in verifiers:
        key = (verifier.name, verifier.key_hash)
        if known.setdefault(key, verifier) != verifier:
            raise NoteError(f"ambiguous key {verifier.name}+{verifier.key_hash:08x}")
    return known


def _parse_key(text: str) -> tuple[str, str, bytes]:
    """``name+hex8+base64(0x01 || 32 bytes)`` split and checked: the name, the hex ID and the key bytes."""
    parts = text.split("+", 2)  # the base64 part may itself hold "+"
    raw = _b64decode(parts[2]) if len(parts) == 3 else None
    if raw is None or not _is_name(parts[0]) or not _is_hex8(parts[1]):
        raise NoteError(f"malformed key {text!r}")
    if len(raw) != 1 + KEY_SIZE or raw[0] != ED25519:
        raise NoteError(f"key {parts[0]!r} is not a 32-byte Ed25519 key (signature type 0x01)")
    return parts[0], parts[1], raw[1:]


def _check_text(text: str) -> bytes:
    """The UTF-8 bytes of note text, refused if they hold a control character other than newline."""
    try:
        encoded = text.encode()
    except UnicodeEncodeError:
        raise NoteError("a note must be valid UTF-8") from None
    if any(byte < 0x20 and byte != 0x0A for byte in encoded):
        raise NoteError("a note must not contain control characters other than newline")
    return encoded


def _check_name(name: str) -> None:
    if not _is_name(name):
        raise NoteError(f"key name {name!r} must be non-empty, without spaces, '+' or control characters")


def _is_name(name: str) -> bool:
    return bool(name) and "+" not in name and not any(c.isspace() or c < " " for c in name)


def _is_hex8(text: str) -> bool:
    return len(text) == 8 and all(c in "0123456789abcdef" for c in text)


def _check_size(key: bytes, what: str) -> None:
    if not isinstance(key, bytes) or len(key) != KEY_SIZE:
        raise NoteError(f"an Ed25519 {what} is {KEY_SIZE} bytes")


def _public_bytes(private_key: Ed25519PrivateKey) -> bytes:
    return private_key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def _b64decode(text: str) -> bytes | None:
    """Standard base64 in its one canonical spelling, or None: a mangled key or signature never decodes."""
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw if _b64(raw) == text else None
