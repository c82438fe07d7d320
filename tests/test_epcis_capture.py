"""The EPCIS 2.0 REST binding end to end: capture, duplicates, errors, queries, custody.

Real parts: the FastAPI app through TestClient, an in-process chain with the anchor
registry, a SQLite file; the gateway key holds SUBMITTER_ROLE on-chain.
"""

from __future__ import annotations

import copy
import hashlib
import json
import random
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.settings import Settings
from api.siwe_client import sign_in
from ledger.flows import EpcisQuery, Flow, Flows
from ledger.runtime import DevKeys, Runtime
from ledger.verify import verify_bundle
from oracles.custody import (
    MILL_PARTY,
    WAREHOUSE_PARTY,
    coil_epc,
    pallet_sscc,
    steel_coil_document,
)
from oracles.epcis.capture import EpcisCapture
from oracles.epcis.event_hash import event_hash_id
from oracles.epcis.gs1 import to_digital_link

WAREHOUSE_DL = "https://id.gs1.org/414/0614141007776"
TOKEN = "wms-token-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SETTINGS = Settings(
    max_body_bytes=512 * 1024,
    max_events_per_submission=50,
    capture_tokens={hashlib.sha256(TOKEN.encode()).hexdigest(): "acme-wms"},
)
PALLET_DL = "https://id.gs1.org/00/006141410000000012"
BUYER_PARTY = "urn:epc:id:pgln:6901234.00000"


def coil_dl(serial: int) -> str:
    return f"https://id.gs1.org/01/10614141073464/21/{serial}"


@pytest.fixture
def capture(dev: tuple[Runtime, DevKeys]) -> EpcisCapture:
    runtime, keys = dev
    return EpcisCapture(
        store=runtime.store, intake=runtime.intake, gateway=keys.submitters[0], stream="epcis"
    )


@pytest.fixture
def client(dev: tuple[Runtime, DevKeys], capture: EpcisCapture) -> Iterator[TestClient]:
    runtime, keys = dev
    with TestClient(create_app(runtime, settings=SETTINGS, capture=capture)) as c:
        # queries need a sign-in (EIP-4361): the gateway reads back the events it signed;
        # captures send the capture client's token instead (AUTH)
        c.headers["Authorization"] = f"Bearer {sign_in(c, keys.submitters[0])}"
        yield c


def counts(dev: tuple[Runtime, DevKeys]) -> dict[str, int]:
    return dev[0].store.counts()


def post(client: TestClient, body: Any, **headers: str) -> Any:
    return client.post(
        "/v1/epcis/capture",
        content=json.dumps(body),
        headers={"content-type": "application/ld+json", **AUTH, **headers},
    )


# --- capture ---------------------------------------------------------------------------


def test_document_is_captured_signed_anchored_and_provable(client: TestClient, dev: Any) -> None:
    runtime, keys = dev
    answer = post(client, steel_coil_document(coils=4))
    assert answer.status_code == 202, answer.text
    job = answer.json()
    assert answer.headers["location"] == f"/v1/epcis/capture/{job['captureID']}"
    assert job["success"] is True and job["running"] is False and job["errors"] == []
    assert job["captureErrorBehaviour"] == "rollback"
    assert [s["status"] for s in job["fourflow"]["statuses"]] == ["accepted"] * 5
    assert (
        client.get(answer.headers["location"], headers=AUTH).json()["fourflow"]["eventIDs"]
        == job["fourflow"]["eventIDs"]
    )

    ids = job["fourflow"]["eventIDs"]
    assert all(i.startswith("ni:///sha-256;") and i.endswith("?ver=CBV2.0") for i in ids)
    stored = [runtime.store.event(i) for i in ids]
    assert [r.kind for r in stored] == [
        "epcis.ObjectEvent",
        "epcis.AggregationEvent",
        "epcis.ObjectEvent",
        "epcis.ObjectEvent",
        "epcis.ObjectEvent",
    ]
    assert {r.submitter for r in stored} == {keys.submitters[0].address}

    runtime.anchorer(keys.oracle).run_once(force=True)
    bundle = client.get(f"/v1/events/{quote(ids[2], safe='')}/proof").json()
    verify_bundle(bundle, chain=runtime.chain)
    payload = bundle["envelope"]["event"]["payload"]
    assert payload["eventID"] == ids[2] and payload["bizStep"] == "shipping"
    assert payload["epcList"] == [PALLET_DL]


