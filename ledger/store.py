"""The event store: sqlmodel tables on SQLite (default, WAL) or any SQLAlchemy URL.

Events are written in one transaction per submission and committed before the API
answers, so a 2xx means durable. A batch is sealed in one transaction that creates the
batch row and stamps every event in it with (seq, leaf index); anchoring then only
moves the batch through ``sealed → sent → anchored``. SQLAlchemy's exceptions are
translated into ``StoreError`` here and never leave this module.
"""

from __future__ import annotations

import fcntl
import functools
import hashlib
import os
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Index,
    Integer,
    bindparam,
    event,
    func,
    insert,
    text,
)
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.sql.elements import TextClause
from sqlmodel import Field, Session, SQLModel, col, create_engine, select

from ledger.canonical import canonical_json, event_digest, leaf_of_canonical
from ledger.errors import Conflict, LedgerError, NotFound, StoreError
from ledger.merkle import (
    CHUNK_HEIGHT,
    ProofStep,
    build_tree,
    chunk_span,
    proof_from_parts,
    upper_siblings,
)
from ledger.models import EventBody, SignedEnvelope
from ledger.schema import migrate, sqlite_path

__all__ = [
    "BatchNodeRow",
    "BatchRow",
    "ClaimRow",
    "EventAssetRow",
    "EventRow",
    "Receipt",
    "SignerNonceRow",
    "Store",
]

SEALED, SENT, ANCHORED = "sealed", "sent", "anchored"


_BIG = BigInteger().with_variant(Integer, "sqlite")  # 64-bit; SQLite's INTEGER already is


_EVENTS_WRITER_LOCK = 0x666F7572_6576656E  # "fourevent": PostgreSQL advisory lock key

# claims on in-memory SQLite databases, which only this process can reach
_LOCAL_LOCKS: dict[str, threading.Lock] = {}
_LOCAL_GUARD = threading.Lock()


_NUMBER_EVENT = text(
    "UPDATE events SET batch_seq = :seq, leaf_index = :index WHERE position = :position"
)


_SPANS_A_QUERY = 100  # ranges in one statement (SQLite allows 500 compound SELECTs)


@functools.cache
def _chunks_query(spans: int) -> TextClause:
    """The leaves of ``spans`` leaf-index ranges [f, e) of one batch, by index: one
    SELECT a range, so each is a range scan of ix_events_batch whatever the planner
    knows (PostgreSQL, with no statistics yet for a store just filled, read an OR of
    the ranges as the whole batch filtered)."""
    ranges = " UNION ALL ".join(
        "SELECT leaf_index, leaf FROM events WHERE stream = :stream AND batch_seq = :seq"
        f" AND leaf_index >= :f{t} AND leaf_index < :e{t}"
        for t in range(spans)
    )
    return text(ranges or "SELECT leaf_index, leaf FROM events WHERE false")


@functools.cache
def _nodes_query(heights: int) -> TextClause:
    """Stored nodes at ``heights`` heights, a list of indexes at each: one term a
    height with the whole key, so each index is one probe (a tuple IN over
    (height, idx) made SQLite scan all of the batch's nodes)."""
    keys = " OR ".join(
        f"(stream = :stream AND seq = :seq AND height = :h{t} AND idx IN :i{t})"
        for t in range(heights)
    )
    return text(f"SELECT height, idx, hash FROM batch_nodes WHERE {keys or 'false'}").bindparams(
        *(bindparam(f"i{t}", expanding=True) for t in range(heights))
    )


# the digest and leaf of the events stored among some ids: compiled once (a select()
# with an IN of a thousand ids was compiled again on every submission)
_STORED_DIGESTS = text(
    "SELECT event_id, digest, leaf FROM events WHERE event_id IN :ids"
).bindparams(bindparam("ids", expanding=True))


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


_EVENT_COLUMNS = (
    "event_id",
    "stream",
    "kind",
    "submitter",
    "event_time_ms",
    "digest",
    "leaf",
    "envelope",
    "received_at_ms",
)


