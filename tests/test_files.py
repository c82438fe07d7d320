"""oracles.files: signed CSV files (RFID reader logs, reading exports) and JSON Lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct
from hypothesis import given, settings
from hypothesis import strategies as st

import oracles.files
from ledger.errors import InvalidInput, InvalidSignature
from oracles.files import (
    RfidReader,
    SignedFile,
    file_digest,
    import_jsonl,
    import_readings_csv,
    import_rfid_csv,
    sign_file,
    verify_file_signature,
)
from oracles.readings import sign_reading, verify_reading

GATEWAY_KEY = "0x" + "22" * 32  # throwaway test keys
GATEWAY = Account.from_key(GATEWAY_KEY).address
OTHER_KEY = "0x" + "33" * 32
DEVICE_KEY = "0x" + "44" * 32
DEVICE = Account.from_key(DEVICE_KEY).address

READERS = {
    "SpeedwayR-11-22-33": RfidReader(device="urn:fourflow:device:wh-3:dock-1", zone="dock-1"),
    "FX9600-A": RfidReader(device="urn:fourflow:device:wh-3:gate-2", zone="gate-2"),
}

RFID_LOG = b"""\xef\xbb\xbftimestamp,reader,antenna,epc,rssi,direction\r
2026-11-20T06:00:00.120+08:00,SpeedwayR-11-22-33,1,e28011606000020a1b2c3d4e,-61.5,\r
2026-11-20T06:00:00.480+08:00,SpeedwayR-11-22-33,2,E28011606000020A1B2C3D4F,-58,\r
2026-11-20T06:00:00.910+08:00,SpeedwayR-11-22-33,1,E28011606000020A1B2C3D4E,-60,\r
2026-11-20T06:00:01.050+08:00,SpeedwayR-11-22-33,1,E28011606000020A1B2C3D4E,-60,\r
1795125600100000,FX9600-A,3,urn:epc:id:sgtin:0614141.107346.2018,-70,IN\r
1795125600700000,FX9600-A,3,urn:epc:id:sgtin:0614141.107346.2019,-71,out\r
2026-11-20T06:00:00.300+08:00,Unknown-Reader,1,E28011606000020A1B2C3D4E,-60,\r
2026-11-20 06:00:00.300,SpeedwayR-11-22-33,1,E28011606000020A1B2C3D4E,-60,\r
2026-11-20T06:00:00.300+08:00,SpeedwayR-11-22-33,0,E28011606000020A1B2C3D4E,-60,\r
2026-11-20T06:00:00.300+08:00,SpeedwayR-11-22-33,1,not-an-epc,-60,\r
2026-11-20T06:00:00.300+08:00,SpeedwayR-11-22-33,1,E280,loud,\r
2026-11-20T06:00:00.300+08:00,SpeedwayR-11-22-33,1,E28011606000020A1B2C3D4E\r
\r
2026-11-20T06:00:00.300+08:00,SpeedwayR-11-22-33,1,\xff\xfe,-60,\r
2026-11-20T06:00:00.300+08:00,SpeedwayR-11-22-33,1,E28011606000020A1B2C3D4E,-60,sideways\r
"""

READINGS_CSV = b"""device,seq,time,kind,zone,temperature,humidity,data
urn:fourflow:device:wh-3:climate-1,41,2026-11-20T06:00:00.000+08:00,climate,bay-3,4.5,61,
urn:fourflow:device:wh-3:gate-2,7,2026-11-20T06:00:01.000Z,tag_read,dock-1,,,"{""tags"": [""E280A"", ""E280B""], ""direction"": ""in""}"
urn:fourflow:device:wh-3:door-1,3,2026-11-20T06:00:02.000Z,door,,,,"{""door"": ""north"", ""state"": ""open""}"
urn:fourflow:device:wh-3:climate-1,42,2026-11-20T06:00:00.000+08:00,climate,bay-3,hot,61,
urn:fourflow:device:wh-3:climate-1,43,2026-11-20,climate,bay-3,4.5,61,
urn:fourflow:device:wh-3:climate-1,x44,2026-11-20T06:00:00.000Z,climate,bay-3,4.5,61,
urn:fourflow:device:wh-3:climate-1,45,2026-11-20T06:00:00.000Z,telepathy,bay-3,4.5,61,
urn:fourflow:device:wh-3:climate-1,46,2026-11-20T06:00:00.000Z,climate,bay-3,4.5,61,"{""zone"": ""bay-4""}"
urn:fourflow:device:wh-3:door-1,4,2026-11-20T06:00:02.000Z,door,,,,"{""door"": ""north"", ""state"": ""ajar""}"
urn:fourflow:device:wh-3:door-1,5,2026-11-20T06:00:02.000Z,door,,,,{broken json
urn:fourflow:device:wh-3:door-1,6,2026-11-20T06:00:02.000Z,door,lobby,,,"{""door"": ""north"", ""state"": ""open""}"
"""


def _signed(data: bytes, key: str = GATEWAY_KEY) -> SignedFile:
    return SignedFile(data=data, signature=sign_file(data, private_key=key), signer=GATEWAY)


# --- file signatures -------------------------------------------------------------------------


def test_a_file_signed_by_its_gateway_is_accepted(tmp_path: Path) -> None:
    signature = sign_file(RFID_LOG, private_key=GATEWAY_KEY)
    assert signature.startswith("0x") and len(signature) == 132
    verify_file_signature(RFID_LOG, signature, address=GATEWAY)
    verify_file_signature(RFID_LOG, signature[2:].upper() + "\n", address=GATEWAY.lower())

    path = tmp_path / "dock-1.csv"
    path.write_bytes(RFID_LOG)
    (tmp_path / "dock-1.csv.sig").write_text(signature[2:] + "\n")
    signed = SignedFile.read(path, signer=GATEWAY)
    assert signed.data == RFID_LOG and signed.signature == signature
    assert signed.sha256 == file_digest(RFID_LOG)
    assert RFID_LOG not in repr(signed).encode()


def test_a_file_signed_by_another_key_is_refused() -> None:
    with pytest.raises(
        InvalidSignature, match=f"is signed by 0x[0-9a-fA-F]{{40}}, not by {GATEWAY}"
    ):
        _signed(RFID_LOG, key=OTHER_KEY)


def test_a_tampered_file_is_refused() -> None:
    signature = sign_file(RFID_LOG, private_key=GATEWAY_KEY)
    tampered = RFID_LOG.replace(b"-61.5", b"-61.6")
    with pytest.raises(InvalidSignature, match="not by"):
        SignedFile(data=tampered, signature=signature, signer=GATEWAY)


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_any_changed_byte_fails_the_signature(data: st.DataObject) -> None:
    signature = sign_file(READINGS_CSV, private_key=GATEWAY_KEY)
    index = data.draw(st.integers(0, len(READINGS_CSV) - 1))
    flip = data.draw(st.integers(1, 255).filter(lambda b: READINGS_CSV[index] ^ b != 0))
    tampered = bytearray(READINGS_CSV)
    tampered[index] ^= flip
    with pytest.raises(InvalidInput):  # InvalidSignature, or InvalidInput for a NUL byte
        SignedFile(data=bytes(tampered), signature=signature, signer=GATEWAY)


def test_malformed_or_missing_signatures_are_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidSignature, match="65 bytes in hex"):
        SignedFile(data=RFID_LOG, signature="0x1234", signer=GATEWAY)
    with pytest.raises(InvalidSignature, match="does not recover"):
        SignedFile(data=RFID_LOG, signature="0x" + "ff" * 65, signer=GATEWAY)
    path = tmp_path / "log.csv"
    path.write_bytes(RFID_LOG)
    with pytest.raises(InvalidSignature, match=r"no detached signature log\.csv\.sig"):
        SignedFile.read(path, signer=GATEWAY)


def test_a_file_with_a_nul_byte_is_not_text() -> None:
    """A reading's signed preimage holds a NUL byte; a signed file never does, so a file
    signature cannot pass for a reading signature."""
    with pytest.raises(ValueError, match="NUL"):
        sign_file(b"a,b\x00c", private_key=GATEWAY_KEY)
    data = b"a,b\x00c"
    signed = Account.sign_message(
        encode_defunct(primitive=file_digest(data)), private_key=GATEWAY_KEY
    )
    forged = "0x" + bytes(signed.signature).hex()
    with pytest.raises(InvalidInput, match="byte 3 is NUL"):
        SignedFile(data=data, signature=forged, signer=GATEWAY)


# --- RFID reader logs ----------------------------------------------------------------------


def test_rfid_reads_are_grouped_per_reader_window_and_direction() -> None:
    signed = _signed(RFID_LOG)
    readings, rejects = import_rfid_csv(signed, readers=READERS)

    dock, late, gate_in, gate_out = readings
    start = 1795125600000  # 2026-11-20T06:00:00+08:00 = 2026-11-19T22:00:00Z
    assert dock.reading == {
        "device": "urn:fourflow:device:wh-3:dock-1",
        "seq": start * 10,
        "time": "2026-11-19T22:00:00.000Z",
        "kind": "tag_read",
        "data": {
            "tags": ["E28011606000020A1B2C3D4E", "E28011606000020A1B2C3D4F"],
            "zone": "dock-1",
        },
    }
    assert (dock.line, late.line) == (2, 5)
    assert late.reading["seq"] == (start + 1000) * 10
    assert late.reading["data"]["tags"] == ["E28011606000020A1B2C3D4E"]
    assert gate_in.reading["seq"] == start * 10 + 1 and gate_out.reading["seq"] == start * 10 + 2
    assert gate_in.reading["data"] == {
        "tags": ["urn:epc:id:sgtin:0614141.107346.2018"],
        "zone": "gate-2",
        "direction": "in",
    }
    assert gate_out.reading["data"]["direction"] == "out"
    assert dock.provenance == {"file_sha256": signed.sha256.hex(), "line": 2, "window_ms": 1000}

    assert [(line, reason.split(" ")[0]) for line, reason, _ in rejects] == [
        (8, "reader"),
        (9, "timestamp"),
        (10, "antenna"),
        (11, "epc"),
        (12, "could"),
        (13, "expected"),
        (15, "not"),
        (16, "direction"),
    ]
    reasons = {line: reason for line, reason, _ in rejects}
    assert reasons[8] == "reader 'Unknown-Reader' is not a known reader"
    assert reasons[9] == "timestamp '2026-11-20 06:00:00.300' has no UTC offset"
    assert reasons[13] == "expected 6 cells as in the header, got 4"
    assert (
        rejects[0][2]
        == "2026-11-20T06:00:00.300+08:00,Unknown-Reader,1,E28011606000020A1B2C3D4E,-60,"
    )
    assert "\ufffd" in rejects[6][2]  # a line that is not UTF-8, kept readable


def test_rfid_import_is_deterministic_and_windows_are_configurable() -> None:
    signed = _signed(RFID_LOG)
    first, _ = import_rfid_csv(signed, readers=READERS)
    again, _ = import_rfid_csv(signed, readers=READERS)
    assert [r.reading for r in first] == [r.reading for r in again]

    wide, _ = import_rfid_csv(signed, readers=READERS, window_ms=5_000)
    assert wide[0].reading["data"]["tags"] == [
        "E28011606000020A1B2C3D4E",
        "E28011606000020A1B2C3D4F",
    ]
    assert len(wide) == 3 and wide[0].window_ms == 5_000


def test_rfid_refusals() -> None:
    readings, rejects = import_rfid_csv(_signed(b"time,reader,epc\nx,y,z\n"), readers=READERS)
    assert readings == []
    assert rejects == [
        (
            1,
            "the header has no timestamp, antenna, rssi column; expected timestamp,reader,antenna,epc,rssi, ...",
            "time,reader,epc",
        )
    ]
    with pytest.raises(ValueError, match="window_ms"):
        import_rfid_csv(_signed(RFID_LOG), readers=READERS, window_ms=0)
    with pytest.raises(ValueError, match="one device"):
        import_rfid_csv(
            _signed(RFID_LOG),
            readers={"a": RfidReader("urn:x:d", "z1"), "b": RfidReader("urn:x:d", "z2")},
        )
    many = b"timestamp,reader,antenna,epc,rssi\n" + b"".join(
        b"1795125600000,FX9600-A,1,E280%020X,-60\n" % i for i in range(5_001)
    )
    readings, rejects = import_rfid_csv(_signed(many), readers=READERS)
    assert readings == [] and rejects[0][:2] == (
        2,
        "5001 tags in one window; a reading holds 5000: use a shorter window",
    )


# --- reading CSV ----------------------------------------------------------------------------


def test_reading_csv_flat_and_json_data() -> None:
    signed = _signed(READINGS_CSV)
    readings, rejects = import_readings_csv(signed)

    climate, tags, door = readings
    assert climate.reading == {
        "device": "urn:fourflow:device:wh-3:climate-1",
        "seq": 41,
        "time": "2026-11-20T06:00:00.000+08:00",
        "kind": "climate",
        "data": {"zone": "bay-3", "temperature": 4.5, "humidity": 61.0},
    }
    assert tags.reading["data"] == {"tags": ["E280A", "E280B"], "direction": "in", "zone": "dock-1"}
    assert door.reading["data"] == {"door": "north", "state": "open"}
    assert [r.line for r in readings] == [2, 3, 4]
    assert climate.provenance == {"file_sha256": signed.sha256.hex(), "line": 2}

    reasons = {line: reason for line, reason, _ in rejects}
    assert sorted(reasons) == [5, 6, 7, 8, 9, 10, 11, 12]
    assert reasons[5].startswith("data.temperature: Input should be a valid number")
    assert reasons[6].startswith("time: Value error, expected RFC 3339")
    assert reasons[7] == "seq 'x44' is not an integer"
    assert reasons[8].startswith("kind 'telepathy' is not one of tag_read, collar")
    assert reasons[9] == "data field zone is given both in data and as a column"
    assert "state" in reasons[10]
    assert reasons[11].startswith("Expecting property name")
    assert reasons[12].startswith("zone: Extra inputs are not permitted")


def test_a_file_reading_has_a_readings_shape_and_its_provenance() -> None:
    """Round trip: to_json holds the reading as a device would have signed it, and the
    evidence that replaces the device signature."""
    signed = _signed(READINGS_CSV)
    readings, _ = import_readings_csv(signed)
    for item in readings:
        body = item.to_json()
        provenance = body.pop("provenance")
        assert body == item.reading
        assert provenance == {
            **item.provenance,
            "file_signature": signed.signature,
            "file_signer": GATEWAY,
        }
        verify_file_signature(signed.data, provenance["file_signature"], address=GATEWAY)
        assert json.loads(json.dumps(body)) == body
        # the device could sign exactly these fields: the shape is a Reading's
        device_signed = sign_reading(body, private_key=DEVICE_KEY)
        assert device_signed.unsigned() == body


def test_reading_csv_without_its_columns_is_one_reject() -> None:
    readings, rejects = import_readings_csv(_signed(b"device,time,kind\nd:1,t,climate\n"))
    assert readings == [] and rejects[0][:2] == (
        1,
        "the header has no seq column; expected device,seq,time,kind, ...",
    )
    readings, rejects = import_readings_csv(_signed(b"device,seq,seq,time,kind\n"))
    assert rejects[0][1] == "the header names seq more than once"


# --- JSON Lines ------------------------------------------------------------------------------


def test_jsonl_of_signed_readings() -> None:
    readings = [
        sign_reading(
            {
                "device": "urn:fourflow:device:ranch-7:scale-1",
                "seq": seq,
                "time": "2026-11-20T06:00:00.000+08:00",
                "kind": "weight",
                "data": {"tag": f"982000{seq}", "kg": 412.5},
            },
            private_key=DEVICE_KEY,
        )
        for seq in range(3)
    ]
    lines = [r.model_dump_json() for r in readings]
    bad_data = json.dumps({**readings[0].model_dump(mode="json"), "data": {"kg": -1}})
    data = (
        "\n".join(
            [lines[0], "", "[1, 2]", "{not json", lines[1], bad_data, '{"device": "x"}', lines[2]]
        ).encode()
        + b"\n\xff\n"
    )

    got, rejects = import_jsonl(data)
    assert got == readings
    for reading in got:
        verify_reading(reading, address=DEVICE)
    assert [(line, reason.split(":")[0]) for line, reason, _ in rejects] == [
        (3, "a line holds one reading object, not a JSON list"),
        (4, "Expecting property name enclosed in double quotes"),
        (6, "kg"),
        (7, "device"),
        (9, "not UTF-8"),
    ]
    assert rejects[1][2] == "{not json"


def test_public_names() -> None:
    assert sorted(oracles.files.__all__) == sorted(
        [
            "SIGNATURE_SUFFIX",
            "FileReading",
            "Reject",
            "RfidReader",
            "SignedFile",
            "file_digest",
            "import_jsonl",
            "import_readings_csv",
            "import_rfid_csv",
            "sign_file",
            "verify_file_signature",
        ]
    )


def test_reading_csv_members_of_an_object_one_column_each() -> None:
    """A telemetry reading's values as a spreadsheet exports them: ``values.<field>``
    columns; a member that is not a number, or a field given whole and by member, is a
    reject of its line, and the others still import."""
    text = (
        b"device,seq,time,kind,schema,subject,values.temperature_c,values.door_open,values\n"
        b"urn:fourflow:device:cold-1,1,2026-11-20T06:00:00Z,telemetry,cold-room@1,room-1,3.5,0,\n"
        b"urn:fourflow:device:cold-1,2,2026-11-20T06:05:00Z,telemetry,cold-room@1,room-1,-1.25,,\n"
        b"urn:fourflow:device:cold-1,3,2026-11-20T06:10:00Z,telemetry,cold-room@1,room-1,warm,1,\n"
        b"urn:fourflow:device:cold-1,4,2026-11-20T06:15:00Z,telemetry,cold-room@1,room-1,4,1,"
        b'"{""door_open"": 1}"\n'
        b"urn:fourflow:device:cold-1,5,2026-11-20T06:20:00Z,telemetry,cold-room@1,room-1,nan,1,\n"
        b"urn:fourflow:device:cold-1,6,2026-11-20T06:25:00Z,telemetry,cold-room@1,room-1,1_000,1,\n"
        + "urn:fourflow:device:cold-1,7,2026-11-20T06:35:00Z,telemetry,cold-room@1,room-1,\u0663,1,\n".encode()
        + b"urn:fourflow:device:cold-1,8,2026-11-20T06:40:00Z,telemetry,cold-room@1,room-1,1e999,1,\n"
    )
    readings, rejects = import_readings_csv(_signed(text))
    assert [r.reading["data"] for r in readings] == [
        {
            "schema": "cold-room@1",
            "subject": "room-1",
            "values": {"temperature_c": 3.5, "door_open": 0},
        },
        {"schema": "cold-room@1", "subject": "room-1", "values": {"temperature_c": -1.25}},
    ]
    reasons = {line: reason for line, reason, _ in rejects}
    assert reasons == {
        4: "values.temperature_c: 'warm' is not a number",
        5: "data field values is given both whole and one member a column",
        6: "values.temperature_c: 'nan' is not a number",
        7: "values.temperature_c: '1_000' is not a number",
        8: "values.temperature_c: '\u0663' is not a number",
        9: "values.temperature_c: '1e999' is not a finite number",
    }
