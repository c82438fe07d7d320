"""oracles.epcis.event_hash: the GS1 CBV 2.0 EPCIS Event Hash ID.

Golden values come from tests/vectors/epcis_hash.json (written by
tests/vectors/generate_epcis_hash.py from the documents in tests/vectors/epcis/).
Independent checks: the two worked examples published with the algorithm (README of
RalphTro/epcis-event-hash-generator, examples 1 and 2, pre-hash and hash printed there)
and plain hashlib for the ni: URI.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import InvalidInput
from oracles.epcis import event_hash
from oracles.epcis.event_hash import event_hash_id, prehash_string
from oracles.epcis.gs1 import to_digital_link
from tests.unit._vectors import VECTORS, load

PROPERTY = settings(derandomize=True, max_examples=40, deadline=None, database=None)
CASES = load("epcis_hash.json")["cases"]
CASE_IDS = [case["name"] for case in CASES]
NOT_HASHED = {"eventID", "recordTime", "errorDeclaration", "rdfs:comment", "comment", "@context"}


def document(case: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads((VECTORS / case["file"]).read_text(encoding="utf-8"))
    return doc


def event_and_context(case: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    doc = document(case)
    (event,) = doc["epcisBody"]["eventList"]
    return event, doc.get("@context")


def case_named(name: str) -> dict[str, Any]:
    return next(case for case in CASES if case["name"] == name)


def ni(prehash: str) -> str:
    return f"ni:///sha-256;{hashlib.sha256(prehash.encode()).hexdigest()}?ver=CBV2.0"


def minimal(**fields: Any) -> dict[str, Any]:
    event = {"type": "ObjectEvent", "eventTime": "2026-01-01T00:00:00Z", "action": "OBSERVE"}
    return {**event, **fields}


def test_public_api_is_pinned() -> None:
    assert sorted(event_hash.__all__) == sorted(
        [
            "EPCIS_PREFIXES",
            "EVENT_TYPES",
            "HASH_VERSION",
            "event_hash_id",
            "prehash_string",
            "utc_timestamp",
        ]
    )


def test_utc_timestamp_is_the_hash_s_own_rounding() -> None:
    assert event_hash.utc_timestamp("2026-11-20T14:00:00.1235+08:00") == "2026-11-20T06:00:00.124Z"
    assert event_hash.utc_timestamp("2026-11-20T06:00:00Z") == "2026-11-20T06:00:00.000Z"


# --- golden vectors -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_prehash_and_hash_match_vector(case: dict[str, Any]) -> None:
    event, context = event_and_context(case)
    assert prehash_string(event, context=context) == case["prehash"]
    assert event_hash_id(event, context=context) == case["hash"]
    assert ni(case["prehash"]) == case["hash"]


def test_every_vector_file_is_recorded_and_unchanged() -> None:
    files = sorted(p.name for p in (VECTORS / "epcis").glob("*.json"))
    assert files == sorted(Path(case["file"]).name for case in CASES)
    for case in CASES:
        text = (VECTORS / case["file"]).read_text(encoding="utf-8")
        assert hashlib.sha256(text.encode()).hexdigest() == case["document_sha256"], case["name"]


def test_spellings_of_one_event_share_one_id_and_other_events_do_not() -> None:
    by_group: dict[str, set[str]] = {}
    for case in CASES:
        by_group.setdefault(case["same_event_as"], set()).add(case["hash"])
    assert all(len(hashes) == 1 for hashes in by_group.values()), by_group
    assert len({case["same_event_as"] for case in CASES}) == len({c["hash"] for c in CASES})
    assert sum(len(members) > 1 for members in _groups().values()) >= 4  # real twins exist


def _groups() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = {}
    for case in CASES:
        groups.setdefault(case["same_event_as"], []).append(case["name"])
    return groups


def _keys(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield key
            yield from _keys(item)
    elif isinstance(value, list):
        for item in value:
            yield from _keys(item)


def test_vectors_cover_every_field_kind() -> None:
    kinds = {"ObjectEvent", "AggregationEvent", "TransactionEvent", "TransformationEvent",
             "AssociationEvent"}  # fmt: skip
    fields = {
        "epcList", "quantityList", "parentID", "childEPCs", "childQuantityList", "inputEPCList",
        "inputQuantityList", "outputEPCList", "outputQuantityList", "transformationID",
        "action", "bizStep", "disposition", "persistentDisposition", "readPoint", "bizLocation",
        "bizTransactionList", "sourceList", "destinationList", "sensorElementList",
        "sensorMetadata", "sensorReport", "eventTimeZoneOffset", "certificationInfo", "ilmd",
        "time", "startTime", "endTime", "deviceID", "deviceMetadata", "rawData",
        "dataProcessingMethod", "bizRules", "exception", "microorganism", "chemicalSubstance",
        "value", "component", "stringValue", "booleanValue", "hexBinaryValue", "uriValue",
        "minValue", "maxValue", "meanValue", "sDev", "percRank", "percValue", "uom",
        "coordinateReferenceSystem", "errorDeclaration", "eventID", "recordTime",
    }  # fmt: skip
    seen: set[str] = set()
    types: set[str] = set()
    for case in CASES:
        event, _ = event_and_context(case)
        seen |= set(_keys(event))
        types.add(event["type"])
    assert types == kinds
    assert fields <= seen, fields - seen
    assert any(":" in key and not key.startswith("rdfs") for key in seen)  # extensions


def test_vectors_record_the_reference_implementations() -> None:
    for case in CASES:
        refs = case["references"]
        assert set(refs) == {"epcis-event-hash-generator", "epcis2.js",
                             "openepcis-event-hash-generator"}  # fmt: skip
        assert refs["openepcis-event-hash-generator"]["note"].startswith("not run")
        for name in ("epcis-event-hash-generator", "epcis2.js"):
            ran = refs[name]
            if "hash" in ran:
                assert ran["agrees"] == (ran["hash"] == case["hash"])


# --- the algorithm's published worked examples --------------------------------------------------

PUBLISHED_CONTEXT = [
    "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
    {"gs1": "https://gs1.org/voc/"},
    {"example": "https://ns.example.com/epcis/"},
]
PUBLISHED_EXAMPLE_1 = {
    "type": "ObjectEvent",
    "eventTime": "2020-03-04T11:00:30.000+01:00",
    "eventTimeZoneOffset": "+01:00",
    "recordTime": "2020-03-04T11:00:30.999+01:00",
    "epcList": [
        "urn:epc:id:sscc:4012345.0000000333",
        "urn:epc:id:sscc:4012345.0000000111",
        "urn:epc:id:sscc:4012345.0000000222",
    ],
    "action": "OBSERVE",
    "bizStep": "departing",
    "readPoint": {"id": "urn:epc:id:sgln:4012345.00011.987"},
    "example:myField1": {"example:mySubField1": "2", "example:mySubField2": "5"},
    "example:myField2": "0",
    "example:myField3": {"example:mySubField3": ["3", "1"]},
}
PUBLISHED_EXAMPLE_2 = {
    "type": "ObjectEvent",
    "eventTime": "2020-04-01T15:00:00+01:00",
    "eventTimeZoneOffset": "+01:00",
    "epcList": ["urn:epc:id:sgtin:4012345.011111.9876"],
    "action": "OBSERVE",
    "bizStep": "inspecting",
    "readPoint": {"id": "urn:epc:id:sgln:4012345.00005.0"},
    "sensorElementList": [
        {
            "sensorMetadata": {
                "deviceID": "urn:epc:id:giai:4000001.111",
                "deviceMetadata": "https://id.gs1.org/8004/4000001111",
            },
            "sensorReport": [
                {"type": "Temperature", "value": 26, "sDev": 0.1, "uom": "CEL"},
                {"type": "AbsoluteHumidity", "value": 12.1, "uom": "A93"},
                {"type": "Dimensionless", "microorganism":
                 "https://www.ncbi.nlm.nih.gov/taxonomy/1126011", "value": 0.05, "uom": "C35"},
                {"type": "Dimensionless", "chemicalSubstance":
                 "https://identifiers.org/inchikey:CZMRCDWAGMRECN-UGDNZRGBSA-N", "value": 0.18,
                 "uom": "C35"},
            ],
        }
    ],
}  # fmt: skip


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        (PUBLISHED_EXAMPLE_1,
         "ni:///sha-256;6ae96341e0acc6d7a261364751f60e68278a81cdf51da0abb6b4e617014e39d7?ver=CBV2.0"),
        (PUBLISHED_EXAMPLE_2,
         "ni:///sha-256;49b13037c36e84ad9307c531671b00e901318c3957e4b1151f816ec49eb668da?ver=CBV2.0"),
    ],
    ids=["example-1-extensions", "example-2-sensors"],
)  # fmt: skip
def test_published_worked_examples(event: dict[str, Any], expected: str) -> None:
    assert event_hash_id(event, context=PUBLISHED_CONTEXT) == expected


def test_published_example_1_prehash() -> None:
    ns = "{https://ns.example.com/epcis/}"
    assert prehash_string(PUBLISHED_EXAMPLE_1, context=PUBLISHED_CONTEXT) == (
        "eventType=ObjectEventeventTime=2020-03-04T10:00:30.000ZeventTimeZoneOffset=+01:00"
        "epcListepc=https://id.gs1.org/00/040123450000001112"
        "epc=https://id.gs1.org/00/040123450000002225epc=https://id.gs1.org/00/040123450000003338"
        "action=OBSERVEbizStep=https://ref.gs1.org/cbv/BizStep-departing"
        "readPointid=https://id.gs1.org/414/4012345000115/254/987"
        f"{ns}myField1{ns}mySubField1=2{ns}mySubField2=5{ns}myField2=0"
        f"{ns}myField3{ns}mySubField3=1{ns}mySubField3=3"
    )


# --- invariance: the same event in another spelling ------------------------------------------------


def shuffled(value: Any, rng: random.Random) -> Any:
    """Every object's keys and every list's elements in a new order (not @context)."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: v if k == "@context" else shuffled(v, rng) for k, v in items}
    if isinstance(value, list):
        items = [shuffled(v, rng) for v in value]
        rng.shuffle(items)
        return items
    return value


