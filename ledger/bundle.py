"""Building proof bundles from the store (the format is in docs/proof-format.md)."""

from __future__ import annotations

import logging
from collections import OrderedDict, defaultdict
from collections.abc import Iterable
from threading import Lock

from ledger.canonical import loads_canonical, stream_id
from ledger.chain import Deployment
from ledger.errors import InvalidInput, NotAnchored
from ledger.merkle import MerkleTree, ProofStep, build_tree, verify_inclusion
from ledger.models import AnchorRef, BatchRef, ProofBundle, SignedEnvelope
from ledger.store import ANCHORED, BatchRow, EventRow, Store

__all__ = ["BundleBuilder"]

log = logging.getLogger("fourflow.bundle")


def _anchored(batch: BatchRow) -> bool:
    """Whether ``batch`` is anchored with all a bundle's anchor reference needs."""
    return batch.state == ANCHORED and batch.tx_hash is not None and batch.block_number is not None


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

    def _proofs(self, batch: BatchRow, leaves: dict[int, str]) -> dict[int, list[ProofStep]]:
        """The stored nodes' proofs of ``leaves`` (index -> leaf hex), each checked
        against the batch root; should the nodes ever disagree with it (a damaged row),
        the proofs come from the full tree."""
        proofs = self.store.batch_proofs(batch.stream, batch.seq, leaves, batch.leaf_count)
        if proofs is not None and not self._lead_to_root(batch, leaves, proofs):
            log.error(
                "proofs of batch %s/%d from its stored nodes and leaves disagree with its root",
                batch.stream,
                batch.seq,
            )
            proofs = None
        if proofs is None:  # sealed before nodes were stored, or they are damaged
            tree = self._tree(batch.stream, batch.seq, batch.root)
            return {index: tree.proof(index) for index in leaves}
        return proofs

    @staticmethod
    def _lead_to_root(
        batch: BatchRow, leaves: dict[int, str], proofs: dict[int, list[ProofStep]]
    ) -> bool:
        root = bytes.fromhex(batch.root)
        try:
            for index, proof in proofs.items():
                verify_inclusion(
                    leaf=bytes.fromhex(leaves[index]),
                    index=index,
                    leaf_count=batch.leaf_count,
                    proof=proof,
                    root=root,
                )
        except InvalidInput:
            return False
        return True

    def bundle(self, event_id: str) -> ProofBundle:
        """The proof bundle of an anchored event; NotAnchored until its batch is anchored."""
        event = self.store.event(event_id)
        if event.batch_seq is None or event.leaf_index is None:
            raise NotAnchored(f"event {event_id!r} is not in a batch yet")
        batch = self.store.batch(event.stream, event.batch_seq)
        if not _anchored(batch):
            raise NotAnchored(
                f"batch {batch.seq} of {event.stream!r} is {batch.state}, not anchored"
            )
        proofs = self._proofs(batch, {event.leaf_index: event.leaf})
        return self._bundle(event, batch, proofs[event.leaf_index])

    def bundles(self, event_ids: Iterable[str]) -> dict[str, ProofBundle]:
        """The bundles of those of ``event_ids`` that are anchored, by id; a handful of
        queries for them all (a history page's fifty), not four for each."""
        events = self.store.events(list(set(event_ids)))
        # (stream, seq, leaf index) of each event that is in a batch
        placed = {
            e.event_id: (e.stream, e.batch_seq, e.leaf_index)
            for e in events.values()
            if e.batch_seq is not None and e.leaf_index is not None
        }
        batches = self.store.batches((stream, seq) for stream, seq, _ in placed.values())
        by_batch: dict[tuple[str, int], dict[int, EventRow]] = defaultdict(dict)
        for event_id, (stream, seq, index) in placed.items():
            batch = batches.get((stream, seq))
            if batch is not None and _anchored(batch):
                by_batch[(stream, seq)][index] = events[event_id]
        out: dict[str, ProofBundle] = {}
        for key, members in by_batch.items():
            batch = batches[key]
            proofs = self._proofs(batch, {index: e.leaf for index, e in members.items()})
            for index, event in members.items():
                out[event.event_id] = self._bundle(event, batch, proofs[index])
        return out

    def _bundle(self, event: EventRow, batch: BatchRow, proof: list[ProofStep]) -> ProofBundle:
        assert event.leaf_index is not None and batch.tx_hash is not None
        assert batch.block_number is not None
        return ProofBundle(
            # not model_validate_json: JCS writes the float 1e20 as plain digits, which only
            # loads_canonical reads back as the float it was (the leaf depends on it)
            envelope=SignedEnvelope.model_validate(loads_canonical(event.envelope)),
            leaf="0x" + event.leaf,
            batch=BatchRef(
                stream=batch.stream,
                stream_id="0x" + stream_id(batch.stream).hex(),
                seq=batch.seq,
                leaf_index=event.leaf_index,
                leaf_count=batch.leaf_count,
                root="0x" + batch.root,
                proof=proof,
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
