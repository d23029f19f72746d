"""Checkpoint bodies have one spelling per tree head, and a signed one carries a client from a
log's key to verified inclusion and consistency proofs."""

from __future__ import annotations

import base64

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from hypothesis import given, settings
from hypothesis import strategies as st

from core.proofs import (
    Checkpoint,
    complete_nodes,
    consistency_proof,
    inclusion_proof,
    leaf_hash,
    open_note,
    parse_checkpoint,
    parse_verifier_key,
    root,
    sign_note,
    verifier_key,
    verify_consistency,
    verify_inclusion,
)

# The example of c2sp.org/tlog-checkpoint (its signature is by a key the spec does not publish).
SPEC_BODY = "example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
ROOT = bytes(range(32))
ROOT_B64 = base64.b64encode(ROOT).decode()
# The same 32 bytes spelled with non-zero unused bits in the last base64 character.
ROOT_B64_NON_CANONICAL = ROOT_B64[:-2] + "9="
URLSAFE_B64 = base64.urlsafe_b64encode(b"\xff" * 32).decode()


def test_the_spec_example_parses() -> None:
    """The spec's checkpoint body parses and prints back unchanged."""
    checkpoint = parse_checkpoint(SPEC_BODY)
    assert (checkpoint.origin, checkpoint.size) == ("example.com/behind-the-sofa", 20852163)
    assert checkpoint.root == base64.b64decode("CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=")
    assert checkpoint.body() == SPEC_BODY


@settings(max_examples=200, deadline=None)
@given(
    st.text(st.characters(min_codepoint=0x20, exclude_categories=["Cs"]), min_size=1),
    st.integers(0, 2**64 - 1),
    st.binary(min_size=32, max_size=32),
)
def test_body_and_parse_round_trip(origin: str, size: int, root_hash: bytes) -> None:
    """Any valid checkpoint prints to a body that parses back to it."""
    checkpoint = Checkpoint(origin, size, root_hash)
    assert parse_checkpoint(checkpoint.body()) == checkpoint


def test_extension_lines_are_allowed_and_ignored() -> None:
    """Lines after the root are opaque extensions: they parse, and the checkpoint omits them."""
    assert parse_checkpoint(f"log\n5\n{ROOT_B64}\nextension one\n— two\n") == Checkpoint("log", 5, ROOT)


@pytest.mark.parametrize(
    "body",
    [
        "",
        "log\n",
        "log\n5\n",
        f"log\n5\n{ROOT_B64}",  # no final newline
        f"\n5\n{ROOT_B64}\n",  # empty origin
        f"log\n5\n{ROOT_B64}\n\n",  # empty extension line
        f"log\n5\n\n{ROOT_B64}\n",
        f"log\r\n5\n{ROOT_B64}\n",
        f"log\n05\n{ROOT_B64}\n",
        f"log\n+5\n{ROOT_B64}\n",
        f"log\n 5\n{ROOT_B64}\n",
        f"log\n-1\n{ROOT_B64}\n",
        f"log\n5.0\n{ROOT_B64}\n",
        f"log\n1_000\n{ROOT_B64}\n",
        f"log\n\u0665\n{ROOT_B64}\n",  # an Arabic-Indic five
        f"log\n{2**64}\n{ROOT_B64}\n",
        f"log\n{'9' * 5000}\n{ROOT_B64}\n",
        f"log\n5\n{base64.b64encode(ROOT[:31]).decode()}\n",
        f"log\n5\n{base64.b64encode(ROOT + b'x').decode()}\n",
        f"log\n5\n{ROOT_B64.rstrip('=')}\n",
        f"log\n5\n{ROOT_B64_NON_CANONICAL}\n",
        f"log\n5\n{URLSAFE_B64}\n",
    ],
)
def test_malformed_bodies_are_refused(body: str) -> None:
    """Missing or empty lines, non-canonical sizes and roots that are not 32 bytes of base64 fail."""
    with pytest.raises(ValueError, match=r"checkpoint|tree size|root hash"):
        parse_checkpoint(body)


def test_a_root_has_one_base64_spelling() -> None:
    """A lenient decoder reads the non-canonical spelling as the same root; the parser refuses it."""
    assert base64.b64decode(ROOT_B64_NON_CANONICAL) == ROOT
    assert ROOT_B64_NON_CANONICAL != ROOT_B64
    with pytest.raises(ValueError, match="not the base64 of 32 bytes"):
        parse_checkpoint(f"log\n5\n{ROOT_B64_NON_CANONICAL}\n")


@pytest.mark.parametrize(
    ("origin", "size", "root_hash"),
    [("", 1, ROOT), ("a\nb", 1, ROOT), ("log", -1, ROOT), ("log", 2**64, ROOT), ("log", 1, ROOT[:31])],
)
def test_invalid_checkpoints_cannot_be_built(origin: str, size: int, root_hash: bytes) -> None:
    """A checkpoint that would print an unparseable body is refused when built."""
    with pytest.raises(ValueError, match=r"checkpoint origin|uint64|root hash"):
        Checkpoint(origin, size, root_hash)


def test_a_signed_checkpoint_carries_proofs_from_the_key_to_the_leaf() -> None:
    """Sign a checkpoint; a client with only the vkey opens it and verifies inclusion and consistency."""
    key = Ed25519PrivateKey.generate()
    vkey = verifier_key("log.example/1", key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw))
    entries = [f"event {i}".encode() for i in range(21)]
    hashes = [leaf_hash(entry) for entry in entries]
    nodes = complete_nodes(hashes)

    def lookup(wanted: list[tuple[int, int]]) -> dict[tuple[int, int], bytes]:
        return {node: nodes[node] for node in wanted}

    old = Checkpoint("log.example/1", 13, root(hashes[:13]))
    new = Checkpoint("log.example/1", 21, root(hashes))
    note = sign_note(new.body(), "log.example/1", key)

    text, signers = open_note(note, [parse_verifier_key(vkey)])
    head = parse_checkpoint(text)
    assert (head, signers) == (new, ["log.example/1"])
    proof = inclusion_proof(17, head.size, lookup)
    assert verify_inclusion(leaf_hash(entries[17]), 17, head.size, proof, head.root)
    proof = consistency_proof(old.size, head.size, lookup)
    assert verify_consistency(old.size, head.size, old.root, head.root, proof)