@PROPERTY
@given(case=st.sampled_from(CASES), rng=st.randoms(use_true_random=False))
def test_key_and_list_order_do_not_matter(case: dict[str, Any], rng: random.Random) -> None:
    event, context = event_and_context(case)
    assert event_hash_id(shuffled(event, rng), context=context) == case["hash"]


def _rewrite_strings(value: Any, rewrite: Any) -> Any:
    if isinstance(value, dict):
        return {k: v if k == "@context" else _rewrite_strings(v, rewrite) for k, v in value.items()}
    if isinstance(value, list):
        return [_rewrite_strings(v, rewrite) for v in value]
    return rewrite(value) if isinstance(value, str) else value


@PROPERTY
@given(case=st.sampled_from(CASES), data=st.data())
def test_epc_uris_and_digital_links_on_any_host_are_one_key(
    case: dict[str, Any], data: st.DataObject
) -> None:
    event, context = event_and_context(case)
    hosts = st.sampled_from(["https://id.gs1.org", "https://brand.example/x", "http://d.example"])

    def as_digital_link(text: str) -> str:
        if not text.startswith("urn:epc:") or text.startswith("urn:epc:id:gid:"):
            return text
        canonical = to_digital_link(text)
        return data.draw(hosts) + canonical.removeprefix("https://id.gs1.org")

    assert event_hash_id(_rewrite_strings(event, as_digital_link), context=context) == case["hash"]