def test_normalised_form_is_what_is_stored(client: TestClient, dev: Any) -> None:
    job = post(client, steel_coil_document(coils=2)).json()
    commission = dev[0].store.event(job["fourflow"]["eventIDs"][0])
    payload = json.loads(commission.envelope)["event"]["payload"]
    assert payload["epcList"] == [coil_dl(2019000), coil_dl(2019001)]
    assert payload["quantityList"] == [
        {
            "epcClass": "https://id.gs1.org/01/10614141073464/10/COIL2026",
            "quantity": 24.6,
            "uom": "TNE",
        }
    ]
    assert payload["eventTime"] == "2026-11-20T06:00:00.000Z"  # sent as 14:00+08:00
    assert payload["eventTimeZoneOffset"] == "+08:00"
    assert payload["readPoint"] == {"id": "https://id.gs1.org/414/0614141000012"}
    assert payload["ilmd"] == {"example:heatNumber": "H00001"}
    body = json.loads(commission.envelope)["event"]
    assert body["event_time"] == "2026-11-20T14:00:00.000+08:00"


def _to_utc(text: str) -> str:
    return (
        datetime.fromisoformat(text)
        .astimezone(UTC)
        .isoformat(timespec="milliseconds")
        .replace("+00:00", "Z")
    )


def respelled(document: dict[str, Any], seed: int) -> dict[str, Any]:
    """The same events, written differently: keys and lists shuffled, URNs as Digital
    Links, CBV words as URNs and web URIs, times in UTC instead of +08:00."""
    rng = random.Random(seed)
    doc = copy.deepcopy(document)
    for event in doc["epcisBody"]["eventList"]:
        for name in ("epcList", "childEPCs"):
            if name in event:
                event[name] = [
                    e.replace(
                        "urn:epc:id:sgtin:0614141.107346.",
                        "https://id.gs1.org/01/10614141073464/21/",
                    )
                    for e in event[name]
                ]
                rng.shuffle(event[name])
        if "bizStep" in event:
            event["bizStep"] = f"urn:epcglobal:cbv:bizstep:{event['bizStep']}"
        if "disposition" in event:
            event["disposition"] = f"https://ref.gs1.org/cbv/Disp-{event['disposition']}"
        for name in ("sourceList", "destinationList"):
            if name in event:
                event[name] = [dict(reversed(list(item.items()))) for item in reversed(event[name])]
        event["eventTime"] = _to_utc(event["eventTime"])
        items = list(event.items())
        rng.shuffle(items)
        event.clear()
        event.update(items)
    rng.shuffle(doc["epcisBody"]["eventList"])
    return doc


def test_the_same_events_respelled_are_duplicates(client: TestClient, dev: Any) -> None:
    document = steel_coil_document(coils=3)
    first = post(client, document).json()
    before = counts(dev)
    again = post(client, respelled(document, seed=7))
    assert again.status_code == 202
    assert again.json()["fourflow"]["duplicates"] == 5
    assert sorted(again.json()["fourflow"]["eventIDs"]) == sorted(first["fourflow"]["eventIDs"])
    assert {s["status"] for s in again.json()["fourflow"]["statuses"]} == {"duplicate"}
    assert counts(dev) == before


