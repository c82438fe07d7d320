"""The event store: sqlmodel tables on SQLite (default, WAL) or any SQLAlchemy URL.

Events are written in one transaction per submission and committed before the API
answers, so a 2xx means durable. A batch is sealed in one transaction that creates the
batch row and stamps every event in it with (seq, leaf index); anchoring then only
moves the batch through ``sealed → sent → anchored``. SQLAlchemy's exceptions are
translated into ``StoreError`` here and never leave this module.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, event, func, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Field, Session, SQLModel, col, create_engine, select

from ledger.canonical import canonical_json, event_digest, leaf_hash
from ledger.errors import Conflict, LedgerError, NotFound, StoreError
from ledger.merkle import build_tree
from ledger.models import SignedEnvelope

__all__ = [
    "BatchRow",
    "EventAssetRow",
    "EventRow",
    "Receipt",
    "Store",
]

SEALED, SENT, ANCHORED = "sealed", "sent", "anchored"


_BIG = BigInteger().with_variant(Integer, "sqlite")  # 64-bit; SQLite's INTEGER already is


def _now_ms() -> int:
    return int(time.time() * 1000)


class EventRow(SQLModel, table=True):
    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_pending", "stream", "batch_seq", "position"),
        Index("ix_events_batch", "stream", "batch_seq", "leaf_index"),
    )

    position: int | None = Field(default=None, primary_key=True, sa_type=_BIG)  # arrival order
    event_id: str = Field(unique=True, max_length=200)
    stream: str = Field(max_length=64)
    kind: str = Field(max_length=64)
    submitter: str = Field(max_length=42)
    event_time_ms: int = Field(sa_type=_BIG)
    digest: str = Field(max_length=64)  # hex of ledger.canonical.event_digest(body)
    leaf: str = Field(max_length=64)  # hex of ledger.canonical.leaf_hash(envelope)
    envelope: str  # RFC 8785 JSON of the signed envelope: the leaf's preimage body
    received_at_ms: int = Field(sa_type=_BIG)
    batch_seq: int | None = Field(default=None)
    leaf_index: int | None = Field(default=None)


class EventAssetRow(SQLModel, table=True):
    __tablename__ = "event_assets"

    asset_id: str = Field(primary_key=True, max_length=200)
    event_id: str = Field(primary_key=True, max_length=200)


class BatchRow(SQLModel, table=True):
    __tablename__ = "batches"

    stream: str = Field(primary_key=True, max_length=64)
    seq: int = Field(primary_key=True)
    root: str = Field(max_length=64)
    leaf_count: int
    first_event_time_ms: int = Field(sa_type=_BIG)
    last_event_time_ms: int = Field(sa_type=_BIG)
    state: str = Field(default=SEALED, max_length=16)
    tx_hash: str | None = Field(default=None, max_length=64)
    block_number: int | None = Field(default=None, sa_type=_BIG)
    gas_used: int | None = Field(default=None, sa_type=_BIG)
    sealed_at_ms: int = Field(sa_type=_BIG)
    anchored_at_ms: int | None = Field(default=None, sa_type=_BIG)


@dataclass(frozen=True)
class Receipt:
    """What the API answers for each event of an accepted submission."""

    event_id: str
    stream: str
    digest: str
    leaf: str
    duplicate: bool


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=FULL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class Store:
    """All of fourflow's reads and writes of the database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str) -> Store:
        """Open (and create the tables of) the database at an SQLAlchemy ``url``."""
        try:
            if url.startswith("sqlite"):
                engine = create_engine(
                    url, connect_args={"check_same_thread": False, "timeout": 10}
                )
                event.listen(engine, "connect", _sqlite_pragmas)
            else:
                engine = create_engine(url, pool_pre_ping=True)
            SQLModel.metadata.create_all(engine)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open the store at {_redact(url)}: {exc}") from exc
        return cls(engine)

    def create_tables(self, *models: type[SQLModel]) -> None:
        """Create the tables of ``models`` (other ledger modules' rows) if missing."""
        tables = [model.__table__ for model in models]  # type: ignore[attr-defined]
        try:
            SQLModel.metadata.create_all(self.engine, tables=tables)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot create tables in the store: {exc}") from exc

    def close(self) -> None:
        self.engine.dispose()

    @contextmanager
    def _session(self) -> Iterator[Session]:
        try:
            with Session(self.engine, expire_on_commit=False) as session:
                yield session
        except LedgerError:
            raise
        except SQLAlchemyError as exc:
            raise StoreError(f"database error: {exc.__class__.__name__}: {exc}") from exc

    def session(self) -> AbstractContextManager[Session]:
        """A session whose database errors come out as StoreError, for the ledger's
        other tables (ledger.flows); everything else goes through Store's methods."""
        return self._session()

    def ping(self) -> None:
        with self._session() as session:
            session.exec(select(text("1")))

    # --- submissions ---------------------------------------------------------------

    def accept(
        self,
        envelopes: Sequence[SignedEnvelope],
        *,
        same_id_is_duplicate: bool = False,
        related: Callable[[Session, list[Receipt]], None] | None = None,
    ) -> list[Receipt]:
        """Store a submission's envelopes in one transaction; all or nothing.

        An event id already stored with the same body is a duplicate (answered, not
        stored again); with a different body it is a Conflict and nothing is stored,
        unless ``same_id_is_duplicate``: for ids that are content hashes of their own
        (the GS1 event hash), another spelling of the same event is a duplicate too.
        ``related(session, receipts)`` writes rows derived from the new events (the
        EPCIS index, flow entries, custody) in the same transaction, so a crash keeps
        both or neither.
        """
        received = _now_ms()
        rows: list[EventRow] = []
        for env in envelopes:
            body = env.event.model_dump(mode="json")
            envelope_json = env.model_dump(mode="json")
            rows.append(
                EventRow(
                    event_id=env.event.event_id,
                    stream=env.event.stream,
                    kind=env.event.kind,
                    submitter=env.event.submitter,
                    event_time_ms=env.event.event_time_ms,
                    digest=event_digest(body).hex(),
                    leaf=leaf_hash(envelope_json).hex(),
                    envelope=canonical_json(envelope_json).decode("utf-8"),
                    received_at_ms=received,
                )
            )
        with self._session() as session:
            ids = [r.event_id for r in rows]
            existing = {
                e.event_id: e
                for e in session.exec(select(EventRow).where(col(EventRow.event_id).in_(ids)))
            }
            receipts = []
            for position, row in enumerate(rows):
                old = existing.get(row.event_id)
                if old is not None and old.digest != row.digest and not same_id_is_duplicate:
                    raise Conflict(
                        f"event_id {row.event_id!r} is already stored with different content",
                        field=f"events[{position}].event_id",
                    )
                duplicate = old is not None
                stored = old if old is not None else row
                receipts.append(
                    Receipt(row.event_id, row.stream, stored.digest, stored.leaf, duplicate)
                )
                if not duplicate:
                    session.add(row)
                    env = envelopes[position]
                    for asset in env.event.asset_ids:
                        session.add(EventAssetRow(asset_id=asset, event_id=row.event_id))
            if related is not None:
                session.flush()
                related(session, receipts)
            session.commit()
        return receipts

    def stored_ids(self, event_ids: Sequence[str]) -> set[str]:
        """Which of ``event_ids`` are already stored."""
        with self._session() as session:
            return set(
                session.exec(select(EventRow.event_id).where(col(EventRow.event_id).in_(event_ids)))
            )

    def event(self, event_id: str) -> EventRow:
        with self._session() as session:
            row = session.exec(select(EventRow).where(EventRow.event_id == event_id)).first()
        if row is None:
            raise NotFound(f"no event with id {event_id!r}")
        return row

    # --- batches -------------------------------------------------------------------

    def backlog(self) -> dict[str, tuple[int, int]]:
        """Per stream with pending events: (count, oldest received_at_ms)."""
        query = (
            select(EventRow.stream, func.count(), func.min(EventRow.received_at_ms))
            .where(col(EventRow.batch_seq).is_(None))
            .group_by(EventRow.stream)
        )
        with self._session() as session:
            return {stream: (int(n), int(oldest)) for stream, n, oldest in session.exec(query)}

    def seal(self, stream: str, *, max_events: int) -> BatchRow | None:
        """Seal up to ``max_events`` pending events of ``stream`` into its next batch."""
        with self._session() as session:
            pending = session.exec(
                select(EventRow)
                .where(EventRow.stream == stream, col(EventRow.batch_seq).is_(None))
                .order_by(col(EventRow.position))
                .limit(max_events)
            ).all()
            if not pending:
                return None
            last = session.exec(
                select(func.max(BatchRow.seq)).where(BatchRow.stream == stream)
            ).one()
            seq = 0 if last is None else int(last) + 1
            tree = build_tree([bytes.fromhex(e.leaf) for e in pending])
            times = [e.event_time_ms for e in pending]
            batch = BatchRow(
                stream=stream,
                seq=seq,
                root=tree.root.hex(),
                leaf_count=len(pending),
                first_event_time_ms=min(times),
                last_event_time_ms=max(times),
                sealed_at_ms=_now_ms(),
            )
            session.add(batch)
            for index, row in enumerate(pending):
                row.batch_seq = seq
                row.leaf_index = index
                session.add(row)
            session.commit()
        return batch

    def unfinished_batches(self) -> list[BatchRow]:
        """Sealed or sent batches, in (stream, seq) order: the anchoring to-do list."""
        with self._session() as session:
            return list(
                session.exec(
                    select(BatchRow)
                    .where(col(BatchRow.state).in_([SEALED, SENT]))
                    .order_by(col(BatchRow.stream), col(BatchRow.seq))
                )
            )

    def batch(self, stream: str, seq: int) -> BatchRow:
        with self._session() as session:
            row = session.get(BatchRow, (stream, seq))
        if row is None:
            raise NotFound(f"no batch {seq} in stream {stream!r}")
        return row

    def batch_leaves(self, stream: str, seq: int) -> list[bytes]:
        with self._session() as session:
            leaves = session.exec(
                select(EventRow.leaf)
                .where(EventRow.stream == stream, EventRow.batch_seq == seq)
                .order_by(col(EventRow.leaf_index))
            ).all()
        return [bytes.fromhex(leaf) for leaf in leaves]

    def batch_event_ids(
        self, stream: str, seq: int, *, limit: int = 1000, submitter: str | None = None
    ) -> list[str]:
        """The batch's event ids in leaf order; with ``submitter``, only that one's."""
        query = select(EventRow.event_id).where(
            EventRow.stream == stream, EventRow.batch_seq == seq
        )
        if submitter is not None:
            query = query.where(EventRow.submitter == submitter)
        with self._session() as session:
            return list(session.exec(query.order_by(col(EventRow.leaf_index)).limit(limit)))

    def mark_sent(self, stream: str, seq: int, *, tx_hash: bytes) -> None:
        self._update_batch(stream, seq, state=SENT, tx_hash=tx_hash.hex())

    def mark_anchored(
        self, stream: str, seq: int, *, tx_hash: bytes, block_number: int, gas_used: int | None
    ) -> None:
        self._update_batch(
            stream,
            seq,
            state=ANCHORED,
            tx_hash=tx_hash.hex(),
            block_number=block_number,
            gas_used=gas_used,
            anchored_at_ms=_now_ms(),
        )

    def _update_batch(self, stream: str, seq: int, **values: Any) -> None:
        with self._session() as session:
            row = session.get(BatchRow, (stream, seq))
            if row is None:
                raise NotFound(f"no batch {seq} in stream {stream!r}")
            for key, value in values.items():
                setattr(row, key, value)
            session.add(row)
            session.commit()

    def counts(self) -> dict[str, int]:
        """Totals for health and tests: events, pending events, batches by state."""
        with self._session() as session:
            events = session.exec(select(func.count()).select_from(EventRow)).one()
            pending = session.exec(
                select(func.count()).select_from(EventRow).where(col(EventRow.batch_seq).is_(None))
            ).one()
            by_state = dict(
                session.exec(select(BatchRow.state, func.count()).group_by(BatchRow.state)).all()
            )
        return {
            "events": int(events),
            "pending": int(pending),
            **{
                f"batches_{state}": int(by_state.get(state, 0))
                for state in (SEALED, SENT, ANCHORED)
            },
        }


def _redact(url: str) -> str:
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://***@{rest.split('@', 1)[1]}"
    return url