@PROPERTY
@given(case=st.sampled_from(CASES), minutes=st.integers(-14 * 60, 14 * 60), extra=st.integers(0, 6))
def test_event_time_in_any_offset_is_one_instant(
    case: dict[str, Any], minutes: int, extra: int
) -> None:
    event, context = event_and_context(case)
    utc_text = case["prehash"].split("eventTime=", 1)[1][:24]  # 2026-...T..:..:..mmmZ
    instant = datetime.strptime(utc_text, "%Y-%m-%dT%H:%M:%S.%fZ")
    local = instant + timedelta(minutes=minutes)
    sign, whole = ("-" if minutes < 0 else "+"), abs(minutes)
    event["eventTime"] = (
        local.strftime("%Y-%m-%dT%H:%M:%S.") + utc_text[20:23] + "0" * extra
        + (f"{sign}{whole // 60:02d}:{whole % 60:02d}" if minutes else "Z")
    )  # fmt: skip
    assert event_hash_id(event, context=context) == case["hash"]


@pytest.mark.parametrize(
    ("field", "spellings"),
    [
        ("bizStep", ["shipping", "urn:epcglobal:cbv:bizstep:shipping",
                     "https://ref.gs1.org/cbv/BizStep-shipping", "cbv:BizStep-shipping"]),
        ("disposition", ["in_transit", "urn:epcglobal:cbv:disp:in_transit",
                         "https://ref.gs1.org/cbv/Disp-in_transit", " in_transit "]),
    ],
)  # fmt: skip
def test_cbv_values_in_any_spelling_are_one_term(field: str, spellings: list[str]) -> None:
    ids = {event_hash_id(minimal(**{field: spelling})) for spelling in spellings}
    assert len(ids) == 1


