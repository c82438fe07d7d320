"""Readings from files: RFID reader logs, CSV exports, JSON Lines of signed readings.

Three formats (docs/transport.md has examples):

- JSON Lines (``import_jsonl``): one signed Reading JSON object a line, exactly as a
  device sends it over HTTP or MQTT. Each carries its device's signature, so the file
  needs none; ingest verifies every reading against its device's registered key.
- RFID reader log (``import_rfid_csv``): ``timestamp,reader,antenna,epc,rssi[,direction]``
  with a header, one tag read a line, as Impinj and Zebra readers export them. Reads
  are grouped per reader, time window (1 s by default) and direction into ``tag_read``
  readings.
- Reading CSV (``import_readings_csv``): ``device,seq,time,kind`` and then the data,
  either in a ``data`` column holding a JSON object or in one column per data field
  (both may be used; a field given twice is an error). A field holding an object of
  numbers, as a telemetry reading's ``values``, may also be given one column per
  member, ``values.temperature_c``, as a spreadsheet exports it.

Signatures. A device signs each reading it sends; a row in a file is not signed. A
CSV file is therefore accepted only with a detached signature by the key of the device
or reader gateway that wrote it: ``FILE.sig`` holds, in hex, the 65-byte EIP-191
``personal_sign`` signature (r || s || v) of the 32-byte SHA-256 of the file's bytes
(``sign_file``). ``SignedFile`` checks it on construction and refuses files holding a
NUL byte: a reading's signed preimage always contains one (oracles.readings), so a file
signature can never pass for a reading signature.

What a CSV import yields is a ``FileReading``: the reading's fields (device, seq, time,
kind, data; checked exactly as a Reading's) without a device signature, plus its
provenance ``{"file_sha256", "line"}`` and the file's signature and signer. The
importer does not re-sign rows with any key: the only authorship evidence is the file
signature, and an auditor checks a file-derived reading by taking the archived file,
recomputing its SHA-256, recovering the signer from the signature, and finding the
reading at its line. Storing the file and checking that its signer may speak for the
devices named in it is the pipeline's job.

Parse errors never stop an import: every importer returns ``(readings, rejects)``, each
reject ``(line_number, reason, raw_line)`` with 1-based line numbers. Lines are records:
a quoted CSV field may not span lines. Blank lines are skipped.
"""

from __future__ import annotations

import csv
import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any, Final

from eth_account import Account
from eth_account.messages import encode_defunct
from pydantic import TypeAdapter, ValidationError

from ledger.errors import InvalidInput, InvalidSignature
from ledger.models import utc_text
from oracles.readings import DATA_MODELS, KINDS, Reading