def test_a_changed_event_is_a_new_event(client: TestClient, dev: Any) -> None:
    document = steel_coil_document(coils=3)
    post(client, document)
    changed = copy.deepcopy(document)
    changed["epcisBody"]["eventList"][3]["sensorElementList"][0]["sensorReport"][0]["value"] = 9.5
    job = post(client, changed).json()
    assert [s["status"] for s in job["fourflow"]["statuses"]] == ["duplicate"] * 3 + [
        "accepted",
        "duplicate",
    ]


# --- bad input -------------------------------------------------------------------------


def test_an_invalid_document_lists_every_problem_and_stores_nothing(
    client: TestClient, dev: Any
) -> None:
    document = steel_coil_document(coils=2)
    events = document["epcisBody"]["eventList"]
    events[0]["epcList"][1] = "urn:epc:id:sgtin:0614141.107346"  # no serial
    events[1]["bizStep"] = "shiping"  # a typo, not a CBV term
    events[2]["sourceList"][0]["source"] = "https://id.gs1.org/417/0614141000013"  # bad check digit
    events[3]["eventTime"] = "2026-11-21T13:00:00"  # no offset
    events[4]["colour"] = "red"  # not namespaced
    before = counts(dev)
    answer = post(client, document)
    assert answer.status_code == 400
    assert answer.headers["content-type"].startswith("application/problem+json")
    problem = answer.json()
    assert problem["type"] == "epcisException:ValidationException"
    assert problem["status"] == 400 and problem["code"] == "invalid_document"
    pointers = [e["pointer"] for e in problem["errors"]]
    assert pointers == [
        "/epcisBody/eventList/0/epcList/1",
        "/epcisBody/eventList/1/childEPCs/1",  # the same coil, packed
        "/epcisBody/eventList/1/bizStep",
        "/epcisBody/eventList/2/sourceList/0/source",
        "/epcisBody/eventList/3/eventTime",
        "/epcisBody/eventList/4/colour",
    ]
    assert "check digit" in problem["errors"][3]["message"]
    assert counts(dev) == before
    assert Flows(dev[0].store).epcis_event_ids(EpcisQuery()) == []


@pytest.mark.parametrize(
    ("mutate", "pointer", "fragment"),
    [
        (lambda e: e.pop("eventTime"), "/epcisBody/eventList/0/eventTime", "required"),
        (lambda e: e.pop("action"), "/epcisBody/eventList/0/action", "needs an action"),
        (
            lambda e: e.update(eventTimeZoneOffset="+8"),
            "/epcisBody/eventList/0/eventTimeZoneOffset",
            "offset",
        ),
        (lambda e: e.update(epcList="urn:x:y"), "/epcisBody/eventList/0/epcList", "list"),
        (
            lambda e: e.update(childEPCs=[]),
            "/epcisBody/eventList/0/childEPCs",
            "not a field of ObjectEvent",
        ),
        (
            lambda e: e["quantityList"][0].update(quantity=-1),
            "/epcisBody/eventList/0/quantityList/0/quantity",
            "greater than or equal",
        ),
        (
            lambda e: e["quantityList"][0].update(quantity="24.6"),
            "/epcisBody/eventList/0/quantityList/0/quantity",
            "",
        ),
        (lambda e: e.update(type="MysteryEvent"), "/epcisBody/eventList/0/type", "expected one of"),
        (lambda e: e.update(epcList=["coil-1"]), "/epcisBody/eventList/0/epcList/0", ""),
        (
            lambda e: e.update(disposition="urn:epcglobal:cbv:disp:melted"),
            "/epcisBody/eventList/0/disposition",
            "not a CBV",
        ),
    ],
)
def test_field_level_errors(
    client: TestClient, dev: Any, mutate: Any, pointer: str, fragment: str
) -> None:
    document = steel_coil_document(coils=2)
    mutate(document["epcisBody"]["eventList"][0])
    before = counts(dev)
    answer = post(client, document)
    assert answer.status_code == 400, answer.text
    errors = answer.json()["errors"]
    assert errors[0]["pointer"] == pointer
    assert fragment in errors[0]["message"]
    assert counts(dev) == before