@pytest.mark.parametrize(
    ("kind", "list_name", "id_field", "spellings"),
    [
        ("btt", "bizTransactionList", "bizTransaction",
         ["po", "urn:epcglobal:cbv:btt:po", "https://ref.gs1.org/cbv/BTT-po"]),
        ("sdt", "sourceList", "source",
         ["owning_party", "urn:epcglobal:cbv:sdt:owning_party",
          "https://ref.gs1.org/cbv/SDT-owning_party"]),
        ("sdt", "destinationList", "destination",
         ["location", "urn:epcglobal:cbv:sdt:location", "https://ref.gs1.org/cbv/SDT-location"]),
    ],
)  # fmt: skip
def test_typed_list_types_in_any_spelling(
    kind: str, list_name: str, id_field: str, spellings: list[str]
) -> None:
    party = "urn:epc:id:pgln:4012345.00000"
    ids = {event_hash_id(minimal(**{list_name: [{"type": t, id_field: party}]})) for t in spellings}
    assert len(ids) == 1


@pytest.mark.parametrize(
    ("field", "spellings", "written"),
    [
        ("type", ["Temperature", "gs1:Temperature", "https://gs1.org/voc/Temperature"],
         "type=https://gs1.org/voc/Temperature"),
        ("exception", ["ALARM_CONDITION", "gs1:ALARM_CONDITION"],
         "exception=https://gs1.org/voc/ALARM_CONDITION"),
        ("component", ["x", "cbv:Comp-x", "https://ref.gs1.org/cbv/Comp-x"],
         "component=https://ref.gs1.org/cbv/Comp-x"),
    ],
)  # fmt: skip
def test_sensor_vocabulary_in_any_spelling(field: str, spellings: list[str], written: str) -> None:
    texts = {
        prehash_string(minimal(sensorElementList=[{"sensorReport": [{field: s}]}]))
        for s in spellings
    }
    assert len(texts) == 1
    assert written in texts.pop()


def test_persistent_disposition_in_any_spelling() -> None:
    a = minimal(persistentDisposition={"set": ["recalled", "urn:epcglobal:cbv:disp:expired"]})
    b = minimal(
        persistentDisposition={"set": ["cbv:Disp-expired", "https://ref.gs1.org/cbv/Disp-recalled"]}
    )
    assert event_hash_id(a) == event_hash_id(b)


# --- sensitivity: any change to a hashed field changes the ID --------------------------------------


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            if path == () and key in NOT_HASHED | {"type", "eventTime"}:
                continue
            if key == "@context":
                continue
            yield (*path, key)
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield (*path, index)
            yield from _paths(item, (*path, index))


def _without(event: dict[str, Any], path: tuple[Any, ...]) -> dict[str, Any]:
    changed = copy.deepcopy(event)
    parent: Any = changed
    for step in path[:-1]:
        parent = parent[step]
    del parent[path[-1]]
    return changed