def _insert_rows(
    connection: Connection, table: str, columns: Sequence[str], rows: list[tuple[Any, ...]]
) -> None:
    """Insert ``rows`` (values in the order of ``columns``) into ``table``, in order. On
    SQLite straight through the driver's executemany: SQLAlchemy's own cost as much as
    SQLite's work. Elsewhere through SQLAlchemy, which batches rows into multi-row
    INSERTs (psycopg2's executemany is a round trip a row)."""
    if connection.dialect.name != "sqlite":
        named = [dict(zip(columns, row, strict=True)) for row in rows]
        connection.execute(insert(SQLModel.metadata.tables[table]), named)
        return
    marks = ", ".join("?" * len(columns))
    connection.exec_driver_sql(f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})", rows)


class EventAssetRow(SQLModel, table=True):
    __tablename__ = "event_assets"

    asset_id: str = Field(primary_key=True, max_length=200)
    event_id: str = Field(primary_key=True, max_length=200)


class BatchRow(SQLModel, table=True):
    __tablename__ = "batches"
    __table_args__ = (Index("ix_batches_anchored_at", "anchored_at_ms"),)

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


class BatchNodeRow(SQLModel, table=True):
    """A node of a sealed batch's tree at height ledger.merkle.CHUNK_HEIGHT or above
    (leaves are height 0; the root is in BatchRow): with the 64 leaves of its chunk, a
    proof needs one of these per level, not the whole batch (Store.batch_proof)."""

    __tablename__ = "batch_nodes"

    stream: str = Field(primary_key=True, max_length=64)
    seq: int = Field(primary_key=True)
    height: int = Field(primary_key=True)
    idx: int = Field(primary_key=True)
    hash: str = Field(max_length=64)


class ClaimRow(SQLModel, table=True):
    """A claimable unit of work ("anchor:<stream>", "indexer"): held by holding the row's
    lock (PostgreSQL) for as long as the work lasts; see Store.claim."""

    __tablename__ = "claims"

    name: str = Field(primary_key=True, max_length=200)


class SignerNonceRow(SQLModel, table=True):
    """One row per signing key: its lock serializes "read the nonce, send" between
    processes that share the key (Store.signer_lock); the last nonce is for operators."""

    __tablename__ = "signer_nonces"

    address: str = Field(primary_key=True, max_length=42)
    last_nonce: int | None = Field(default=None, sa_type=_BIG)
    last_tx_hash: str | None = Field(default=None, max_length=64)
    updated_at_ms: int = Field(sa_type=_BIG)


@dataclass(frozen=True)
class Receipt:
    """What the API answers for each event of an accepted submission."""

    event_id: str
    stream: str
    digest: str
    leaf: str
    duplicate: bool


def lock_timeout_ms() -> int:
    """How long a statement waits for another transaction's lock before the store gives
    up (a 503 with a retry hint at the API): ``$FOURFLOW_DB_LOCK_TIMEOUT_MS``, 10 s."""
    raw = os.environ.get("FOURFLOW_DB_LOCK_TIMEOUT_MS", "").strip()
    if not raw:
        return 10_000
    if not raw.isdigit() or int(raw) < 1:
        raise StoreError(f"FOURFLOW_DB_LOCK_TIMEOUT_MS: {raw!r} is not a positive whole number")
    return int(raw)


def _switch_to_wal(cursor: Any, timeout_ms: int) -> None:
    """``PRAGMA journal_mode=WAL``, waiting out other connections that switch a new file
    at the same moment: SQLite answers "database is locked" at once there, without its
    busy handler (processes starting together on one file, tests/test_schema.py)."""
    deadline = time.monotonic() + timeout_ms / 1000
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.005)


