"""ledger.merkle: merkletools-shaped sha256 trees, proofs and strict proof checking.

Golden roots and proofs come from tests/vectors/merkle.json; every tree is also rebuilt
by the tiny pure-hashlib reference below (odd last node promoted unchanged).
"""

from __future__ import annotations

import hashlib
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.canonical import canonical_json
from ledger.errors import InvalidInput
from ledger.merkle import (
    ProofStep,
    build_tree,
    chunk_span,
    proof_from_parts,
    proof_shape,
    root_from_proof,
    upper_siblings,
    verify_inclusion,
)
from tests.unit._vectors import load

VECTORS = load("merkle.json")
SIZES = range(1, 34)


def leaves(n: int) -> list[bytes]:
    return [hashlib.sha256(i.to_bytes(4, "big")).digest() for i in range(n)]


# --- an independent reference implementation -------------------------------------------


def ref_levels(nodes: list[bytes]) -> list[list[bytes]]:
    """Levels from the leaves up; the last node of an odd level is promoted unchanged."""
    levels = [nodes]
    while len(levels[-1]) > 1:
        level = levels[-1]
        parents = [
            hashlib.sha256(level[i] + level[i + 1]).digest() for i in range(0, len(level) - 1, 2)
        ]
        if len(level) % 2:
            parents.append(level[-1])
        levels.append(parents)
    return levels


def ref_root(nodes: list[bytes]) -> bytes:
    return ref_levels(nodes)[-1][0]


def ref_proof(nodes: list[bytes], index: int) -> list[dict[str, str]]:
    proof = []
    for level in ref_levels(nodes)[:-1]:
        if index % 2:
            proof.append({"left": level[index - 1].hex()})
        elif index + 1 < len(level):
            proof.append({"right": level[index + 1].hex()})
        index //= 2
    return proof


def test_reference_implementation_on_hand_computed_trees() -> None:
    a, b, c = leaves(3)
    h = hashlib.sha256
    assert ref_root([a]) == a
    assert ref_root([a, b]) == h(a + b).digest()
    assert ref_root([a, b, c]) == h(h(a + b).digest() + c).digest()  # c promoted, not doubled
    assert ref_proof([a, b, c], 2) == [{"left": h(a + b).digest().hex()}]


# --- golden vectors --------------------------------------------------------------------


