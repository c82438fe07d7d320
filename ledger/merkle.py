"""sha256 Merkle trees in merkletools' shape, and their proofs. Pure.

Trees are built by blockcerts-merkletools (``hash_type="sha256"``): an inner node is
sha256(left || right), and the last node of an odd level is promoted unchanged. So the
length of a proof and the side of each sibling are fixed by (leaf index, leaf count);
``proof_shape`` computes that pattern and ``verify_inclusion`` insists on it.

A proof is merkletools' list of one-key dicts, ``[{"right": hex}, {"left": hex}, ...]``,
from the leaf's level up; ``"left"`` means the sibling is hashed on the left.

Leaves go into merkletools as the bytes they are (its ``add_leaf`` takes hex and turns
each leaf back into a bytearray, which cost half as much again as the hashing).

A sealed batch keeps its tree's upper part: every node at height ``CHUNK_HEIGHT`` and
above (``upper_nodes``), 2/64 of the leaf count. A proof then needs only the 64 leaves
of the leaf's chunk and one stored node per upper level (``proof_from_parts``), instead
of every leaf of the batch. The pieces compose because a chunk starts at a multiple of
64: inside it, the leaves pair exactly as in the whole tree, and the whole tree's last
odd node at any height below the chunk's lies in the last chunk.
"""

from __future__ import annotations

import hashlib
import re
from binascii import hexlify
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import orjson
from blockcerts_merkletools import MerkleTools

from ledger.errors import InvalidInput

__all__ = [
    "CHUNK_HEIGHT",
    "MerkleTree",
    "ProofStep",
    "build_tree",
    "chunk_span",
    "proof_from_parts",
    "proof_shape",
    "root_from_proof",
    "upper_siblings",
    "verify_inclusion",
]

ProofStep = dict[str, str]  # {"left": hex} or {"right": hex}
_HASH_BYTES = 32
_SIBLING_HEX = re.compile(r"[0-9a-f]{64}")


CHUNK_HEIGHT = 6  # a sealed batch stores its nodes from this height up (64-leaf chunks)


@dataclass(frozen=True)
class MerkleTree:
    """A built tree. ``levels[0]`` is the root level, ``levels[-1]`` the leaves."""

    _tools: MerkleTools

    @property
    def root(self) -> bytes:
        return bytes(self._tools.levels[0][0])

    @property
    def height(self) -> int:
        """Edges from a leaf to the root (0 for a single leaf)."""
        return len(self._tools.levels) - 1

    def proofs(self) -> list[list[ProofStep]]:
        """Every leaf's proof, in leaf order: ``[self.proof(i) for i in range(n)]``,
        read back from ``proof_jsons``."""
        return [orjson.loads(path) for path in self.proof_jsons()]

    def proof_jsons(self) -> list[bytes]:
        """Every leaf's proof as its RFC 8785 JSON, in leaf order. Built from the root
        down: a node's steps are its sibling step, a comma and its parent's steps, one
        step of Python a node, not one a node and leaf below it (building dicts and
        writing each proof out cost four times as much)."""
        levels = self._tools.levels  # the root's level first
        steps: list[bytes] = [b""]  # a node's steps up to the root, comma-separated
        for level in levels[1:]:
            width, hexes = len(level), [hexlify(node) for node in level]
            below: list[bytes] = []
            for index in range(width):
                above = steps[index >> 1]
                if index & 1:
                    step = b'{"left":"' + hexes[index - 1] + b'"}'
                elif index + 1 < width:
                    step = b'{"right":"' + hexes[index + 1] + b'"}'
                else:  # the last node of an odd level is promoted: no sibling
                    below.append(above)
                    continue
                below.append(step + b"," + above if above else step)
            steps = below
        return [b"[" + path + b"]" for path in steps]

    def upper_nodes(self, from_height: int = CHUNK_HEIGHT) -> list[tuple[int, int, bytes]]:
        """(height, index, hash) of every node at ``from_height`` and above, the root
        excluded: what ``proof_from_parts`` needs besides a chunk's leaves."""
        levels = self._tools.levels
        return [
            (height, index, bytes(node))
            for height in range(from_height, len(levels) - 1)
            for index, node in enumerate(levels[-1 - height])
        ]

    @property
    def leaf_count(self) -> int:
        return int(self._tools.get_leaf_count())

    def proof(self, index: int) -> list[ProofStep]:
        if not 0 <= index < self.leaf_count:
            raise InvalidInput(f"leaf index {index} outside 0..{self.leaf_count - 1}")
        steps: list[ProofStep] = self._tools.get_proof(index)
        return steps


def build_tree(leaves: Sequence[bytes]) -> MerkleTree:
    """Build the tree over ``leaves`` (each 32 bytes), in order."""
    if not leaves:
        raise InvalidInput("a Merkle tree needs at least one leaf")
    sizes = set(map(len, leaves))
    if sizes != {_HASH_BYTES}:
        wrong = next(size for size in sizes if size != _HASH_BYTES)
        raise InvalidInput(f"a leaf must be {_HASH_BYTES} bytes, got {wrong}")
    tools = MerkleTools(hash_type="sha256")
    tools.leaves = list(leaves)  # what add_leaf makes of hex, minus the hex
    tools.make_tree()
    return MerkleTree(tools)