def test_the_same_event_twice_in_one_document_is_refused(client: TestClient, dev: Any) -> None:
    document = steel_coil_document(coils=2)
    events = document["epcisBody"]["eventList"]
    events.append(
        respelled({"epcisBody": {"eventList": [copy.deepcopy(events[0])]}}, 1)["epcisBody"][
            "eventList"
        ][0]
    )
    answer = post(client, document)
    assert answer.status_code == 400
    assert answer.json()["errors"][0]["pointer"] == "/epcisBody/eventList/5"
    assert "same event as /epcisBody/eventList/0" in answer.json()["errors"][0]["message"]


@pytest.mark.parametrize(
    ("content", "headers", "status", "problem"),
    [
        (b"{not json", {}, 400, "ValidationException"),
        (b"[]", {}, 400, "ValidationException"),
        (
            b"<epcis:EPCISDocument/>",
            {"content-type": "application/xml"},
            415,
            "ValidationException",
        ),
        (b"{}", {"GS1-Capture-Error-Behaviour": "proceed"}, 501, "ImplementationException"),
        (
            json.dumps({"type": "EPCISDocument", "epcisBody": {"eventList": []}}).encode(),
            {},
            400,
            "ValidationException",
        ),
        (
            json.dumps({"type": "EPCISDocument", "schemaVersion": "1.2", "epcisBody": {}}).encode(),
            {},
            400,
            "ValidationException",
        ),
    ],
)
def test_unreadable_bodies(
    client: TestClient, dev: Any, content: bytes, headers: dict[str, str], status: int, problem: str
) -> None:
    before = counts(dev)
    answer = client.post(
        "/v1/epcis/capture",
        content=content,
        headers={"content-type": "application/json", **AUTH, **headers},
    )
    assert answer.status_code == status, answer.text
    assert answer.json()["type"] == f"epcisException:{problem}"
    assert counts(dev) == before


def test_a_document_over_the_capture_limit_is_refused(dev: Any) -> None:
    runtime, keys = dev
    small = EpcisCapture(
        store=runtime.store, intake=runtime.intake, gateway=keys.submitters[0], max_events=3
    )
    with TestClient(create_app(runtime, settings=SETTINGS, capture=small)) as c:
        answer = post(c, steel_coil_document(coils=2))
    assert answer.status_code == 413
    assert answer.json()["type"] == "epcisException:CaptureLimitExceededException"
    assert counts(dev)["events"] == 0


def test_capture_needs_a_gateway_with_the_submitter_role(dev: Any) -> None:
    from eth_account import Account

    runtime, _ = dev
    stranger = EpcisCapture(store=runtime.store, intake=runtime.intake, gateway=Account.create())
    with TestClient(create_app(runtime, settings=SETTINGS, capture=stranger)) as c:
        answer = post(c, steel_coil_document(coils=2))
        assert answer.status_code == 500
        assert answer.json()["code"] == "unregistered_signer"
    assert counts(dev)["events"] == 0
    with TestClient(create_app(runtime, settings=SETTINGS)) as c:
        assert post(c, steel_coil_document(coils=2)).status_code == 404


# --- single events and reading back ------------------------------------------------------


def test_one_event_by_post_events_and_get_by_hash_id(client: TestClient) -> None:
    document = steel_coil_document(coils=2)
    event = {"@context": document["@context"], **document["epcisBody"]["eventList"][0]}
    answer = client.post("/v1/epcis/events", json=event, headers=AUTH)
    assert answer.status_code == 201
    event_id = answer.json()["eventID"]
    assert answer.headers["location"] == f"/v1/epcis/events/{quote(event_id, safe='')}"
    got = client.get(answer.headers["location"])
    assert got.status_code == 200 and got.json()["eventID"] == event_id
    assert client.post("/v1/epcis/events", json=event, headers=AUTH).status_code == 200
    missing = client.get(
        "/v1/epcis/events/" + quote("ni:///sha-256;" + "0" * 64 + "?ver=CBV2.0", safe="")
    )
    # unknown, or not the caller's to see: one answer for both (api.access)
    assert missing.status_code == 403
    assert missing.json()["type"] == "epcisException:SecurityException"
    assert missing.json()["code"] == "not_found_or_forbidden"


