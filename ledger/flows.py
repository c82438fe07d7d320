"""What the stored events say, indexed for reading: the four flows, custody, aggregation,
and the EPCIS 2.0 repository view (captured events, their identifiers, capture jobs).

Every row here is derived from signed events in the ``events`` table and written in the
same transaction as them (``Store.accept(related=...)``), so the index can always be
rebuilt from the events alone and never holds what the events do not.

    flow_entries        one row per (event, asset, flow): the timeline of an asset
    custody             per asset: where it is and who holds it now, and since which event
    aggregations        per pallet (SSCC): what is packed on it now
    epcis_events        per captured EPCIS event: the fields the standard query filters on
    epcis_identifiers   per captured EPCIS event and identifier: the role it plays
    capture_jobs        per EPCIS capture: its outcome, as GET /v1/epcis/capture/{id} shows
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, Index, Integer, String
from sqlmodel import Field, Session, SQLModel, col, select

from ledger.canonical import canonical_json
from ledger.errors import NotFound
from ledger.store import Store

__all__ = [
    "AggregationRow",
    "CaptureJobRow",
    "CustodyRow",
    "EpcisEventRow",
    "EpcisIdentifierRow",
    "EpcisQuery",
    "Flow",
    "FlowEntry",
    "FlowEntryRow",
    "Flows",
]

_BIG = BigInteger().with_variant(Integer, "sqlite")
# event ids order byte by byte, as Python and SQLite order them (migration 0005)
_EVENT_ID = String(200).with_variant(String(200, collation="C"), "postgresql")


class Flow(StrEnum):
    INFORMATION = "information"  # 信息流: what devices observed
    LOGISTICS = "logistics"  # 物流: custody and movement
    COMMERCIAL = "commercial"  # 商流: ownership and agreements
    CAPITAL = "capital"  # 资金流: money


@dataclass(frozen=True)
class FlowEntry:
    """One thing an event says about one asset, in one flow."""

    asset_id: str
    flow: Flow
    kind: str
    summary: dict[str, Any]


class FlowEntryRow(SQLModel, table=True):
    __tablename__ = "flow_entries"
    __table_args__ = (
        # a timeline's keys in order, (time, event id, flow): migration 0005
        Index("ix_flow_entries_asset", "asset_id", "time_ms", "event_id", "flow", "id"),
        Index("ix_flow_entries_event", "event_id"),
        # the custody chain's walk, answered from the index alone (migration 0004)
        Index(
            "ix_flow_entries_custody",
            "asset_id", "flow", "time_ms", "event_id", "id", "kind", "place",
        ),
    )  # fmt: skip

    id: int | None = Field(default=None, primary_key=True, sa_type=_BIG)
    event_id: str = Field(max_length=200, sa_type=_EVENT_ID)
    asset_id: str = Field(max_length=200)
    flow: str = Field(max_length=16)
    kind: str = Field(max_length=64)
    time_ms: int = Field(sa_type=_BIG)
    summary: str  # RFC 8785 JSON
    place: str | None = None  # logistics entries: place_of(summary)


class CustodyRow(SQLModel, table=True):
    __tablename__ = "custody"

    asset_id: str = Field(primary_key=True, max_length=200)
    status: str = Field(max_length=16)  # held | in_transit | retired
    location: str | None = Field(default=None, max_length=200)
    possessor: str | None = Field(default=None, max_length=200)
    owner: str | None = Field(default=None, max_length=200)
    since_ms: int = Field(sa_type=_BIG)
    event_id: str = Field(max_length=200)


class AggregationRow(SQLModel, table=True):
    __tablename__ = "aggregations"

    parent: str = Field(primary_key=True, max_length=200)
    child: str = Field(primary_key=True, max_length=200)
    packed: bool = True  # False: unpacked (kept, so a late older ADD cannot re-pack it)
    since_ms: int = Field(sa_type=_BIG)  # the event time of the latest ADD or DELETE
    event_id: str = Field(max_length=200)


class EpcisEventRow(SQLModel, table=True):
    __tablename__ = "epcis_events"
    __table_args__ = (
        Index("ix_epcis_events_time", "event_time_ms", "event_id"),
        Index("ix_epcis_events_step", "biz_step", "event_time_ms"),
        Index("ix_epcis_events_location", "biz_location", "event_time_ms"),
    )

    event_id: str = Field(primary_key=True, max_length=200)  # the GS1 event hash ID
    type: str = Field(max_length=32)
    action: str | None = Field(default=None, max_length=8)
    biz_step: str | None = Field(default=None, max_length=200)
    disposition: str | None = Field(default=None, max_length=200)
    read_point: str | None = Field(default=None, max_length=200)
    biz_location: str | None = Field(default=None, max_length=200)
    event_time_ms: int = Field(sa_type=_BIG)
    record_time_ms: int = Field(sa_type=_BIG)
    capture_id: str = Field(max_length=64)


class EpcisIdentifierRow(SQLModel, table=True):
    __tablename__ = "epcis_identifiers"
    __table_args__ = (Index("ix_epcis_identifiers_id", "identifier", "role"),)

    event_id: str = Field(primary_key=True, max_length=200)
    identifier: str = Field(primary_key=True, max_length=200)
    role: str = Field(primary_key=True, max_length=8)  # epc child parent input output class


class CaptureJobRow(SQLModel, table=True):
    __tablename__ = "capture_jobs"

    capture_id: str = Field(primary_key=True, max_length=64)
    created_at_ms: int = Field(sa_type=_BIG)
    finished_at_ms: int | None = Field(default=None, sa_type=_BIG)
    running: bool = False
    success: bool = True
    error_behaviour: str = Field(default="rollback", max_length=16)
    document_sha256: str = Field(max_length=64)
    captured_by: str = Field(default="", max_length=200)  # the authenticated client
    events: int = 0
    duplicates: int = 0
    event_ids: str = "[]"  # JSON list of the document's event hash IDs, in document order
    errors: str = "[]"  # JSON list of problem details


@dataclass(frozen=True)
class EpcisQuery:
    """The EPCIS 2.0 SimpleEventQuery parameters fourflow answers."""

    event_types: Sequence[str] = ()
    biz_steps: Sequence[str] = ()
    biz_locations: Sequence[str] = ()
    read_points: Sequence[str] = ()
    dispositions: Sequence[str] = ()
    actions: Sequence[str] = ()
    match_epc: Sequence[str] = ()  # epcList and childEPCs
    match_any_epc: Sequence[str] = ()  # + parentID, input and output lists
    match_parent: Sequence[str] = ()
    match_epc_class: Sequence[str] = ()
    ge_event_time_ms: int | None = None
    lt_event_time_ms: int | None = None
    ge_record_time_ms: int | None = None
    lt_record_time_ms: int | None = None


def place_of(flow: Flow | str, summary: dict[str, Any]) -> str | None:
    """Where a logistics entry puts its asset: the business location, else the read
    point; the custody chain starts a step wherever this or the kind changes."""
    if flow != Flow.LOGISTICS:
        return None
    place = summary.get("biz_location") or summary.get("read_point")
    return place if isinstance(place, str) else None


class Flows:
    """Reads and derived writes of the tables above, on a Store's database."""

    def __init__(self, store: Store) -> None:
        self.store = store

    # --- writes, inside Store.accept's transaction ---------------------------------------

    @staticmethod
    def add_entries(
        session: Session, *, event_id: str, time_ms: int, entries: Iterable[FlowEntry]
    ) -> None:
        for entry in entries:
            session.add(
                FlowEntryRow(
                    event_id=event_id,
                    asset_id=entry.asset_id,
                    flow=entry.flow.value,
                    kind=entry.kind,
                    time_ms=time_ms,
                    summary=canonical_json(entry.summary).decode("utf-8"),
                    place=place_of(entry.flow, entry.summary),
                )
            )

    @staticmethod
    def move_custody(session: Session, row: CustodyRow) -> None:
        """Record ``row`` as the asset's custody unless a later event already did."""
        current = session.get(CustodyRow, row.asset_id)
        if current is None:
            session.add(row)
        elif current.since_ms <= row.since_ms:
            for name in ("status", "location", "possessor", "owner", "since_ms", "event_id"):
                value = getattr(row, name)
                if value is not None or name in ("location",):
                    setattr(current, name, value)
            session.add(current)

    @staticmethod
    def pack(
        session: Session, *, parent: str, children: Sequence[str] | None, packed: bool,
        time_ms: int, event_id: str,
    ) -> None:  # fmt: skip
        """Record an AggregationEvent ADD (``packed``) or DELETE (``children`` None: all of
        the parent's). A change older than what a child's row already says is ignored,
        as late-arriving custody events are."""
        if children is None:
            children = [
                row.child
                for row in session.exec(
                    select(AggregationRow).where(AggregationRow.parent == parent)
                )
            ]
        for child in children:
            row = session.get(AggregationRow, (parent, child))
            if row is None:
                row = AggregationRow(
                    parent=parent, child=child, packed=packed, since_ms=time_ms, event_id=event_id
                )
            elif row.since_ms <= time_ms:
                row.packed, row.since_ms, row.event_id = packed, time_ms, event_id
            else:
                continue
            session.add(row)

    @staticmethod
    def children_in(session: Session, parents: Sequence[str]) -> dict[str, list[str]]:
        """What is packed on each of ``parents`` now (as of this transaction)."""
        if not parents:
            return {}
        rows = session.exec(
            select(AggregationRow)
            .where(col(AggregationRow.parent).in_(parents), col(AggregationRow.packed))
            .order_by(col(AggregationRow.parent), col(AggregationRow.child))
        )
        out: dict[str, list[str]] = {}
        for row in rows:
            out.setdefault(row.parent, []).append(row.child)
        return out

    # --- reads ---------------------------------------------------------------------------

    def children(self, parents: Sequence[str]) -> dict[str, list[str]]:
        with self.store.session() as session:
            return self.children_in(session, parents)

    def custody(self, asset_id: str) -> CustodyRow:
        with self.store.session() as session:
            row = session.get(CustodyRow, asset_id)
        if row is None:
            raise NotFound(f"no custody event for {asset_id!r}")
        return row

    def entries(self, asset_id: str, *, flow: Flow | None = None) -> list[FlowEntryRow]:
        query = select(FlowEntryRow).where(FlowEntryRow.asset_id == asset_id)
        if flow is not None:
            query = query.where(FlowEntryRow.flow == flow.value)
        with self.store.session() as session:
            return list(
                session.exec(query.order_by(col(FlowEntryRow.time_ms), col(FlowEntryRow.id)))
            )

    def capture_job(self, capture_id: str) -> CaptureJobRow:
        with self.store.session() as session:
            row = session.get(CaptureJobRow, capture_id)
        if row is None:
            raise NotFound(f"no capture job {capture_id!r}")
        return row

    def epcis_event_ids(
        self, query: EpcisQuery, *, after: tuple[int, str] | None = None, limit: int = 100
    ) -> list[tuple[int, str]]:
        """(event time, hash ID) of matching events in (time, id) order, after a cursor."""
        q = select(EpcisEventRow.event_time_ms, EpcisEventRow.event_id)
        for column, values in (
            (EpcisEventRow.type, query.event_types),
            (EpcisEventRow.biz_step, query.biz_steps),
            (EpcisEventRow.biz_location, query.biz_locations),
            (EpcisEventRow.read_point, query.read_points),
            (EpcisEventRow.disposition, query.dispositions),
            (EpcisEventRow.action, query.actions),
        ):
            if values:
                q = q.where(col(column).in_(values))
        for values, roles in (
            (query.match_epc, ("epc", "child")),
            (query.match_any_epc, ("epc", "child", "parent", "input", "output")),
            (query.match_parent, ("parent",)),
            (query.match_epc_class, ("class",)),
        ):
            if values:
                q = q.where(
                    col(EpcisEventRow.event_id).in_(
                        select(EpcisIdentifierRow.event_id).where(
                            col(EpcisIdentifierRow.identifier).in_(values),
                            col(EpcisIdentifierRow.role).in_(roles),
                        )
                    )
                )
        if query.ge_event_time_ms is not None:
            q = q.where(EpcisEventRow.event_time_ms >= query.ge_event_time_ms)
        if query.lt_event_time_ms is not None:
            q = q.where(EpcisEventRow.event_time_ms < query.lt_event_time_ms)
        if query.ge_record_time_ms is not None:
            q = q.where(EpcisEventRow.record_time_ms >= query.ge_record_time_ms)
        if query.lt_record_time_ms is not None:
            q = q.where(EpcisEventRow.record_time_ms < query.lt_record_time_ms)
        if after is not None:
            time_ms, event_id = after
            q = q.where(
                (col(EpcisEventRow.event_time_ms) > time_ms)
                | (
                    (col(EpcisEventRow.event_time_ms) == time_ms)
                    & (col(EpcisEventRow.event_id) > event_id)
                )
            )
        q = q.order_by(col(EpcisEventRow.event_time_ms), col(EpcisEventRow.event_id)).limit(limit)
        with self.store.session() as session:
            return [(int(t), str(i)) for t, i in session.exec(q)]


def job_errors(row: CaptureJobRow) -> list[dict[str, Any]]:
    value: list[dict[str, Any]] = json.loads(row.errors)
    return value
