"""Four-flow histories: one timeline per asset or pledge, every entry with its proof.

A history merges two sources, both rebuildable:

- off-chain evidence: the signed events in the store, as ``flow_entries`` rows (one per
  event, asset and flow). EPCIS capture writes rich rows itself; every other event
  (device readings, counts, alarms, release records, generic submissions) gets rows
  from ``Catalog.catch_up``, which follows the events table by arrival position and
  also keeps ``asset_keys`` (sha256 of each asset id: the receipts' lien-index keys).
  Proof: the event's Merkle proof bundle (``ledger.bundle``), or "pending" until its
  batch is anchored.
- on-chain records: the contract logs the indexer keeps (``ledger.indexer``). Proof:
  chain id, contract, block number and hash, transaction hash and log index.

Which records belong to a pledge: its own logs and its receipt's; the assets whose
identifier keys the receipt has bound (``asset_keys`` joins them), and the subjects of
the events its covenant facts cite. An asset's history: the asset's own events, plus
the on-chain records of every receipt that has bound its key, and of their pledges.

Order: by time (event time; block time for on-chain records), then off-chain before
on-chain, then event id and flow, or block and log index. Pages are cut by a cursor
holding the last entry's sort key, so a page boundary never moves when entries are
added after it.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import BigInteger, Integer, and_, insert, or_, tuple_
from sqlalchemy import select as select_columns
from sqlalchemy.exc import IntegrityError
from sqlmodel import Field, Session, SQLModel, col, func, select

from ledger.alarms import AlarmBook
from ledger.bundle import BundleBuilder
from ledger.canonical import canonical_json
from ledger.chain import Deployment
from ledger.chainlog import ChainLog
from ledger.collateral import Change, FactKind, Freeze, Mode, PledgeStatus, identifier_key
from ledger.errors import InvalidInput, NotFound
from ledger.flows import CustodyRow, Flow, FlowEntryRow, place_of
from ledger.indexer import ChainIndex
from ledger.models import utc_text
from ledger.oracle_state import CursorRow
from ledger.replay import ChainState, ReceiptView
from ledger.store import EventRow, Store

__all__ = [
    "CHECK_KIND",
    "COUNT_KINDS",
    "DAILY_KINDS",
    "OPERATION_KINDS",
    "SKIPPED_EVENTS",
    "Catalog",
    "Entry",
    "Histories",
    "HistoryFilter",
    "HistoryPage",
    "Subject",
    "default_entries",
]

_log = logging.getLogger("fourflow.history")
_BIG = BigInteger().with_variant(Integer, "sqlite")
_CATALOG_CURSOR = "history.catalog"
_CATALOG_LOCK = threading.Lock()
COUNT_KINDS = ("livestock.daily_count", "warehouse.stock_level")
# the oracle's closed days of a site (oracles.pipeline.SiteWatch) and its verdicts on
# borrowers' declarations (oracles.crosscheck): the summary's operations block
DAILY_KINDS = ("manufacturing.daily", "energy.daily", "vehicles.daily", "telemetry.daily")
CHECK_KIND = "crosscheck.result"
OPERATION_KINDS = (*DAILY_KINDS, CHECK_KIND)
OPERATION_DAYS = 365  # the newest days of each site the operations block shows
CHECKS_SHOWN = 20  # the newest verdicts it shows
_TELEMETRY_SERIES = 20  # a telemetry day's (subject, schema) series kept in its summary
MAX_PAGE = 500


class AssetKeyRow(SQLModel, table=True):
    __tablename__ = "asset_keys"

    key: str = Field(primary_key=True, max_length=64)  # hex sha256 of the asset id
    asset_id: str = Field(primary_key=True, max_length=200)


# --- default flow entries for events that are not EPCIS captures ----------------------


def _flow_of(kind: str) -> tuple[Flow, str]:
    if kind.startswith("reading.") or kind in COUNT_KINDS or kind == "file.signed":
        return Flow.INFORMATION, kind
    if kind == "oracle.alarm":
        return Flow.INFORMATION, "alarm"
    if kind == "oracle.release":
        return Flow.COMMERCIAL, "release_recorded"
    if kind == CHECK_KIND:
        # a verdict on a borrower's declaration, a commercial document: it stands next
        # to the declaration it judges (the alarm it raises is information)
        return Flow.COMMERCIAL, kind
    if kind.startswith("epcis."):
        return Flow.LOGISTICS, kind
    if kind.startswith(("payment.", "capital.")):
        return Flow.CAPITAL, kind
    if kind.startswith(("contract.", "invoice.", "order.", "document.")):
        return Flow.COMMERCIAL, kind
    return Flow.INFORMATION, kind


_SUMMARY_FIELDS = (
    "head_count",
    "quantity",
    "unit",
    "method",
    "confidence",
    "herd",
    "lot",
    "day",
    "rule",
    "severity",
    "message",
    "fact",
    "bizStep",
    "bizLocation",
    "action",
    "disposition",
    "device",
    "kind",
    "seq",
    "value",
    "temperature_c",
    "humidity_pct",
    "items",
    "trigger",
)


def _summary_of(payload: dict[str, Any]) -> dict[str, Any]:
    """The fields of a payload a timeline shows; the proof bundle carries the rest."""
    out: dict[str, Any] = {}
    for name in _SUMMARY_FIELDS:
        value = payload.get(name)
        if value is None:
            continue
        if isinstance(value, dict):
            value = value.get("id", None) or canonical_json(value).decode()[:200]
        if isinstance(value, list):
            value = value[:20]
        out[name] = value
    data = payload.get("data")
    if isinstance(data, dict):
        for name, value in data.items():
            if isinstance(value, int | float | str | bool) and len(out) < 24:
                out.setdefault(name, value)
    return out


def _figures_of(kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A closed day's or a verdict's summary: its own figures, nulls included (a day with
    no utilization is a gap in the series, not a zero); each list becomes its length
    (``<name>_count``: the evidence, the vehicles released), the per-machine, -inverter,
    -pile and -vehicle breakdowns stay in the event, and a telemetry day keeps its
    series (up to ``_TELEMETRY_SERIES``), each field's unit and aggregates.

    Any submitter may sign an event of these kinds, so the payload may be any JSON:
    what is not of the expected shape is left out, never an error (one event must not
    stop the catalog)."""
    out: dict[str, Any] = {}
    if not isinstance(payload, dict):
        return out
    for name, value in payload.items():
        if value is None or isinstance(value, str | bool) or _number(value) is not None:
            out[name] = value
        elif name == "period" and isinstance(value, dict):
            out[name] = {k: v for k, v in value.items() if isinstance(v, str)}
        elif name == "series" and isinstance(value, list):
            out[name] = [
                kept for kept in map(_measured, value[:_TELEMETRY_SERIES]) if kept is not None
            ]
        elif isinstance(value, list):
            out[f"{name}_count"] = len(value)
    if kind == "manufacturing.daily":
        out["energy_per_unit_kwh"] = _energy_per_piece(payload.get("machines"))
    return out


