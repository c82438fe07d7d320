"""Verifying a proof bundle against the chain, in numbered steps.

Needs the bundle and a chain connection only: nothing from fourflow's database or
server. ``verify_bundle`` returns None or raises ``VerificationFailed`` naming the step.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from eth_utils.address import is_checksum_address, to_checksum_address
from pydantic import ValidationError

from ledger.canonical import leaf_hash, stream_id
from ledger.chain import SUBMITTER_ROLE, AnchorRegistry, Chain, OnChainBatch
from ledger.errors import ChainError, InvalidInput, VerificationFailed
from ledger.merkle import proof_shape, root_from_proof
from ledger.models import ProofBundle
from ledger.signing import recover_envelope_signer

__all__ = ["STEPS", "AnchorReads", "verify_bundle"]

STEPS = (
    "bundle format",
    "chain and domain",
    "signature",
    "leaf",
    "on-chain anchor",
    "proof shape",
    "root",
    "submitter role",
)

StepCallback = Callable[[int, str, str], None]


def _fail(step: int, message: str) -> VerificationFailed:
    return VerificationFailed(step, STEPS[step - 1], message)


class AnchorReads:
    """The on-chain reads verification needs, remembered: verifying many bundles against
    one chain at once (an evidence package) reads each batch and each role once. The
    head is read once too, so all bundles are judged at the same block."""

    def __init__(self, chain: Chain) -> None:
        self.chain = chain
        self._head: int | None = None
        self._registries: dict[str, AnchorRegistry] = {}
        self._batches: dict[tuple[str, str, int, int], OnChainBatch | None] = {}
        self._roles: dict[tuple[str, str, int], bool] = {}

    @property
    def head(self) -> int:
        if self._head is None:
            self._head = self.chain.head
        return self._head

    def _registry(self, contract: str) -> AnchorRegistry:
        if contract not in self._registries:
            self._registries[contract] = AnchorRegistry(self.chain, contract)
        return self._registries[contract]

    def batch(self, contract: str, *, stream: str, seq: int, block: int) -> OnChainBatch | None:
        key = (contract, stream, seq, block)
        if key not in self._batches:
            self._batches[key] = self._registry(contract).batch_of(
                stream=stream, seq=seq, block=block
            )
        return self._batches[key]

    def submitter(self, contract: str, account: str, *, block: int) -> bool:
        key = (contract, account, block)
        if key not in self._roles:
            self._roles[key] = self._registry(contract).has_role(
                SUBMITTER_ROLE, account, block=block
            )
        return self._roles[key]


def verify_bundle(
    raw: Mapping[str, Any],
    *,
    chain: Chain,
    confirmations: int = 0,
    on_step: StepCallback | None = None,
    reads: AnchorReads | None = None,
) -> None:
    """Check ``raw`` (a parsed bundle) step by step; raise at the first failing step.
    Pass one ``reads`` to verify many bundles against the same chain quickly."""
    reads = reads or AnchorReads(chain)

    def passed(step: int, detail: str) -> None:
        if on_step is not None:
            on_step(step, STEPS[step - 1], detail)

    # 1. the bundle parses as format version 1, every field well formed
    if isinstance(raw.get("version"), bool):
        raise _fail(1, "version: expected the integer 1, got a boolean")
    try:
        bundle = ProofBundle.model_validate(raw)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise _fail(1, f"{where}: {first['msg']} ({exc.error_count()} error(s))") from exc
    addresses = {
        "envelope.event.submitter": bundle.envelope.event.submitter,
        "envelope.domain.verifyingContract": bundle.envelope.domain.verifyingContract,
        "anchor.contract": bundle.anchor.contract,
    }
    for where, address in addresses.items():
        if not is_checksum_address(address):
            raise _fail(1, f"{where}: expected an EIP-55 checksummed address, got {address}")
    passed(1, f"{bundle.format} v{bundle.version}")

    # 2. the node is the bundle's chain; the signature domain names this chain and contract
    node_chain_id = chain.chain_id
    contract = to_checksum_address(bundle.anchor.contract)
    domain = bundle.envelope.domain
    if node_chain_id != bundle.anchor.chain_id:
        raise _fail(
            2, f"expected chain {bundle.anchor.chain_id}, the node is chain {node_chain_id}"
        )
    if domain.chainId != bundle.anchor.chain_id or domain.verifyingContract != contract:
        raise _fail(
            2,
            f"signature domain is chain {domain.chainId} / {domain.verifyingContract}, "
            f"expected chain {bundle.anchor.chain_id} / {contract}",
        )
    passed(2, f"chain {node_chain_id}, registry {contract}")

    # 3. the EIP-712 signature over the submission recovers the event's submitter
    submitter = bundle.envelope.event.submitter
    try:
        signer = recover_envelope_signer(bundle.envelope)
    except InvalidInput as exc:
        raise _fail(3, f"the event is not the one its submitter signed: {exc.message}") from exc
    if signer != submitter:
        raise _fail(3, f"signature recovers {signer}, expected the submitter {submitter}")
    passed(3, f"signed by {signer}")

    # 4. the leaf recomputed from the envelope equals the bundle's leaf
    leaf = leaf_hash(bundle.envelope.model_dump(mode="json"))
    if "0x" + leaf.hex() != bundle.leaf:
        raise _fail(4, f"envelope hashes to leaf 0x{leaf.hex()}, bundle says {bundle.leaf}")
    passed(4, f"leaf 0x{leaf.hex()}")

    # 5. the anchor, read from contract storage at head - confirmations
    ref = bundle.batch
    if ref.stream_id != "0x" + stream_id(ref.stream).hex():
        raise _fail(5, f"stream_id {ref.stream_id} is not sha256 of {ref.stream!r}")
    try:
        at_block = reads.head - confirmations
        if at_block < 0:
            raise _fail(5, f"the chain has fewer than {confirmations} blocks")
        on_chain: OnChainBatch | None = reads.batch(
            contract, stream=ref.stream, seq=ref.seq, block=at_block
        )
    except ChainError as exc:
        raise _fail(5, f"cannot read the anchor: {exc.message}") from exc
    if on_chain is None:
        raise _fail(
            5,
            f"batch {ref.seq} of {ref.stream!r} is not anchored as of block {at_block} "
            f"({confirmations} confirmations)",
        )
    if on_chain.leaf_count != ref.leaf_count:
        raise _fail(5, f"the chain says {on_chain.leaf_count} leaves, the bundle {ref.leaf_count}")
    passed(
        5,
        f"{ref.stream}/{ref.seq} anchored in block {on_chain.anchored_block}, "
        f"{on_chain.leaf_count} leaves",
    )

    # 6. the path's length and sides are those fixed by (leaf index, on-chain leaf count)
    try:
        sides = proof_shape(ref.leaf_index, on_chain.leaf_count)
    except InvalidInput as exc:
        raise _fail(6, exc.message) from exc
    got = [next(iter(step)) for step in ref.proof]
    if got != sides:
        raise _fail(6, f"expected sibling sides {sides}, got {got}")
    passed(6, f"{len(sides)} siblings")

    # 7. the path leads from the leaf to the root held in contract storage
    try:
        computed = root_from_proof(
            leaf=leaf, index=ref.leaf_index, leaf_count=on_chain.leaf_count, proof=ref.proof
        )
    except InvalidInput as exc:
        raise _fail(7, exc.message) from exc
    if computed != on_chain.root:
        raise _fail(7, f"path leads to 0x{computed.hex()}, the chain holds 0x{on_chain.root.hex()}")
    passed(7, f"root 0x{computed.hex()}")

    # 8. the signer held the submitter role when the batch was anchored
    try:
        allowed = reads.submitter(contract, signer, block=on_chain.anchored_block)
    except ChainError as exc:
        raise _fail(8, f"cannot read the role: {exc.message}") from exc
    if not allowed:
        raise _fail(8, f"{signer} did not hold SUBMITTER_ROLE in block {on_chain.anchored_block}")
    passed(8, f"{signer} holds SUBMITTER_ROLE")
