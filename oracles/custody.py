"""Realistic RFID custody events (GS1 EPCIS 2.0 shapes) for the demo and the tests.

A steel mill commissions tagged coils, packs them onto an SSCC pallet, ships it; a
bonded warehouse receives and stores it. Each step is one EPCIS event, carried as the
payload of a fourflow event on the custodian's custody stream.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from ledger.models import EventBody, offset_zone

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


def _epcis_time(moment: datetime, offset: str = "+08:00") -> str:
    """``moment`` written in the event's local offset, as a reader in China would."""
    return moment.astimezone(offset_zone(offset)).isoformat(timespec="milliseconds")


def steel_coil_document(
    *,
    coils: int = 8,
    start: datetime | None = None,
    seed: int = 1,
    buyer_party: str | None = None,
) -> dict[str, Any]:
    """The same journey as an EPCIS 2.0 document, as a mill's and a warehouse's
    traceability systems would capture it: the mill writes EPC URNs, the warehouse GS1
    Digital Links; times carry the local +08:00 offset.

    commission (ADD, lot quantity) → pack onto an SSCC pallet → ship (owning and
    possessing party: the mill; destination: the warehouse) → receive (temperature
    reading) → store, each coil read at its bay.
    """
    start = start or datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
    epcs = [coil_epc(2018_000 + seed * 1000 + i) for i in range(coils)]
    sscc = pallet_sscc(seed)

    def at(hours: float) -> str:
        return _epcis_time(start + timedelta(hours=hours))

    gtin = "https://id.gs1.org/01/10614141073464"  # sgtin 0614141.107346 as a GTIN-14
    dl_epcs = [f"{gtin}/21/{epc.rsplit('.', 1)[1]}" for epc in epcs]
    destination = [
        {"type": "possessing_party", "destination": WAREHOUSE_PARTY},
        {"type": "location", "destination": WAREHOUSE},
    ]
    if buyer_party:
        destination.append({"type": "owning_party", "destination": buyer_party})
    events: list[dict[str, Any]] = [
        {
            "type": "ObjectEvent",
            "eventTime": at(0),
            "eventTimeZoneOffset": "+08:00",
            "action": "ADD",
            "epcList": epcs,
            "bizStep": "commissioning",
            "disposition": "active",
            "readPoint": {"id": MILL},
            "bizLocation": {"id": MILL},
            "quantityList": [
                {
                    "epcClass": "urn:epc:class:lgtin:0614141.107346.COIL2026",
                    "quantity": 24.6,
                    "uom": "TNE",
                }
            ],
            "ilmd": {"example:heatNumber": f"H{seed:05d}"},
        },
        {
            "type": "AggregationEvent",
            "eventTime": at(2),
            "eventTimeZoneOffset": "+08:00",
            "action": "ADD",
            "parentID": sscc,
            "childEPCs": epcs,
            "bizStep": "packing",
            "disposition": "in_progress",
            "readPoint": {"id": MILL},
        },
        {
            "type": "ObjectEvent",
            "eventTime": at(5),
            "eventTimeZoneOffset": "+08:00",
            "action": "OBSERVE",
            "epcList": [sscc],
            "bizStep": "shipping",
            "disposition": "in_transit",
            "readPoint": {"id": MILL},
            "bizTransactionList": [
                {
                    "type": "desadv",
                    "bizTransaction": f"urn:epcglobal:cbv:bt:0614141000005:DA{seed:06d}",
                }
            ],
            "sourceList": [
                {"type": "owning_party", "source": MILL_PARTY},
                {"type": "possessing_party", "source": MILL_PARTY},
            ],
            "destinationList": destination,
        },
        {
            "type": "ObjectEvent",
            "eventTime": at(31),
            "eventTimeZoneOffset": "+08:00",
            "action": "OBSERVE",
            "epcList": [sscc],
            "bizStep": "receiving",
            "disposition": "in_progress",
            "readPoint": {"id": WAREHOUSE},
            "bizLocation": {"id": WAREHOUSE},
            "destinationList": [{"type": "possessing_party", "destination": WAREHOUSE_PARTY}],
            "sensorElementList": [
                {
                    "sensorMetadata": {"time": at(31), "deviceID": "urn:epc:id:giai:0614141.DOCK7"},
                    "sensorReport": [
                        {"type": "gs1:Temperature", "value": 6.5, "uom": "CEL"},
                        {"type": "gs1:RelativeHumidity", "value": 48.0, "uom": "A93"},
                    ],
                }
            ],
        },
        {
            "type": "ObjectEvent",
            "eventTime": at(32),
            "eventTimeZoneOffset": "+08:00",
            "action": "OBSERVE",
            "epcList": dl_epcs,
            "bizStep": "storing",
            "disposition": "in_progress",
            "readPoint": {"id": "https://id.gs1.org/414/0614141007776"},
            "bizLocation": {"id": "https://id.gs1.org/414/0614141007776"},
        },
    ]
    return {
        "@context": [
            "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
            {"example": "https://example.com/steel/"},
        ],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": at(33),
        "epcisBody": {"eventList": events},
    }