def _measured(series: Any) -> dict[str, Any] | None:
    """One series of a telemetry day, as its summary keeps it: its measured subject and
    schema (strings, else it is left out), its readings, and each field's unit and
    aggregates (numbers; anything else left out)."""
    if not isinstance(series, dict):
        return None
    subject, schema = series.get("subject"), series.get("schema")
    if not isinstance(subject, str) or not isinstance(schema, str):
        return None
    out: dict[str, Any] = {"subject": subject, "schema": schema}
    if _number(series.get("readings")) is not None:
        out["readings"] = series["readings"]
    fields = series.get("fields")
    out["fields"] = {
        name: {
            k: v
            for k, v in day.items()
            if (k == "unit" and isinstance(v, str)) or (k != "unit" and _number(v) is not None)
        }
        for name, day in (fields.items() if isinstance(fields, dict) else ())
        if isinstance(day, dict)
    }
    return out


def _energy_per_piece(machines: Any) -> float | None:
    """A plant's energy per piece: the energy of the machines that counted pieces that
    day over the pieces they made (a machine without a counter would inflate it); None
    when no machine made any. A machine whose count or energy is not a number is left
    out, and so is a figure too large to divide."""
    if not isinstance(machines, dict):
        return None
    pieces, energy = 0, 0.0
    for m in machines.values():
        if not isinstance(m, dict):
            continue
        output, used = _number(m.get("output")), _number(m.get("energy_kwh"))
        if isinstance(output, int) and output > 0 and used is not None:
            pieces, energy = pieces + output, energy + used
    if not pieces:
        return None
    per_piece = round(energy / float(pieces), 4)
    return per_piece if math.isfinite(per_piece) else None


def default_entries(
    kind: str, asset_ids: Sequence[str], payload: dict[str, Any]
) -> list[dict[str, Any]]:
    flow, entry_kind = _flow_of(kind)
    if kind not in OPERATION_KINDS:
        summary = _summary_of(payload)
    else:
        try:
            summary = _figures_of(kind, payload)
        except Exception:  # a last resort: one event's figures must never stop the catalog
            _log.exception("the figures of a %s event; its summary is the generic one", kind)
            summary = _summary_of(payload)
    place, text = place_of(flow, summary), canonical_json(summary).decode("utf-8")
    return [
        {
            "asset_id": a,
            "flow": flow.value,
            "kind": entry_kind[:64],
            "summary": text,
            "place": place,
        }
        for a in asset_ids
    ]


class Catalog:
    """Keeps ``asset_keys`` and the default flow entries up to date with the events."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def catch_up(self, *, batch: int = 5_000) -> int:
        """Catalog the events stored since the last call; returns how many.

        One catch-up at a time: in this process a lock, across processes the cursor row
        locked for the pass (PostgreSQL ``SELECT … FOR UPDATE``; SQLite has one writer)."""
        newest = self._newest_uncatalogued()
        if newest is None:
            return 0  # the common case on every read: one small query, no lock
        with _CATALOG_LOCK:
            self._ensure_cursor()
            # only what was stored when the read came: under a stream of submissions a
            # reader must not chase the writers (nor wait behind one who does)
            return self._catch_up(batch, upto=newest)

    def _newest_uncatalogued(self) -> int | None:
        """The newest event's position, or None when the catalog has it already."""
        with self.store.session() as session:
            newest = session.exec(select(func.max(EventRow.position))).one()
            cursor = session.get(CursorRow, _CATALOG_CURSOR)
        if newest is None or (cursor is not None and cursor.position >= newest):
            return None
        return int(newest)

    def _ensure_cursor(self) -> None:
        with self.store.session() as session:
            if session.get(CursorRow, _CATALOG_CURSOR) is not None:
                return
            session.add(CursorRow(name=_CATALOG_CURSOR, position=0))
            try:
                session.commit()
            except IntegrityError:  # another process made it first
                session.rollback()

    def _catch_up(self, batch: int, *, upto: int) -> int:
        """Catalog up to ``batch`` events a transaction: five columns of the events read,
        flow entries and asset keys written by executemany (not one ORM object each)."""
        done = 0
        while True:
            with self.store.session() as session:
                cursor = session.exec(
                    select(CursorRow).where(CursorRow.name == _CATALOG_CURSOR).with_for_update()
                ).one()
                connection = session.connection()
                rows = connection.execute(
                    select_columns(
                        col(EventRow.position),
                        col(EventRow.event_id),
                        col(EventRow.kind),
                        col(EventRow.event_time_ms),
                        col(EventRow.envelope),
                    )
                    .where(
                        col(EventRow.position) > cursor.position,
                        col(EventRow.position) <= upto,
                    )
                    .order_by(col(EventRow.position))
                    .limit(batch)
                ).all()
                if not rows:
                    return done
                described = set(
                    session.exec(
                        select(FlowEntryRow.event_id)
                        .where(col(FlowEntryRow.event_id).in_([r.event_id for r in rows]))
                        .distinct()
                    ).all()
                )
                keys: set[tuple[str, str]] = set()
                entries: list[dict[str, Any]] = []
                for _, event_id, kind, time_ms, envelope in rows:
                    event = json.loads(envelope)["event"]
                    assets = event["asset_ids"]
                    keys.update((identifier_key(a).hex(), a) for a in assets if a.strip() == a)
                    if event_id not in described:
                        entries += [
                            {"event_id": event_id, "time_ms": time_ms, **entry}
                            for entry in default_entries(kind, assets, event["payload"])
                        ]
                known = set(
                    session.exec(
                        select(AssetKeyRow.key, AssetKeyRow.asset_id).where(
                            col(AssetKeyRow.key).in_([k for k, _ in keys])
                        )
                    ).all()
                )
                if entries:
                    connection.execute(insert(SQLModel.metadata.tables["flow_entries"]), entries)
                fresh = [{"key": k, "asset_id": a} for k, a in sorted(keys - known)]
                if fresh:
                    connection.execute(insert(SQLModel.metadata.tables["asset_keys"]), fresh)
                cursor.position = rows[-1].position or cursor.position
                session.add(cursor)
                session.commit()
                done += len(rows)

    def assets_with_keys(self, keys: Iterable[str]) -> list[str]:
        wanted = list(keys)
        if not wanted:
            return []
        with self.store.session() as session:
            found = session.exec(
                select(AssetKeyRow.asset_id).where(col(AssetKeyRow.key).in_(wanted))
            ).all()
        return sorted(set(found))


# --- subjects, entries, pages --------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    """What a history covers."""

    kind: str  # "asset" | "pledge"
    id: str
    assets: tuple[str, ...]
    receipts: tuple[int, ...]
    pledges: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {
            "type": self.kind,
            "id": int(self.id) if self.kind == "pledge" else self.id,
            "assets": list(self.assets),
            "receipts": list(self.receipts),
            "pledges": list(self.pledges),
        }


@dataclass(frozen=True)
class HistoryFilter:
    flows: frozenset[str] = frozenset()
    kinds: frozenset[str] = frozenset()
    since_ms: int | None = None
    until_ms: int | None = None  # exclusive

    @classmethod
    def parse(
        cls,
        *,
        flows: Sequence[str] = (),
        kinds: Sequence[str] = (),
        since_ms: int | None = None,
        until_ms: int | None = None,
    ) -> HistoryFilter:
        names = {f.value for f in Flow}
        for flow in flows:
            if flow not in names:
                raise InvalidInput(
                    f"unknown flow {flow!r}: expected one of {', '.join(sorted(names))}",
                    field="flow",
                    code="invalid_filter",
                )
        if since_ms is not None and until_ms is not None and until_ms <= since_ms:
            raise InvalidInput(
                "until must be later than since", field="until", code="invalid_filter"
            )
        return cls(frozenset(flows), frozenset(kinds), since_ms, until_ms)

    def admits(self, time_ms: int, flow: str, kind: str) -> bool:
        return (
            (not self.flows or flow in self.flows)
            and (not self.kinds or kind in self.kinds)
            and (self.since_ms is None or time_ms >= self.since_ms)
            and (self.until_ms is None or time_ms < self.until_ms)
        )