def _events(answer: Any) -> list[dict[str, Any]]:
    assert answer.status_code == 200, answer.text
    document = answer.json()
    assert document["type"] == "EPCISQueryDocument"
    events: list[dict[str, Any]] = document["epcisBody"]["queryResults"]["resultsBody"]["eventList"]
    return events


def test_queries_by_epc_step_location_and_time(client: TestClient) -> None:
    post(client, steel_coil_document(coils=3, seed=1))
    post(client, steel_coil_document(coils=2, seed=2))
    coil = coil_epc(2019001)  # of pallet 1, as a URN; stored as a Digital Link
    assert [
        e["bizStep"] for e in _events(client.get("/v1/epcis/events", params={"MATCH_epc": coil}))
    ] == [
        "commissioning",
        "packing",
        "storing",
    ]
    pallet = pallet_sscc(1)
    any_epc = _events(client.get("/v1/epcis/events", params={"MATCH_anyEPC": pallet}))
    assert [e["bizStep"] for e in any_epc] == ["packing", "shipping", "receiving"]
    shipping = _events(
        client.get("/v1/epcis/events", params={"EQ_bizStep": "urn:epcglobal:cbv:bizstep:shipping"})
    )
    assert len(shipping) == 2 and {e["epcList"][0] for e in shipping} == {
        PALLET_DL,
        to_digital_link(pallet_sscc(2)),
    }
    at_warehouse = _events(
        client.get("/v1/epcis/events", params={"EQ_bizLocation": "urn:epc:id:sgln:0614141.00777.0"})
    )
    assert {e["bizStep"] for e in at_warehouse} == {"receiving", "storing"} and len(
        at_warehouse
    ) == 4
    window = _events(
        client.get(
            "/v1/epcis/events",
            params={
                "GE_eventTime": "2026-11-20T18:00:00+08:00",
                "LT_eventTime": "2026-11-21T00:00:00Z",
                "eventType": "ObjectEvent|AggregationEvent",
            },
        )
    )
    assert [e["bizStep"] for e in window] == ["shipping", "shipping"]
    both = _events(
        client.get(
            "/v1/epcis/events", params=[("EQ_bizStep", "packing"), ("EQ_bizStep", "storing")]
        )
    )
    assert len(both) == 4


def test_paging_walks_every_event_once_in_order(client: TestClient) -> None:
    post(client, steel_coil_document(coils=2, seed=1))
    post(client, steel_coil_document(coils=2, seed=2))
    seen: list[str] = []
    url: str | None = "/v1/epcis/events?perPage=3"
    while url:
        answer = client.get(url)
        seen += [e["eventID"] for e in _events(answer)]
        link = answer.headers.get("link")
        url = link[1 : link.index(">")] if link else None
    everything = _events(client.get("/v1/epcis/events", params={"perPage": 100}))
    assert seen == [e["eventID"] for e in everything] and len(seen) == 10
    times = [e["eventTime"] for e in everything]
    assert times == sorted(times)


@pytest.mark.parametrize(
    "params",
    [
        {"EQ_colour": "red"},
        {"perPage": "0"},
        {"perPage": "many"},
        {"GE_eventTime": "yesterday"},
        {"MATCH_epc": "urn:epc:id:sgtin:0614141.107346"},
        {"EQ_bizStep": "shiping"},
        {"eventType": "MysteryEvent"},
        {"nextPageToken": "not-a-token"},
    ],
)
def test_bad_query_parameters(client: TestClient, params: dict[str, str]) -> None:
    answer = client.get("/v1/epcis/events", params=params)
    assert answer.status_code == 400, answer.text
    assert answer.json()["type"] == "epcisException:QueryParameterException"
    assert answer.json()["errors"][0]["pointer"] == next(iter(params))