def _sqlite_pragmas(timeout_ms: int) -> Callable[[Any, Any], None]:
    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout={timeout_ms:d}")
        _switch_to_wal(cursor, timeout_ms)
        cursor.execute("PRAGMA synchronous=FULL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return on_connect


class Store:
    """All of fourflow's reads and writes of the database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    @classmethod
    def open(cls, url: str) -> Store:
        """Open the database at an SQLAlchemy ``url``, migrating its schema to the
        newest revision (ledger.schema)."""
        timeout_ms = lock_timeout_ms()
        try:
            if url.startswith("sqlite"):
                engine = create_engine(
                    url, connect_args={"check_same_thread": False, "timeout": timeout_ms / 1000}
                )
                event.listen(engine, "connect", _sqlite_pragmas(timeout_ms))
            elif url.startswith("postgresql"):
                # a lock held elsewhere, or a server that stopped answering, fails the
                # request (503, retry) instead of hanging it
                psycopg2 = url.startswith(("postgresql://", "postgresql+psycopg2://"))
                engine = create_engine(
                    url,
                    pool_pre_ping=True,
                    # executemany UPDATEs (sealing numbers up to 10^6 events) in pages,
                    # not one round trip a row
                    **({"executemany_mode": "values_plus_batch"} if psycopg2 else {}),
                    connect_args={
                        "connect_timeout": max(1, timeout_ms // 1000),
                        "options": f"-c lock_timeout={timeout_ms:d} -c tcp_keepalives_idle=30",
                        # a worker whose host dies holds its claims' row locks until the
                        # server notices the connection is gone: within about a minute
                        "keepalives": 1,
                        "keepalives_idle": 30,
                        "keepalives_interval": 10,
                        "keepalives_count": 3,
                    },
                )
            else:
                engine = create_engine(url, pool_pre_ping=True)
        except SQLAlchemyError as exc:
            raise StoreError(f"cannot open the store at {_redact(url)}: {exc}") from exc
        try:
            migrate(engine, auto=os.environ.get("FOURFLOW_DB_AUTO_MIGRATE", "1") != "0")
        except StoreError as exc:
            engine.dispose()
            raise StoreError(f"{_redact(url)}: {exc.message}") from exc
        return cls(engine)

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

    # --- claims and signer locks, between processes sharing this database ------------

    @contextmanager
    def claim(self, name: str) -> Iterator[bool]:
        """Try to take the claim ``name`` without waiting: yields True while this caller
        holds it, False if another worker (process or thread) does.

        PostgreSQL (and other servers): ``SELECT … FOR UPDATE SKIP LOCKED`` on the claim's
        row, in a transaction kept open until the block ends. SQLite: an exclusive
        ``flock`` on a file beside the database (SQLite has no row locks). Either way
        the database or the kernel releases the claim when its holder dies, even by
        SIGKILL: a restarted worker never waits for a lease to run out.
        """
        path = sqlite_path(self.engine)
        if self.engine.dialect.name == "sqlite":
            with self._local_claim(name, path) as held:
                yield held
            return
        with self._row_lock(ClaimRow, name, skip_locked=True) as held:
            yield held is not None

    @contextmanager
    def signer_lock(self, address: str) -> Iterator[Callable[[int, bytes], None]]:
        """Hold the lock of signer ``address`` (waiting for it): while held, no other
        process sharing this database sends with that key, so the node's pending nonce
        is this sender's. Yields ``record(nonce, tx_hash)`` to note what was sent."""
        sent: list[tuple[int, bytes]] = []
        if self.engine.dialect.name == "sqlite":
            with self._local_claim(f"signer:{address}", sqlite_path(self.engine), wait=True):
                yield lambda nonce, tx_hash: sent.append((nonce, tx_hash))
                if sent:  # still under the lock: two first notes of a key raced to insert
                    self._note_nonce(address, *sent[-1])
            return
        with self._row_lock(SignerNonceRow, address, skip_locked=False) as held:
            assert held is not None
            connection, row_key = held

            def record(nonce: int, tx_hash: bytes) -> None:
                connection.execute(
                    SignerNonceRow.__table__.update()  # type: ignore[attr-defined]
                    .where(SignerNonceRow.__table__.c.address == row_key)  # type: ignore[attr-defined]
                    .values(last_nonce=nonce, last_tx_hash=tx_hash.hex(), updated_at_ms=_now_ms())
                )

            yield record

    def _note_nonce(self, address: str, nonce: int, tx_hash: bytes) -> None:
        with self._session() as session:
            row = session.get(SignerNonceRow, address) or SignerNonceRow(
                address=address, updated_at_ms=0
            )
            row.last_nonce, row.last_tx_hash, row.updated_at_ms = nonce, tx_hash.hex(), _now_ms()
            session.add(row)
            session.commit()

    @contextmanager
    def _row_lock(
        self, model: type[SQLModel], key: str, *, skip_locked: bool
    ) -> Iterator[tuple[Any, str] | None]:
        table = model.__table__  # type: ignore[attr-defined]
        column = next(iter(table.primary_key.columns))
        values: dict[str, Any] = {column.name: key}
        if model is SignerNonceRow:
            values["updated_at_ms"] = _now_ms()
        try:
            with self.engine.connect() as connection:
                with connection.begin():
                    exists = connection.execute(select(column).where(column == key)).first()
                    if exists is None:
                        try:
                            with connection.begin_nested():
                                connection.execute(table.insert().values(**values))
                        except IntegrityError:
                            pass  # another process inserted it first: fine
                with connection.begin():
                    locked = connection.execute(
                        select(column).where(column == key).with_for_update(skip_locked=skip_locked)
                    ).first()
                    yield None if locked is None else (connection, key)
        except SQLAlchemyError as exc:
            raise StoreError(f"database error: {exc.__class__.__name__}: {exc}") from exc

    @contextmanager
    def _local_claim(self, name: str, path: Path | None, *, wait: bool = False) -> Iterator[bool]:
        if path is None:  # an in-memory database lives in this process only
            with _LOCAL_GUARD:
                lock = _LOCAL_LOCKS.setdefault(f"{id(self.engine)}:{name}", threading.Lock())
            held = lock.acquire(blocking=wait)
            try:
                yield held
            finally:
                if held:
                    lock.release()
            return
        folder = path.with_name(path.name + ".locks")
        folder.mkdir(mode=0o700, exist_ok=True)
        digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:32]
        fd = os.open(folder / digest, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX if wait else fcntl.LOCK_EX | fcntl.LOCK_NB)
                held = True
            except BlockingIOError:
                held = False
            yield held
        finally:
            os.close(fd)  # releases the lock

    def ping(self) -> None:
        with self._session() as session:
            session.exec(select(text("1")))

    # --- submissions ---------------------------------------------------------------

    def accept(
        self,
        envelopes: Sequence[SignedEnvelope],
        *,
        digests: Sequence[bytes] | None = None,
        canonical: Sequence[bytes] | None = None,
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
        both or neither. ``digests`` and ``canonical`` are the events' digests and the
        envelopes' canonical JSON when the caller has them; else they are computed here.
        """
        for given, name in ((digests, "digests"), (canonical, "canonical forms")):
            if given is not None and len(given) != len(envelopes):
                raise ValueError(f"{len(given)} {name} for {len(envelopes)} envelopes")
        if digests is None or canonical is None:
            dumped = [env.model_dump(mode="json") for env in envelopes]
            if digests is None:
                digests = [event_digest(env["event"]) for env in dumped]
            if canonical is None:
                canonical = [canonical_json(env) for env in dumped]
        return self.accept_events(
            [env.event for env in envelopes],
            digests=digests,
            canonical=canonical,
            same_id_is_duplicate=same_id_is_duplicate,
            related=related,
        )

    def accept_events(
        self,
        events: Sequence[EventBody],
        *,
        digests: Sequence[bytes],
        canonical: Sequence[bytes],
        same_id_is_duplicate: bool = False,
        related: Callable[[Session, list[Receipt]], None] | None = None,
    ) -> list[Receipt]:
        """``accept`` for a sealed submission (ledger.signing.envelopes_for): each
        event with its digest and its envelope's canonical JSON, no envelope models."""
        if not len(events) == len(digests) == len(canonical):
            raise ValueError(
                f"{len(digests)} digests and {len(canonical)} canonical forms "
                f"for {len(events)} events"
            )
        received = _now_ms()
        hashes = [  # each event's (digest, leaf), in hex
            (digest.hex(), leaf_of_canonical(envelope_jcs).hex())
            for digest, envelope_jcs in zip(digests, canonical, strict=True)
        ]
        rows = [  # in the order of _EVENT_COLUMNS
            (
                event.event_id,
                event.stream,
                event.kind,
                event.submitter,
                event.event_time_ms,
                digest,
                leaf,
                envelope_jcs.decode("utf-8"),
                received,
            )
            for event, (digest, leaf), envelope_jcs in zip(events, hashes, canonical, strict=True)
        ]
        with self._session() as session:
            self._in_position_order(session)
            found = session.connection().execute(
                _STORED_DIGESTS, {"ids": [event.event_id for event in events]}
            )
            existing = {event_id: (digest, leaf) for event_id, digest, leaf in found}
            receipts = []
            new_rows: list[tuple[Any, ...]] = []
            new_assets: list[tuple[str, str]] = []
            for position, (event, (digest, leaf), row) in enumerate(
                zip(events, hashes, rows, strict=True)
            ):
                event_id = event.event_id
                old = existing.get(event_id)
                if old is not None and old[0] != digest and not same_id_is_duplicate:
                    raise Conflict(
                        f"event_id {event_id!r} is already stored with different content",
                        field=f"events[{position}].event_id",
                    )
                if old is None:
                    existing[event_id] = (digest, leaf)  # the same id twice in one submission
                    new_rows.append(row)
                    new_assets += [(asset, event_id) for asset in event.asset_ids]
                else:
                    digest, leaf = old
                receipts.append(Receipt(event_id, event.stream, digest, leaf, old is not None))
            # Core inserts (the ORM's bulk path cost as much again), in submission order,
            # so positions follow it
            connection = session.connection()
            if new_rows:
                _insert_rows(connection, "events", _EVENT_COLUMNS, new_rows)
            if new_assets:
                _insert_rows(connection, "event_assets", ("asset_id", "event_id"), new_assets)
            if related is not None:
                session.flush()
                related(session, receipts)
            session.commit()
        return receipts

    def _in_position_order(self, session: Session) -> None:
        """Make submissions commit in the order of their positions. Readers follow the
        events with a cursor over ``position`` (the catalog, the rules worker); on
        PostgreSQL two concurrent transactions could otherwise commit positions 101
        before 100, and a cursor that had passed 101 would never see 100. A transaction
        lock (released at commit) serializes the writers; SQLite has one writer anyway."""
        if self.engine.dialect.name == "postgresql":
            session.exec(select(func.pg_advisory_xact_lock(_EVENTS_WRITER_LOCK)))

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

    def events(self, event_ids: Sequence[str]) -> dict[str, EventRow]:
        """The stored events among ``event_ids``, by id (one query)."""
        with self._session() as session:
            rows = session.exec(select(EventRow).where(col(EventRow.event_id).in_(event_ids)))
            return {row.event_id: row for row in rows}

    # --- batches -------------------------------------------------------------------

    def backlog(self, stream: str | None = None) -> dict[str, tuple[int, int]]:
        """Per stream with pending events: (count, oldest received_at_ms)."""
        query = select(EventRow.stream, func.count(), func.min(EventRow.received_at_ms)).where(
            col(EventRow.batch_seq).is_(None)
        )
        if stream is not None:
            query = query.where(EventRow.stream == stream)
        query = query.group_by(EventRow.stream)
        with self._session() as session:
            return {stream: (int(n), int(oldest)) for stream, n, oldest in session.exec(query)}

    def seal(self, stream: str, *, max_events: int) -> BatchRow | None:
        """Seal up to ``max_events`` pending events of ``stream`` into its next batch,
        with the upper nodes of its tree (BatchNodeRow) for fast proofs."""
        with self._session() as session:
            # the rows are locked (PostgreSQL) before the seq is read: should two sealers
            # ever meet on a stream (a claim lost with its connection), the second waits,
            # then finds these events sealed and the seq taken, and cannot reuse either
            pending = session.exec(
                select(EventRow.position, EventRow.leaf, EventRow.event_time_ms)
                .where(EventRow.stream == stream, col(EventRow.batch_seq).is_(None))
                .order_by(col(EventRow.position))
                .limit(max_events)
                .with_for_update()
            ).all()
            if not pending:
                return None
            last = session.exec(
                select(func.max(BatchRow.seq)).where(BatchRow.stream == stream)
            ).one()
            seq = 0 if last is None else int(last) + 1
            tree = build_tree([bytes.fromhex(leaf) for _, leaf, _ in pending])
            times = [event_time for _, _, event_time in pending]
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
            session.connection().execute(  # executemany, without the ORM's bookkeeping
                _NUMBER_EVENT,
                [
                    {"position": position, "seq": seq, "index": index}
                    for index, (position, _, _) in enumerate(pending)
                ],
            )
            nodes = [
                {"stream": stream, "seq": seq, "height": height, "idx": idx, "hash": node.hex()}
                for height, idx, node in tree.upper_nodes(CHUNK_HEIGHT)
            ]
            if nodes:
                session.execute(insert(BatchNodeRow), nodes)
            session.commit()
        return batch

    def batch_proof(self, stream: str, seq: int, index: int, leaf_count: int) -> list[ProofStep]:
        """The Merkle proof of leaf ``index`` of a sealed batch (see ``batch_proofs``); a
        batch sealed before nodes were stored is proved from all its leaves."""
        proofs = self.batch_proofs(stream, seq, [index], leaf_count)
        if proofs is None:
            return build_tree(self.batch_leaves(stream, seq)).proof(index)
        return proofs[index]

    def batch_proofs(
        self, stream: str, seq: int, indexes: Iterable[int], leaf_count: int
    ) -> dict[int, list[ProofStep]] | None:
        """The Merkle proofs of leaves ``indexes`` of a sealed batch, from the leaves of
        their 64-leaf chunks and the stored upper nodes, in a few queries. None for a
        batch sealed before nodes were stored (schema 0002): the caller proves it from
        all its leaves (and may keep that tree).

        Plain SQL on a connection: building the statements with SQLAlchemy's expression
        language cost twenty times the index lookups they make."""
        indexes = sorted(set(indexes))
        spans = sorted({chunk_span(index, leaf_count) for index in indexes})
        by_height: dict[int, set[int]] = defaultdict(set)
        for index in indexes:
            for height, idx in upper_siblings(index, leaf_count):
                by_height[height].add(idx)
        wanted = sum(len(idxs) for idxs in by_height.values())
        nodes_params: dict[str, Any] = {"stream": stream, "seq": seq}
        for term, (height, idxs) in enumerate(sorted(by_height.items())):
            nodes_params[f"h{term}"], nodes_params[f"i{term}"] = height, sorted(idxs)
        leaves: dict[int, bytes] = {}
        nodes: dict[tuple[int, int], bytes] = {}
        try:
            with self.engine.connect() as connection:
                for start in range(0, len(spans), _SPANS_A_QUERY):
                    group = spans[start : start + _SPANS_A_QUERY]
                    params: dict[str, Any] = {"stream": stream, "seq": seq}
                    for term, (first, end) in enumerate(group):
                        params[f"f{term}"], params[f"e{term}"] = first, end
                    for index, leaf in connection.execute(_chunks_query(len(group)), params):
                        leaves[index] = bytes.fromhex(leaf)
                if by_height:
                    query = _nodes_query(len(by_height))
                    for height, idx, node in connection.execute(query, nodes_params):
                        nodes[(height, idx)] = bytes.fromhex(node)
        except SQLAlchemyError as exc:
            raise StoreError(f"database error: {exc.__class__.__name__}: {exc}") from exc
        for first, end in spans:
            if any(i not in leaves for i in range(first, end)):
                raise NotFound(f"batch {seq} of {stream!r} has no leaves {first}..{end - 1}")
        if len(nodes) < wanted:
            return None
        trees = {(f, e): build_tree([leaves[i] for i in range(f, e)]) for f, e in spans}
        return {
            index: proof_from_parts(index, leaf_count, trees[chunk_span(index, leaf_count)], nodes)
            for index in indexes
        }

    def unfinished_batches(self, stream: str | None = None) -> list[BatchRow]:
        """Sealed or sent batches, in (stream, seq) order: the anchoring to-do list."""
        query = select(BatchRow).where(col(BatchRow.state).in_([SEALED, SENT]))
        if stream is not None:
            query = query.where(BatchRow.stream == stream)
        with self._session() as session:
            return list(session.exec(query.order_by(col(BatchRow.stream), col(BatchRow.seq))))

    def streams(self) -> list[str]:
        """Every stream with a batch or a pending event, sorted."""
        with self._session() as session:
            batched = set(session.exec(select(BatchRow.stream).distinct()))
            pending = set(
                session.exec(
                    select(EventRow.stream).where(col(EventRow.batch_seq).is_(None)).distinct()
                )
            )
        return sorted(batched | pending)

    def last_anchored(self, stream: str) -> BatchRow | None:
        """The stream's anchored batch with the highest seq."""
        with self._session() as session:
            return session.exec(
                select(BatchRow)
                .where(BatchRow.stream == stream, BatchRow.state == ANCHORED)
                .order_by(col(BatchRow.seq).desc())
                .limit(1)
            ).first()

    def unanchor_from(self, stream: str, seq: int) -> list[int]:
        """Take the stream's batches from ``seq`` on back to sealed (their anchors are no
        longer on the chain); returns the seqs changed. Roots and leaves stay: the same
        batches are anchored again, with the same proofs."""
        with self._session() as session:
            rows = session.exec(
                select(BatchRow)
                .where(
                    BatchRow.stream == stream,
                    col(BatchRow.seq) >= seq,
                    col(BatchRow.state).in_([SENT, ANCHORED]),
                )
                .order_by(col(BatchRow.seq))
            ).all()
            for row in rows:
                row.state, row.tx_hash, row.block_number = SEALED, None, None
                row.gas_used, row.anchored_at_ms = None, None
                session.add(row)
            session.commit()
        return [row.seq for row in rows]

    def batch(self, stream: str, seq: int) -> BatchRow:
        with self._session() as session:
            row = session.get(BatchRow, (stream, seq))
        if row is None:
            raise NotFound(f"no batch {seq} in stream {stream!r}")
        return row

    def batches(self, keys: Iterable[tuple[str, int]]) -> dict[tuple[str, int], BatchRow]:
        """The batches among ``keys`` ((stream, seq) pairs), by key (one query)."""
        wanted = set(keys)
        if not wanted:
            return {}
        streams = {stream for stream, _ in wanted}
        seqs = {seq for _, seq in wanted}
        with self._session() as session:
            rows = session.exec(
                select(BatchRow).where(
                    col(BatchRow.stream).in_(streams), col(BatchRow.seq).in_(seqs)
                )
            )
            return {(r.stream, r.seq): r for r in rows if (r.stream, r.seq) in wanted}

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