SortKey = tuple[int, int, str, str]  # time, source (0 evidence, 1 chain), then a tie-break


def encode_cursor(key: SortKey) -> str:
    raw = json.dumps(list(key), separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> SortKey:
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        time_ms, source, a, b = json.loads(raw)
        if not (
            isinstance(time_ms, int)
            and source in (0, 1)
            and isinstance(a, str)
            and isinstance(b, str)
        ):
            raise ValueError("wrong shape")
    except (ValueError, TypeError) as exc:
        raise InvalidInput(
            "cursor is not one this API issued", field="cursor", code="invalid_cursor"
        ) from exc
    return (time_ms, source, a, b)


@dataclass
class Entry:
    """One timeline entry."""

    key: SortKey
    flow: str
    kind: str
    time_ms: int
    actors: list[dict[str, str]]
    assets: list[str]
    summary: dict[str, Any]
    proof: dict[str, Any]
    event_id: str | None = None  # off-chain entries
    chain_log: ChainLog | None = field(default=None, repr=False)

    @property
    def id(self) -> str:
        if self.event_id is not None:
            return f"event:{self.event_id}#{self.flow}"
        assert self.chain_log is not None
        return f"log:{self.chain_log.block_number}:{self.chain_log.log_index}"

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "time": utc_text(self.time_ms),
            "time_ms": self.time_ms,
            "flow": self.flow,
            "kind": self.kind,
            "actors": self.actors,
            "assets": self.assets,
            "summary": self.summary,
            "proof": self.proof,
        }
        if self.event_id is not None:
            body["event_id"] = self.event_id
        return body


@dataclass(frozen=True)
class HistoryPage:
    subject: Subject
    entries: list[Entry]
    next_cursor: str | None


# --- on-chain records as entries ------------------------------------------------------

_CAPITAL = {
    "Disbursed",
    "Repaid",
    "MarginToppedUp",
    "MarginCallOpened",
    "MarginCallCured",
    "PledgeLiquidated",
}
_INFORMATION = {"FactReported"}
# logs no timeline shows (roles, prices, rates, consents, anchors): evidence packages
# leave them out too
SKIPPED_EVENTS = {
    "Approval",
    "ApprovalForAll",
    "RoleGranted",
    "RoleRevoked",
    "RoleAdminChanged",
    "PriceReported",
    "PledgeRateSet",
    "PledgeConsented",
    "BatchAnchored",
}
_KINDS = {
    "ReceiptIssued": "receipt.issued",
    "Transfer": "receipt.transferred",
    "ReceiptKeysBound": "receipt.identifiers_bound",
    "ReceiptKeysFreed": "receipt.identifiers_freed",
    "ReceiptQuantityChanged": "receipt.quantity_changed",
    "ReceiptRetired": "receipt.retired",
    "ReceiptLocked": "receipt.locked",
    "ReceiptUnlocked": "receipt.unlocked",
    "PledgeOpened": "pledge.opened",
    "Disbursed": "disbursement",
    "Repaid": "repayment",
    "MarginToppedUp": "margin.top_up",
    "MarginCallOpened": "margin_call.opened",
    "MarginCallCured": "margin_call.cured",
    "FactReported": "fact.reported",
    "PledgeFrozen": "pledge.frozen",
    "PledgeUnfrozen": "pledge.unfrozen",
    "GoodsAdded": "goods.added",
    "GoodsSwapped": "goods.swapped",
    "ReleaseInstructed": "release.instructed",
    "GoodsReleased": "goods.released",
    "PledgeReleased": "pledge.released",
    "PledgeLiquidated": "pledge.liquidated",
}
_ZERO = "0x0000000000000000000000000000000000000000"


def freeze_reasons(bits: int) -> list[str]:
    return [flag.name.lower() for flag in Freeze if flag & bits and flag.name]


CUSTODY_STEPS = 100  # the newest steps a summary's custody chain shows
_Step = tuple[int, str, str, str | None]  # time, event id, kind, place


def _custody_entries(assets: Sequence[str]) -> Any:
    e = FlowEntryRow
    return (
        select_columns(col(e.time_ms), col(e.event_id), col(e.kind), col(e.place))
        .where(col(e.asset_id).in_(list(assets)))
        .where(col(e.flow) == Flow.LOGISTICS.value)
    )


def _steps_by_walk(session: Session, assets: Sequence[str], last: int) -> list[_Step]:
    """The newest ``last`` custody steps, oldest first: every logistics entry of the
    assets in time order (time, event id, id: an event's rows in writing order; event ids
    compare as bytes on every backend, as the timeline does), a step starting wherever
    the place or the kind changes. Read from ix_flow_entries_custody."""
    e = FlowEntryRow
    order = (col(e.time_ms), col(e.event_id), col(e.id))
    moves = session.connection().execute(_custody_entries(assets).order_by(*order)).all()
    steps: list[_Step] = []
    before: tuple[str | None, str] | None = None
    for time_ms, event_id, kind, place in moves:
        if before != (place, kind):
            before = (place, kind)
            steps.append((time_ms, event_id, kind, place))
    return steps[-last:]


def _steps_by_jumps(session: Session, asset: str, last: int) -> list[_Step]:
    """``_steps_by_walk`` of one asset, without reading every entry into Python: from the
    newest entry, the latest entry before it at another place or of another kind ends
    the previous run, and the entry after that starts this one; two index lookups a
    step (the database walks the index between them itself)."""
    e = FlowEntryRow
    key = tuple_(col(e.time_ms), col(e.event_id), col(e.id))
    newest_first = (col(e.time_ms).desc(), col(e.event_id).desc(), col(e.id).desc())
    oldest_first = (col(e.time_ms), col(e.event_id), col(e.id))
    entries = _custody_entries([asset]).add_columns(col(e.id))
    connection = session.connection()
    current = connection.execute(entries.order_by(*newest_first).limit(1)).first()
    steps: list[_Step] = []
    while current is not None and len(steps) < last:
        time_ms, event_id, kind, place, row_id = current
        other = connection.execute(
            entries.where(key < tuple_(time_ms, event_id, row_id))
            .where(or_(col(e.place).is_distinct_from(place), col(e.kind) != kind))
            .order_by(*newest_first)
            .limit(1)
        ).first()
        after = entries if other is None else entries.where(key > tuple_(*other[:2], other[4]))
        start = connection.execute(after.order_by(*oldest_first).limit(1)).one()
        steps.append((start[0], start[1], start[2], start[3]))
        current = other
    return steps[::-1]


