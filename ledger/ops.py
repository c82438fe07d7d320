"""Operational figures, read from the store: what ``/v1/health`` and ``/metrics`` report.

    streams             per stream: pending events and the oldest one's arrival, the last
                        sealed and the last anchored batch, batches by state
    anchoring_latency   over the most recently anchored batches: from the batch's oldest
                        event's arrival to its anchoring, and from sealing to anchoring
    indexer_position    the indexer's cursor block against the chain head
    workers             the worker processes' heartbeats (``worker_status``)

Worker processes (the anchoring loop and the other oracle workers) run apart from the
API, so they record each pass, and each failure, with ``heartbeat``: one row per worker,
upserted, and the API reports them. Everything else here only reads.
"""

from __future__ import annotations

import math
import os
import socket
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast

from sqlalchemy import BigInteger, Integer, Table, and_, case, func
from sqlalchemy import select as sql_select
from sqlalchemy.dialects import postgresql, sqlite
from sqlmodel import Field, SQLModel, col, select

from ledger.errors import StoreError
from ledger.indexer import ChainCursorRow
from ledger.store import ANCHORED, SEALED, SENT, BatchRow, EventRow, Store

__all__ = [
    "BATCH_STATES",
    "FORGET_AFTER_MS",
    "MAX_ERROR_CHARS",
    "AnchoringLatency",
    "IndexerPosition",
    "LatencySample",
    "Span",
    "StreamFigures",
    "WorkerStatusRow",
    "anchoring_latency",
    "default_worker_id",
    "heartbeat",
    "indexer_position",
    "streams",
    "workers",
]

_BIG = BigInteger().with_variant(Integer, "sqlite")
BATCH_STATES: Final = (SEALED, SENT, ANCHORED)
MAX_ERROR_CHARS: Final = 1000
Span = Literal["received_to_anchored", "sealed_to_anchored"]


class WorkerStatusRow(SQLModel, table=True):
    """The last heartbeat of one worker. ``passes`` and ``errors`` count from the start
    of the worker's current run (``started_at_ms``); ``last_error`` outlives a restart."""

    __tablename__ = "worker_status"

    worker_id: str = Field(primary_key=True, max_length=128)
    kind: str = Field(max_length=32)
    pid: int
    host: str = Field(max_length=255)
    started_at_ms: int = Field(sa_type=_BIG)
    heartbeat_at_ms: int = Field(sa_type=_BIG)
    passes: int = Field(default=0, sa_type=_BIG)
    errors: int = Field(default=0, sa_type=_BIG)
    last_error: str | None = Field(default=None, max_length=MAX_ERROR_CHARS)
    last_error_at_ms: int | None = Field(default=None, sa_type=_BIG)


def _now_ms() -> int:
    return int(time.time() * 1000)


# --- streams ---------------------------------------------------------------------------


@dataclass(frozen=True)
class StreamFigures:
    stream: str
    pending: int = 0
    oldest_pending_ms: int | None = None  # received_at_ms of the oldest pending event
    last_sealed_seq: int | None = None
    last_anchored_seq: int | None = None
    batches: Mapping[str, int] = field(default_factory=lambda: dict.fromkeys(BATCH_STATES, 0))

    def oldest_pending_age_s(self, now_ms: int | None = None) -> float | None:
        if self.oldest_pending_ms is None:
            return None
        now = _now_ms() if now_ms is None else now_ms
        return max(0, now - self.oldest_pending_ms) / 1000


def streams(store: Store) -> list[StreamFigures]:
    """Every stream with events or batches, by name."""
    pending_query = (
        select(EventRow.stream, func.count(), func.min(EventRow.received_at_ms))
        .where(col(EventRow.batch_seq).is_(None))
        .group_by(col(EventRow.stream))
    )
    batch_query = select(BatchRow.stream, BatchRow.state, func.count(), func.max(BatchRow.seq))
    with store.session() as session:
        pending = session.exec(pending_query).all()
        batches = session.exec(
            batch_query.group_by(col(BatchRow.stream), col(BatchRow.state))
        ).all()
    rows: dict[str, dict[str, Any]] = {}
    for stream, count, oldest in pending:
        rows.setdefault(stream, {}).update(pending=int(count), oldest_pending_ms=int(oldest))
    for stream, state, count, last in batches:
        row = rows.setdefault(stream, {})
        by_state = row.setdefault("batches", dict.fromkeys(BATCH_STATES, 0))
        by_state[state] = int(count)
        # every batch was sealed once; sequence numbers are gap-free and anchored in order
        row["last_sealed_seq"] = max(int(last), row.get("last_sealed_seq", -1))
        if state == ANCHORED:
            row["last_anchored_seq"] = int(last)
    return [StreamFigures(stream=name, **rows[name]) for name in sorted(rows)]


# --- anchoring latency -------------------------------------------------------------------


@dataclass(frozen=True)
class LatencySample:
    """One anchored batch: how long its oldest event waited, and how long it took from
    sealing to anchoring."""

    stream: str
    seq: int
    anchored_at_ms: int
    received_to_anchored_s: float
    sealed_to_anchored_s: float


@dataclass(frozen=True)
class AnchoringLatency:
    samples: tuple[LatencySample, ...]  # the most recently anchored first

    def values(self, span: Span) -> list[float]:
        """The window's latencies in seconds, in sample order (for a histogram)."""
        return [getattr(s, f"{span}_s") for s in self.samples]

    def quantile(self, q: float, span: Span) -> float | None:
        """The nearest-rank ``q`` quantile (0 < q <= 1) of ``span``; None without samples."""
        ordered = sorted(self.values(span))
        if not ordered:
            return None
        return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