@pytest.mark.parametrize("case", CASES, ids=CASE_IDS)
def test_removing_any_hashed_part_changes_the_id(case: dict[str, Any]) -> None:
    event, context = event_and_context(case)
    paths = list(_paths(event))
    assert len(paths) > 5
    for path in paths:
        assert event_hash_id(_without(event, path), context=context) != case["hash"], path


STEEL = "object-steel-coils-commissioning-urn"
PALLETS = "object-pallets-shipping-handoff-urn"
SENSORS = "object-cold-chain-sensor-reports"
DAIRY = "transformation-dairy-cheese"
HERD = "object-herd-count-extensions"
CHANGES: list[tuple[str, tuple[Any, ...], Any]] = [
    (STEEL, ("eventTime",), "2026-03-02T09:15:30.125+08:00"),
    (STEEL, ("eventTime",), "2026-03-02T09:15:30.124+07:00"),
    (STEEL, ("eventTimeZoneOffset",), "+07:00"),
    (STEEL, ("certificationInfo",), "https://certs.example.org/iso9001/CN-STEEL-0043"),
    (STEEL, ("epcList", 0), "urn:epc:id:sgtin:6901234.012345.C2026%2F0004"),
    (STEEL, ("epcList", 0), "urn:epc:id:sgtin:6901234.112345.C2026%2F0001"),
    (STEEL, ("action",), "OBSERVE"),
    (STEEL, ("bizStep",), "encoding"),
    (STEEL, ("disposition",), "inactive"),
    (STEEL, ("readPoint", "id"), "urn:epc:id:sgln:6901234.00001.DOCK-4"),
    (STEEL, ("bizLocation", "id"), "urn:epc:id:sgln:6901234.00002.0"),
    (STEEL, ("ilmd", "ff:grade"), "Q345B"),
    (STEEL, ("ilmd", "ff:netWeight", "ff:value"), 24.7),
    (STEEL, ("type",), "AssociationEvent"),
    (PALLETS, ("sourceList", 0, "type"), "possessing_party"),
    (PALLETS, ("sourceList", 1, "source"), "urn:epc:id:pgln:6954321.00000"),
    (PALLETS, ("destinationList", 0, "destination"), "urn:epc:id:pgln:6954321.00000"),
    (PALLETS, ("bizTransactionList", 0, "type"), "inv"),
    (PALLETS, ("bizTransactionList", 0, "bizTransaction"), "urn:epc:id:gdti:6901234.00002.PO-88173"),
    (PALLETS, ("epcList", 1), "urn:epc:id:sscc:6901234.2000004712"),
    (DAIRY, ("inputQuantityList", 1, "quantity"), 2500.25),
    (DAIRY, ("inputQuantityList", 1, "uom"), "KGM"),
    (DAIRY, ("inputQuantityList", 1, "epcClass"), "urn:epc:class:lgtin:9521568.025121.MILK-0410-C"),
    (DAIRY, ("inputEPCList", 0), "urn:epc:id:sgtin:9521568.025124.TOTE-0410-3"),
    (DAIRY, ("outputEPCList", 0), "urn:epc:id:sgtin:9521568.025120.13"),
    (DAIRY, ("outputQuantityList", 0, "quantity"), 6301),
    (DAIRY, ("transformationID",), "urn:epc:id:gdti:9521568.00001.CHEESE-BATCH-0411"),
    (DAIRY, ("ilmd", "cbvmda:bestBeforeDate"), "2026-10-11"),
    (SENSORS, ("sensorElementList", 0, "sensorMetadata", "time"), "2026-04-11T08:59:01+02:00"),
    (SENSORS, ("sensorElementList", 0, "sensorMetadata", "deviceID"), "urn:epc:id:giai:6954321.LOGGER-78"),
    (SENSORS, ("sensorElementList", 0, "sensorMetadata", "bizRules"), "https://rules.example/cold-chain-5C"),
    (SENSORS, ("sensorElementList", 0, "sensorMetadata", "ff:firmware"), "4.2.2"),
    (SENSORS, ("sensorElementList", 0, "sensorReport", 0, "value"), 3.9),
    (SENSORS, ("sensorElementList", 0, "sensorReport", 0, "minValue"), 2.0),
    (SENSORS, ("sensorElementList", 0, "sensorReport", 0, "uom"), "FAH"),
    (SENSORS, ("sensorElementList", 0, "sensorReport", 0, "type"), "gs1:AbsoluteHumidity"),
    (SENSORS, ("sensorElementList", 0, "sensorReport", 1, "exception"), "ERROR_CONDITION"),
    (SENSORS, ("sensorElementList", 0, "sensorReport", 1, "ff:probe"), "floor"),
    (SENSORS, ("sensorElementList", 0, "sensorReport", 3, "component"), "longitude"),
    (SENSORS, ("sensorElementList", 1, "sensorReport", 0, "booleanValue"), False),
    (SENSORS, ("sensorElementList", 1, "sensorReport", 0, "stringValue"), "door open"),
    (SENSORS, ("sensorElementList", 1, "sensorReport", 1, "hexBinaryValue"), "0A1FFF"),
    (SENSORS, ("sensorElementList", 1, "sensorReport", 2, "chemicalSubstance"), "https://identifiers.org/inchikey:XLYOFNOQVPJJNP-UHFFFAOYSA-N"),
    (SENSORS, ("sensorElementList", 0, "ff:calibratedBy"), "urn:epc:id:pgln:4012345.00000"),
    (HERD, ("ff:headCount",), 4),
    (HERD, ("ff:manualCheck",), True),
    (HERD, ("ff:note",), "checked"),
    (HERD, ("ff:pledge", "ff:lender"), "urn:epc:id:pgln:4012345.00000"),
    (HERD, ("epcList", 0), "urn:fourflow:eartag:CN-150102-000732"),
    (HERD, ("readPoint", "ranch:gateCamera"), "https://ranch.example/cams/gate-3"),
    (HERD, ("@context",), {"ranch": "https://ns.ranch.example/herd/v2#"}),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "path", "value"), CHANGES, ids=[f"{n}:{'/'.join(map(str, p))}" for n, p, _ in CHANGES]
)
def test_changing_a_hashed_value_changes_the_id(
    name: str, path: tuple[Any, ...], value: Any
) -> None:
    case = case_named(name)
    event, context = event_and_context(case)
    target: Any = event
    for step in path[:-1]:
        target = target[step]
    assert target[path[-1]] != value
    target[path[-1]] = value
    assert event_hash_id(event, context=context) != case["hash"]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("eventID", "urn:uuid:00000000-0000-4000-8000-000000000000"),
        ("recordTime", "2030-01-01T00:00:00Z"),
        (
            "errorDeclaration",
            {"declarationTime": "2030-01-01T00:00:00Z", "reason": "did_not_occur"},
        ),
        ("rdfs:comment", "a note"),
        ("comment", "a note"),
    ],
)
def test_fields_outside_the_hash_do_not_change_it(field: str, value: Any) -> None:
    case = case_named(STEEL)
    event, context = event_and_context(case)
    event[field] = value
    assert event_hash_id(event, context=context) == case["hash"]


