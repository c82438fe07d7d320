"""Device-signed readings: the format, its signature, and intake over HTTP.

Real parts: eth-account signatures, the FastAPI app through TestClient, an in-process
chain with the anchor registry and a SQLite file.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from eth_account import Account
from fastapi.testclient import TestClient
from pydantic import ValidationError

from api.app import create_app
from api.siwe_client import sign_in
from ledger.errors import InvalidSignature
from ledger.oracle_state import OracleState
from ledger.runtime import DevKeys, Runtime
from ledger.verify import verify_bundle
from oracles.ingest import ReadingIngest
from oracles.readings import (
    Device,
    Reading,
    reading_digest,
    reading_event_id,
    sign_reading,
    verify_reading,
)

HERD = "urn:fourflow:herd:CN-NM-0007"
COLLAR_KEY = Account.from_key(b"\x11" * 32)
CAMERA_KEY = Account.from_key(b"\x22" * 32)
COLLAR = Device(
    id="urn:fourflow:device:ranch-7:collar-0042",
    address=COLLAR_KEY.address,
    kinds=frozenset({"collar"}),
    site="ranch-7",
    subject=HERD,
    heartbeat_s=3_600,
)
CAMERA = Device(
    id="urn:fourflow:device:ranch-7:camera-pen-1",
    address=CAMERA_KEY.address,
    kinds=frozenset({"head_count"}),
    site="ranch-7",
    subject=HERD,
)
TAG = "urn:fourflow:eartag:CN:CN-NM-0007:000042"


def collar(seq: int, **data: Any) -> Reading:
    values = {"tag": TAG, "lat": 43.61, "lon": 111.95, "activity": 180, "temperature": 38.6, **data}
    unsigned = {
        "device": COLLAR.id,
        "seq": seq,
        "time": f"2026-11-20T{6 + seq % 12:02d}:00:00.000+08:00",
        "kind": "collar",
        "data": values,
    }
    return sign_reading(unsigned, private_key=COLLAR_KEY.key)


def as_json(reading: Reading) -> dict[str, Any]:
    return reading.model_dump(mode="json")


# --- the format --------------------------------------------------------------------------


def test_a_signed_reading_verifies_and_any_change_breaks_it() -> None:
    reading = collar(1)
    verify_reading(reading, address=COLLAR_KEY.address)
    forged = Reading.model_validate(
        {**as_json(reading), "data": {**reading.data, "temperature": 41.2}}
    )
    with pytest.raises(InvalidSignature, match="not by the device's registered key"):
        verify_reading(forged, address=COLLAR_KEY.address)
    with pytest.raises(InvalidSignature):
        verify_reading(reading, address=CAMERA_KEY.address)


def test_the_digest_is_tagged_sha256_over_jcs() -> None:
    import hashlib

    unsigned = {
        "device": COLLAR.id,
        "seq": 0,
        "time": "2026-11-20T06:00:00Z",
        "kind": "heartbeat",
        "data": {},
    }
    expected = hashlib.sha256(
        b"fourflow/reading/v1\x00"
        + b'{"data":{},"device":"urn:fourflow:device:ranch-7:collar-0042","kind":"heartbeat","seq":0,"time":"2026-11-20T06:00:00Z"}'
    ).digest()
    assert reading_digest(unsigned) == expected


@pytest.mark.parametrize(
    ("change", "fragment"),
    [
        ({"kind": "telepathy"}, "kind"),
        ({"seq": -1}, "seq"),
        ({"time": "2026-11-20 06:00"}, "RFC 3339"),
        ({"device": "collar 42"}, "device"),
        ({"data": {"tag": TAG, "lat": 95, "lon": 0, "activity": 1, "temperature": 38}}, "lat"),
        ({"data": {"tag": TAG}}, "lat"),
        ({"signature": "0x1234"}, "signature"),
        ({"extra": 1}, "extra"),
    ],
)
def test_malformed_readings_are_refused(change: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValidationError, match=fragment):
        Reading.model_validate({**as_json(collar(1)), **change})


_INDUSTRY_DATA: dict[str, dict[str, Any]] = {  # one valid reading of each kind
    "machine": {"machine": "cnc-07", "current_a": 31.5, "energy_kwh": 18250.4, "output": 1200},
    "vehicle_gps": {"vin": "LSVAX60E7J2000001", "lat": 30.66, "lon": 104.06, "power": "external"},
    "inverter": {"inverter": "inv-03", "power_kw": 212.4, "energy_kwh": 881230},
    "grid_meter": {"meter": "export-1", "export_kwh": 2301120.5},
    "weather": {"station": "ws-1", "irradiance_wm2": 812, "module_temp_c": 41.5},
    "charge": {
        "pile": "dc-07",
        "session": "s-20261120-0042",
        "start": "2026-11-20T12:01:00+08:00",
        "end": "2026-11-20T12:48:30+08:00",
        "energy_kwh": 41.2,
    },
    "telemetry": {"schema": "pump@1", "subject": "pump-2", "values": {"flow_m3h": 310.5}},
}


@pytest.mark.parametrize("kind", sorted(_INDUSTRY_DATA))
def test_each_industrys_reading_kinds_sign_and_parse(kind: str) -> None:
    unsigned = {
        "device": COLLAR.id,
        "seq": 7,
        "time": "2026-11-20T12:50:00+08:00",
        "kind": kind,
        "data": _INDUSTRY_DATA[kind],
    }
    reading = sign_reading(unsigned, private_key=COLLAR_KEY.key)
    verify_reading(reading, address=COLLAR_KEY.address)
    assert reading.parsed().model_dump(by_alias=True, exclude_none=True) == _INDUSTRY_DATA[kind]


@pytest.mark.parametrize(
    ("kind", "change", "fragment"),
    [
        ("machine", {"current_a": -1}, "current_a"),
        ("vehicle_gps", {"vin": "LSVAX60E7J200000O"}, "vin"),  # O is not a VIN letter
        ("vehicle_gps", {"power": "mains"}, "power"),
        ("weather", {"irradiance_wm2": 2_500}, "irradiance_wm2"),
        ("charge", {"end": "2026-11-20T11:00:00+08:00"}, "end before it starts"),
        ("charge", {"start": "noon"}, "start"),
        ("telemetry", {"schema": "Pump"}, "schema"),
        ("telemetry", {"values": {}}, "values"),
        ("telemetry", {"values": {"Flow Rate": 1}}, "values"),
        ("telemetry", {"values": {"flow_m3h": "high"}}, "values"),
    ],
)
def test_malformed_industry_readings_are_refused(
    kind: str, change: dict[str, Any], fragment: str
) -> None:
    unsigned = {
        "device": COLLAR.id,
        "seq": 7,
        "time": "2026-11-20T12:50:00+08:00",
        "kind": kind,
        "data": {**_INDUSTRY_DATA[kind], **change},
    }
    with pytest.raises(ValidationError, match=fragment):
        sign_reading(unsigned, private_key=COLLAR_KEY.key)


def test_a_device_refuses_kinds_it_is_not_registered_for() -> None:
    reading = sign_reading(
        {
            "device": CAMERA.id,
            "seq": 1,
            "time": "2026-11-20T06:00:00Z",
            "kind": "collar",
            "data": {"tag": TAG, "lat": 1, "lon": 1, "activity": 1, "temperature": 38},
        },
        private_key=CAMERA_KEY.key,
    )
    with pytest.raises(Exception, match="registered for"):
        CAMERA.check(reading)


# --- intake --------------------------------------------------------------------------------


@pytest.fixture
def ingest(dev: tuple[Runtime, DevKeys]) -> ReadingIngest:
    runtime, keys = dev
    return ReadingIngest(
        store=runtime.store,
        intake=runtime.intake,
        gateway=keys.submitters[0],
        devices={d.id: d for d in (COLLAR, CAMERA)},
        tenant="acme",
    )


@pytest.fixture
def client(dev: tuple[Runtime, DevKeys], ingest: ReadingIngest) -> Iterator[TestClient]:
    with TestClient(create_app(dev[0], ingest=ingest)) as c:
        # reads need a sign-in (EIP-4361): the gateway reads back the events it signed
        c.headers["Authorization"] = f"Bearer {sign_in(c, dev[1].submitters[0])}"
        yield c


def test_readings_are_stored_as_signed_events_and_anchored(client: TestClient, dev: Any) -> None:
    runtime, keys = dev
    readings = [as_json(collar(seq)) for seq in range(3)]
    answer = client.post("/v1/readings", json=readings)
    assert answer.status_code == 202, answer.text
    ids = [reading_event_id(COLLAR.id, seq) for seq in range(3)]
    assert answer.json() == {"accepted": ids, "duplicates": [], "quarantined": []}

    row = runtime.store.event(ids[1])
    assert (row.kind, row.stream, row.submitter) == (
        "reading.collar",
        "acme.ranch-7.readings",
        keys.submitters[0].address,
    )
    body = json.loads(row.envelope)["event"]
    assert body["asset_ids"] == [HERD, TAG]
    assert body["payload"] == readings[1]  # exactly what the device signed

    runtime.anchorer(keys.oracle).run_once(force=True)
    bundle = client.get(f"/v1/events/{ids[1]}/proof").json()
    verify_bundle(bundle, chain=runtime.chain)
    verify_reading(
        Reading.model_validate(bundle["envelope"]["event"]["payload"]), address=COLLAR.address
    )


def test_redelivery_is_a_duplicate_and_a_replayed_seq_is_quarantined(
    client: TestClient, dev: Any
) -> None:
    first = as_json(collar(5))
    client.post("/v1/readings", json=first)
    again = client.post("/v1/readings", json=[first, first])
    assert again.json() == {
        "accepted": [],
        "duplicates": [reading_event_id(COLLAR.id, 5)],
        "quarantined": [],
    }
    replay = as_json(collar(5, temperature=40.1))  # same seq, other content, validly signed
    answer = client.post("/v1/readings", json=[replay])
    assert answer.json()["quarantined"] == [
        {
            "index": 0,
            "reason": f"{reading_event_id(COLLAR.id, 5)} was already stored with other content (a replayed seq)",
        }
    ]
    assert dev[0].store.counts()["events"] == 1


def test_bad_readings_are_quarantined_and_the_rest_stored(client: TestClient, dev: Any) -> None:
    stranger = Account.from_key(b"\x33" * 32)
    good = as_json(collar(1))
    forged = {**as_json(collar(2)), "data": {**collar(2).data, "temperature": 41.0}}
    unknown = as_json(
        sign_reading(
            {
                "device": "urn:fourflow:device:ranch-7:ghost",
                "seq": 1,
                "time": "2026-11-20T06:00:00Z",
                "kind": "heartbeat",
                "data": {},
            },
            private_key=stranger.key,
        )
    )
    wrong_key = as_json(sign_reading({**collar(3).unsigned()}, private_key=stranger.key))
    answer = client.post(
        "/v1/readings",
        json=[good, forged, "not a reading", unknown, wrong_key, {"device": COLLAR.id}],
    )
    assert answer.status_code == 202
    result = answer.json()
    assert result["accepted"] == [reading_event_id(COLLAR.id, 1)]
    reasons = dict((q["index"], q["reason"]) for q in result["quarantined"])
    assert sorted(reasons) == [1, 2, 3, 4, 5]
    assert "not by the device's registered key" in reasons[1]
    assert reasons[2] == "a reading is a JSON object"
    assert "not a registered device" in reasons[3]
    assert "not by the device's registered key" in reasons[4]
    assert "Field required" in reasons[5]
    quarantined = OracleState(dev[0].store).quarantined()
    assert len(quarantined) == 5 and {q.source.split("[")[0] for q in quarantined} == {"http"}
    assert dev[0].store.counts()["events"] == 1


def test_reading_intake_is_off_without_an_oracle_config(dev: Any) -> None:
    with TestClient(create_app(dev[0])) as c:
        answer = c.post("/v1/readings", json=[as_json(collar(1))])
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


def test_too_many_readings_in_one_batch(client: TestClient, dev: Any) -> None:
    answer = client.post("/v1/readings", json=[{}] * 5_001)
    assert answer.status_code == 413
    assert answer.json()["error"]["code"] == "too_many_readings"
    assert dev[0].store.counts()["events"] == 0


def test_a_reading_from_the_future_is_quarantined(client: TestClient, dev: Any) -> None:
    """A collar whose clock says 2099 would close decades of days at once."""
    ahead = sign_reading(
        {**collar(7).unsigned(), "time": "2099-01-01T00:00:00.000Z"}, private_key=COLLAR_KEY.key
    )
    answer = client.post("/v1/readings", json=[as_json(ahead), as_json(collar(8))])
    result = answer.json()
    assert result["accepted"] == [reading_event_id(COLLAR.id, 8)]
    assert [q["index"] for q in result["quarantined"]] == [0]
    assert "ahead of the ledger's clock" in result["quarantined"][0]["reason"]


def test_a_flood_of_garbage_is_answered_in_full_but_kept_bounded(
    client: TestClient, dev: Any
) -> None:
    answer = client.post("/v1/readings", json=[{"junk": i} for i in range(150)])
    assert len(answer.json()["quarantined"]) == 150
    kept = OracleState(dev[0].store).quarantined(limit=1_000)
    assert len(kept) == 101
    assert kept[0].reason == "and 50 more refused reading(s) like those above"


def test_a_signed_file_carries_only_its_signers_kinds(ingest: ReadingIngest, dev: Any) -> None:
    from oracles.files import SignedFile, import_readings_csv, sign_file

    rows = [
        f'{COLLAR.id},{100 + i},2026-11-20T0{i}:00:00.000+08:00,collar,"{{""tag"":""{TAG}"",""lat"":43.6,""lon"":111.9,""activity"":100,""temperature"":38.5}}"'
        for i in range(3)
    ]
    rows.append(
        f'{COLLAR.id},200,2026-11-20T05:00:00.000+08:00,head_count,"{{""pen"":""p1"",""count"":3,""confidence"":0.9}}"'
    )
    data = ("device,seq,time,kind,data\n" + "\n".join(rows) + "\n").encode()
    signed = SignedFile(
        data=data, signature=sign_file(data, private_key=COLLAR_KEY.key), signer=COLLAR.address
    )
    readings, rejects = import_readings_csv(signed)
    assert rejects == []
    result = ingest.ingest_file(signed, readings, name="collar-42.csv")
    assert result.accepted == [reading_event_id(COLLAR.id, 100 + i) for i in range(3)]
    assert [reason for _, reason in result.quarantined] == [
        f"{COLLAR.id} is not registered for 'head_count' readings"
    ]
    again = ingest.ingest_file(signed, readings[:3], name="collar-42.csv")
    assert again.accepted == [] and len(again.duplicates) == 3
