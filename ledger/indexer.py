"""The chain indexer: fourflow's contract logs, followed into the store.

The indexer reads every log of the deployment's contracts (anchors, receipts, prices,
pledges: issues, transfers, pledges, disbursements, repayments, releases, facts,
freezes, margin calls, roles) block range by block range, only up to ``confirmations``
blocks behind the head, and keeps them in ``chain_logs`` with their block hash. Its
cursor (the last block it indexed, by number and hash) lives in the store, so a
restarted indexer resumes where it stopped.

Before each pass it checks that the block under its cursor is still the chain's block
at that height. If it is not (a reorganization deeper than the confirmation depth, or a
node restored from an older backup), it walks back through the blocks it indexed logs
from until it finds one the chain still has, deletes everything above it and indexes
forward again. With no common block left it starts over from the deployment block:
the index is always rebuildable from the chain alone (``Indexer.rebuild``).

    chain_logs      one row per log: position, block hash and time, contract, event,
                    decoded arguments, raw topics and data; receipt and pledge ids
    chain_blocks    the hash of every block a log was indexed from (for rewinds)
    chain_cursor    the last indexed block (number and hash)

``ChainIndex`` answers reads from these rows: logs per receipt or pledge, and the state
of every receipt, pledge and role replayed from them (``ledger.replay``).
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, UniqueConstraint, delete
from sqlmodel import Field, Session, SQLModel, col, func, or_, select

from ledger.chain import Chain, Deployment
from ledger.chainlog import ChainLog, LogReader
from ledger.errors import LedgerError, StoreError
from ledger.replay import ChainState, replay
from ledger.store import Store

__all__ = ["ChainIndex", "ChainLogRow", "IndexPass", "Indexer"]

log = logging.getLogger("fourflow.indexer")

_BIG = BigInteger().with_variant(Integer, "sqlite")
_CURSOR = "chain"


class ChainLogRow(SQLModel, table=True):
    __tablename__ = "chain_logs"
    __table_args__ = (
        UniqueConstraint("block_number", "log_index", name="uq_chain_logs_position"),
        Index("ix_chain_logs_receipt", "receipt_id", "block_number", "log_index"),
        Index("ix_chain_logs_pledge", "pledge_id", "block_number", "log_index"),
    )

    id: int | None = Field(default=None, primary_key=True, sa_type=_BIG)
    block_number: int = Field(sa_type=_BIG)
    block_hash: str = Field(max_length=66)
    block_time_ms: int = Field(sa_type=_BIG)
    tx_hash: str = Field(max_length=66)
    log_index: int
    contract: str = Field(max_length=32)
    address: str = Field(max_length=42)
    event: str = Field(max_length=64)
    args: str  # JSON, keys sorted
    topics: str  # JSON list of 0x hex
    data: str
    receipt_id: int | None = Field(default=None, sa_type=_BIG)
    pledge_id: int | None = Field(default=None, sa_type=_BIG)

    def to_log(self) -> ChainLog:
        return ChainLog(
            block_number=self.block_number,
            block_hash=self.block_hash,
            block_time_ms=self.block_time_ms,
            tx_hash=self.tx_hash,
            log_index=self.log_index,
            contract=self.contract,
            address=self.address,
            event=self.event,
            args=json.loads(self.args),
            topics=tuple(json.loads(self.topics)),
            data=self.data,
        )


class ChainBlockRow(SQLModel, table=True):
    __tablename__ = "chain_blocks"

    number: int = Field(primary_key=True, sa_type=_BIG)
    hash: str = Field(max_length=66)


class ChainCursorRow(SQLModel, table=True):
    __tablename__ = "chain_cursor"

    name: str = Field(primary_key=True, max_length=32)
    block_number: int = Field(sa_type=_BIG)
    block_hash: str = Field(max_length=66)


def _subjects(log: ChainLog) -> tuple[int | None, int | None]:
    """(receipt id, pledge id) a log is about, where it names them."""
    args = log.args
    receipt = args.get("receiptId")
    if log.contract == "ReceiptRegistry" and log.event == "Transfer":
        receipt = args.get("tokenId")
    pledge = args.get("pledgeId") or None
    if log.event == "PledgeOpened":
        receipt = args["terms"]["receiptId"]
    return receipt, pledge


def _row(log: ChainLog) -> ChainLogRow:
    receipt, pledge = _subjects(log)
    return ChainLogRow(
        block_number=log.block_number,
        block_hash=log.block_hash,
        block_time_ms=log.block_time_ms,
        tx_hash=log.tx_hash,
        log_index=log.log_index,
        contract=log.contract,
        address=log.address,
        event=log.event,
        args=log.args_json(),
        topics=json.dumps(list(log.topics)),
        data=log.data,
        receipt_id=receipt,
        pledge_id=pledge,
    )


@dataclass(frozen=True)
class IndexPass:
    """What one pass did."""

    from_block: int
    to_block: int  # from_block - 1 when there was nothing new
    logs: int
    rewound_to: int | None = None  # the block a rewind went back to, if one happened
    head: int = 0
    busy: bool = False  # another process held the indexer's claim: nothing was done

    @property
    def caught_up(self) -> bool:
        return self.to_block >= self.head


class Indexer:
    """Follows the deployment's contract logs into the store."""

    TABLES = (ChainLogRow, ChainBlockRow, ChainCursorRow)

    def __init__(
        self,
        store: Store,
        chain: Chain,
        deployment: Deployment,
        *,
        confirmations: int = 0,
        max_blocks_per_pass: int = 5_000,
    ) -> None:
        if confirmations < 0:
            raise ValueError("confirmations must be 0 or more")
        self.store = store
        self.chain = chain
        self.deployment = deployment
        self.confirmations = confirmations
        self.max_blocks = max_blocks_per_pass
        self.reader = LogReader.for_deployment(chain, deployment)

    # --- the cursor ----------------------------------------------------------------------

    def cursor(self) -> tuple[int, str] | None:
        with self.store.session() as session:
            row = session.get(ChainCursorRow, _CURSOR)
            return None if row is None else (row.block_number, row.block_hash)

    def _rewind(self) -> int | None:
        """Back to the newest indexed block the chain still has; returns its number, or
        None when none is left (the index is then empty)."""
        with self.store.session() as session:
            numbers = session.exec(
                select(ChainBlockRow.number, ChainBlockRow.hash).order_by(
                    col(ChainBlockRow.number).desc()
                )
            ).all()
        keep: tuple[int, str] | None = None
        for number, block_hash in numbers:
            if self.reader.block_hash(number) == block_hash:
                keep = (number, block_hash)
                break
        with self.store.session() as session:
            above = keep[0] if keep else -1
            session.exec(delete(ChainLogRow).where(col(ChainLogRow.block_number) > above))
            session.exec(delete(ChainBlockRow).where(col(ChainBlockRow.number) > above))
            cursor = session.get(ChainCursorRow, _CURSOR)
            if keep is None:
                if cursor is not None:
                    session.delete(cursor)
            else:
                cursor = cursor or ChainCursorRow(name=_CURSOR, block_number=0, block_hash="")
                cursor.block_number, cursor.block_hash = keep
                session.add(cursor)
            session.commit()
        return None if keep is None else keep[0]

    # --- passes ---------------------------------------------------------------------------

    def run_once(self) -> IndexPass:
        """Index the next range of confirmed blocks (at most ``max_blocks_per_pass``).

        Several API processes may follow one chain into one database: a pass runs only
        under the store's ``indexer`` claim; without it, the pass is empty (another
        process is indexing the same logs)."""
        with self.store.claim("indexer") as mine:
            if not mine:
                cursor = self.cursor()
                at = cursor[0] if cursor is not None else self.deployment.block_number - 1
                return IndexPass(at + 1, at, 0, None, at, busy=True)
            return self._pass()

    def _pass(self) -> IndexPass:
        rewound: int | None = None
        cursor = self.cursor()
        if cursor is not None and self.reader.block_hash(cursor[0]) != cursor[1]:
            rewound = self._rewind()
            if rewound is None:
                rewound = self.deployment.block_number - 1
            cursor = self.cursor()
        start = cursor[0] + 1 if cursor is not None else self.deployment.block_number
        head = self.chain.head
        end = min(head - self.confirmations, start + self.max_blocks - 1)
        if end < start:
            return IndexPass(start, start - 1, 0, rewound, head)
        end_hash = self.reader.block_hash(end)
        logs = list(self.reader.read(start, end))
        # the range's last block before and after the read: a reorganization during the
        # read changes it (block hashes chain), and the pass is then dropped and retried
        if end_hash is None or self.reader.block_hash(end) != end_hash:
            return IndexPass(start, start - 1, 0, rewound, head)
        with self.store.session() as session:
            for log in logs:
                session.add(_row(log))
            for number, block_hash in {(g.block_number, g.block_hash) for g in logs}:
                session.merge(ChainBlockRow(number=number, hash=block_hash))
            session.merge(ChainBlockRow(number=end, hash=end_hash))
            session.merge(ChainCursorRow(name=_CURSOR, block_number=end, block_hash=end_hash))
            session.commit()
        return IndexPass(start, end, len(logs), rewound, head)

    def catch_up(self, *, wait_s: float = 30.0) -> list[IndexPass]:
        """Run passes until the confirmed head is reached. While another process holds
        the indexer's claim, wait for it (up to ``wait_s``; then the last pass says
        ``busy``): its passes bring the same index up to date."""
        passes: list[IndexPass] = []
        deadline = time.monotonic() + wait_s
        while True:
            done = self.run_once()
            passes.append(done)
            if done.busy:
                if time.monotonic() > deadline:
                    return passes
                time.sleep(0.1)
                continue
            if done.to_block < done.from_block or done.to_block >= done.head - self.confirmations:
                return passes

    def run_forever(self, stop: threading.Event, *, interval_s: float = 1.0) -> None:
        failing: str | None = None  # logged when it starts and when it ends, not every tick
        while not stop.is_set():
            try:
                done: IndexPass | None = self.run_once()
                if failing is not None:
                    log.info("indexing again after: %s", failing)
                    failing = None
            except Exception as exc:  # a node hiccup or a database blip: try again next tick
                done = None
                message = exc.message if isinstance(exc, LedgerError) else repr(exc)
                if failing is None:
                    log.warning("indexing failed, retrying every %.0f s: %s", interval_s, message)
                failing = message
            if done is None or done.to_block < done.from_block or done.caught_up:
                stop.wait(interval_s)

    def rebuild(self, *, wait_s: float = 60.0) -> list[IndexPass]:
        """Forget everything indexed and read the chain again from the deployment block,
        all under the indexer's claim (waited for up to ``wait_s``): a pass of another
        process must not write its range into the emptied index."""
        deadline = time.monotonic() + wait_s
        while True:
            with self.store.claim("indexer") as mine:
                if mine:
                    with self.store.session() as session:
                        for table in self.TABLES:
                            session.exec(delete(table))
                        session.commit()
                    passes: list[IndexPass] = []
                    while True:
                        done = self._pass()
                        passes.append(done)
                        caught_up = done.to_block >= done.head - self.confirmations
                        if done.to_block < done.from_block or caught_up:
                            return passes
            if time.monotonic() > deadline:
                raise StoreError(
                    f"another process kept indexing for {wait_s:.0f} s; stop it (or wait) "
                    "and rebuild again"
                )
            time.sleep(0.1)


