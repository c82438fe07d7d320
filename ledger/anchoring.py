"""Sealing pending events into batches and anchoring their roots, crash-safely.

The state machine of a batch, each arrow one committed database transaction:

    (pending events) --seal--> sealed --send tx, record hash--> sent --receipt--> anchored

Several workers may run against one database. A worker works on a stream only while it
holds the stream's claim (``Store.claim("anchor:<stream>")``: a row lock taken with
SKIP LOCKED on PostgreSQL, a file lock on SQLite), so exactly one worker seals and
anchors each stream at a time and the others move on to other streams; the claim dies
with its holder, even under SIGKILL. Transactions are nonce-managed per key through
the store (``Chain.send``), so workers sharing the oracle key never clash.

Before it sends anything for a batch, ``Anchorer`` reads the contract: a batch whose
root is already in storage (sent by a run that died before recording it) is marked
anchored from the chain's own log, never sent twice. A sent transaction the node no
longer knows is sent again. Each stream's anchors are also checked against the chain's
stream head: batches the store holds as anchored beyond it (a node restored from an
older state, or a reorganization) go back to sealed and are anchored again, with the
same roots. The contract's gap-free sequence check is the backstop.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

from eth_account.signers.local import LocalAccount
from hexbytes import HexBytes

from ledger.chain import AnchorRegistry
from ledger.errors import ChainError, LedgerError, StoreError, summary_of
from ledger.faults import crashpoint
from ledger.ops import default_worker_id, heartbeat
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
    lost: list[tuple[str, int]] = field(default_factory=list)  # anchors gone from the chain
    busy: list[str] = field(default_factory=list)  # streams another worker holds
    deferred: list[tuple[str, str]] = field(default_factory=list)  # (stream, error summary)


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
        recheck_s: float = 10.0,
    ) -> None:
        self.store = store
        self.registry = registry
        self.oracle = oracle
        self.max_batch = max_batch
        self.max_age_s = max_age_s
        self.receipt_timeout_s = receipt_timeout_s
        self.recheck_s = recheck_s  # how often an idle stream's anchors are re-read
        self._checked: dict[str, float] = {}  # stream -> monotonic time of its last check
        # stream -> (monotonic time before which it is not tried again, its last delay):
        # a stream that fails backs off on its own, the healthy ones keep their pace
        self._retry: dict[str, tuple[float, float]] = {}

    def run_once(self, *, force: bool = False) -> RunSummary:
        """One pass over every stream this worker can claim: check its anchors against
        the chain, seal what is due (everything pending if ``force``), anchor."""
        summary = RunSummary()
        backlog = self.store.backlog()
        unfinished = {b.stream for b in self.store.unfinished_batches()}
        now = time.monotonic()
        for stream in self.store.streams():
            has_work = stream in backlog or stream in unfinished
            if not has_work and now - self._checked.get(stream, -1e9) < self.recheck_s:
                continue
            if not force and self._retry.get(stream, (0.0, 0.0))[0] > now:
                continue  # failed lately: its own backoff
            with self.store.claim(f"anchor:{stream}") as mine:
                if not mine:
                    summary.busy.append(stream)
                    continue
                crashpoint("after_claim")
                try:
                    self._work_on(stream, summary, force=force)
                    self._retry.pop(stream, None)
                except LedgerError as exc:  # this stream's trouble, not the other streams'
                    delay = min(max(self._retry.get(stream, (0.0, 0.25))[1] * 2, 0.5), 30.0)
                    self._retry[stream] = (time.monotonic() + delay, delay)
                    log.warning(
                        "anchoring %s deferred %.1f s: %s",
                        stream,
                        delay,
                        exc,
                        extra={"stream": stream},
                    )
                    summary.deferred.append((stream, summary_of(exc)))
        return summary

    def run_forever(self, stop: threading.Event, *, poll_s: float = 0.5) -> None:
        """Passes until ``stop`` is set. A stream that fails (the node away, a conflict)
        backs off on its own, doubling to 30 s, and is retried, so a node that goes away
        is caught up with later; a pass that fails as a whole (the store away) backs the
        worker off the same way."""
        backoff = poll_s
        worker_id, started_ms = default_worker_id("anchor"), int(time.time() * 1000)
        while not stop.is_set():
            error: str | None = None
            try:
                summary = self.run_once()
                for stream, seq, leaves in summary.sealed:
                    log.info(
                        "sealed %s/%d with %d events",
                        stream,
                        seq,
                        leaves,
                        extra={"stream": stream, "seq": seq},
                    )
                for stream, seq, gas in summary.anchored:
                    log.info(
                        "anchored %s/%d (%d gas)",
                        stream,
                        seq,
                        gas,
                        extra={"stream": stream, "seq": seq, "gas": gas},
                    )
                if summary.deferred:
                    error = "; ".join(f"{stream}: {why}" for stream, why in summary.deferred)
                backoff = poll_s
            except LedgerError as exc:
                log.error("anchoring loop: %s", exc)
                error = summary_of(exc)
                backoff = min(backoff * 2, 30.0)
            try:
                heartbeat(
                    self.store, worker_id, kind="anchor", started_at_ms=started_ms, error=error
                )
            except StoreError as exc:
                log.warning("heartbeat not recorded: %s", exc.message)
            stop.wait(backoff)

    # --- one stream, under its claim ---------------------------------------------------

    def _work_on(self, stream: str, summary: RunSummary, *, force: bool) -> None:
        for seq in self._recheck(stream):
            summary.lost.append((stream, seq))
        for batch in self._seal_due(stream, force=force):
            summary.sealed.append((batch.stream, batch.seq, batch.leaf_count))
        for batch in self.store.unfinished_batches(stream):
            gas = self._finish(batch)
            summary.anchored.append((batch.stream, batch.seq, gas))

    def _recheck(self, stream: str) -> list[int]:
        """Compare the stream's anchors with the chain's stream head; batches anchored in
        the store but missing on the chain go back to sealed. Returns their seqs."""
        head = self.registry.head_of(stream)
        self._checked[stream] = time.monotonic()
        last = self.store.last_anchored(stream)
        if last is None:
            return []
        if last.seq < head.next_seq:
            on_chain = self.registry.batch_of(stream=stream, seq=last.seq)
            if on_chain is None or on_chain.root.hex() != last.root:
                found = "nothing" if on_chain is None else f"root 0x{on_chain.root.hex()}"
                raise AnchorConflict(
                    f"{stream}/{last.seq}: the chain holds {found}, the store anchored "
                    f"0x{last.root}: this registry's stream was anchored by someone else"
                )
            return []
        lost = self.store.unanchor_from(stream, head.next_seq)
        log.warning(
            "%s: %d anchored batch(es) from seq %d are no longer on the chain (a node "
            "restored from an older state, or a reorganization); anchoring them again",
            stream,
            len(lost),
            head.next_seq,
        )
        return lost

    def _seal_due(self, stream: str, *, force: bool) -> list[BatchRow]:
        sealed: list[BatchRow] = []
        backlog = self.store.backlog(stream).get(stream)
        if backlog is None:
            return sealed
        count, oldest_ms = backlog
        now_ms = time.time() * 1000
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
        crashpoint("after_anchored")
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
