"""sha256 Merkle trees in merkletools' shape, and their proofs. Pure.

Trees are built by blockcerts-merkletools (``hash_type="sha256"``): an inner node is
sha256(left || right), and the last node of an odd level is promoted unchanged. So the
length of a proof and the side of each sibling are fixed by (leaf index, leaf count);
``proof_shape`` computes that pattern and ``verify_inclusion`` insists on it.

A proof is merkletools' list of one-key dicts, ``[{"right": hex}, {"left": hex}, ...]``,
from the leaf's level up; ``"left"`` means the sibling is hashed on the left.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass

from blockcerts_merkletools import MerkleTools

from ledger.errors import InvalidInput

__all__ = [
    "MerkleTree",
    "ProofStep",
    "build_tree",
    "proof_shape",
    "root_from_proof",
    "verify_inclusion",
]

ProofStep = dict[str, str]  # {"left": hex} or {"right": hex}
_HASH_BYTES = 32
_SIBLING_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class MerkleTree:
    """A built tree. ``levels[0]`` is the root level, ``levels[-1]`` the leaves."""

    _tools: MerkleTools

    @property
    def root(self) -> bytes:
        return bytes(self._tools.levels[0][0])

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
    tools = MerkleTools(hash_type="sha256")
    for leaf in leaves:
        if len(leaf) != _HASH_BYTES:
            raise InvalidInput(f"a leaf must be {_HASH_BYTES} bytes, got {len(leaf)}")
    tools.add_leaf([leaf.hex() for leaf in leaves])
    tools.make_tree()
    return MerkleTree(tools)


def proof_shape(index: int, leaf_count: int) -> list[str]:
    """The sides ("left"/"right") of the siblings on the path of leaf ``index``."""
    if leaf_count < 1 or not 0 <= index < leaf_count:
        raise InvalidInput(f"leaf index {index} outside a tree of {leaf_count} leaves")
    sides: list[str] = []
    width = leaf_count
    while width > 1:
        if index % 2 == 1:
            sides.append("left")
        elif index + 1 < width:
            sides.append("right")
        # else: the last node of an odd level is promoted, no sibling
        index //= 2
        width = (width + 1) // 2
    return sides


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