def anchoring_latency(store: Store, *, last: int = 100) -> AnchoringLatency:
    """Latencies of the ``last`` most recently anchored batches, all streams together."""
    recent = (
        select(BatchRow.stream, BatchRow.seq, BatchRow.sealed_at_ms, BatchRow.anchored_at_ms)
        .where(BatchRow.state == ANCHORED, col(BatchRow.anchored_at_ms).is_not(None))
        .order_by(col(BatchRow.anchored_at_ms).desc())
        .limit(last)
        .subquery()
    )
    query = (  # five columns: more than sqlmodel's select is typed for
        sql_select(
            recent.c.stream,
            recent.c.seq,
            recent.c.sealed_at_ms,
            recent.c.anchored_at_ms,
            func.min(EventRow.received_at_ms),
        )
        .join(
            EventRow,
            and_(col(EventRow.stream) == recent.c.stream, col(EventRow.batch_seq) == recent.c.seq),
        )
        .group_by(recent.c.stream, recent.c.seq, recent.c.sealed_at_ms, recent.c.anchored_at_ms)
    )
    with store.session() as session:
        rows = session.execute(query).all()
    samples = [
        LatencySample(
            stream=stream,
            seq=int(seq),
            anchored_at_ms=int(anchored),
            # clocks of different processes: a negative wait is skew, not news
            received_to_anchored_s=max(0, int(anchored) - int(received)) / 1000,
            sealed_to_anchored_s=max(0, int(anchored) - int(sealed)) / 1000,
        )
        for stream, seq, sealed, anchored, received in rows
    ]
    samples.sort(key=lambda s: (s.anchored_at_ms, s.stream, s.seq), reverse=True)
    return AnchoringLatency(tuple(samples))


# --- the indexer ---------------------------------------------------------------------------


@dataclass(frozen=True)
class IndexerPosition:
    indexed_to: int | None  # the indexer's cursor block; None before its first pass
    head: int | None  # the chain's head block, when the node answered

    @property
    def lag_blocks(self) -> int | None:
        if self.indexed_to is None or self.head is None:
            return None
        return max(0, self.head - self.indexed_to)


def indexer_position(store: Store, *, head: int | None) -> IndexerPosition:
    """Where the indexer's cursor stands against ``head`` (read from the chain by the
    caller)."""
    with store.session() as session:
        cursor = session.exec(select(func.max(ChainCursorRow.block_number))).one()
    return IndexerPosition(None if cursor is None else int(cursor), head)


# --- workers ---------------------------------------------------------------------------------


# a worker not heard from for this long is forgotten (its row deleted) by the next
# heartbeat of any worker: process ids change with every restart
FORGET_AFTER_MS: Final = 24 * 3600 * 1000


def default_worker_id(kind: str) -> str:
    """``kind@host:pid``: several workers of a kind may share a host and a database."""
    return f"{kind}@{socket.gethostname()}:{os.getpid()}"


def workers(store: Store) -> list[WorkerStatusRow]:
    """Every worker that ever sent a heartbeat, by id."""
    with store.session() as session:
        return list(session.exec(select(WorkerStatusRow).order_by(col(WorkerStatusRow.worker_id))))


def heartbeat(
    store: Store,
    worker_id: str,
    *,
    kind: str,
    started_at_ms: int,
    error: str | None = None,
    now_ms: int | None = None,
) -> None:
    """Record one pass of worker ``worker_id`` (a failed one, with ``error``): one upsert
    in one statement, on SQLite and PostgreSQL alike. A heartbeat with another
    ``started_at_ms``, pid or host starts a new run: its counters start again from this
    pass. Raises StoreError when the database fails."""
    now = _now_ms() if now_ms is None else now_ms
    failed = error is not None
    values = {
        "worker_id": worker_id,
        "kind": kind,
        "pid": os.getpid(),
        "host": socket.gethostname()[:255],
        "started_at_ms": started_at_ms,
        "heartbeat_at_ms": now,
        "passes": 1,
        "errors": 1 if failed else 0,
        "last_error": error[:MAX_ERROR_CHARS] if error is not None else None,
        "last_error_at_ms": now if failed else None,
    }
    table = cast(Table, WorkerStatusRow.__table__)  # type: ignore[attr-defined]
    with store.session() as session:
        dialect = session.get_bind().dialect.name
        if dialect not in ("sqlite", "postgresql"):
            raise StoreError(f"worker heartbeats need SQLite or PostgreSQL, not {dialect}")
        insert = postgresql.insert(table) if dialect == "postgresql" else sqlite.insert(table)
        new = insert.excluded
        same_run = and_(
            table.c.started_at_ms == new.started_at_ms,
            table.c.pid == new.pid,
            table.c.host == new.host,
        )
        upsert = insert.values(**values).on_conflict_do_update(
            index_elements=[table.c.worker_id],
            set_={
                "kind": new.kind,
                "pid": new.pid,
                "host": new.host,
                "started_at_ms": new.started_at_ms,
                "heartbeat_at_ms": new.heartbeat_at_ms,
                "passes": case((same_run, table.c.passes + new.passes), else_=new.passes),
                "errors": case((same_run, table.c.errors + new.errors), else_=new.errors),
                "last_error": func.coalesce(new.last_error, table.c.last_error),
                "last_error_at_ms": func.coalesce(new.last_error_at_ms, table.c.last_error_at_ms),
            },
        )
        session.execute(upsert)
        session.execute(table.delete().where(table.c.heartbeat_at_ms < now - FORGET_AFTER_MS))
        session.commit()