# --- how values are written ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("written", "expected"),
    [(1, "1"), (1.0, "1"), (24.60, "24.6"), (0.5, "0.5"), (-0.0, "0"), (1e-7, "0.0000001"),
     (1e21, "1000000000000000000000"), (12345678901234567890, "12345678901234567890"),
     (0.1 + 0.2, "0.30000000000000004")],
)  # fmt: skip
def test_numbers_are_plain_decimals_without_trailing_zeros(written: float, expected: str) -> None:
    text = prehash_string(
        minimal(
            quantityList=[{"epcClass": "urn:epc:idpat:sgtin:9521568.025120.*", "quantity": written}]
        )
    )
    assert text.endswith(f"quantity={expected}action=OBSERVE")


@pytest.mark.parametrize(
    ("written", "expected"),
    [
        ("2026-03-02T09:15:30+08:00", "2026-03-02T01:15:30.000Z"),
        ("2026-03-02T01:15:30.1Z", "2026-03-02T01:15:30.100Z"),
        ("2026-03-02T01:15:30.1234Z", "2026-03-02T01:15:30.123Z"),
        ("2026-03-02T01:15:30.1235Z", "2026-03-02T01:15:30.124Z"),
        ("2026-03-02T01:15:30.123999999Z", "2026-03-02T01:15:30.124Z"),
        ("2026-12-31T23:59:59.9995Z", "2027-01-01T00:00:00.000Z"),
        ("2026-03-01T20:45:30.000-04:30", "2026-03-02T01:15:30.000Z"),
        ("2026-03-02T01:15:30.000+00:00", "2026-03-02T01:15:30.000Z"),
        ("2026-03-02T01:15:30.000-00:00", "2026-03-02T01:15:30.000Z"),
        ("2026-03-02T15:15:30.000+14:00", "2026-03-02T01:15:30.000Z"),
    ],
)
def test_timestamps_become_utc_milliseconds(written: str, expected: str) -> None:
    assert prehash_string(minimal(eventTime=written)).startswith(
        f"eventType=ObjectEventeventTime={expected}action"
    )