__all__ = [
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

SIGNATURE_SUFFIX: Final = ".sig"
MAX_TAGS: Final = 5_000  # a tag_read reading's limit (oracles.readings.TagRead)

Reject = tuple[int, str, str]  # (line number, reason, raw line)

_SIGNATURE = re.compile(r"^(?:0x)?([0-9a-fA-F]{130})$")
_PLACEHOLDER_SIGNATURE: Final = "0x" + "00" * 65
_EPC_HEX = re.compile(r"^[0-9A-Fa-f]{4,128}$")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_DIRECTIONS: Final = {"": 0, "in": 1, "out": 2}
_READING_COLUMNS: Final = ("device", "seq", "time", "kind")
_RFID_COLUMNS: Final = ("timestamp", "reader", "antenna", "epc", "rssi")


# --- file signatures -------------------------------------------------------------------


def file_digest(data: bytes) -> bytes:
    """SHA-256 of a file's bytes: what its detached signature signs."""
    return hashlib.sha256(data).digest()


def sign_file(data: bytes, *, private_key: bytes | str) -> str:
    """The detached signature of ``data`` as ``FILE.sig`` holds it: 0x + 130 hex."""
    if b"\x00" in data:
        raise ValueError("a reading file is text and holds no NUL byte")
    signed = Account.sign_message(
        encode_defunct(primitive=file_digest(data)), private_key=private_key
    )
    return "0x" + bytes(signed.signature).hex()


def verify_file_signature(data: bytes, signature: str, *, address: str) -> None:
    """Raise InvalidSignature unless ``signature`` is ``address``'s signature of ``data``."""
    match = _SIGNATURE.fullmatch(signature.strip())
    if match is None:
        raise InvalidSignature(
            "a file signature is 65 bytes in hex (130 hex digits, optionally 0x-prefixed)",
            field="signature",
        )
    try:
        signer = Account.recover_message(
            encode_defunct(primitive=file_digest(data)), signature=bytes.fromhex(match.group(1))
        )
    except Exception as exc:  # eth_keys raises several types for malformed signatures
        raise InvalidSignature(
            f"file signature does not recover: {exc}", field="signature"
        ) from exc
    if signer.lower() != address.lower():
        raise InvalidSignature(
            f"file sha256 {file_digest(data).hex()} is signed by {signer}, not by {address}",
            field="signature",
        )


@dataclass(frozen=True)
class SignedFile:
    """A file and its detached signature by ``signer``, checked on construction."""

    data: bytes = field(repr=False)
    signature: str  # as in FILE.sig
    signer: str  # address of the device or reader gateway key expected to have signed

    def __post_init__(self) -> None:
        nul = self.data.find(b"\x00")
        if nul >= 0:
            raise InvalidInput(f"a reading file is text; byte {nul} is NUL", field="file")
        verify_file_signature(self.data, self.signature, address=self.signer)
        object.__setattr__(self, "signature", "0x" + self.signature.strip()[-130:].lower())

    @property
    def sha256(self) -> bytes:
        return file_digest(self.data)

    @classmethod
    def read(cls, path: str | Path, *, signer: str) -> SignedFile:
        """Read ``path`` and its signature from ``path`` + ".sig"."""
        path = Path(path)
        sig_path = path.with_name(path.name + SIGNATURE_SUFFIX)
        if not sig_path.exists():
            raise InvalidSignature(
                f"{path} has no detached signature {sig_path.name}; CSV files must be signed",
                field="signature",
            )
        return cls(data=path.read_bytes(), signature=sig_path.read_text("ascii"), signer=signer)


@dataclass(frozen=True)
class FileReading:
    """A reading from a signed file: a Reading's fields without a device signature.
    The file's signature stands for it (see the module docs)."""

    reading: dict[str, Any]  # device, seq, time, kind, data
    line: int  # 1-based; the first line of a group of RFID reads
    file: SignedFile = field(repr=False)
    window_ms: int | None = None  # the grouping window, for RFID reads

    @property
    def provenance(self) -> dict[str, Any]:
        record: dict[str, Any] = {"file_sha256": self.file.sha256.hex(), "line": self.line}
        if self.window_ms is not None:
            record["window_ms"] = self.window_ms
        return record

    def to_json(self) -> dict[str, Any]:
        """The reading with its provenance, and the file signature that vouches for it."""
        return {
            **self.reading,
            "provenance": {
                **self.provenance,
                "file_signature": self.file.signature,
                "file_signer": self.file.signer,
            },
        }


# --- lines -------------------------------------------------------------------------------


def _lines(data: bytes) -> Iterator[tuple[int, str | None, str]]:
    """(line number, text or None if not UTF-8, raw text for a reject); blank lines skipped."""
    for number, raw in enumerate(data.split(b"\n"), start=1):
        raw = raw.removesuffix(b"\r")
        if number == 1:
            raw = raw.removeprefix(b"\xef\xbb\xbf")  # a BOM, as spreadsheet exports write
        if not raw.strip():
            continue
        try:
            yield number, raw.decode("utf-8"), raw.decode("utf-8")
        except UnicodeDecodeError:
            yield number, None, raw.decode("utf-8", "replace")


def _cells(text: str) -> list[str]:
    return [cell.strip() for cell in next(csv.reader([text]))]


def _reason(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "reading"
        return f"{where}: {first['msg']}"
    return str(exc)


def _checked(unsigned: dict[str, Any]) -> dict[str, Any]:
    """``unsigned`` if it has a Reading's shape (a placeholder stands in for the
    signature, which file rows do not have); ValidationError otherwise."""
    Reading.model_validate({**unsigned, "signature": _PLACEHOLDER_SIGNATURE})
    return unsigned


def _header(text: str | None, required: tuple[str, ...]) -> dict[str, int]:
    if text is None:
        raise ValueError("the header is not UTF-8")
    names = [name.lower() for name in _cells(text)]
    missing = [name for name in required if name not in names]
    if missing:
        raise ValueError(
            f"the header has no {', '.join(missing)} column; expected {','.join(required)}, ..."
        )
    duplicated = sorted({name for name in names if names.count(name) > 1})
    if duplicated:
        raise ValueError(f"the header names {', '.join(duplicated)} more than once")
    return {name: index for index, name in enumerate(names)}


def _row(columns: dict[str, int], cells: list[str]) -> dict[str, str]:
    if len(cells) != len(columns):
        raise ValueError(f"expected {len(columns)} cells as in the header, got {len(cells)}")
    return {name: cells[index] for name, index in columns.items()}


# --- JSON Lines ---------------------------------------------------------------------------


def import_jsonl(data: bytes) -> tuple[list[Reading], list[Reject]]:
    """Signed readings, one JSON object a line. Signatures are checked by ingest."""
    readings: list[Reading] = []
    rejects: list[Reject] = []
    for number, text, raw in _lines(data):
        try:
            if text is None:
                raise ValueError("not UTF-8")
            item = json.loads(text)
            if not isinstance(item, dict):
                raise ValueError(
                    f"a line holds one reading object, not a JSON {type(item).__name__}"
                )
            readings.append(Reading.model_validate(item))
        except (ValueError, ValidationError) as exc:
            rejects.append((number, _reason(exc), raw))
    return readings, rejects


# --- reading CSV ----------------------------------------------------------------------------


def _flat_value(cell: str) -> Any:
    return json.loads(cell) if cell[:1] in "[{" else cell


@cache
def _field_type(kind: str, name: str) -> TypeAdapter[Any] | None:
    info = DATA_MODELS[kind].model_fields.get(name)
    return None if info is None or info.annotation is None else TypeAdapter(info.annotation)


def _typed(kind: str, name: str, value: Any) -> Any:
    """A CSV cell is text: the field's type in the kind's schema reads numbers and
    booleans out of it. An unknown field stays as it is, for the shape check to refuse."""
    adapter = _field_type(kind, name)
    if adapter is None:
        return value
    try:
        return adapter.dump_python(adapter.validate_python(value, strict=False), mode="json")
    except ValidationError as exc:
        raise ValueError(f"data.{name}: {exc.errors()[0]['msg']}") from None


_DECIMAL: Final = re.compile(r"[+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)(?:[eE][+-]?[0-9]+)?")


def _number(column: str, cell: str) -> int | float:
    """A ``field.member`` cell: a member of an object of numbers, written as a plain
    decimal (ASCII digits; no spaces, underscores or other scripts' digits)."""
    if not _DECIMAL.fullmatch(cell):
        raise ValueError(f"{column}: {cell!r} is not a number")
    if re.fullmatch(r"[+-]?[0-9]+", cell):
        return int(cell)
    value = float(cell)
    if value in (float("inf"), float("-inf")):
        raise ValueError(f"{column}: {cell!r} is not a finite number")
    return value


def _reading_of(row: dict[str, str]) -> dict[str, Any]:
    kind = row["kind"]
    if kind not in KINDS:
        raise ValueError(f"kind {kind!r} is not one of {', '.join(KINDS)}")
    try:
        seq = int(row["seq"])
    except ValueError:
        raise ValueError(f"seq {row['seq']!r} is not an integer") from None
    data: dict[str, Any] = {}
    if row.get("data"):
        data = json.loads(row["data"])
        if not isinstance(data, dict):
            raise ValueError("the data column holds a JSON object")
    flat: dict[str, Any] = {}
    members: dict[str, dict[str, Any]] = {}  # "values.temperature_c" columns, by field
    for name, cell in row.items():
        if name in (*_READING_COLUMNS, "data") or not cell:
            continue
        field_name, dot, member = name.partition(".")
        if dot:
            members.setdefault(field_name, {})[member] = _number(name, cell)
        else:
            flat[name] = _flat_value(cell)
    twice = sorted(flat.keys() & data.keys())
    if twice:
        raise ValueError(f"data field {', '.join(twice)} is given both in data and as a column")
    twice = sorted(members.keys() & (data.keys() | flat.keys()))
    if twice:
        raise ValueError(
            f"data field {', '.join(twice)} is given both whole and one member a column"
        )
    for name, value in (flat | members).items():
        data[name] = _typed(kind, name, value)
    return _checked(
        {"device": row["device"], "seq": seq, "time": row["time"], "kind": kind, "data": data}
    )


def import_readings_csv(file: SignedFile) -> tuple[list[FileReading], list[Reject]]:
    """Readings of any kind, one a line: ``device,seq,time,kind`` then the data."""
    readings: list[FileReading] = []
    rejects: list[Reject] = []
    columns: dict[str, int] | None = None
    for number, text, raw in _lines(file.data):
        try:
            if columns is None:
                columns = _header(text, _READING_COLUMNS)
                continue
            if text is None:
                raise ValueError("not UTF-8")
            reading = _reading_of(_row(columns, _cells(text)))
            readings.append(FileReading(reading=reading, line=number, file=file))
        except (ValueError, ValidationError, csv.Error) as exc:
            rejects.append((number, _reason(exc), raw))
            if columns is None:
                break  # without a header no line can be read
    return readings, rejects


# --- RFID reader logs ----------------------------------------------------------------------


@dataclass(frozen=True)
class RfidReader:
    """What a reader name in a log stands for."""

    device: str  # its registered device id
    zone: str  # where its antennas read, e.g. "dock-3"


def _epoch_ms(text: str) -> int:
    if text.isdigit():
        if len(text) == 10:
            return int(text) * 1_000
        if len(text) == 13:
            return int(text)
        if len(text) == 16:
            return int(text) // 1_000
        raise ValueError(f"timestamp {text!r}: epoch times are 10 (s), 13 (ms) or 16 (µs) digits")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"timestamp {text!r} is neither ISO 8601 nor epoch digits") from None
    if moment.tzinfo is None:
        raise ValueError(f"timestamp {text!r} has no UTC offset")
    return (moment - _EPOCH) // timedelta(milliseconds=1)


@dataclass
class _Group:
    line: int
    raw: str
    tags: dict[str, None] = field(default_factory=dict)  # ordered set


def import_rfid_csv(
    file: SignedFile,
    *,
    readers: Mapping[str, RfidReader],
    window_ms: int = 1_000,
) -> tuple[list[FileReading], list[Reject]]:
    """Tag reads grouped into ``tag_read`` readings per reader, window and direction.

    A group's reading has ``time`` = the window's start (UTC), ``seq`` = that start in
    epoch ms times ten plus the direction (0 none, 1 in, 2 out), so importing the same
    file twice gives the same readings, ``data`` = {tags in first-read order, the
    reader's zone, direction}. Antenna and RSSI are checked, not kept: they stay in the
    signed file.
    """
    if window_ms < 1:
        raise ValueError(f"window_ms must be at least 1, not {window_ms}")
    devices = [reader.device for reader in readers.values()]
    if len(set(devices)) != len(devices):
        raise ValueError("two reader names stand for one device; their seqs would collide")
    groups: dict[tuple[str, int, str], _Group] = {}
    rejects: list[Reject] = []
    columns: dict[str, int] | None = None
    for number, text, raw in _lines(file.data):
        try:
            if columns is None:
                columns = _header(text, _RFID_COLUMNS)
                continue
            if text is None:
                raise ValueError("not UTF-8")
            row = _row(columns, _cells(text))
            reader = readers.get(row["reader"])
            if reader is None:
                raise ValueError(f"reader {row['reader']!r} is not a known reader")
            ms = _epoch_ms(row["timestamp"])
            if not row["antenna"].isdigit() or int(row["antenna"]) < 1:
                raise ValueError(f"antenna {row['antenna']!r} is not a port number")
            float(row["rssi"])  # raises ValueError naming the value
            epc = row["epc"]
            if _EPC_HEX.fullmatch(epc):
                epc = epc.upper()
            elif not epc.startswith("urn:epc:id:") or len(epc) > 200:
                raise ValueError(f"epc {epc!r} is neither hex nor an urn:epc:id: URN")
            direction = row.get("direction", "").lower()
            if direction not in _DIRECTIONS:
                raise ValueError(f"direction {direction!r} is not in, out or empty")
        except (ValueError, csv.Error) as exc:
            rejects.append((number, _reason(exc), raw))
            if columns is None:
                break
            continue
        start = ms - ms % window_ms
        group = groups.setdefault((row["reader"], start, direction), _Group(number, raw))
        group.tags[epc] = None

    readings: list[FileReading] = []
    for (name, start, direction), group in groups.items():
        reader = readers[name]
        data: dict[str, Any] = {"tags": list(group.tags), "zone": reader.zone}
        if direction:
            data["direction"] = direction
        unsigned = {
            "device": reader.device,
            "seq": start * 10 + _DIRECTIONS[direction],
            "time": utc_text(start),
            "kind": "tag_read",
            "data": data,
        }
        if len(group.tags) > MAX_TAGS:
            reason = f"{len(group.tags)} tags in one window; a reading holds {MAX_TAGS}: use a shorter window"
            rejects.append((group.line, reason, group.raw))
            continue
        try:
            readings.append(
                FileReading(
                    reading=_checked(unsigned), line=group.line, file=file, window_ms=window_ms
                )
            )
        except ValidationError as exc:
            rejects.append((group.line, _reason(exc), group.raw))
    readings.sort(key=lambda r: (r.reading["device"], r.reading["seq"]))
    rejects.sort(key=lambda reject: reject[0])
    return readings, rejects