def _log_entry(log: ChainLog, state: ChainState, chain_id: int) -> Entry | None:
    if log.event in SKIPPED_EVENTS:
        return None
    a = log.args
    if log.event == "Transfer" and _ZERO in (a["from"], a["to"]):
        return None  # mint and burn: the receipt's issue and retirement say it
    flow = (
        Flow.CAPITAL
        if log.event in _CAPITAL
        else Flow.INFORMATION
        if log.event in _INFORMATION
        else Flow.COMMERCIAL
    )
    actors: list[dict[str, str]] = []
    summary: dict[str, Any] = {}
    pledge = state.pledge(a["pledgeId"]) if a.get("pledgeId") else None
    if pledge is not None:
        actors.append({"role": "lender", "address": pledge.terms.lender})
        summary["pledge_id"] = a["pledgeId"]
        if flow == Flow.CAPITAL:
            summary["currency"] = pledge.terms.currency  # amounts are its minor units
    if "receiptId" in a:
        summary["receipt_id"] = a["receiptId"]
    match log.event:
        case "ReceiptIssued":
            issue = a["issue"]
            actors = [
                {"role": "custodian", "address": a["custodian"]},
                {"role": "owner", "address": a["owner"]},
            ]
            receipt = state.receipts.get(a["receiptId"])
            summary |= {
                "quantity": issue["quantity"],
                "unit": receipt.unit if receipt else None,
                "asset_class": receipt.asset_class if receipt else None,
                "location": issue["location"],
                "registration": issue["registration"],
                "warehouse_receipt_code": issue["warehouseReceiptCode"],
            }
        case "Transfer":
            actors = [{"role": "from", "address": a["from"]}, {"role": "to", "address": a["to"]}]
            summary["receipt_id"] = a["tokenId"]
        case "ReceiptKeysBound" | "ReceiptKeysFreed":
            summary |= {"identifiers": len(a["keys"]), "key_count": a["keyCount"]}
        case "ReceiptQuantityChanged":
            summary |= {
                "change": Change(a["change"]).name.lower(),
                "delta": a["delta"],
                "quantity": a["quantity"],
                "ref": a["ref"],
            }
        case "ReceiptRetired":
            summary |= {"change": Change(a["change"]).name.lower(), "ref": a["ref"]}
        case "PledgeOpened":
            terms = a["terms"]
            actors = [
                {"role": "lender", "address": terms["lender"]},
                {"role": "borrower", "address": a["borrower"]},
                {"role": "payee", "address": terms["payee"]},
            ]
            opened = state.pledge(a["pledgeId"])
            summary |= {
                "receipt_id": terms["receiptId"],
                "principal": terms["principal"],
                "currency": opened.terms.currency if opened else None,
                "pledge_rate_bps": terms["pledgeRateBps"],
                "warning_ltv_bps": terms["warningLtvBps"],
                "liquidation_ltv_bps": terms["liquidationLtvBps"],
                "min_quantity": terms["minQuantity"],
                "min_value": terms["minValue"],
                "maturity": terms["maturity"],
                "mode": Mode(terms["mode"]).name.lower(),
                "consent_digest": a["digest"],
            }
        case "Disbursed":
            actors.append({"role": "payee", "address": a["payee"]})
            summary |= {
                "amount": a["amount"],
                "outstanding": a["outstanding"],
                "payee": a["payee"],
                "to_designated_payee": pledge is not None and a["payee"] == pledge.terms.payee,
                "ref": a["ref"],
            }
        case "Repaid":
            summary |= {
                "amount": a["amount"],
                "outstanding": a["outstanding"],
                "release_credit": a["releaseCredit"],
                "ref": a["ref"],
            }
        case "MarginToppedUp":
            summary |= {"amount": a["amount"], "margin": a["margin"], "ref": a["ref"]}
        case "MarginCallOpened":
            summary |= {"ltv_bps": a["ltvBps"], "deadline": a["deadline"]}
        case "MarginCallCured":
            summary |= {"ltv_bps": a["ltvBps"]}
        case "FactReported":
            actors.append({"role": "oracle", "address": log.address})
            summary |= {
                "receipt_id": a["receiptId"],
                "fact": FactKind(a["kind"]).name.lower(),
                "quantity": a["quantity"],
                "observed_at": a["observedAt"],
                "evidence": {"stream_id": a["streamId"], "seq": a["seq"], "leaf": a["leaf"]},
            }
        case "PledgeFrozen":
            summary |= {
                "reasons": freeze_reasons(a["reasons"]),
                "frozen": freeze_reasons(a["frozen"]),
                "ref": a["ref"],
            }
        case "PledgeUnfrozen":
            summary |= {"cleared": freeze_reasons(a["cleared"])}
        case "GoodsAdded":
            summary |= {"quantity": a["quantity"], "ref": a["ref"]}
        case "GoodsSwapped":
            summary |= {
                "quantity_out": a["quantityOut"],
                "quantity_in": a["quantityIn"],
                "ref": a["ref"],
            }
        case "ReleaseInstructed":
            summary |= {"quantity": a["quantity"], "full": a["full"]}
        case "GoodsReleased":
            summary |= {"quantity": a["quantity"], "credit_used": a["creditUsed"], "ref": a["ref"]}
        case "PledgeReleased":
            summary |= {"margin_returned": a["marginReturned"], "ref": a["ref"]}
        case "PledgeLiquidated":
            actors.append({"role": "buyer", "address": a["buyer"]})
            outcome = a["outcome"]
            summary |= {
                "ground": ["none", "liquidation_line", "uncured_margin_call", "default"][
                    outcome["ground"]
                ],
                "proceeds": outcome["proceeds"],
                "margin_applied": outcome["marginApplied"],
                "proceeds_applied": outcome["proceedsApplied"],
                "surplus": outcome["surplus"],
                "shortfall": outcome["shortfall"],
                "ref": a["ref"],
            }
    return Entry(
        key=(log.block_time_ms, 1, f"{log.block_number:020d}", f"{log.log_index:010d}"),
        flow=flow.value,
        kind=_KINDS.get(log.event, log.event),
        time_ms=log.block_time_ms,
        actors=actors,
        assets=[],
        summary=summary,
        proof=chain_proof(log, chain_id),
        chain_log=log,
    )


def chain_proof(log: ChainLog, chain_id: int) -> dict[str, Any]:
    return {
        "type": "chain_log",
        "chain_id": chain_id,
        "contract": log.address,
        "contract_name": log.contract,
        "event": log.event,
        "block_number": log.block_number,
        "block_hash": log.block_hash,
        "tx_hash": log.tx_hash,
        "log_index": log.log_index,
        "topics": list(log.topics),
        "data": log.data,
    }


# --- the histories ----------------------------------------------------------------------


