"""Signed notes: the published keys and notes of C2SP and golang.org/x/mod/sumdb/note open and
sign byte for byte; tampering, wrong keys and malformed notes are refused; unknown signers are ignored."""

from __future__ import annotations

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from core.proofs.note import (
    NoteError,
    Verifier,
    key_hash,
    open_note,
    parse_signer_key,
    parse_verifier_key,
    sign_note,
    signer_key,
    verifier_key,
)

# golang.org/x/mod/sumdb/note (note_test.go, example_test.go): a key pair, a second verifier
# key, and the note both sign; Ed25519 is deterministic, so signing reproduces it exactly.
PETER_SKEY = "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"
TEXT = "If you think cryptography is the answer to your problem,\nthen you don't know what your problem is.\n"
PETER_SIG = (
    "— PeterNeumann "
    "x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "— EnochRoot "
    "rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
)
PETER_NOTE = TEXT + "\n" + PETER_SIG

# The example of c2sp.org/signed-note v1.0.0.
C2SP_VKEY = "example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k"
C2SP_NOTE = (
    "This is an example message.\n\n— example.com/foo "
    "Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=\n"
)

PETER = parse_verifier_key(PETER_VKEY)
ENOCH = parse_verifier_key(ENOCH_VKEY)


def public_bytes(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)


def new_key(name: str) -> tuple[Ed25519PrivateKey, Verifier]:
    key = Ed25519PrivateKey.generate()
    return key, parse_verifier_key(verifier_key(name, public_bytes(key)))


# Known answers


def test_the_spec_example_opens() -> None:
    """The signed-note spec's example verifies with its published key."""
    assert open_note(C2SP_NOTE, [parse_verifier_key(C2SP_VKEY)]) == (
        "This is an example message.\n",
        ["example.com/foo"],
    )


def test_the_go_signer_key_signs_the_go_note_byte_for_byte() -> None:
    """Go's signer key parses, and signing Go's text gives Go's note exactly."""
    signer = parse_signer_key(PETER_SKEY)
    assert (signer.name, signer.key_hash) == ("PeterNeumann", 0xC74F20A3)
    assert sign_note(TEXT, signer.name, signer.private_key) == PETER_NOTE
    assert open_note(PETER_NOTE, [PETER]) == (TEXT, ["PeterNeumann"])


def test_keys_encode_to_the_published_strings() -> None:
    """The key ID, the vkey and the signer key of Go's key pair are rebuilt exactly from the key bytes."""
    assert key_hash("PeterNeumann", PETER.public_key) == 0xC74F20A3 == PETER.key_hash
    assert verifier_key(PETER.name, PETER.public_key) == PETER_VKEY
    seed = parse_signer_key(PETER_SKEY).private_key.private_bytes_raw()
    assert signer_key("PeterNeumann", seed) == PETER_SKEY
    assert (ENOCH.name, ENOCH.key_hash) == ("EnochRoot", 0xAF0CFE78)


def test_signatures_from_unknown_keys_are_ignored() -> None:
    """A second signer the caller does not know is skipped; known ones are all reported, in note order."""
    note = TEXT + "\n" + PETER_SIG + ENOCH_SIG
    assert open_note(note, [PETER]) == (TEXT, ["PeterNeumann"])
    assert open_note(note, [ENOCH]) == (TEXT, ["EnochRoot"])
    assert open_note(note, [ENOCH, PETER]) == (TEXT, ["PeterNeumann", "EnochRoot"])
    assert open_note(TEXT + "\n" + PETER_SIG + PETER_SIG, [PETER]) == (TEXT, ["PeterNeumann"])


# Round trips and refusals


def test_a_fresh_key_signs_and_opens() -> None:
    """A note signed by a new key opens with its vkey; the text keeps its inner blank lines."""
    key, verifier = new_key("log.example/a")
    text = "first\n\nthird, after a blank line\n"
    assert open_note(sign_note(text, "log.example/a", key), [verifier]) == (text, ["log.example/a"])


def test_a_tampered_text_is_refused() -> None:
    """Any change to the signed text fails the known key's signature."""
    tampered = PETER_NOTE.replace("cryptography", "cryptographY")
    with pytest.raises(NoteError, match="invalid signature for key PeterNeumann"):
        open_note(tampered, [PETER])


def test_a_tampered_signature_is_refused() -> None:
    """A known key's corrupted signature rejects the note, even beside a good one."""
    corrupt = PETER_SIG[:60] + "ABCD" + PETER_SIG[64:]
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(TEXT + "\n" + ENOCH_SIG + corrupt, [PETER, ENOCH])


