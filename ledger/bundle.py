"""Building proof bundles from the store (the format is in docs/proof-format.md)."""

from __future__ import annotations

import logging
from collections import OrderedDict
from threading import Lock

from ledger.canonical import loads_canonical, stream_id
from ledger.chain import Deployment
from ledger.errors import InvalidInput, NotAnchored
from ledger.merkle import MerkleTree, ProofStep, build_tree, verify_inclusion
from ledger.models import AnchorRef, BatchRef, ProofBundle, SignedEnvelope
from ledger.store import ANCHORED, BatchRow, Store

__all__ = ["BundleBuilder"]

log = logging.getLogger("fourflow.bundle")


class BundleBuilder:
    """Makes bundles. A proof comes from the batch's stored upper nodes and one 64-leaf
    chunk (Store.batch_proof); batches sealed before those were stored are proved from
    a full tree, and the last few such trees are kept."""

    def __init__(self, store: Store, deployment: Deployment, *, cached_trees: int = 16) -> None:
        self.store = store
        self.deployment = deployment
        self._trees: OrderedDict[tuple[str, int, str], MerkleTree] = OrderedDict()
        self._cached_trees = cached_trees
        self._lock = Lock()

    def _tree(self, stream: str, seq: int, root: str) -> MerkleTree:
        key = (stream, seq, root)
        with self._lock:
            if key in self._trees:
                self._trees.move_to_end(key)
                return self._trees[key]
        tree = build_tree(self.store.batch_leaves(stream, seq))
        with self._lock:
            self._trees[key] = tree
            while len(self._trees) > self._cached_trees:
                self._trees.popitem(last=False)
        return tree

    def _proof(self, batch: BatchRow, index: int, leaf: str) -> list[ProofStep]:
        """The stored nodes' proof, checked against the batch root; should the nodes
        ever disagree with it (a damaged row), the proof comes from the full tree."""
        proof = self.store.batch_proof(batch.stream, batch.seq, index, batch.leaf_count)
        try:
            verify_inclusion(
                leaf=bytes.fromhex(leaf),
                index=index,
                leaf_count=batch.leaf_count,
                proof=proof,
                root=bytes.fromhex(batch.root),
            )
        except InvalidInput:
            log.error("stored nodes of batch %s/%d disagree with its root", batch.stream, batch.seq)
            return self._tree(batch.stream, batch.seq, batch.root).proof(index)
        return proof

    def bundle(self, event_id: str) -> ProofBundle:
        """The proof bundle of an anchored event; NotAnchored until its batch is anchored."""
        event = self.store.event(event_id)
        if event.batch_seq is None or event.leaf_index is None:
            raise NotAnchored(f"event {event_id!r} is not in a batch yet")
        batch = self.store.batch(event.stream, event.batch_seq)
        if batch.state != ANCHORED or batch.tx_hash is None or batch.block_number is None:
            raise NotAnchored(
                f"batch {batch.seq} of {event.stream!r} is {batch.state}, not anchored"
            )
        return ProofBundle(
            envelope=SignedEnvelope.model_validate(loads_canonical(event.envelope)),
            leaf="0x" + event.leaf,
            batch=BatchRef(
                stream=batch.stream,
                stream_id="0x" + stream_id(batch.stream).hex(),
                seq=batch.seq,
                leaf_index=event.leaf_index,
                leaf_count=batch.leaf_count,
                root="0x" + batch.root,
                proof=self._proof(batch, event.leaf_index, event.leaf),
                first_event_time=batch.first_event_time_ms,
                last_event_time=batch.last_event_time_ms,
            ),
            anchor=AnchorRef(
                chain_id=self.deployment.chain_id,
                contract=self.deployment.anchor_registry,
                tx_hash="0x" + batch.tx_hash,
                block_number=batch.block_number,
            ),
        )