def test_vectors_cover_sizes_1_to_33() -> None:
    assert [tree["count"] for tree in VECTORS["trees"]] == list(SIZES)
    for tree in VECTORS["trees"]:
        n = tree["count"]
        assert {p["index"] for p in tree["proofs"]} == {0, n // 2, n - 1}


@pytest.mark.parametrize("vector", VECTORS["trees"], ids=lambda t: f"n{t['count']}")
def test_root_and_proofs_match_vectors(vector: dict[str, Any]) -> None:
    n = vector["count"]
    tree = build_tree(leaves(n))
    assert tree.root.hex() == vector["root"]
    assert ref_root(leaves(n)).hex() == vector["root"]
    for entry in vector["proofs"]:
        assert tree.proof(entry["index"]) == entry["proof"]
        assert ref_proof(leaves(n), entry["index"]) == entry["proof"]


# --- round trips -----------------------------------------------------------------------


@pytest.mark.parametrize("n", SIZES)
def test_every_index_round_trips(n: int) -> None:
    nodes = leaves(n)
    tree = build_tree(nodes)
    assert tree.leaf_count == n
    assert tree.root == ref_root(nodes)
    for index in range(n):
        proof = tree.proof(index)
        assert proof == ref_proof(nodes, index)
        sides = proof_shape(index, n)
        assert len(proof) == len(sides)
        assert [next(iter(step)) for step in proof] == sides
        assert all(len(step) == 1 for step in proof)
        leaf = nodes[index]
        assert root_from_proof(leaf=leaf, index=index, leaf_count=n, proof=proof) == tree.root
        assert (
            verify_inclusion(leaf=leaf, index=index, leaf_count=n, proof=proof, root=tree.root)
            is None
        )


@pytest.mark.parametrize("n", range(2, 12))
def test_a_proof_does_not_fit_another_index(n: int) -> None:
    nodes = leaves(n)
    tree = build_tree(nodes)
    for index in range(n):
        for other in range(n):
            if other == index:
                continue
            proof = tree.proof(index)
            with pytest.raises(InvalidInput):
                verify_inclusion(
                    leaf=nodes[index], index=other, leaf_count=n, proof=proof, root=tree.root
                )
            with pytest.raises(InvalidInput):
                verify_inclusion(
                    leaf=nodes[other], index=index, leaf_count=n, proof=proof, root=tree.root
                )


def test_single_leaf_tree_is_its_leaf() -> None:
    (leaf,) = leaves(1)
    tree = build_tree([leaf])
    assert tree.root == leaf
    assert tree.proof(0) == []
    assert proof_shape(0, 1) == []
    verify_inclusion(leaf=leaf, index=0, leaf_count=1, proof=[], root=leaf)


def test_leaf_count_is_bound_by_the_shape() -> None:
    # 5 leaves: index 4 is promoted twice, so its proof has one step; as a leaf of a
    # 6-leaf tree the same index would need two.
    nodes = leaves(5)
    tree = build_tree(nodes)
    proof = tree.proof(4)
    assert proof_shape(4, 5) == ["left"]
    assert proof_shape(4, 6) == ["right", "left"]
    with pytest.raises(InvalidInput):
        verify_inclusion(leaf=nodes[4], index=4, leaf_count=6, proof=proof, root=tree.root)


@pytest.mark.parametrize(
    ("index", "count", "sides"),
    [(0, 2, ["right"]), (1, 2, ["left"]), (2, 3, ["left"]), (0, 3, ["right", "right"]),
     (6, 7, ["left", "left"]), (8, 9, ["left"]), (5, 6, ["left", "left"]),
     (4, 6, ["right", "left"])],
)  # fmt: skip
def test_proof_shape_hand_checked(index: int, count: int, sides: list[str]) -> None:
    assert proof_shape(index, count) == sides


# --- rejections ------------------------------------------------------------------------

N = 11
NODES = leaves(N)
TREE = build_tree(NODES)
INDEX = 5  # proof shape for 5 of 11: ["left", "right", "left", "right"]
PROOF = TREE.proof(INDEX)


def _root(proof: Any, *, index: int = INDEX, count: int = N, leaf: bytes | None = None) -> bytes:
    return root_from_proof(
        leaf=NODES[INDEX] if leaf is None else leaf, index=index, leaf_count=count, proof=proof
    )


def test_the_rejection_fixture_is_valid() -> None:
    assert [next(iter(s)) for s in PROOF] == ["left", "right", "left", "right"]
    assert _root(PROOF) == TREE.root


@pytest.mark.parametrize(
    "proof",
    [PROOF[:-1], PROOF[1:], [*PROOF, {"right": PROOF[0]["left"]}], [], PROOF * 2],
    ids=["missing-last", "missing-first", "extra-step", "empty", "doubled"],
)
def test_wrong_step_count(proof: list[ProofStep]) -> None:
    with pytest.raises(InvalidInput, match="steps"):
        _root(proof)


def test_steps_given_for_a_single_leaf_tree() -> None:
    (leaf,) = leaves(1)
    with pytest.raises(InvalidInput, match="steps"):
        root_from_proof(leaf=leaf, index=0, leaf_count=1, proof=[{"right": leaf.hex()}])


def _with_step(position: int, step: Any) -> list[Any]:
    proof: list[Any] = list(PROOF)
    proof[position] = step
    return proof


def _flip(step: ProofStep) -> ProofStep:
    ((side, value),) = step.items()
    return {"right" if side == "left" else "left": value}


@pytest.mark.parametrize("position", range(4))
def test_wrong_side_key(position: int) -> None:
    with pytest.raises(InvalidInput, match="expected a"):
        _root(_with_step(position, _flip(PROOF[position])))


@pytest.mark.parametrize(
    "step",
    [
        {"up": "00" * 32},
        {"Left": "00" * 32},
        {"left": "00" * 32, "right": "00" * 32},
        {},
        ["left", "00" * 32],
        ("left", "00" * 32),
        "left",
        None,
    ],
    ids=["unknown-key", "capitalised", "two-keys", "empty", "list", "tuple", "str", "none"],
)
def test_malformed_step(step: Any) -> None:
    with pytest.raises(InvalidInput):
        _root(_with_step(0, step))


@pytest.mark.parametrize(
    "value",
    ["00" * 31, "00" * 33, "", "0" * 63, "zz" * 32, "0g" + "00" * 31, 12345, None],
    ids=["31-bytes", "33-bytes", "empty", "odd-digits", "non-hex", "one-bad-digit", "int",
         "none"],
)  # fmt: skip
def test_bad_sibling(value: Any) -> None:
    with pytest.raises(InvalidInput):
        _root(_with_step(0, {"left": value}))


@pytest.mark.parametrize(
    ("index", "count"),
    [(N, N), (N + 1, N), (-1, N), (0, 0), (0, -1), (1, 1)],
    ids=["index=count", "index>count", "negative-index", "count-0", "count-negative", "1-of-1"],
)
def test_index_outside_the_tree(index: int, count: int) -> None:
    with pytest.raises(InvalidInput):
        _root(PROOF, index=index, count=count)
    with pytest.raises(InvalidInput):
        proof_shape(index, count)


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_root_from_proof_rejects_a_leaf_of_the_wrong_size(length: int) -> None:
    with pytest.raises(InvalidInput):
        _root(PROOF, leaf=b"\x01" * length)


@pytest.mark.parametrize("index", [-1, N, N + 5])
def test_tree_proof_rejects_an_index_outside(index: int) -> None:
    with pytest.raises(InvalidInput):
        TREE.proof(index)


def test_build_tree_rejects_no_leaves() -> None:
    with pytest.raises(InvalidInput):
        build_tree([])


@pytest.mark.parametrize("length", [0, 1, 31, 33, 64])
def test_build_tree_rejects_leaves_that_are_not_32_bytes(length: int) -> None:
    with pytest.raises(InvalidInput):
        build_tree([b"\x02" * length])
    with pytest.raises(InvalidInput):
        build_tree([*leaves(3), b"\x02" * length, *leaves(2)])


def test_verify_inclusion_rejects_a_wrong_root() -> None:
    other = bytearray(TREE.root)
    other[-1] ^= 1
    with pytest.raises(InvalidInput, match="expected 0x"):
        verify_inclusion(
            leaf=NODES[INDEX], index=INDEX, leaf_count=N, proof=PROOF, root=bytes(other)
        )


@pytest.mark.parametrize("mangle", ["trailing-newline", "inner-space"])
def test_sibling_with_whitespace_is_rejected(mangle: str) -> None:
    ((side, value),) = PROOF[0].items()
    bad = value + "\n" if mangle == "trailing-newline" else value[:32] + " " + value[32:]
    with pytest.raises(InvalidInput):
        _root(_with_step(0, {side: bad}))


def test_bytes_sibling_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        _root(_with_step(0, {"left": b"\x00" * 32}))


# --- tampering (property) --------------------------------------------------------------

_LEAVES_64 = leaves(64)
_TREES = {n: build_tree(_LEAVES_64[:n]) for n in range(1, 65)}


@settings(max_examples=300, deadline=None, database=None)
@given(data=st.data())
def test_any_single_tampered_byte_is_caught(data: st.DataObject) -> None:
    n = data.draw(st.integers(1, 64), label="leaf count")
    index = data.draw(st.integers(0, n - 1), label="index")
    tree = _TREES[n]
    proof = tree.proof(index)
    leaf = _LEAVES_64[index]
    target = data.draw(st.integers(-1, len(proof) - 1), label="target (-1 = the leaf)")
    position = data.draw(st.integers(0, 31), label="byte")
    xor = data.draw(st.integers(1, 255), label="xor")

    if target == -1:
        tampered = bytearray(leaf)
        tampered[position] ^= xor
        leaf = bytes(tampered)
    else:
        ((side, value),) = proof[target].items()
        sibling = bytearray.fromhex(value)
        sibling[position] ^= xor
        proof = [*proof[:target], {side: sibling.hex()}, *proof[target + 1 :]]

    with pytest.raises(InvalidInput):
        verify_inclusion(leaf=leaf, index=index, leaf_count=n, proof=proof, root=tree.root)


# --- proofs from a chunk and the stored upper nodes ------------------------------------


@settings(max_examples=200, deadline=None, database=None)
@given(n=st.integers(1, 700), height=st.integers(1, 6), data=st.data())
def test_a_proof_from_parts_is_the_full_trees_proof(
    n: int, height: int, data: st.DataObject
) -> None:
    all_leaves = leaves(n)
    tree = build_tree(all_leaves)
    nodes = {(h, i): node for h, i, node in tree.upper_nodes(height)}
    index = data.draw(st.integers(0, n - 1))
    first, end = chunk_span(index, n, height)
    assert first <= index < end and end - first <= 2**height
    wanted = upper_siblings(index, n, height)
    assert set(wanted) <= set(nodes)  # only stored nodes are asked for
    proof = proof_from_parts(index, n, all_leaves[first:end], nodes, height)
    assert proof == tree.proof(index)
    chunk = build_tree(all_leaves[first:end])  # the chunk's tree, as proofs sharing it pass it
    assert proof_from_parts(index, n, chunk, nodes, height) == proof
    # the nodes are the reference tree's: height h of ref_levels, index for index
    reference = ref_levels(all_leaves)
    assert all(reference[h][i] == node for (h, i), node in nodes.items())


def test_upper_nodes_are_about_two_per_chunk() -> None:
    tree = build_tree(leaves(1000))
    nodes = tree.upper_nodes(6)  # 16 chunks of 64 (the last of 40): 16 + 8 + 4 + 2 nodes
    assert len(nodes) == 30 and tree.height == 10
    assert build_tree(leaves(64)).upper_nodes(6) == []  # one chunk: the root is enough


def test_proof_from_parts_refuses_a_short_chunk_or_a_missing_node() -> None:
    all_leaves = leaves(200)
    nodes = {(h, i): node for h, i, node in build_tree(all_leaves).upper_nodes(3)}
    with pytest.raises(InvalidInput, match="has 8 leaves, got 7"):
        proof_from_parts(9, 200, all_leaves[8:15], nodes, 3)
    with pytest.raises(InvalidInput, match="has 8 leaves, got 7"):
        proof_from_parts(9, 200, build_tree(all_leaves[8:15]), nodes, 3)
    del nodes[(3, 0)]
    with pytest.raises(InvalidInput, match=r"stored node \(3, 0\) missing"):
        proof_from_parts(9, 200, all_leaves[8:16], nodes, 3)


@pytest.mark.parametrize("n", [1, 2, 3, 5, 8, 13, 64, 65, 100])
def test_all_proofs_at_once_equal_each_proof(n: int) -> None:
    tree = build_tree(leaves(n))
    assert (
        tree.proofs()
        == [tree.proof(i) for i in range(n)]
        == [ref_proof(leaves(n), i) for i in range(n)]
    )
    assert tree.proof_jsons() == [canonical_json(ref_proof(leaves(n), i)) for i in range(n)]
