"""Sealing pending events into batches and anchoring their roots, crash-safely.

The state machine of a batch, each arrow one committed database transaction:

    (pending events) --seal--> sealed --send tx, record hash--> sent --receipt--> anchored

Before it sends anything for a batch, ``Anchorer`` reads the contract: a batch whose
root is already in storage (sent by a run that died before recording it) is marked
anchored from the chain's own log, never sent twice. A sent transaction the node no
longer knows is sent again. The contract's gap-free sequence check is the backstop.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes

from ledger.chain import AnchorRegistry
from ledger.errors import ChainError, LedgerError
from ledger.faults import crashpoint
from ledger.store import SENT, BatchRow, Store

__all__ = ["AnchorConflict", "Anchorer", "RunSummary"]

log = logging.getLogger("fourflow.anchoring")


class AnchorConflict(LedgerError):
    """The chain holds a different root for a batch than the store: stop, never overwrite."""

    code = "anchor_conflict"


@dataclass
class RunSummary:
    sealed: list[tuple[str, int, int]] = field(default_factory=list)  # (stream, seq, leaves)
    anchored: list[tuple[str, int, int]] = field(default_factory=list)  # (stream, seq, gas)


class Anchorer:
    """Seals batches by size or age and anchors them in the anchor registry."""

    def __init__(
        self,
        store: Store,
        registry: AnchorRegistry,
        oracle: LocalAccount,
        *,
        max_batch: int = 1000,
        max_age_s: float = 5.0,
        receipt_timeout_s: float = 60.0,
    ) -> None:
        self.store = store
        self.registry = registry
        self.oracle = oracle
        self.max_batch = max_batch
        self.max_age_s = max_age_s
        self.receipt_timeout_s = receipt_timeout_s

    def seal_due(self, *, force: bool = False) -> list[BatchRow]:
        """Seal every stream whose backlog is full or old enough (or any backlog if forced)."""
        sealed = []
        now_ms = time.time() * 1000
        for stream, (count, oldest_ms) in sorted(self.store.backlog().items()):
            due = force or count >= self.max_batch or now_ms - oldest_ms >= self.max_age_s * 1000
            while due:
                batch = self.store.seal(stream, max_events=self.max_batch)
                if batch is None:
                    break
                crashpoint("after_seal")
                sealed.append(batch)
                count -= batch.leaf_count
                due = (force and count > 0) or count >= self.max_batch
        return sealed

    def anchor_unfinished(self) -> list[tuple[BatchRow, int]]:
        """Take every sealed or sent batch to anchored, in sequence order per stream."""
        done = []
        blocked: set[str] = set()
        for batch in self.store.unfinished_batches():
            if batch.stream in blocked:
                continue
            try:
                done.append((batch, self._finish(batch)))
            except ChainError as exc:
                log.warning("anchoring %s/%d deferred: %s", batch.stream, batch.seq, exc)
                blocked.add(batch.stream)  # later batches of the stream must wait for this one
        return done

    def run_once(self, *, force: bool = False) -> RunSummary:
        summary = RunSummary()
        for b in self.seal_due(force=force):
            summary.sealed.append((b.stream, b.seq, b.leaf_count))
        for b, gas in self.anchor_unfinished():
            summary.anchored.append((b.stream, b.seq, gas))
        return summary

    def run_forever(self, stop: threading.Event, *, poll_s: float = 0.5) -> None:
        backoff = poll_s
        while not stop.is_set():
            try:
                summary = self.run_once()
                for stream, seq, leaves in summary.sealed:
                    log.info("sealed %s/%d with %d events", stream, seq, leaves)
                for stream, seq, gas in summary.anchored:
                    log.info("anchored %s/%d (%d gas)", stream, seq, gas)
                backoff = poll_s
            except LedgerError as exc:
                log.error("anchoring loop: %s", exc)
                backoff = min(backoff * 2, 30.0)
            stop.wait(backoff)

    # --- one batch --------------------------------------------------------------------

    def _finish(self, batch: BatchRow) -> int:
        root = bytes.fromhex(batch.root)
        if self._adopt_if_on_chain(batch, root):
            return 0
        if batch.state == SENT and batch.tx_hash is not None:
            tx_hash = bytes.fromhex(batch.tx_hash)
            if self.registry.chain.receipt(tx_hash) is not None or self._pending(tx_hash):
                return self._await(batch, tx_hash)
            log.warning(
                "tx 0x%s of %s/%d is gone; sending again", batch.tx_hash, batch.stream, batch.seq
            )
        tx_hash = self.registry.send_anchor(
            stream=batch.stream,
            seq=batch.seq,
            root=root,
            leaf_count=batch.leaf_count,
            first_event_time=batch.first_event_time_ms,
            last_event_time=batch.last_event_time_ms,
            oracle=self.oracle,
        )
        crashpoint("after_send")
        self.store.mark_sent(batch.stream, batch.seq, tx_hash=tx_hash)
        crashpoint("after_record_send")
        return self._await(batch, tx_hash)

    def _pending(self, tx_hash: bytes) -> bool:
        chain = self.registry.chain
        try:
            chain.call(
                "looking up a transaction", lambda: chain.w3.eth.get_transaction(HexBytes(tx_hash))
            )
        except ChainError:
            return False
        return True

    def _await(self, batch: BatchRow, tx_hash: bytes) -> int:
        receipt = self.registry.chain.wait(tx_hash, timeout=self.receipt_timeout_s)
        self.store.mark_anchored(
            batch.stream,
            batch.seq,
            tx_hash=tx_hash,
            block_number=receipt.block_number,
            gas_used=receipt.gas_used,
        )
        return receipt.gas_used

    def _adopt_if_on_chain(self, batch: BatchRow, root: bytes) -> bool:
        on_chain = self.registry.batch_of(stream=batch.stream, seq=batch.seq)
        if on_chain is None:
            return False
        if on_chain.root != root or on_chain.leaf_count != batch.leaf_count:
            raise AnchorConflict(
                f"{batch.stream}/{batch.seq}: chain holds root 0x{on_chain.root.hex()} "
                f"({on_chain.leaf_count} leaves), store sealed 0x{batch.root} ({batch.leaf_count})"
            )
        tx_hash = self._anchoring_tx(batch, on_chain.anchored_block)
        receipt = self.registry.chain.receipt(tx_hash)
        self.store.mark_anchored(
            batch.stream,
            batch.seq,
            tx_hash=tx_hash,
            block_number=on_chain.anchored_block,
            gas_used=receipt.gas_used if receipt else None,
        )
        log.info(
            "adopted %s/%d, already anchored in block %d",
            batch.stream,
            batch.seq,
            on_chain.anchored_block,
        )
        return True

    def _anchoring_tx(self, batch: BatchRow, block: int) -> bytes:
        for entry in self.registry.anchored_events(from_block=block, to_block=block):
            if entry["stream"] == batch.stream and entry["seq"] == batch.seq:
                tx_hash: bytes = entry["tx_hash"]
                return tx_hash
        raise ChainError(f"no BatchAnchored log for {batch.stream}/{batch.seq} in block {block}")