class Histories:
    """Subjects, timelines and summaries over the store and the chain index."""

    def __init__(
        self, store: Store, index: ChainIndex, bundles: BundleBuilder, deployment: Deployment
    ) -> None:
        self.store = store
        self.index = index
        self.bundles = bundles
        self.deployment = deployment
        self.catalog = Catalog(store)
        self.alarm_book = AlarmBook(store, index, chain_id=deployment.chain_id)

    # --- subjects ---------------------------------------------------------------------

    def pledge_subject(self, pledge_id: int) -> Subject:
        self.catalog.catch_up()
        state = self.index.state()
        pledge = state.pledge(pledge_id)
        if pledge is None:
            raise NotFound(f"no pledge {pledge_id}")
        receipt = state.receipts.get(pledge.terms.receipt_id)
        assets = set(self._receipt_assets(receipt))
        assets |= self._fact_subjects([pledge.terms.receipt_id])
        return Subject(
            kind="pledge",
            id=str(pledge_id),
            assets=tuple(sorted(assets)),
            receipts=(pledge.terms.receipt_id,),
            pledges=(pledge_id,),
        )

    def asset_subject(self, asset_id: str) -> Subject:
        self.catalog.catch_up()
        state = self.index.state()
        key = "0x" + identifier_key(asset_id).hex() if asset_id.strip() == asset_id else ""
        receipts = {r.receipt_id for r in state.receipts.values() if key in r.ever_keys}
        receipts |= self._fact_receipts(asset_id)
        with self.store.session() as session:
            known = session.exec(
                select(FlowEntryRow.id).where(FlowEntryRow.asset_id == asset_id).limit(1)
            ).first()
        if known is None and not receipts:
            raise NotFound(f"no history for asset {asset_id!r}")
        pledges = sorted({p for r in receipts for p in state.receipts[r].pledges})
        return Subject(
            kind="asset",
            id=asset_id,
            assets=(asset_id,),
            receipts=tuple(sorted(receipts)),
            pledges=tuple(pledges),
        )

    def _receipt_assets(self, receipt: ReceiptView | None) -> list[str]:
        if receipt is None:
            return []
        return self.catalog.assets_with_keys(k.removeprefix("0x") for k in receipt.ever_keys)

    def _fact_logs(self, receipt_ids: Sequence[int]) -> list[ChainLog]:
        return self.index.logs(receipt_ids=receipt_ids, events=["FactReported"])

    def _fact_subjects(self, receipt_ids: Sequence[int]) -> set[str]:
        """The assets of the events the receipts' covenant facts cite (a herd, a lot)."""
        leaves = [log.args["leaf"][2:] for log in self._fact_logs(receipt_ids)]
        if not leaves:
            return set()
        with self.store.session() as session:
            envelopes = session.exec(
                select(EventRow.envelope).where(col(EventRow.leaf).in_(leaves))
            ).all()
        return {a for e in envelopes for a in json.loads(e)["event"]["asset_ids"]}

    def _fact_receipts(self, asset_id: str) -> set[int]:
        """The receipts whose covenant facts cite an event about ``asset_id``."""
        with self.store.session() as session:
            # two reads, not a join: entries' event ids compare as bytes on PostgreSQL
            # (migration 0005), the events' unique index in the database's collation,
            # which a join across the two could not use
            cited_ids = session.exec(
                select(FlowEntryRow.event_id)
                .where(FlowEntryRow.asset_id == asset_id)
                .where(col(FlowEntryRow.flow) == Flow.INFORMATION.value)  # the custody index
                .where(col(FlowEntryRow.kind).in_([*COUNT_KINDS, "alarm"]))
            ).all()
            leaves = [
                leaf
                for start in range(0, len(cited_ids), 1_000)
                for leaf in session.exec(
                    select(EventRow.leaf).where(
                        col(EventRow.event_id).in_(sorted(set(cited_ids[start : start + 1_000])))
                    )
                ).all()
            ]
        cited = {"0x" + leaf for leaf in leaves}
        facts = self.index.logs_of_event("FactReported")
        return {log.args["receiptId"] for log in facts if log.args["leaf"] in cited}

    # --- timelines ------------------------------------------------------------------------

    def page(
        self,
        subject: Subject,
        *,
        where: HistoryFilter = HistoryFilter(),
        cursor: str | None = None,
        limit: int = 100,
        with_proofs: bool = True,
    ) -> HistoryPage:
        if not 1 <= limit <= MAX_PAGE:
            raise InvalidInput(
                f"limit must be 1 to {MAX_PAGE}, got {limit}", field="limit", code="invalid_limit"
            )
        after = decode_cursor(cursor) if cursor else None
        evidence = self._evidence_entries(subject, where, after, limit + 1)
        onchain = self._chain_entries(subject, where, after)
        merged = sorted(evidence + onchain, key=lambda e: e.key)
        page = merged[:limit]
        more = len(merged) > limit
        if with_proofs:
            self._attach_bundles(page)
        next_cursor = encode_cursor(page[-1].key) if more and page else None
        return HistoryPage(subject, page, next_cursor)

    def entries(self, subject: Subject, *, where: HistoryFilter = HistoryFilter()) -> list[Entry]:
        """The whole timeline (for evidence packages), proofs attached."""
        out: list[Entry] = []
        cursor: str | None = None
        while True:
            page = self.page(subject, where=where, cursor=cursor, limit=MAX_PAGE)
            out += page.entries
            if page.next_cursor is None:
                return out
            cursor = page.next_cursor

    def _evidence_entries(
        self, subject: Subject, where: HistoryFilter, after: SortKey | None, limit: int
    ) -> list[Entry]:
        if not subject.assets:
            return []
        e = FlowEntryRow
        conditions: list[Any] = [col(e.asset_id).in_(list(subject.assets))]
        if where.flows:
            conditions.append(col(e.flow).in_(sorted(where.flows)))
        if where.kinds:
            conditions.append(col(e.kind).in_(sorted(where.kinds)))
        if where.since_ms is not None:
            conditions.append(col(e.time_ms) >= where.since_ms)
        if where.until_ms is not None:
            conditions.append(col(e.time_ms) < where.until_ms)
        # keys compare by code point, as Python compares the merged keys: event ids do on
        # every backend (migration 0005), and flows are lowercase ASCII words, which every
        # collation orders alike; so ix_flow_entries_asset gives the keys in order
        by_id, by_flow = col(e.event_id), col(e.flow)
        start: tuple[int, str, str] | None = None  # the keys after this one
        if after is not None:
            if after[1] == 0:
                start = (after[0], after[2], after[3])
            else:
                conditions.append(col(e.time_ms) > after[0])
        # The page's (time, event, flow) keys, each once (an event's entries for several
        # assets, or two of its kinds in one flow, share a key). Not GROUP BY: that reads
        # every entry of the subject before the first key comes back. Rows in key order,
        # a few pages' worth at a time, duplicates dropped here, the next read starting
        # after the last key seen.
        keys: list[tuple[int, str, str]] = []
        fetch = max(4 * limit, 200)
        with self.store.session() as session:
            while len(keys) < limit:
                bounded = list(conditions)
                if start is not None:
                    bounded += [
                        col(e.time_ms) >= start[0],  # the index's range; the tuple decides
                        tuple_(col(e.time_ms), by_id, by_flow) > tuple_(*start),
                    ]
                found = session.exec(
                    select(e.time_ms, e.event_id, e.flow)
                    .where(and_(*bounded))
                    .order_by(col(e.time_ms), by_id, by_flow)
                    .limit(fetch)
                ).all()
                for key in found:
                    if not keys or keys[-1] != tuple(key):
                        keys.append((key[0], key[1], key[2]))
                if len(found) < fetch:
                    break
                start = (found[-1][0], found[-1][1], found[-1][2])
            keys = keys[:limit]
            if not keys:
                return []
            # The page's rows: its events, within its time range of the assets' entries,
            # a range of ix_flow_entries_asset however many entries the assets have and
            # whether or not the planner has statistics yet (a store just filled)
            found_rows = (
                select(e)
                .where(col(e.asset_id).in_(list(subject.assets)))
                .where(col(e.time_ms) >= keys[0][0], col(e.time_ms) <= keys[-1][0])
                .where(col(e.event_id).in_(sorted({k[1] for k in keys})))
            )
            rows = list(session.exec(found_rows.order_by(col(e.id))).all())
            submitters = dict(
                session.exec(
                    select(EventRow.event_id, EventRow.submitter).where(
                        col(EventRow.event_id).in_(sorted({k[1] for k in keys}))
                    )
                ).all()
            )
        grouped: dict[tuple[str, str], list[FlowEntryRow]] = {}
        for row in rows:
            grouped.setdefault((row.event_id, row.flow), []).append(row)
        out = []
        for time_ms, event_id, flow in keys:
            group = grouped.get((event_id, flow), [])
            if not group:
                continue
            first = group[0]
            summary = json.loads(first.summary)
            actors = [{"role": "submitter", "address": submitters.get(event_id, "")}]
            for role in ("possessor", "owner", "from", "to"):
                if isinstance(summary.get(role), str):
                    actors.append({"role": role, "address": summary[role]})
            out.append(
                Entry(
                    key=(time_ms, 0, event_id, flow),
                    flow=flow,
                    kind=first.kind,
                    time_ms=time_ms,
                    actors=actors,
                    assets=sorted({r.asset_id for r in group}),
                    summary=summary,
                    proof={"type": "merkle", "status": "pending", "bundle": None},
                    event_id=event_id,
                )
            )
        return out

    def _chain_entries(
        self, subject: Subject, where: HistoryFilter, after: SortKey | None
    ) -> list[Entry]:
        logs = self.index.logs(receipt_ids=subject.receipts, pledge_ids=subject.pledges)
        state = self.index.state()
        out = []
        for log in logs:
            pledge_id = log.args.get("pledgeId")
            if pledge_id and pledge_id not in subject.pledges:
                continue  # another pledge on the same receipt: not this subject's
            entry = _log_entry(log, state, self.deployment.chain_id)
            if entry is None or not where.admits(entry.time_ms, entry.flow, entry.kind):
                continue
            if after is not None and entry.key <= after:
                continue
            out.append(entry)
        return out

    def _attach_bundles(self, entries: Sequence[Entry]) -> None:
        """Every anchored event's bundle, fetched for the whole page at once; the rest
        stay "pending"."""
        bundles = self.bundles.bundles(e.event_id for e in entries if e.event_id is not None)
        for entry in entries:
            bundle = bundles.get(entry.event_id) if entry.event_id is not None else None
            if bundle is not None:
                entry.proof = {
                    "type": "merkle",
                    "status": "anchored",
                    "bundle": bundle.to_json_dict(),
                }

    # --- the summary block --------------------------------------------------------------

    def summary(self, subject: Subject) -> dict[str, Any]:
        state = self.index.state()
        return {
            "custody": self._custody(subject),
            "quantity": self._quantity(subject, state),
            "ownership": self._ownership(subject, state),
            "money": [self._money(p, state) for p in subject.pledges],
            "alarms": self._alarms(subject),
            "operations": self._operations(subject),
        }

    def _custody(self, subject: Subject) -> dict[str, Any]:
        with self.store.session() as session:
            current = session.exec(
                select(CustodyRow).where(col(CustodyRow.asset_id).in_(list(subject.assets)))
            ).all()
            if len(subject.assets) == 1:
                steps = _steps_by_jumps(session, subject.assets[0], CUSTODY_STEPS)
            else:
                steps = _steps_by_walk(session, subject.assets, CUSTODY_STEPS)
        chain = [
            {"time": utc_text(time_ms), "event_id": event_id, "kind": kind, "location": where}
            for time_ms, event_id, kind, where in steps
        ]
        holders: dict[tuple[Any, ...], list[str]] = {}
        for row in current:
            holders.setdefault((row.status, row.location, row.possessor, row.owner), []).append(
                row.asset_id
            )
        return {
            "now": [
                {
                    "status": s,
                    "location": loc,
                    "possessor": p,
                    "owner": o,
                    "assets": len(ids),
                    "examples": sorted(ids)[:5],
                }
                for (s, loc, p, o), ids in sorted(holders.items(), key=lambda kv: -len(kv[1]))
            ],
            "assets_tracked": len(current),
            "chain": chain,
        }

    def _quantity(self, subject: Subject, state: ChainState) -> dict[str, Any]:
        with self.store.session() as session:
            counts = session.exec(
                select(
                    FlowEntryRow.event_id,
                    FlowEntryRow.time_ms,
                    FlowEntryRow.kind,
                    FlowEntryRow.summary,
                )
                .where(col(FlowEntryRow.asset_id).in_(list(subject.assets)))
                .where(col(FlowEntryRow.flow) == Flow.INFORMATION.value)  # the custody index
                .where(col(FlowEntryRow.kind).in_(COUNT_KINDS))
                .distinct()
                .order_by(col(FlowEntryRow.time_ms))
            ).all()
        trend = []
        for event_id, time_ms, kind, text in counts:
            summary = json.loads(text)
            value = summary.get("head_count", summary.get("quantity"))
            if isinstance(value, int):
                trend.append(
                    {
                        "time_ms": time_ms,
                        "time": utc_text(time_ms),
                        "quantity": value,
                        "source": kind,
                        "event_id": event_id,
                        "method": summary.get("method"),
                        "confidence": summary.get("confidence"),
                    }
                )
        facts = [
            {
                "time_ms": log.args["observedAt"] * 1000,
                "quantity": log.args["quantity"],
                "leaf": log.args["leaf"],
                "block_number": log.block_number,
            }
            for log in self._fact_logs(subject.receipts)
            if log.args["kind"] == FactKind.QUANTITY
            and log.args["pledgeId"] in (0, *subject.pledges)
        ]
        receipts = [state.receipts[r] for r in subject.receipts if r in state.receipts]
        minimum = None
        for pledge_id in subject.pledges:
            pledge = state.pledge(pledge_id)
            if pledge is not None and pledge.status == PledgeStatus.ACTIVE:
                minimum = max(minimum or 0, pledge.terms.min_quantity)
        latest = trend[-1] if trend else None
        return {
            "unit": receipts[0].unit if receipts else None,
            "booked": sum(r.quantity for r in receipts) if receipts else None,
            "minimum": minimum,
            "latest": latest,
            "latest_on_chain": facts[-1] if facts else None,
            "below_minimum": (
                latest is not None and minimum is not None and latest["quantity"] < minimum
            ),
            "trend": trend[-365:],
        }

    def _ownership(self, subject: Subject, state: ChainState) -> dict[str, Any]:
        receipts = []
        for receipt_id in subject.receipts:
            r = state.receipts.get(receipt_id)
            if r is None:
                continue
            receipts.append(
                {
                    "receipt_id": r.receipt_id,
                    "owner": r.owner,
                    "custodian": r.custodian,
                    "status": r.status.name.lower(),
                    "quantity": r.quantity,
                    "unit": r.unit,
                    "asset_class": r.asset_class,
                    "location": r.location,
                    "registration": r.registration,
                    "warehouse_receipt_code": r.warehouse_receipt_code,
                    "pledge_id": r.pledge_id or None,
                }
            )
        liens = []
        for pledge_id in subject.pledges:
            p = state.pledge(pledge_id)
            if p is None:
                continue
            liens.append(
                {
                    "pledge_id": pledge_id,
                    "receipt_id": p.terms.receipt_id,
                    "lender": p.terms.lender,
                    "borrower": p.borrower,
                    "status": p.status.name.lower(),
                    "frozen": freeze_reasons(int(p.frozen)),
                    "lien_active": p.status == PledgeStatus.ACTIVE,
                }
            )
        return {"receipts": receipts, "pledges": liens}

    def _money(self, pledge_id: int, state: ChainState) -> dict[str, Any]:
        pledge = state.pledge(pledge_id)
        assert pledge is not None
        disbursements, repayments = [], []
        liquidation = None
        for log in self.index.logs(pledge_ids=[pledge_id]):
            a = log.args
            at = {"time": utc_text(log.block_time_ms), "tx_hash": log.tx_hash, "ref": a.get("ref")}
            if log.event == "Disbursed":
                disbursements.append(
                    at
                    | {
                        "amount": a["amount"],
                        "payee": a["payee"],
                        "to_designated_payee": a["payee"] == pledge.terms.payee,
                    }
                )
            elif log.event == "Repaid":
                repayments.append(at | {"amount": a["amount"], "outstanding": a["outstanding"]})
            elif log.event == "PledgeLiquidated":
                liquidation = at | {k: v for k, v in a["outcome"].items() if k != "ground"}
        return {
            "pledge_id": pledge_id,
            "currency": pledge.terms.currency,
            "principal": pledge.terms.principal,
            "payee": pledge.terms.payee,
            "disbursed": pledge.disbursed,
            "repaid": pledge.repaid,
            "outstanding": pledge.outstanding,
            "margin": pledge.margin,
            "all_to_designated_payee": all(d["to_designated_payee"] for d in disbursements),
            "disbursements": disbursements,
            "repayments": repayments,
            "liquidation": liquidation,
        }

    def _alarms(self, subject: Subject) -> dict[str, Any]:
        """The subject's alarms, as GET /v1/alarms lists them: the rules' and the
        contract's (margin calls, freezes)."""
        alarms = self.alarm_book.about(pledges=subject.pledges, subjects=subject.assets)
        return {
            "open": sum(1 for a in alarms if a.state == "open"),
            "acknowledged": sum(1 for a in alarms if a.state == "acknowledged"),
            "cleared": sum(1 for a in alarms if a.state == "cleared"),
            "latest": [
                {
                    "id": a.id,
                    "category": a.category,
                    "rule": a.rule,
                    "state": a.state,
                    "severity": a.severity,
                    "time": utc_text(a.opened_ms),
                    "message": a.message,
                }
                for a in alarms[-10:]
            ],
        }

    def _operations(self, subject: Subject) -> dict[str, Any]:
        """The subject's sites day by day and the verdicts on its declarations: the
        ``<industry>.daily`` and ``crosscheck.result`` entries' summaries (the payload,
        for an entry catalogued before they carried their figures)."""
        if not subject.assets:
            return {"days": OPERATION_DAYS, "sites": [], "checks": []}
        e = FlowEntryRow
        assets = list(subject.assets)
        with self.store.session() as session:
            newest = session.exec(
                select(func.max(e.time_ms))
                .where(col(e.asset_id).in_(assets))
                .where(col(e.flow) == Flow.INFORMATION.value)  # the custody index has kinds
                .where(col(e.kind).in_(DAILY_KINDS))
            ).one()
            columns = select_columns(
                col(e.event_id), col(e.time_ms), col(e.kind), col(e.asset_id), col(e.summary)
            )
            connection = session.connection()
            days: Sequence[Any] = []
            if newest is not None:
                days = connection.execute(
                    columns.where(col(e.asset_id).in_(assets))
                    .where(col(e.flow) == Flow.INFORMATION.value)
                    .where(col(e.kind).in_(DAILY_KINDS))
                    .where(col(e.time_ms) > newest - (OPERATION_DAYS + 1) * 86_400_000)
                    .order_by(col(e.time_ms), col(e.event_id))
                ).all()
            checks = connection.execute(
                columns.where(col(e.asset_id).in_(assets))
                .where(col(e.flow).in_([Flow.COMMERCIAL.value, Flow.INFORMATION.value]))
                .where(col(e.kind) == CHECK_KIND)
                .order_by(col(e.time_ms).desc(), col(e.event_id).desc())
                .limit(CHECKS_SHOWN * len(assets))
            ).all()
        summaries = self._operation_summaries([*days, *checks])
        recorders = self._submitters({r[0] for r in [*days, *checks]})
        # a site is one submitter's record of it: the same days recorded by another
        # submitter are another site, so a reader sees who recorded each series
        sites: dict[tuple[str, str, str, str], list[tuple[str, int, dict[str, Any]]]] = {}
        seen: set[str] = set()
        for event_id, time_ms, kind, asset_id, _ in days:
            if event_id in seen:
                continue
            seen.add(event_id)
            figures = summaries[event_id]
            if not isinstance(figures.get("day"), str):
                continue  # not a closed day: no day to show it on
            recorder = recorders.get(event_id, "")
            sites.setdefault((asset_id, _industry(kind, figures), kind, recorder), []).append(
                (event_id, time_ms, figures)
            )
        verdicts: list[dict[str, Any]] = []
        for event_id, time_ms, _, _, _ in checks:
            if event_id in seen or len(verdicts) == CHECKS_SHOWN:
                continue
            seen.add(event_id)
            verdict = _verdict(event_id, time_ms, summaries[event_id])
            verdicts.append(verdict | {"recorded_by": recorders.get(event_id) or None})
        return {
            "days": OPERATION_DAYS,
            "sites": [
                _site(site, industry, kind, recorded[-OPERATION_DAYS:])
                | {"recorded_by": recorder or None}
                for (site, industry, kind, recorder), recorded in sorted(sites.items())
            ],
            "checks": verdicts[::-1],  # oldest first, as every list of the summary
        }

    def _submitters(self, event_ids: Iterable[str]) -> dict[str, str]:
        """The submitter's address of each event, by event id (those still stored)."""
        wanted = sorted(set(event_ids))
        found: dict[str, str] = {}
        with self.store.session() as session:
            for start in range(0, len(wanted), 1_000):  # a bounded list of parameters
                found.update(
                    session.exec(
                        select(EventRow.event_id, EventRow.submitter).where(
                            col(EventRow.event_id).in_(wanted[start : start + 1_000])
                        )
                    ).all()
                )
        return found

    def _operation_summaries(self, rows: Sequence[Any]) -> dict[str, dict[str, Any]]:
        """Each row's figures by event id: its summary, or, for an entry catalogued
        before the summaries of these kinds carried figures, its event's payload."""
        out: dict[str, dict[str, Any]] = {}
        old: dict[str, str] = {}
        for event_id, _, kind, _, text in rows:
            summary = json.loads(text)
            if not isinstance(summary, dict):
                summary = {}
            out[event_id] = summary  # figures, or all there is if its event is gone
            if not _has_figures(kind, summary):
                old[event_id] = kind
        if old:
            with self.store.session() as session:
                envelopes = session.exec(
                    select(EventRow.event_id, EventRow.envelope).where(
                        col(EventRow.event_id).in_(sorted(old))
                    )
                ).all()
            for event_id, envelope in envelopes:
                payload = json.loads(envelope)["event"]["payload"]
                try:
                    out[event_id] = _figures_of(old[event_id], payload)
                except Exception:  # as in default_entries: one event never fails a read
                    _log.exception("the figures of %s; left out", event_id)
        return out