def test_extension_values_and_names() -> None:
    event = minimal(
        **{
            "@context": {"x": "https://x.example/ns#"},
            "x:flag": True,
            "x:count": 2.0,
            "x:empty": "  ",
            "x:site": "x:yard-1",
            "x:pallet": "urn:epc:id:sscc:4012345.0000000111",
            "x:nested": {"x:b": "2", "plain": "1", "x:a": ["z", "y"]},
        }
    )
    ns = "{https://x.example/ns#}"
    assert prehash_string(event).endswith(
        "action=OBSERVE"
        f"{ns}count=2{ns}empty{ns}flag=true{ns}nestedplain=1{ns}a=y{ns}a=z{ns}b=2"
        f"{ns}pallet=https://id.gs1.org/00/040123450000001112{ns}site=https://x.example/ns#yard-1"
    )


def test_extensions_inside_a_structure_follow_its_fields_sorted() -> None:
    context = {"x": "https://x.example/"}
    place = {"x:zone": "B", "id": "urn:epc:id:sgln:0614141.12345.0", "x:bay": "7"}
    expected = "readPointid=https://id.gs1.org/414/0614141123452{https://x.example/}bay=7"
    expected += "{https://x.example/}zone=B"
    for order in (place, dict(reversed(place.items()))):
        assert expected in prehash_string(minimal(readPoint=order), context=context)


def test_document_context_and_event_context_both_declare_prefixes() -> None:
    event = minimal(**{"@context": [{"b": "https://b.example/"}], "a:x": "1", "b:y": "2"})
    text = prehash_string(
        event,
        context=[
            "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld",
            {"a": "https://a.example/"},
        ],
    )
    assert text.endswith("{https://a.example/}x=1{https://b.example/}y=2")


# --- every bad event -------------------------------------------------------------------------------

