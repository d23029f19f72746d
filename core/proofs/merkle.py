"""Merkle tree hashing, proofs and their verification, as RFC 9162 section 2.1 defines them
(the same tree and hashes as RFC 6962).

Proofs are generated from *complete subtree nodes* rather than from the leaves. The node
``(level, index)`` is the root of the perfect subtree over leaves
``[index * 2**level, (index + 1) * 2**level)``; once written it never changes, however much
the log grows, so a database can store each one once and serve any proof from them.

An RFC proof element is the hash of a leaf range (``Range``) that is not always such a node:
in a tree whose size is not a power of two, the right-hand ranges are incomplete. Every range
a proof needs starts on a boundary aligned to its own size, so it splits into complete nodes
of decreasing size (``range_nodes``), and its hash is those nodes' hashes folded from the
right. Generation therefore asks for O(log n) nodes in one ``lookup`` call: one query.

Verification never trusts the server: a malformed proof, index or size makes it return
False, and it never raises.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import TypeAlias, TypeGuard

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "Frontier",
    "Lookup",
    "Node",
    "Range",
    "complete_nodes",
    "consistency_nodes",
    "consistency_proof",
    "inclusion_nodes",
    "inclusion_proof",
    "leaf_hash",
    "node_hash",
    "range_nodes",
    "range_root",
    "root",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
EMPTY_ROOT = hashlib.sha256(b"").digest()

Node: TypeAlias = tuple[int, int]
"""A complete subtree node ``(level, index)``: the root over leaves [index << level, (index + 1) << level)."""

Lookup: TypeAlias = Callable[[list[Node]], Mapping[Node, bytes]]
"""Fetches the hashes of the given complete subtree nodes in one call (one database query)."""


def leaf_hash(entry: bytes) -> bytes:
    """The 0x00 prefix keeps a leaf from ever hashing like an interior node (second preimages)."""
    return hashlib.sha256(b"\x00" + entry).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


@dataclass(frozen=True, slots=True)
class Range:
    """The leaves [start, end) whose Merkle tree hash a proof element carries."""

    start: int
    end: int


def root(leaf_hashes: Sequence[bytes]) -> bytes:
    """MTH(D[n]) of RFC 9162 2.1.1, in one pass with O(log n) memory."""
    tree = Frontier()
    for hashed in leaf_hashes:
        tree.append(hashed)
    return tree.root()


class Frontier:
    """The right edge of a growing tree: the complete subtrees that make up its leaves, largest
    first (exactly ``range_nodes(0, size)``). Appending a leaf merges it with one neighbour per
    trailing 1 bit of the old size; the tree head is the subtrees folded from the right. The
    sealer grows the stored tree with it, the verifier a recomputed one.
    """

    def __init__(self, nodes: Iterable[tuple[Node, bytes]] = ()) -> None:
        self.nodes: list[tuple[Node, bytes]] = list(nodes)
        self.size = sum(1 << level for (level, _), _ in self.nodes)

    def append(self, leaf: bytes) -> list[tuple[Node, bytes]]:
        """Add a leaf hash; the complete subtree nodes above the leaves it finishes, lowest first."""
        finished = []
        level, index, hashed = 0, self.size, leaf
        for _ in range(((self.size + 1) & -(self.size + 1)).bit_length() - 1):
            left = self.nodes.pop()[1]
            level, index, hashed = level + 1, index >> 1, node_hash(left, hashed)
            finished.append(((level, index), hashed))
        self.nodes.append(((level, index), hashed))
        self.size += 1
        return finished

    def root(self) -> bytes:
        return _fold([hashed for _, hashed in self.nodes]) if self.nodes else EMPTY_ROOT


def complete_nodes(leaf_hashes: Sequence[bytes]) -> dict[Node, bytes]:
    """Every complete subtree node of the tree: an in-memory ``lookup`` source for tests and tools."""
    nodes = {(0, index): hashed for index, hashed in enumerate(leaf_hashes)}
    level, width = 0, len(leaf_hashes)
    while width > 1:
        for index in range(width // 2):
            nodes[level + 1, index] = node_hash(nodes[level, 2 * index], nodes[level, 2 * index + 1])
        level, width = level + 1, width // 2
    return nodes


def range_nodes(start: int, end: int) -> list[Node]:
    """The complete subtree nodes that make up the range [start, end), left to right.

    Raises ValueError unless the range is non-empty and ``start`` is a multiple of the smallest
    power of two >= its length: only such ranges are subtrees of an RFC 9162 tree.
    """
    length = end - start
    if start < 0 or length < 1 or start % (1 << (length - 1).bit_length()):
        raise ValueError(f"[{start}, {end}) is not a subtree of a Merkle tree")
    nodes = []
    while start < end:
        level = (end - start).bit_length() - 1
        nodes.append((level, start >> level))
        start += 1 << level
    return nodes


def range_root(start: int, end: int, lookup: Lookup) -> bytes:
    """The hash of the leaves [start, end) from one lookup; ``range_root(0, n, ...)`` is the root (n >= 1)."""
    nodes = range_nodes(start, end)
    return _fold(_pick(nodes, lookup(nodes)))


def inclusion_nodes(index: int, size: int) -> list[Range]:
    """The ranges whose hashes make PATH(index, D[size]) (RFC 9162 2.1.3.1), leaf side first."""
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of size {size}")
    path = []
    start, end = 0, size
    while end - start > 1:
        middle = start + _largest_power_below(end - start)
        if index < middle:
            path.append(Range(middle, end))
            end = middle
        else:
            path.append(Range(start, middle))
            start = middle
    return path[::-1]


def consistency_nodes(old: int, new: int) -> list[Range]:
    """The ranges whose hashes make PROOF(old, D[new]) (RFC 9162 2.1.4.1), smallest subtree first.

    Empty when ``old`` is 0 or equal to ``new``: nothing needs proving then.
    """
    if not 0 <= old <= new:
        raise ValueError(f"a tree of size {old} cannot be a prefix of one of size {new}")
    if old in (0, new):
        return []
    path = []
    start, end, old_is_whole_subtree = 0, new, True
    while old != end:
        middle = start + _largest_power_below(end - start)
        if old <= middle:
            path.append(Range(middle, end))
            end = middle
        else:
            path.append(Range(start, middle))
            start, old_is_whole_subtree = middle, False
    # SUBPROOF(m, D[m], false) = {MTH(D[m])}: a verifier already holds the old root only
    # when the old tree is itself this subtree, i.e. when the descent never turned right.
    if not old_is_whole_subtree:
        path.append(Range(start, end))
    return path[::-1]


def inclusion_proof(index: int, size: int, lookup: Lookup) -> list[bytes]:
    """The audit path of leaf ``index`` in the tree of ``size`` leaves, from one lookup."""
    return _proof(inclusion_nodes(index, size), lookup)


def consistency_proof(old: int, new: int, lookup: Lookup) -> list[bytes]:
    """The proof that the tree of ``old`` leaves is a prefix of the one of ``new``, from one lookup."""
    return _proof(consistency_nodes(old, new), lookup)


def verify_inclusion(leaf: bytes, index: int, size: int, proof: Sequence[bytes], root_hash: bytes) -> bool:
    """RFC 9162 2.1.3.2: does ``proof`` lead from ``leaf`` at ``index`` to ``root_hash`` of ``size``?

    Size and root must come from the same signed checkpoint: a proof binds the leaf to the
    root, and the size only shapes the path.
    """
    if not (_is_index(index) and _is_index(size) and index < size and isinstance(proof, Sequence)):
        return False
    if not (_is_hash(leaf) and _is_hash(root_hash)):
        return False
    fn, sn, hashed = index, size - 1, leaf
    for sibling in proof:
        if sn == 0 or not _is_hash(sibling):
            return False
        if fn & 1 or fn == sn:
            hashed = node_hash(sibling, hashed)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            hashed = node_hash(hashed, sibling)
        fn, sn = fn >> 1, sn >> 1
    return sn == 0 and hashed == root_hash


def verify_consistency(
    old_size: int, new_size: int, old_root: bytes, new_root: bytes, proof: Sequence[bytes]
) -> bool:
    """RFC 9162 2.1.4.2: is the tree ``old_root`` of ``old_size`` a prefix of ``new_root`` of ``new_size``?

    Equal sizes need an empty proof and equal roots. The empty tree is a prefix of every tree,
    so from ``old_size`` 0 the proof must be empty and ``old_root`` the empty root (transparency-dev's
    Go verifier refuses that case instead; RFC 9162 defines proofs only for 0 < old < new).
    """
    if not (_is_index(old_size) and _is_index(new_size) and old_size <= new_size):
        return False
    if not (_is_hash(old_root) and _is_hash(new_root) and isinstance(proof, Sequence)):
        return False
    if old_size == 0:
        return not proof and old_root == EMPTY_ROOT and (new_size > 0 or new_root == EMPTY_ROOT)
    if old_size == new_size:
        return not proof and old_root == new_root
    if not proof:
        return False
    # A power-of-two old tree is a complete node of the new one, so its root is the
    # proof's implicit first element; otherwise the proof starts with that node's hash.
    if old_size & (old_size - 1) == 0:
        roots = _roots_from_consistency(old_size, new_size, old_root, proof)
    else:
        roots = _roots_from_consistency(old_size, new_size, proof[0], islice(proof, 1, None))
    return roots == (old_root, new_root)


def _roots_from_consistency(
    old_size: int, new_size: int, first: object, rest: Iterable[object]
) -> tuple[bytes, bytes] | None:
    """Steps 3 to 7 of RFC 9162 2.1.4.2: the old and new roots a proof leads to, None if malformed."""
    if not _is_hash(first):
        return None
    old_hash = new_hash = first
    fn, sn = old_size - 1, new_size - 1
    while fn & 1:
        fn, sn = fn >> 1, sn >> 1
    for sibling in rest:
        if sn == 0 or not _is_hash(sibling):
            return None
        if fn & 1 or fn == sn:
            old_hash, new_hash = node_hash(sibling, old_hash), node_hash(sibling, new_hash)
            while not fn & 1 and fn:
                fn, sn = fn >> 1, sn >> 1
        else:
            new_hash = node_hash(new_hash, sibling)
        fn, sn = fn >> 1, sn >> 1
    return (old_hash, new_hash) if sn == 0 else None


def _proof(ranges: list[Range], lookup: Lookup) -> list[bytes]:
    decompositions = [range_nodes(r.start, r.end) for r in ranges]
    wanted = list(dict.fromkeys(node for nodes in decompositions for node in nodes))
    found = lookup(wanted) if wanted else {}
    return [_fold(_pick(nodes, found)) for nodes in decompositions]


def _pick(nodes: Iterable[Node], found: Mapping[Node, bytes]) -> list[bytes]:
    try:
        return [found[node] for node in nodes]
    except KeyError as exc:
        raise LookupError(f"lookup returned no hash for complete subtree node {exc.args[0]}") from exc


def _fold(hashes: list[bytes]) -> bytes:
    """The hash of adjacent complete subtrees of decreasing size: the rightmost pair joins first."""
    hashed = hashes[-1]
    for left in reversed(hashes[:-1]):
        hashed = node_hash(left, hashed)
    return hashed


def _largest_power_below(n: int) -> int:
    """The k of RFC 9162: the largest power of two smaller than n (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def _is_index(value: object) -> bool:
    return type(value) is int and value >= 0


def _is_hash(value: object) -> TypeGuard[bytes]:
    return isinstance(value, bytes) and len(value) == HASH_SIZE