# --- the operations block: what each industry's day shows, with units -------------------

# (figure, label, unit) of each daily series, by industry; money in minor units of
# _CURRENCY (fen of the yuan: the energy oracle's tariffs and revenue are in CNY)
_Series = tuple[str, str, str]
OPERATION_SERIES: dict[str, tuple[_Series, ...]] = {
    "manufacturing": (
        ("utilization_pct", "utilization", "%"),
        ("running_h", "running time", "h"),
        ("output", "output", "pieces"),
        ("energy_kwh", "energy", "kWh"),
        ("energy_per_unit_kwh", "energy per piece", "kWh/piece"),
    ),
    "solar": (
        ("generation_kwh", "generation", "kWh"),
        ("export_kwh", "export to the grid", "kWh"),
        ("pr_pct", "performance ratio", "%"),
        ("insolation_kwh_m2", "insolation", "kWh/m²"),
        ("revenue_fen", "revenue", "fen"),
        ("availability_pct", "availability", "%"),
    ),
    "charging": (
        ("sessions", "sessions", "sessions"),
        ("energy_kwh", "energy delivered", "kWh"),
        ("utilization_pct", "utilization", "%"),
        ("revenue_fen", "revenue", "fen"),
    ),
    "vehicles": (
        ("financed", "financed", "vehicles"),
        ("on_lot", "on the lot", "vehicles"),
        ("released_count", "released that day", "vehicles"),
        ("off_lot_released", "off the lot, released", "vehicles"),
        ("off_lot_unreleased", "off the lot, not released", "vehicles"),
        ("certificates_in_safe", "certificates in the safe", "certificates"),
        ("keys_in_safe", "keys in the safe", "keys"),
    ),
}
_CURRENCY = "CNY"
_MONEY = {"revenue_fen"}
_TELEMETRY_AGGREGATES = ("mean", "twa", "min", "max", "sum", "delta", "last")
# a verdict's alarm severity, as oracles.crosscheck.RULES gives it (a test pins the two)
CHECK_SEVERITY = {
    "overstated": "breach",
    "understated": "warning",
    "incomparable": "warning",
    "unverifiable": "warning",
}