class ChainIndex:
    """Reads over the indexed logs."""

    def __init__(self, store: Store, deployment: Deployment) -> None:
        self.store = store
        self.deployment = deployment
        self._lock = threading.Lock()
        self._state: tuple[tuple[int, int, str], ChainState] | None = None

    def _version(self, session: Session) -> tuple[int, int, str]:
        """Changes whenever the index does: log count, last row id, and the cursor's
        block hash (a rewind can re-insert as many rows under reused ids)."""
        count, last = session.exec(select(func.count(), func.max(ChainLogRow.id))).one()
        cursor = session.get(ChainCursorRow, _CURSOR)
        return int(count), int(last or 0), "" if cursor is None else cursor.block_hash

    def state(self) -> ChainState:
        """Receipts, pledges and roles replayed from every indexed log (cached until the
        index changes)."""
        with self.store.session() as session:
            version = self._version(session)
            with self._lock:
                if self._state is not None and self._state[0] == version:
                    return self._state[1]
            rows = session.exec(
                select(ChainLogRow).order_by(
                    col(ChainLogRow.block_number), col(ChainLogRow.log_index)
                )
            ).all()
            state = replay(row.to_log() for row in rows)
        with self._lock:
            self._state = (version, state)
        return state

    def logs(
        self,
        *,
        receipt_ids: Sequence[int] = (),
        pledge_ids: Sequence[int] = (),
        events: Sequence[str] = (),
    ) -> list[ChainLog]:
        """Logs about any of these receipts or pledges, in chain order."""
        if not receipt_ids and not pledge_ids:
            return []
        with self.store.session() as session:
            query = select(ChainLogRow).where(
                or_(
                    col(ChainLogRow.receipt_id).in_(list(receipt_ids)),
                    col(ChainLogRow.pledge_id).in_(list(pledge_ids)),
                )
            )
            if events:
                query = query.where(col(ChainLogRow.event).in_(list(events)))
            rows = session.exec(
                query.order_by(col(ChainLogRow.block_number), col(ChainLogRow.log_index))
            ).all()
            return [row.to_log() for row in rows]

    def logs_of_event(self, event: str) -> list[ChainLog]:
        with self.store.session() as session:
            rows = session.exec(
                select(ChainLogRow)
                .where(ChainLogRow.event == event)
                .order_by(col(ChainLogRow.block_number), col(ChainLogRow.log_index))
            ).all()
            return [row.to_log() for row in rows]

    def all_logs(self) -> list[ChainLog]:
        with self.store.session() as session:
            rows = session.exec(
                select(ChainLogRow).order_by(
                    col(ChainLogRow.block_number), col(ChainLogRow.log_index)
                )
            ).all()
            return [row.to_log() for row in rows]

    def indexed_to(self) -> int | None:
        with self.store.session() as session:
            row = session.get(ChainCursorRow, _CURSOR)
            return None if row is None else row.block_number

    def describe(self) -> dict[str, Any]:
        with self.store.session() as session:
            count, _, _ = self._version(session)
        return {"logs": count, "indexed_to": self.indexed_to()}