# --- what the events mean -------------------------------------------------------------------


def test_pallet_events_reach_every_coil_on_it_and_custody_follows(
    client: TestClient, dev: Any
) -> None:
    runtime, _ = dev
    job = post(client, steel_coil_document(coils=3, buyer_party=BUYER_PARTY)).json()
    shipping = runtime.store.event(job["fourflow"]["eventIDs"][2])
    assert json.loads(shipping.envelope)["event"]["asset_ids"] == [
        PALLET_DL,
        coil_dl(2019000),
        coil_dl(2019001),
        coil_dl(2019002),
    ]

    flows = Flows(runtime.store)
    coil = coil_dl(2019001)
    custody = flows.custody(coil)
    assert (custody.status, custody.location, custody.possessor) == (
        "held",
        WAREHOUSE_DL,
        "https://id.gs1.org/417/0614141007776",
    )
    assert custody.owner == "https://id.gs1.org/417/6901234000009"
    assert custody.event_id == job["fourflow"]["eventIDs"][4]

    timeline = flows.entries(coil)
    assert [(e.flow, e.kind) for e in timeline] == [
        ("logistics", "epcis.commissioning"),
        ("logistics", "epcis.packing"),
        ("logistics", "epcis.shipping"),
        ("commercial", "ownership_transfer"),
        ("commercial", "business_transaction"),
        ("logistics", "epcis.receiving"),
        ("information", "sensor_report"),
        ("logistics", "epcis.storing"),
    ]
    handoff = json.loads(flows.entries(coil, flow=Flow.COMMERCIAL)[0].summary)
    assert handoff == {
        "from": "https://id.gs1.org/417/0614141000012",
        "to": "https://id.gs1.org/417/6901234000009",
        "biz_step": "shipping",
    }
    sensor = json.loads(flows.entries(coil, flow=Flow.INFORMATION)[0].summary)
    assert [r["value"] for r in sensor["reports"]] == [6.5, 48.0]


def test_unpacking_a_pallet_stops_its_events_reaching_the_coils(
    client: TestClient, dev: Any
) -> None:
    document = steel_coil_document(coils=2)
    events = document["epcisBody"]["eventList"]
    unpack = {
        "type": "AggregationEvent",
        "eventTime": "2026-11-21T16:00:00.000+08:00",
        "eventTimeZoneOffset": "+08:00",
        "action": "DELETE",
        "parentID": pallet_sscc(1),
        "bizStep": "unpacking",
        "readPoint": {"id": WAREHOUSE_DL},
    }
    move = {
        **copy.deepcopy(events[2]),
        "eventTime": "2026-11-22T08:00:00.000+08:00",
        "destinationList": [{"type": "possessing_party", "destination": MILL_PARTY}],
    }
    document["epcisBody"]["eventList"] = [*events, unpack, move]
    job = post(client, document).json()
    moved = dev[0].store.event(job["fourflow"]["eventIDs"][-1])
    assert json.loads(moved.envelope)["event"]["asset_ids"] == [PALLET_DL]
    assert Flows(dev[0].store).children([PALLET_DL]) == {}
    assert WAREHOUSE_PARTY.startswith("urn:epc:id:pgln:")


def test_every_stored_event_re_hashes_to_its_own_id(client: TestClient, dev: Any) -> None:
    """The stored payload alone (with the document's @context merged in) gives back
    the event hash ID: an auditor needs nothing else."""
    job = post(client, steel_coil_document(coils=2)).json()
    for event_id in job["fourflow"]["eventIDs"]:
        payload = json.loads(dev[0].store.event(event_id).envelope)["event"]["payload"]
        assert event_hash_id(payload) == payload["eventID"] == event_id
        assert (
            "https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld" in payload["@context"]
        )