def _industry(kind: str, figures: dict[str, Any]) -> str:
    if kind == "energy.daily":
        return "charging" if "station" in figures else "solar"
    return kind.removesuffix(".daily")


def _has_figures(kind: str, summary: dict[str, Any]) -> bool:
    """Whether an entry's summary is ``_figures_of``'s (else it was catalogued before)."""
    if kind == CHECK_KIND:
        return "status" in summary
    return any(name in summary for name in ("plant", "station", "dealer", "series"))


def _site(
    subject: str, industry: str, kind: str, recorded: Sequence[tuple[str, int, dict[str, Any]]]
) -> dict[str, Any]:
    """One site's daily series: a column per figure, a row per closed day."""
    series: list[dict[str, Any]]
    if industry == "telemetry":
        series = _telemetry_series([figures for _, _, figures in recorded])
    else:
        series = []
        for name, label, unit in OPERATION_SERIES.get(industry, ()):
            values = [_number(figures.get(name)) for _, _, figures in recorded]
            line: dict[str, Any] = {"metric": name, "label": label, "unit": unit}
            if name in _MONEY:
                line["currency"] = _CURRENCY
            series.append(line | {"values": values, "latest": values[-1]})
    event_id, time_ms, figures = recorded[-1]
    return {
        "subject": subject,
        "industry": industry,
        "kind": kind,
        "days": [_text(figures.get("day")) or "" for _, _, figures in recorded],
        "event_ids": [event_id for event_id, _, _ in recorded],
        "latest": {
            "day": _text(figures.get("day")),
            "time": utc_text(time_ms),
            "event_id": event_id,
        },
        "series": series,
    }