def test_a_note_without_a_known_signer_is_refused() -> None:
    """Another key, even under the same name, is unknown: nothing verified, so the note is refused."""
    _, other = new_key("PeterNeumann")
    for verifiers in ([], [other], [ENOCH]):
        with pytest.raises(NoteError, match="no signature from a known key"):
            open_note(PETER_NOTE, verifiers)


def test_a_key_that_claims_a_known_name_and_id_must_verify() -> None:
    """A different public key under the note's name and key ID is checked, and fails."""
    _, other = new_key("PeterNeumann")
    impostor = Verifier(PETER.name, PETER.key_hash, other.public_key)
    with pytest.raises(NoteError, match="invalid signature"):
        open_note(PETER_NOTE, [impostor])
    with pytest.raises(NoteError, match="ambiguous key"):
        open_note(PETER_NOTE, [PETER, impostor])
    assert open_note(PETER_NOTE, [PETER, PETER]) == (TEXT, ["PeterNeumann"])


@pytest.mark.parametrize(
    "note",
    [
        TEXT,
        TEXT + "\n",
        TEXT + "\n" + PETER_SIG[:-1],
        "\x01" + PETER_NOTE,
        "\r" + PETER_NOTE,
        "\ud800" + PETER_NOTE,
        TEXT + "\n" + PETER_SIG.replace("PeterNeumann", "Bad Name"),
        TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
        TEXT + "\n" + PETER_SIG.replace("— ", "- "),
        TEXT + "\n" + PETER_SIG.replace("=\n", "\n"),
        TEXT + "\n— PeterNeumann x08g\n",
        TEXT + "\n" + PETER_SIG.replace("AM=\n", "AN=\n"),  # same bytes, non-canonical base64
        TEXT + "\n" + PETER_SIG * 101,
    ],
)
def test_malformed_notes_are_refused(note: str) -> None:
    """No blank line, no final newline, control characters, bad UTF-8, bad lines, too many signatures."""
    with pytest.raises(NoteError):
        open_note(note, [PETER])


@pytest.mark.parametrize("text", ["", "no final newline", "tab\there\n", "carriage\r\n"])
def test_sign_refuses_text_that_cannot_be_a_note(text: str) -> None:
    """Empty text, text without a final newline and text with control characters are not signed."""
    with pytest.raises(NoteError):
        sign_note(text, "log.example", Ed25519PrivateKey.generate())


@pytest.mark.parametrize("name", ["", "a+b", "a b", "a\u00a0b", "a\u2003b", "tab\t", "nul\x00"])
def test_key_names_follow_the_spec(name: str) -> None:
    """Names are non-empty, without '+', Unicode spaces or control characters."""
    with pytest.raises(NoteError):
        verifier_key(name, PETER.public_key)
    with pytest.raises(NoteError):
        sign_note(TEXT, name, Ed25519PrivateKey.generate())


def test_any_mangled_verifier_key_is_refused() -> None:
    """Every proper substring and every one-character change of a vkey fails to parse (as Go tests)."""
    for start in range(len(PETER_VKEY)):
        for end in range(start + 1, len(PETER_VKEY) + 1):
            if (start, end) != (0, len(PETER_VKEY)):
                with pytest.raises(NoteError):
                    parse_verifier_key(PETER_VKEY[start:end])
    for at in range(len(PETER_VKEY)):
        with pytest.raises(NoteError):
            parse_verifier_key(PETER_VKEY[:at] + chr(ord(PETER_VKEY[at]) + 1) + PETER_VKEY[at + 1 :])


def test_any_mangled_signer_key_is_refused() -> None:
    """Every one-character change and truncation of a signer key fails to parse."""
    for at in range(len(PETER_SKEY)):
        with pytest.raises(NoteError):
            parse_signer_key(PETER_SKEY[:at] + chr(ord(PETER_SKEY[at]) + 1) + PETER_SKEY[at + 1 :])
        with pytest.raises(NoteError):
            parse_signer_key(PETER_SKEY[:at])


@pytest.mark.parametrize(
    "vkey",
    [
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY==",  # 37-byte key
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # signature type 0x65
        "PeterNeumann+C74F20A3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW",  # uppercase hex
        "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW=",  # stray padding
    ],
)
def test_keys_of_other_types_or_spellings_are_refused(vkey: str) -> None:
    """Only 32-byte Ed25519 keys, with lowercase hex IDs and canonical base64, are accepted."""
    with pytest.raises(NoteError):
        parse_verifier_key(vkey)


def test_the_signer_keeps_its_key_out_of_its_repr() -> None:
    """A signer can be logged without leaking its private key."""
    assert repr(parse_signer_key(PETER_SKEY)) == "Signer(name='PeterNeumann', key_hash=3343851683)"
