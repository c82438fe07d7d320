"""What an EPCIS event means for fourflow: the assets it concerns, its four-flow entries,
custody changes and pallet (SSCC) aggregation changes. Pure: no store, no chain.

    assets        every item EPC, class (lot) and pallet it names, plus everything packed
                  on a named pallet at that moment (so shipping a pallet moves its coils)
    logistics     one entry per asset: the step, where, what state the goods are in
    commercial    an ownership handoff (owning_party source → destination) and the
                  business transactions cited (po, inv, desadv, …), per asset
    information   what the event's sensors reported, per asset
    custody       receiving / storing / arriving / stocking at a bizLocation: the goods
                  are held there (by the destination possessing party, if named);
                  shipping / departing / loading: in transit to the destination;
                  decommissioning / destroying or an ObjectEvent DELETE: retired
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from ledger.flows import Flow, FlowEntry
from oracles.epcis.document import CapturedEvent

__all__ = ["Effects", "effects_of"]

HELD_STEPS: Final = frozenset(
    {"receiving", "storing", "arriving", "stocking", "stock_taking", "cycle_counting"}
)
TRANSIT_STEPS: Final = frozenset({"shipping", "departing", "loading", "transporting"})
RETIRE_STEPS: Final = frozenset({"decommissioning", "destroying", "killing"})


@dataclass(frozen=True)
class Custody:
    status: str  # held | in_transit | retired
    location: str | None
    possessor: str | None
    owner: str | None


@dataclass(frozen=True)
class Effects:
    assets: list[str]
    entries: list[FlowEntry]
    custody: Custody | None
    packed: dict[str, list[str]] = field(default_factory=dict)  # parent -> children added
    unpacked: dict[str, list[str] | None] = field(default_factory=dict)  # None: all children


def _party(items: list[dict[str, Any]] | None, kind: str, key: str) -> str | None:
    for item in items or []:
        if item.get("type") == kind:
            value: str = item[key]
            return value
    return None


def effects_of(event: CapturedEvent, packed_now: Mapping[str, list[str]]) -> Effects:
    """The effects of ``event`` given what each pallet holds now (``packed_now``)."""
    e = event.event
    ids = event.identifiers
    named = event.epcs
    pallets = [p for p in (ids.get("parent", []) + ids.get("epc", [])) if p in packed_now]
    assets = list(dict.fromkeys([*named, *(c for p in pallets for c in packed_now[p])]))
    where = (e.get("bizLocation") or e.get("readPoint") or {}).get("id")
    step = e.get("bizStep")

    logistics = {
        "event_type": event.type,
        "action": e.get("action"),
        "biz_step": step,
        "disposition": e.get("disposition"),
        "read_point": (e.get("readPoint") or {}).get("id"),
        "biz_location": (e.get("bizLocation") or {}).get("id"),
    }
    entries = [
        FlowEntry(asset, Flow.LOGISTICS, f"epcis.{step or event.type}"[:64], _compact(logistics))
        for asset in assets
    ]

    owner_from = _party(e.get("sourceList"), "owning_party", "source")
    owner_to = _party(e.get("destinationList"), "owning_party", "destination")
    possessor_to = _party(e.get("destinationList"), "possessing_party", "destination")
    if owner_to is not None and owner_to != owner_from:
        handoff = {"from": owner_from, "to": owner_to, "biz_step": step}
        entries += [
            FlowEntry(a, Flow.COMMERCIAL, "ownership_transfer", _compact(handoff)) for a in assets
        ]
    transactions = e.get("bizTransactionList") or []
    if transactions:
        cited = {"transactions": transactions, "event_type": event.type, "action": e.get("action")}
        entries += [FlowEntry(a, Flow.COMMERCIAL, "business_transaction", cited) for a in assets]

    reports = []
    for element in e.get("sensorElementList") or []:
        device = (element.get("sensorMetadata") or {}).get("deviceID")
        for report in element["sensorReport"]:
            reports.append({**report, "device": device} if device else dict(report))
    if reports:
        entries += [
            FlowEntry(a, Flow.INFORMATION, "sensor_report", {"reports": reports}) for a in assets
        ]

    custody = None
    if step in RETIRE_STEPS or (event.type == "ObjectEvent" and e.get("action") == "DELETE"):
        custody = Custody("retired", where, None, None)
    elif step in TRANSIT_STEPS:
        custody = Custody("in_transit", None, possessor_to, owner_to)
    elif step in HELD_STEPS and where is not None:
        custody = Custody("held", where, possessor_to, owner_to)

    packed: dict[str, list[str]] = {}
    unpacked: dict[str, list[str] | None] = {}
    if event.type == "AggregationEvent" and "parentID" in e:
        children = ids.get("child", []) + ids.get("class", [])
        if e["action"] == "ADD":
            packed[e["parentID"]] = children
        elif e["action"] == "DELETE":
            unpacked[e["parentID"]] = children or None
    return Effects(
        assets=assets, entries=entries, custody=custody, packed=packed, unpacked=unpacked
    )


def _compact(values: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
