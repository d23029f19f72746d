"""Verifiable logs without I/O: RFC 9162 Merkle tree hashes and proofs (``merkle``), C2SP signed
notes with Ed25519 keys (``note``), C2SP tlog checkpoints (``checkpoint``), and the offline
check of a proof document (``bundle``).

A log signs ``Checkpoint(origin, size, root).body()`` with ``sign_note``; a client that holds
the log's verifier key opens the note, parses the checkpoint, and checks inclusion and
consistency proofs against its root. Proof generation reads complete subtree hashes through
one batch ``lookup`` call, so the store that keeps them answers a proof in one query.
"""

from core.proofs.bundle import Checked, ProofError, check, entry_fields
from core.proofs.checkpoint import Checkpoint, parse_checkpoint
from core.proofs.merkle import (
    EMPTY_ROOT,
    HASH_SIZE,
    Frontier,
    Lookup,
    Node,
    Range,
    complete_nodes,
    consistency_nodes,
    consistency_proof,
    inclusion_nodes,
    inclusion_proof,
    leaf_hash,
    node_hash,
    range_nodes,
    range_root,
    root,
    verify_consistency,
    verify_inclusion,
)
from core.proofs.note import (
    NoteError,
    Signer,
    Verifier,
    key_hash,
    open_note,
    parse_signer_key,
    parse_verifier_key,
    sign_note,
    signer_key,
    verifier_key,
)

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Checked",
    "Checkpoint",
    "Frontier",
    "Lookup",
    "Node",
    "NoteError",
    "ProofError",
    "Range",
    "Signer",
    "Verifier",
    "check",
    "complete_nodes",
    "consistency_nodes",
    "consistency_proof",
    "entry_fields",
    "inclusion_nodes",
    "inclusion_proof",
    "key_hash",
    "leaf_hash",
    "node_hash",
    "open_note",
    "parse_checkpoint",
    "parse_signer_key",
    "parse_verifier_key",
    "range_nodes",
    "range_root",
    "root",
    "sign_note",
    "signer_key",
    "verifier_key",
    "verify_consistency",
    "verify_inclusion",
]