def _telemetry_series(days: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """A telemetry site's series: one per (measured subject, schema, field, aggregate),
    in the schema's own unit; a day that did not measure it is a gap. A series without a
    measured subject or schema (strings), a field that is not an object of figures, an
    aggregate that is not a number: left out (a summary catalogued from a malformed
    payload)."""
    lines: dict[tuple[str, str, str, str], dict[str, Any]] = {}
    for index, figures in enumerate(days):
        measured_days = figures.get("series")
        for measured in measured_days if isinstance(measured_days, list) else ():
            if not isinstance(measured, dict):
                continue
            subject, schema = measured.get("subject"), measured.get("schema")
            fields = measured.get("fields")
            if not (isinstance(subject, str) and isinstance(schema, str)):
                continue
            if not isinstance(fields, dict):
                continue
            for field_name, day in sorted(fields.items()):
                if not isinstance(day, dict):
                    continue
                for aggregate in _TELEMETRY_AGGREGATES:
                    value = _number(day.get(aggregate))
                    if value is None:
                        continue
                    unit = day.get("unit")
                    line = lines.setdefault(
                        (subject, schema, field_name, aggregate),
                        {
                            "metric": f"{field_name}.{aggregate}",
                            "label": f"{field_name.replace('_', ' ')} ({aggregate})",
                            "unit": unit if isinstance(unit, str) else "",
                            "measured": subject,
                            "schema": schema,
                            "values": [None] * len(days),
                        },
                    )
                    line["values"][index] = value
    out = [lines[key] for key in sorted(lines)]
    for line in out:
        line["latest"] = line["values"][-1]
    return out


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _number(value: Any) -> float | int | None:
    """A finite number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return value if isinstance(value, int) or math.isfinite(value) else None


def _verdict(event_id: str, time_ms: int, figures: dict[str, Any]) -> dict[str, Any]:
    """One verdict as the block shows it: its texts as strings and its figures as
    numbers, else null (a summary catalogued from a malformed payload)."""
    status = _text(figures.get("status"))
    period = figures.get("period")
    if not isinstance(period, dict):
        period = {}
    declared = figures.get("declared", figures.get("value"))
    severity = CHECK_SEVERITY.get(status) if status is not None else None
    return {
        "event_id": event_id,
        "time": utc_text(time_ms),
        "declaration": _text(figures.get("declaration")),
        "subject": _text(figures.get("subject")),
        "metric": _text(figures.get("metric")),
        "period": {"from": _text(period.get("from")), "to": _text(period.get("to"))},
        "declared": _number(declared),
        "declared_unit": _text(figures.get("unit")),
        "observed": _number(figures.get("observed")),
        "observed_unit": _text(figures.get("observed_unit")),
        "difference": _number(figures.get("difference")),
        "difference_pct": _number(figures.get("difference_pct")),
        "tolerance_pct": _number(figures.get("tolerance_pct")),
        "days_observed": _number(figures.get("days_observed")),
        "status": status,
        "severity": severity,
        "breach": severity == "breach",
    }
