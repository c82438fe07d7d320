"""Realistic RFID custody events (GS1 EPCIS 2.0 shapes) for the demo and the tests.

A steel mill commissions tagged coils, packs them onto an SSCC pallet, ships it; a
bonded warehouse receives and stores it. Each step is one EPCIS event, carried as the
payload of a fourflow event on the custodian's custody stream.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from ledger.models import EventBody

_CBV = "urn:epcglobal:cbv"
MILL = "urn:epc:id:sgln:0614141.00001.0"
WAREHOUSE = "urn:epc:id:sgln:0614141.00777.0"
MILL_PARTY = "urn:epc:id:pgln:0614141.00001"
WAREHOUSE_PARTY = "urn:epc:id:pgln:0614141.00777"


def coil_epc(serial: int) -> str:
    return f"urn:epc:id:sgtin:0614141.107346.{serial}"


def pallet_sscc(serial: int) -> str:
    return f"urn:epc:id:sscc:0614141.{serial:010d}"


def steel_coil_journey(
    *,
    submitter: str,
    stream: str = "acme-logistics.custody",
    coils: int = 8,
    start: datetime | None = None,
    seed: int = 1,
) -> list[EventBody]:
    """Commission → pack → ship → receive → store: one pallet of ``coils`` steel coils."""
    start = start or datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
    epcs = [coil_epc(2018_000 + seed * 1000 + i) for i in range(coils)]
    sscc = pallet_sscc(seed)
    ns = uuid.UUID(int=seed)

    def event(
        step: int, kind: str, hours: float, assets: list[str], payload: dict[str, Any]
    ) -> EventBody:
        when = start + timedelta(hours=hours)
        return EventBody(
            kind=kind,
            schema_version=1,
            stream=stream,
            event_id=str(uuid.uuid5(ns, f"{stream}/{step}")),
            asset_ids=assets,
            event_time=when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z"),
            payload={"eventTimeZoneOffset": "+08:00", **payload},
            submitter=submitter,
        )

    return [
        event(
            0,
            "epcis.ObjectEvent",
            0,
            epcs,
            {
                "type": "ObjectEvent",
                "action": "ADD",
                "epcList": epcs,
                "bizStep": f"{_CBV}:bizstep:commissioning",
                "disposition": f"{_CBV}:disp:active",
                "readPoint": {"id": MILL},
                "bizLocation": {"id": MILL},
                "quantityList": [
                    {
                        "epcClass": "urn:epc:class:lgtin:0614141.107346.COIL2026",
                        "quantity": 24.6,
                        "uom": "TNE",
                    }
                ],
            },
        ),
        event(
            1,
            "epcis.AggregationEvent",
            2,
            [sscc, *epcs],
            {
                "type": "AggregationEvent",
                "action": "ADD",
                "parentID": sscc,
                "childEPCs": epcs,
                "bizStep": f"{_CBV}:bizstep:packing",
                "disposition": f"{_CBV}:disp:in_progress",
                "readPoint": {"id": MILL},
            },
        ),
        event(
            2,
            "epcis.ObjectEvent",
            5,
            [sscc, *epcs],
            {
                "type": "ObjectEvent",
                "action": "OBSERVE",
                "epcList": [sscc],
                "bizStep": f"{_CBV}:bizstep:shipping",
                "disposition": f"{_CBV}:disp:in_transit",
                "readPoint": {"id": MILL},
                "sourceList": [
                    {"type": f"{_CBV}:sdt:owning_party", "source": MILL_PARTY},
                    {"type": f"{_CBV}:sdt:possessing_party", "source": MILL_PARTY},
                ],
                "destinationList": [
                    {"type": f"{_CBV}:sdt:possessing_party", "destination": WAREHOUSE_PARTY}
                ],
            },
        ),
        event(
            3,
            "epcis.ObjectEvent",
            31,
            [sscc, *epcs],
            {
                "type": "ObjectEvent",
                "action": "OBSERVE",
                "epcList": [sscc],
                "bizStep": f"{_CBV}:bizstep:receiving",
                "disposition": f"{_CBV}:disp:in_progress",
                "readPoint": {"id": WAREHOUSE},
                "bizLocation": {"id": WAREHOUSE},
                "sensorElementList": [
                    {"sensorReport": [{"type": "gs1:Temperature", "value": 6.5, "uom": "CEL"}]}
                ],
            },
        ),
        event(
            4,
            "epcis.ObjectEvent",
            32,
            [sscc, *epcs],
            {
                "type": "ObjectEvent",
                "action": "OBSERVE",
                "epcList": epcs,
                "bizStep": f"{_CBV}:bizstep:storing",
                "disposition": f"{_CBV}:disp:in_progress",
                "readPoint": {"id": WAREHOUSE},
                "bizLocation": {"id": WAREHOUSE},
            },
        ),
    ]