def chunk_span(index: int, leaf_count: int, height: int = CHUNK_HEIGHT) -> tuple[int, int]:
    """The leaf indexes [first, end) of the chunk that holds leaf ``index``."""
    first = index >> height << height
    return first, min(first + (1 << height), leaf_count)


def upper_siblings(
    index: int, leaf_count: int, height: int = CHUNK_HEIGHT
) -> list[tuple[int, int]]:
    """(height, index) of the stored nodes a proof of leaf ``index`` needs, lowest first."""
    return [(level, idx) for level, idx, _ in _siblings(index, leaf_count, height)]


def proof_from_parts(
    index: int,
    leaf_count: int,
    chunk: Sequence[bytes] | MerkleTree,
    nodes: dict[tuple[int, int], bytes],
    height: int = CHUNK_HEIGHT,
) -> list[ProofStep]:
    """The proof of leaf ``index`` from its chunk (``chunk_span``): its leaves, or the
    tree over them when several proofs share it; and the stored nodes ``upper_siblings``
    names. Equal to ``build_tree(all).proof(index)``."""
    first, end = chunk_span(index, leaf_count, height)
    size = chunk.leaf_count if isinstance(chunk, MerkleTree) else len(chunk)
    if size != end - first:
        raise InvalidInput(f"chunk of leaf {index} has {end - first} leaves, got {size}")
    tree = chunk if isinstance(chunk, MerkleTree) else build_tree(chunk)
    steps = tree.proof(index - first)
    for level, idx, side in _siblings(index, leaf_count, height):
        node = nodes.get((level, idx))
        if node is None:
            raise InvalidInput(f"stored node {(level, idx)} missing for leaf {index}")
        steps.append({side: node.hex()})
    return steps


def proof_shape(index: int, leaf_count: int) -> list[str]:
    """The sides ("left"/"right") of the siblings on the path of leaf ``index``."""
    if leaf_count < 1 or not 0 <= index < leaf_count:
        raise InvalidInput(f"leaf index {index} outside a tree of {leaf_count} leaves")
    return [side for _, _, side in _siblings(index, leaf_count)]


def _siblings(index: int, leaf_count: int, height: int = 0) -> Iterator[tuple[int, int, str]]:
    """(height, index, side) of each sibling on the path of leaf ``index``, from
    ``height`` up: the one walk behind proof shapes, stored-node lookups and proofs."""
    position, width = index >> height, -(-leaf_count >> height)  # ceil(count / 2**height)
    while width > 1:
        if position % 2 == 1:
            yield height, position - 1, "left"
        elif position + 1 < width:
            yield height, position + 1, "right"
        # else: the last node of an odd level is promoted, no sibling
        height, position, width = height + 1, position // 2, (width + 1) // 2


def _sibling(step: ProofStep, expected_side: str, position: int) -> bytes:
    if not isinstance(step, dict) or list(step) != [expected_side]:
        raise InvalidInput(
            f"proof step {position}: expected a {expected_side!r} sibling, got {step!r}"
        )
    value = step[expected_side]
    if not isinstance(value, str) or not _SIBLING_HEX.fullmatch(value):
        raise InvalidInput(
            f"proof step {position}: expected a {_HASH_BYTES}-byte sibling as "
            f"{2 * _HASH_BYTES} lowercase hex digits, got {value!r}"
        )
    return bytes.fromhex(value)


def root_from_proof(
    *, leaf: bytes, index: int, leaf_count: int, proof: Sequence[ProofStep]
) -> bytes:
    """The root that ``proof`` leads to from ``leaf``; raises if the proof's shape is wrong."""
    if len(leaf) != _HASH_BYTES:
        raise InvalidInput(f"expected a {_HASH_BYTES}-byte leaf, got {len(leaf)}")
    sides = proof_shape(index, leaf_count)
    if len(proof) != len(sides):
        raise InvalidInput(
            f"expected a proof of {len(sides)} steps for leaf {index} of {leaf_count}, "
            f"got {len(proof)}"
        )
    node = leaf
    for position, (side, step) in enumerate(zip(sides, proof, strict=True)):
        sibling = _sibling(step, side, position)
        pair = sibling + node if side == "left" else node + sibling
        node = hashlib.sha256(pair).digest()
    return node


def verify_inclusion(
    *, leaf: bytes, index: int, leaf_count: int, proof: Sequence[ProofStep], root: bytes
) -> None:
    """Return None if ``proof`` puts ``leaf`` at ``index`` under ``root``; raise otherwise."""
    computed = root_from_proof(leaf=leaf, index=index, leaf_count=leaf_count, proof=proof)
    if computed != root:
        raise InvalidInput(f"proof leads to root 0x{computed.hex()}, expected 0x{root.hex()}")