@pytest.mark.parametrize(
    ("mutate", "fragment"),
    [
        (lambda e: e.update(epcList=["urn:x:café"]), "not an identifier fourflow can store"),
        (
            lambda e: e.update(epcList=["urn:x:" + "a" * 300]),
            "not an identifier fourflow can store",
        ),
        (lambda e: e.update(bizStep="https://example.com/" + "s" * 200), "not an identifier"),
        (lambda e: e["quantityList"][0].update(quantity=2**60), "cannot be stored"),
        (lambda e: e.update(eventTime="1969-12-31T23:59:59Z"), "1970"),
        (
            lambda e: (
                e.clear(),
                e.update(
                    type="TransactionEvent",
                    action="ADD",
                    eventTime="2026-11-20T06:00:00Z",
                    eventTimeZoneOffset="+00:00",
                    bizTransactionList=[{"type": "po", "bizTransaction": "urn:x:po:1"}],
                ),
            ),
            "names no EPC",
        ),
    ],
)
def test_what_epcis_allows_but_fourflow_cannot_store_is_a_400(
    client: TestClient, dev: Any, mutate: Any, fragment: str
) -> None:
    document = steel_coil_document(coils=2)
    mutate(document["epcisBody"]["eventList"][0])
    before = counts(dev)
    answer = post(client, document)
    assert answer.status_code == 400, answer.text
    assert fragment in json.dumps(answer.json())
    assert counts(dev) == before


def test_a_deeply_nested_body_is_a_400_not_a_crash(client: TestClient, dev: Any) -> None:
    answer = client.post(
        "/v1/epcis/capture",
        content=b"[" * 100_000 + b"]" * 100_000,
        headers={"content-type": "application/json"},
    )
    assert answer.status_code == 400
    assert answer.json()["type"] == "epcisException:ValidationException"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer not-a-client"}, {"Authorization": f"Basic {TOKEN}"}],
)
def test_capture_needs_a_known_client_and_records_it(
    client: TestClient, dev: Any, headers: dict[str, str]
) -> None:
    answer = client.post(
        "/v1/epcis/capture",
        content=json.dumps(steel_coil_document(coils=2)),
        headers={"content-type": "application/json", **headers},
    )
    assert answer.status_code == 401
    assert answer.json()["type"] == "epcisException:SecurityException"
    assert counts(dev)["events"] == 0
    job = post(client, steel_coil_document(coils=2)).json()
    assert job["fourflow"]["capturedBy"] == "acme-wms"
    assert (
        client.get(f"/v1/epcis/capture/{job['captureID']}", headers=AUTH).json()["fourflow"][
            "capturedBy"
        ]
        == "acme-wms"
    )


def test_a_late_older_packing_does_not_re_pack_an_unpacked_pallet(
    client: TestClient, dev: Any
) -> None:
    document = steel_coil_document(coils=2)
    post(client, document)
    flows = Flows(dev[0].store)
    assert flows.children([PALLET_DL]) == {PALLET_DL: [coil_dl(2019000), coil_dl(2019001)]}
    unpack = {
        "type": "AggregationEvent",
        "eventTime": "2026-11-22T16:00:00.000+08:00",
        "eventTimeZoneOffset": "+08:00",
        "action": "DELETE",
        "parentID": pallet_sscc(1),
        "bizStep": "unpacking",
        "readPoint": {"id": WAREHOUSE_DL},
    }
    late = {
        **copy.deepcopy(document["epcisBody"]["eventList"][1]),
        "eventTime": "2026-11-20T15:00:00.000+08:00",
    }
    for event in (unpack, late):  # the older packing arrives after the newer unpacking
        assert post(client, {**document, "epcisBody": {"eventList": [event]}}).status_code == 202
    assert flows.children([PALLET_DL]) == {}
