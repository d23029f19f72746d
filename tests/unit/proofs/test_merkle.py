"""Merkle tree hashes and proofs agree with RFC 9162's definitions, its published test vectors,
and never accept anything but the honest proof for a claim."""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from functools import partial
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.proofs.merkle import (
    EMPTY_ROOT,
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

PROPERTY = settings(max_examples=200, deadline=None)

# The RFC 6962 test tree, as published by transparency-dev/merkle (testonly/constants.go,
# cmd/proofgen/main.go) and used by certificate-transparency-go: eight leaf inputs, the hashes
# of all its complete subtree nodes by (level, index), and the roots of its prefixes.
VECTOR_LEAVES = [
    bytes.fromhex(h)
    for h in [
        "",
        "00",
        "10",
        "2021",
        "3031",
        "40414243",
        "5051525354555657",
        "606162636465666768696a6b6c6d6e6f",
    ]
]
VECTOR_NODES = {
    (0, 0): "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    (0, 1): "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
    (0, 2): "0298d122906dcfc10892cb53a73992fc5b9f493ea4c9badb27b791b4127a7fe7",
    (0, 3): "07506a85fd9dd2f120eb694f86011e5bb4662e5c415a62917033d4a9624487e7",
    (0, 4): "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
    (0, 5): "4271a26be0d8a84f0bd54c8c302e7cb3a3b5d1fa6780a40bcce2873477dab658",
    (0, 6): "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
    (0, 7): "46f6ffadd3d06a09ff3c5860d2755c8b9819db7df44251788c7d8e3180de8eb1",
    (1, 0): "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    (1, 1): "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
    (1, 2): "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
    (1, 3): "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
    (2, 0): "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    (2, 1): "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
    (3, 0): "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
}
VECTOR_ROOTS = [
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# (leaf index, tree size, proof as nodes); the published vectors count leaves from 1.
VECTOR_INCLUSION = [
    (0, 1, []),
    (0, 8, [(0, 1), (1, 1), (2, 1)]),
    (5, 8, [(0, 4), (1, 3), (2, 0)]),
    (2, 3, [(1, 0)]),
    (1, 5, [(0, 0), (1, 1), (0, 4)]),
]
VECTOR_CONSISTENCY = [
    (1, 1, []),
    (1, 8, [(0, 1), (1, 1), (2, 1)]),
    (6, 8, [(1, 2), (1, 3), (2, 0)]),
    (2, 5, [(1, 1), (0, 4)]),
    (6, 7, [(1, 2), (0, 6), (2, 0)]),
]


def mth(leaves: Sequence[bytes]) -> bytes:
    """MTH exactly as RFC 9162 2.1.1 writes it, over leaf hashes."""
    if not leaves:
        return EMPTY_ROOT
    if len(leaves) == 1:
        return leaves[0]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    return node_hash(mth(leaves[:k]), mth(leaves[k:]))


def rfc_path(m: int, leaves: Sequence[bytes]) -> list[bytes]:
    """PATH(m, D[n]) exactly as RFC 9162 2.1.3.1 writes it."""
    if len(leaves) == 1:
        return []
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m < k:
        return [*rfc_path(m, leaves[:k]), mth(leaves[k:])]
    return [*rfc_path(m - k, leaves[k:]), mth(leaves[:k])]


def rfc_subproof(m: int, leaves: Sequence[bytes], whole: bool) -> list[bytes]:
    """SUBPROOF(m, D[n], b) exactly as RFC 9162 2.1.4.1 writes it."""
    if m == len(leaves):
        return [] if whole else [mth(leaves)]
    k = 1 << ((len(leaves) - 1).bit_length() - 1)
    if m <= k:
        return [*rfc_subproof(m, leaves[:k], whole), mth(leaves[k:])]
    return [*rfc_subproof(m - k, leaves[k:], False), mth(leaves[:k])]


class Tree:
    """A test log of ``MAX`` leaves: its leaf hashes, complete nodes and the roots of every prefix."""

    MAX = 300

    def __init__(self) -> None:
        self.leaves = [leaf_hash(i.to_bytes(4, "big")) for i in range(self.MAX)]
        self.nodes = complete_nodes(self.leaves)
        self.roots = [root(self.leaves[:n]) for n in range(self.MAX + 1)]
        self.calls: list[list[Node]] = []

    def lookup(self, wanted: list[Node]) -> Mapping[Node, bytes]:
        self.calls.append(wanted)
        return {node: self.nodes[node] for node in wanted}

    def inclusion(self, index: int, size: int) -> list[bytes]:
        return inclusion_proof(index, size, self.lookup)

    def consistency(self, old: int, new: int) -> list[bytes]:
        return consistency_proof(old, new, self.lookup)


TREE = Tree()


@st.composite
def leaf_in_tree(draw: st.DrawFn) -> tuple[int, int]:
    size = draw(st.integers(1, Tree.MAX))
    return draw(st.integers(0, size - 1)), size


@st.composite
def tree_sizes(draw: st.DrawFn) -> tuple[int, int]:
    new = draw(st.integers(0, Tree.MAX))
    return draw(st.integers(0, new)), new


def h(hexed: str) -> bytes:
    return bytes.fromhex(hexed)


def vector_lookup(wanted: list[Node]) -> Mapping[Node, bytes]:
    return {node: h(VECTOR_NODES[node]) for node in wanted}


# Known answers


def test_the_hashes_of_the_published_tree() -> None:
    """Leaf hashes, every complete node and the roots of sizes 0 to 8 match the published vectors."""
    hashed = [leaf_hash(leaf) for leaf in VECTOR_LEAVES]
    assert complete_nodes(hashed) == {node: h(value) for node, value in VECTOR_NODES.items()}
    assert [root(hashed[:n]).hex() for n in range(9)] == VECTOR_ROOTS
    assert EMPTY_ROOT.hex() == VECTOR_ROOTS[0]


@pytest.mark.parametrize(("index", "size", "nodes"), VECTOR_INCLUSION)
def test_published_inclusion_proofs(index: int, size: int, nodes: list[Node]) -> None:
    """The published inclusion proofs are generated exactly, and verify."""
    proof = inclusion_proof(index, size, vector_lookup)
    assert proof == [h(VECTOR_NODES[node]) for node in nodes]
    leaf = leaf_hash(VECTOR_LEAVES[index])
    assert verify_inclusion(leaf, index, size, proof, h(VECTOR_ROOTS[size]))


@pytest.mark.parametrize(("old", "new", "nodes"), VECTOR_CONSISTENCY)
def test_published_consistency_proofs(old: int, new: int, nodes: list[Node]) -> None:
    """The published consistency proofs are generated exactly, and verify."""
    proof = consistency_proof(old, new, vector_lookup)
    assert proof == [h(VECTOR_NODES[node]) for node in nodes]
    assert verify_consistency(old, new, h(VECTOR_ROOTS[old]), h(VECTOR_ROOTS[new]), proof)


# Agreement with the RFC's definitions


def test_root_is_the_rfc_definition_for_every_size() -> None:
    """root() equals the recursive MTH of RFC 9162 2.1.1 for every size up to the test tree's."""
    for size in range(Tree.MAX + 1):
        assert TREE.roots[size] == mth(TREE.leaves[:size])


@PROPERTY
@given(leaf_in_tree())
def test_inclusion_proof_is_the_rfc_path_and_verifies(claim: tuple[int, int]) -> None:
    """A proof read from complete nodes is PATH(m, D[n]) and verifies against the root."""
    index, size = claim
    proof = TREE.inclusion(index, size)
    assert proof == rfc_path(index, TREE.leaves[:size])
    assert verify_inclusion(TREE.leaves[index], index, size, proof, TREE.roots[size])


@PROPERTY
@given(tree_sizes())
def test_consistency_proof_is_the_rfc_proof_and_verifies(sizes: tuple[int, int]) -> None:
    """A proof read from complete nodes is PROOF(m, D[n]) and verifies between the two roots."""
    old, new = sizes
    proof = TREE.consistency(old, new)
    expected = rfc_subproof(old, TREE.leaves[:new], True) if 0 < old < new else []
    assert proof == expected
    assert verify_consistency(old, new, TREE.roots[old], TREE.roots[new], proof)


def test_every_proof_of_every_small_tree_verifies() -> None:
    """Every leaf of every tree up to 100 leaves, and every pair of those trees, proves."""
    for new in range(101):
        for index in range(new):
            proof = TREE.inclusion(index, new)
            assert verify_inclusion(TREE.leaves[index], index, new, proof, TREE.roots[new])
        for old in range(new + 1):
            proof = TREE.consistency(old, new)
            assert verify_consistency(old, new, TREE.roots[old], TREE.roots[new], proof)


# Generation from a node store


@PROPERTY
@given(leaf_in_tree(), tree_sizes())
def test_a_proof_is_one_lookup_of_few_nodes_inside_the_tree(
    claim: tuple[int, int], sizes: tuple[int, int]
) -> None:
    """One lookup call per proof, for at most 2 log2(n) nodes, none beyond the tree's size."""
    for size, make_proof in (
        (claim[1], partial(TREE.inclusion, *claim)),
        (sizes[1], partial(TREE.consistency, *sizes)),
    ):
        TREE.calls.clear()
        make_proof()
        assert len(TREE.calls) <= 1
        wanted = TREE.calls[0] if TREE.calls else []
        assert len(wanted) == len(set(wanted)) <= 2 * size.bit_length()
        assert all((index + 1) << level <= size for level, index in wanted)


def test_range_nodes_split_a_subtree_into_complete_nodes() -> None:
    """A range splits left to right by decreasing size; its fold is the MTH of its leaves."""
    assert range_nodes(0, 8) == [(3, 0)]
    assert range_nodes(0, 7) == [(2, 0), (1, 2), (0, 6)]
    assert range_nodes(8, 13) == [(2, 2), (0, 12)]
    assert range_nodes(5, 6) == [(0, 5)]
    for start, end in ((0, 300), (256, 300), (128, 200), (96, 101), (7, 8)):
        assert range_root(start, end, TREE.lookup) == mth(TREE.leaves[start:end])


@pytest.mark.parametrize(("start", "end"), [(0, 0), (3, 2), (-1, 0), (1, 3), (4, 9), (2, 5), (6, 9)])
def test_ranges_that_are_not_subtrees_are_refused(start: int, end: int) -> None:
    """Empty ranges and ranges not aligned to their size are no node of any tree."""
    with pytest.raises(ValueError, match="not a subtree"):
        range_nodes(start, end)


def test_proof_requests_outside_the_tree_are_refused() -> None:
    """Generation refuses a leaf beyond the tree and an old tree larger than the new one."""
    for index, size in ((0, 0), (5, 5), (-1, 3)):
        with pytest.raises(ValueError, match="not in a tree"):
            inclusion_nodes(index, size)
    for old, new in ((4, 3), (-1, 2)):
        with pytest.raises(ValueError, match="cannot be a prefix"):
            consistency_nodes(old, new)


def test_a_lookup_that_misses_a_node_is_reported() -> None:
    """A store that lacks a node fails the proof with a LookupError naming the node."""
    with pytest.raises(LookupError, match=r"\(1, 1\)"):
        inclusion_proof(0, 8, lambda wanted: {node: b"\x00" * 32 for node in wanted if node != (1, 1)})


def test_proof_ranges_name_incomplete_subtrees() -> None:
    """In a tree of 7 leaves the proof of leaf 0 needs the incomplete range [4, 7)."""
    assert inclusion_nodes(0, 7) == [Range(1, 2), Range(2, 4), Range(4, 7)]
    assert consistency_nodes(3, 7) == [Range(2, 3), Range(3, 4), Range(0, 2), Range(4, 7)]
    assert consistency_nodes(0, 7) == consistency_nodes(7, 7) == []


# Soundness: only the honest proof of a claim verifies


def _flip(proof: list[bytes], at: int, bit: int) -> list[bytes]:
    changed = bytearray(proof[at])
    changed[bit // 8] ^= 1 << (bit % 8)
    return [*proof[:at], bytes(changed), *proof[at + 1 :]]


@st.composite
def tampered(draw: st.DrawFn, proof: list[bytes]) -> list[bytes]:
    """The proof with one element flipped, dropped or added."""
    moves = ["add"] + (["flip", "drop"] if proof else [])
    move = draw(st.sampled_from(moves))
    if move == "add":
        at = draw(st.integers(0, len(proof)))
        extra = draw(st.sampled_from([*TREE.roots[1:4], *proof, draw(st.binary(min_size=32, max_size=32))]))
        return [*proof[:at], extra, *proof[at:]]
    at = draw(st.integers(0, len(proof) - 1))
    if move == "drop":
        return [*proof[:at], *proof[at + 1 :]]
    return _flip(proof, at, draw(st.integers(0, 255)))


@PROPERTY
@given(leaf_in_tree(), st.data())
def test_a_tampered_inclusion_proof_never_verifies(claim: tuple[int, int], data: st.DataObject) -> None:
    """Flipping a bit of, dropping or adding a proof element makes the proof fail."""
    index, size = claim
    proof = data.draw(tampered(TREE.inclusion(index, size)))
    assert not verify_inclusion(TREE.leaves[index], index, size, proof, TREE.roots[size])


@PROPERTY
@given(leaf_in_tree(), st.integers(-2, Tree.MAX + 2), st.integers(-2, Tree.MAX))
def test_an_inclusion_proof_proves_only_its_own_claim(
    claim: tuple[int, int], other_index: int, other_size: int
) -> None:
    """A proof for (index, size) fails for any other index or size, checked against that size's root.

    Each claim is checked against the root of the size it names: size and root come together
    from one signed checkpoint. (Paired with the *original* root, a different size can shape
    the same path, e.g. leaf 0 of size 3 and of size 4: the RFC verifier cannot see the size.)
    """
    index, size = claim
    proof = TREE.inclusion(index, size)
    leaf = TREE.leaves[index]
    if other_index != index:
        assert not verify_inclusion(leaf, other_index, size, proof, TREE.roots[size])
    if other_size not in (size, -1, -2):
        assert not verify_inclusion(leaf, index, other_size, proof, TREE.roots[other_size])
    other_leaf = TREE.leaves[(index + 1) % Tree.MAX]
    assert not verify_inclusion(other_leaf, index, size, proof, TREE.roots[size])
    assert not verify_inclusion(leaf, index, size, proof, TREE.roots[size - 1])


def test_a_size_is_only_as_good_as_the_root_signed_with_it() -> None:
    """The documented limit: leaf 0's proof in a tree of 3 also verifies as a tree of 4 with that root."""
    proof = TREE.inclusion(0, 3)
    assert verify_inclusion(TREE.leaves[0], 0, 4, proof, TREE.roots[3])
    assert not verify_inclusion(TREE.leaves[0], 0, 4, proof, TREE.roots[4])


@PROPERTY
@given(tree_sizes(), st.data())
def test_a_tampered_consistency_proof_never_verifies(sizes: tuple[int, int], data: st.DataObject) -> None:
    """Flipping a bit of, dropping or adding a proof element makes the proof fail."""
    old, new = sizes
    proof = data.draw(tampered(TREE.consistency(old, new)))
    assert not verify_consistency(old, new, TREE.roots[old], TREE.roots[new], proof)


@PROPERTY
@given(tree_sizes(), st.integers(-2, Tree.MAX), st.integers(-2, Tree.MAX))
def test_a_consistency_proof_proves_only_its_own_sizes(
    sizes: tuple[int, int], other_old: int, other_new: int
) -> None:
    """A proof verifies for other sizes (with their roots) only where it is also their honest proof."""
    old, new = sizes
    proof = TREE.consistency(old, new)
    for claim in ((other_old, new), (old, other_new)):
        if claim != sizes and min(claim) >= 0:
            honest = claim[0] <= claim[1] and proof == TREE.consistency(*claim)
            assert verify_consistency(*claim, TREE.roots[claim[0]], TREE.roots[claim[1]], proof) == honest
    if old != new:
        assert not verify_consistency(old, new, TREE.roots[new], TREE.roots[old], proof)
    if 0 < old < new:  # from the empty tree, nothing about the new root can be checked
        assert not verify_consistency(old, new, TREE.roots[old], TREE.roots[new - 1], proof)


def test_edge_cases_of_consistency() -> None:
    """Equal sizes need equal roots and no proof; the empty tree precedes every tree."""
    r1, r2 = TREE.roots[1], TREE.roots[2]
    assert verify_consistency(1, 1, r1, r1, [])
    assert not verify_consistency(1, 1, r1, r2, [])
    assert not verify_consistency(1, 1, r1, r1, [r1])
    assert verify_consistency(0, 0, EMPTY_ROOT, EMPTY_ROOT, [])
    assert not verify_consistency(0, 0, EMPTY_ROOT, r1, [])
    assert verify_consistency(0, 5, EMPTY_ROOT, TREE.roots[5], [])
    assert not verify_consistency(0, 5, r1, TREE.roots[5], [])
    assert not verify_consistency(0, 1, EMPTY_ROOT, r1, [EMPTY_ROOT])
    assert not verify_consistency(1, 2, r1, r2, [])
    assert not verify_consistency(2, 1, r2, r1, [])


# Hostile input


hostile = st.one_of(
    st.binary(max_size=40), st.text(max_size=4), st.none(), st.integers(), st.just(b"\x00" * 32)
)
hostile_proofs = st.one_of(st.lists(hostile, max_size=70), hostile, st.tuples(hostile, hostile))
hostile_ints = st.one_of(st.integers(-(2**70), 2**70), st.integers(-3, 300), hostile, st.booleans())


@PROPERTY
@given(hostile, hostile_ints, hostile_ints, hostile_proofs, hostile)
def test_verify_inclusion_never_raises(leaf: Any, index: Any, size: Any, proof: Any, root_hash: Any) -> None:
    """Garbage of any type or size is a failed verification, never an exception."""
    assert verify_inclusion(leaf, index, size, proof, root_hash) in (True, False)


@PROPERTY
@given(hostile_ints, hostile_ints, hostile, hostile, hostile_proofs)
def test_verify_consistency_never_raises(
    old: Any, new: Any, old_root: Any, new_root: Any, proof: Any
) -> None:
    """Garbage of any type or size is a failed verification, never an exception."""
    assert verify_consistency(old, new, old_root, new_root, proof) in (True, False)


def test_malformed_claims_are_refused() -> None:
    """Negative, out-of-range and non-integer indices and sizes fail; so do hashes of the wrong length."""
    leaf, r8 = TREE.leaves[0], TREE.roots[8]
    proof = TREE.inclusion(0, 8)
    for index, size in ((-1, 8), (8, 8), (0, 0), (0, -8), (True, 8), (0.0, 8)):
        assert not verify_inclusion(leaf, index, size, proof, r8)
    assert not verify_inclusion(leaf[:31], 0, 8, proof, r8)
    assert not verify_inclusion(leaf, 0, 8, [*proof[:2], proof[2] + b"\x00"], r8)
    assert not verify_consistency(-1, 8, r8, r8, [])
    assert not verify_consistency(8, 8, r8 + b"\x00", r8 + b"\x00", [])


# Scale


def test_a_billion_leaf_tree_proves_in_well_under_a_millisecond() -> None:
    """Leaf 123456789 of 10**9 proves from one lookup of <= 60 nodes and verifies in well under 1 ms.

    Every leaf is the same entry, so a node's hash depends only on its level: a tree of a
    billion leaves without a billion hashes.
    """
    by_level = [leaf_hash(b"entry")]
    for _ in range(40):
        by_level.append(node_hash(by_level[-1], by_level[-1]))
    calls: list[list[Node]] = []

    def lookup(wanted: list[Node]) -> Mapping[Node, bytes]:
        calls.append(wanted)
        return {node: by_level[node[0]] for node in wanted}

    size, index = 10**9, 123_456_789
    head = range_root(0, size, lookup)
    proof = inclusion_proof(index, size, lookup)
    assert len(calls) == 2 and len(calls[1]) <= 60 and len(proof) <= 30
    runs = 200
    started = time.perf_counter()
    for _ in range(runs):
        assert verify_inclusion(by_level[0], index, size, proof, head)
    assert (time.perf_counter() - started) / runs < 1e-3
    old = size - 12_345
    assert verify_consistency(
        old, size, range_root(0, old, lookup), head, consistency_proof(old, size, lookup)
    )