BAD_EVENTS: list[tuple[Any, str, str]] = [
    ("not an object", "/", "expected an object, got str"),
    (minimal(type="Event"), "/type", "expected one of ObjectEvent"),
    ({"type": "ObjectEvent"}, "/eventTime", "an event needs an eventTime"),
    (minimal(eventTime="2026-01-01T00:00:00"), "/eventTime", "is not a date-time with a time zone"),
    (minimal(eventTime="2026-02-30T00:00:00Z"), "/eventTime", "is not a valid date-time"),
    (minimal(eventTime="2026-01-01T00:00:00+15:00"), "/eventTime", "outside -14:00..+14:00"),
    (minimal(eventTime=1767225600), "/eventTime", "expected a string, got int"),
    (minimal(epcList="urn:epc:id:sgtin:0614141.812345.6789"), "/epcList", "expected a list, got str"),
    (minimal(epcList=["urn:epc:id:sgtin:0614141.812345.678/9"]), "/epcList/0", "which an EPC URI must escape"),
    (minimal(epcList=["https://id.gs1.org/01/09521568251205"]), "/epcList/0", "GTIN 09521568251205 has check digit 5, expected 4"),
    (minimal(epcList=["coil-17"]), "/epcList/0", "'coil-17' is not an absolute URI"),
    (minimal(epcList=[""]), "/epcList/0", "is empty"),
    (minimal(epcList=[None]), "/epcList/0", "expected a string, got NoneType"),
    (minimal(quantityList=[{"epcClass": "urn:epc:idpat:sgtin:9521568.025120.*", "quantity": "3"}]), "/quantityList/0/quantity", "expected a number, got str"),
    (minimal(quantityList=[{"epcClass": "urn:epc:idpat:sgtin:9521568.025120.*", "quantity": True}]), "/quantityList/0/quantity", "expected a number, got bool"),
    (minimal(quantityList=[{"epcClass": "urn:epc:idpat:sgtin:9521568.025120.*", "quantity": float("nan")}]), "/quantityList/0/quantity", "is not a number JSON can carry"),
    (minimal(quantityList=[{"epcClass": "urn:epc:idpat:sgtin:9521568.025120.*", "qty": 3}]), "/quantityList/0/qty", "'qty' is neither an EPCIS field nor a prefix:name extension"),
    (minimal(bizStep="weighing"), "/bizStep", "'weighing' is neither a CBV 2.0 bizstep term nor an absolute URI"),
    (minimal(disposition="urn:epcglobal:cbv:disp:lost"), "/disposition", "is not a CBV 2.0 disp term"),
    (minimal(bizTransactionList=[{"type": "order", "bizTransaction": "urn:x:1"}]), "/bizTransactionList/0/type", "'order' is neither a CBV 2.0 btt term"),
    (minimal(sourceList=[{"type": "owner", "source": "urn:x:1"}]), "/sourceList/0/type", "'owner' is neither a CBV 2.0 sdt term"),
    (minimal(persistentDisposition={"set": ["recalled"], "clear": ["expired"]}), "/persistentDisposition/clear", "persistentDisposition has only set and unset"),
    (minimal(persistentDisposition={"set": "recalled"}), "/persistentDisposition/set", "expected a list, got str"),
    (minimal(readPoint="urn:epc:id:sgln:0614141.12345.0"), "/readPoint", "expected an object, got str"),
    (minimal(readPoint={"id": "urn:epc:id:sgln:0614141.12345.0", "dock": "3"}), "/readPoint/dock", "'dock' is neither an EPCIS field nor a prefix:name extension"),
    (minimal(sensorElementList=[{"sensorReport": [{"booleanValue": "yes"}]}]), "/sensorElementList/0/sensorReport/0/booleanValue", "expected true or false, got str"),
    (minimal(sensorElementList=[{"sensorReport": [{"type": "gs1:Temperature", "bizRules": "https://r.example"}]}]), "/sensorElementList/0/sensorReport/0/bizRules", "'bizRules' is neither an EPCIS field"),
    (minimal(sensorElementList=[{"sensorMetadata": {"time": "yesterday"}}]), "/sensorElementList/0/sensorMetadata/time", "is not a date-time"),
    (minimal(ilmd={"lot": "A1"}), "/ilmd/lot", "'lot' is neither an EPCIS field nor a prefix:name extension"),
    (minimal(ilmd=["x"]), "/ilmd", "expected an object, got list"),
    (minimal(**{"acme:grade": "A"}), "/acme:grade", "extension 'acme:grade' uses prefix 'acme', not in @context"),
    (minimal(**{"ff:grade": None, "@context": {"ff": "https://ff.example/"}}), "/ff:grade", "an extension value cannot be NoneType"),
    (minimal(**{"ff:grade": {"@value": "A"}, "@context": {"ff": "https://ff.example/"}}), "/ff:grade/@value", "'@value' is neither an EPCIS field"),
    (minimal(grade="A"), "/grade", "'grade' is neither an EPCIS field nor a prefix:name extension"),
    (minimal(**{"@context": 42}), "/@context", "@context must be a URL, an object or a list of them"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("event", "pointer", "message"), BAD_EVENTS, ids=[f"{p} {m[:30]}" for _, p, m in BAD_EVENTS]
)
def test_bad_event_is_rejected_with_where_and_what(event: Any, pointer: str, message: str) -> None:
    with pytest.raises(InvalidInput) as err:
        event_hash_id(event)
    assert err.value.message.startswith(f"{pointer}: ")
    assert message in err.value.message
    assert err.value.field == pointer
    assert err.value.code in ("invalid_event", "invalid_identifier")
