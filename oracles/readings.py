"""Device readings: the signed format devices send, and what the oracle derives from them.

A reading is one JSON object, signed by the key of the device that made it (as the
secure-element chips in cattle collars and RFID readers do):

    {"device": "urn:fourflow:device:ranch-7:collar-0042",   a registered device's id
     "seq": 1042,                                            per device, increasing
     "time": "2026-11-20T06:00:00.000+08:00",                when it was measured
     "kind": "collar",                                       one of KINDS, fixes "data"
     "data": {"tag": "...", "lat": 43.1, ...},
     "signature": "0x…"}                                     65 bytes, r || s || v

    signature = EIP-191 personal_sign(reading_digest(reading))
    reading_digest = sha256(b"fourflow/reading/v1" || 0x00 || RFC 8785 JSON of the
                            reading without "signature")

A device's readings are deduplicated by (device, seq): at-least-once transports (MQTT
QoS 1, retried HTTP posts) may deliver one twice, and its fourflow event id,
``reading_event_id``, is the same both times.

An ``Alarm`` is what a rule finds; the rule modules (oracles.livestock,
oracles.warehouse) produce alarms and counts, and oracles.pipeline stores, signs,
anchors and reports them.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any, Final, Literal

from eth_account import Account
from eth_account.messages import encode_defunct
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    StringConstraints,
    field_validator,
    model_validator,
)

from ledger.canonical import canonical_json
from ledger.errors import InvalidInput, InvalidSignature

__all__ = [
    "DATA_MODELS",
    "KINDS",
    "READING_TAG",
    "Alarm",
    "Charge",
    "Climate",
    "Collar",
    "Cover",
    "CycleCount",
    "Device",
    "Door",
    "GridMeter",
    "HeadCount",
    "Heartbeat",
    "Intrusion",
    "Inverter",
    "Machine",
    "Reading",
    "TagRead",
    "Tamper",
    "Telemetry",
    "VehicleGps",
    "Weather",
    "Weighbridge",
    "Weight",
    "reading_digest",
    "reading_event_id",
    "sign_reading",
    "verify_reading",
]

READING_TAG: Final = b"fourflow/reading/v1"
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_RFC3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?(Z|[+-]\d{2}:\d{2})$")

DeviceId = Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9+.-]*:[!-~]{1,150}$")]
Signature = Annotated[str, StringConstraints(pattern=r"^0x[0-9a-f]{130}$")]

# What "data" holds for each kind (fields marked ? are optional):
#   tag_read     tags [str], zone str, direction? "in"|"out"      UHF gate / parlour / dock reads
#   collar       tag str, lat, lon, activity (steps/h), temperature (°C)
#   head_count   pen str, count int, confidence 0..1                AI camera
#   weight       tag? str, kg                                       animal scale
#   weighbridge  vehicle str, kg, direction "in"|"out", lot? str
#   cycle_count  lot str, zone str, tags [str]                      warehouse RFID cycle count
#   cover        lot str, bay str, occupied bool, load_t?           sensing cover over a coil
#   climate      zone str, temperature (°C), humidity (%RH)
#   door         door str, state "open"|"closed"
#   intrusion    zone str, source "infrared"|"camera", confidence 0..1
#   tamper       tag str, event "removed"|"cut"|"reattached"
#   heartbeat    {} (battery? %, rssi? dBm)
#   machine      machine str, current_a (A), energy_kwh (meter total), lat?, lon?,
#                output? int (piece counter total)                  clamp-on current sensor
#   vehicle_gps  vin str, lat, lon, speed_kmh?, power "external"|"battery"   GPS/BeiDou tracker
#   inverter     inverter str, power_kw, energy_kwh (meter total)   PV inverter
#   grid_meter   meter str, export_kwh (meter total)                grid export meter
#   weather      station str, irradiance_wm2 (plane of array), module_temp_c?
#   charge       pile str, session str, start, end (RFC 3339), energy_kwh   a finished session
#   telemetry    schema "name@version", subject str, values {name: number}  (oracles.telemetry)
KINDS: Final = (
    "tag_read",
    "collar",
    "head_count",
    "weight",
    "weighbridge",
    "cycle_count",
    "cover",
    "climate",
    "door",
    "intrusion",
    "tamper",
    "heartbeat",
    "machine",
    "vehicle_gps",
    "inverter",
    "grid_meter",
    "weather",
    "charge",
    "telemetry",
)
Kind = Literal[
    "tag_read",
    "collar",
    "head_count",
    "weight",
    "weighbridge",
    "cycle_count",
    "cover",
    "climate",
    "door",
    "intrusion",
    "tamper",
    "heartbeat",
    "machine",
    "vehicle_gps",
    "inverter",
    "grid_meter",
    "weather",
    "charge",
    "telemetry",
]


class _Data(BaseModel):
    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)


Number = float | int


class TagRead(_Data):
    tags: list[Annotated[str, StringConstraints(min_length=1, max_length=200)]] = Field(
        max_length=5_000
    )
    zone: str
    direction: Literal["in", "out"] | None = None


class Collar(_Data):
    tag: str
    lat: Number = Field(ge=-90, le=90)
    lon: Number = Field(ge=-180, le=180)
    activity: Number = Field(ge=0)
    temperature: Number = Field(ge=-40, le=50)  # a dropped collar reads the air


class HeadCount(_Data):
    pen: str
    count: int = Field(ge=0, le=1_000_000)
    confidence: Number = Field(ge=0, le=1)


class Weight(_Data):
    tag: str | None = None
    kg: Number = Field(gt=0, le=5_000)


class Weighbridge(_Data):
    vehicle: str
    kg: Number = Field(gt=0, le=200_000)
    direction: Literal["in", "out"]
    lot: str | None = None


class CycleCount(_Data):
    lot: str
    zone: str
    tags: list[str] = Field(max_length=100_000)


class Cover(_Data):
    lot: str
    bay: str
    occupied: bool
    load_t: Number | None = Field(default=None, ge=0)


class Climate(_Data):
    zone: str
    temperature: Number = Field(ge=-60, le=90)
    humidity: Number = Field(ge=0, le=100)


class Door(_Data):
    door: str
    state: Literal["open", "closed"]


class Intrusion(_Data):
    zone: str
    source: Literal["infrared", "camera"]
    confidence: Number = Field(ge=0, le=1)


class Tamper(_Data):
    tag: str
    event: Literal["removed", "cut", "reattached"]


class Heartbeat(_Data):
    battery: Number | None = Field(default=None, ge=0, le=100)
    rssi: Number | None = None


class Machine(_Data):
    machine: str
    current_a: Number = Field(ge=0, le=10_000)
    energy_kwh: Number = Field(ge=0)  # the sensor's meter: a running total
    lat: Number | None = Field(default=None, ge=-90, le=90)
    lon: Number | None = Field(default=None, ge=-180, le=180)
    output: int | None = Field(default=None, ge=0)  # the machine's piece counter: a total


class VehicleGps(_Data):
    vin: str = Field(pattern=r"^[A-HJ-NPR-Z0-9]{17}$")  # ISO 3779: no I, O or Q
    lat: Number = Field(ge=-90, le=90)
    lon: Number = Field(ge=-180, le=180)
    speed_kmh: Number | None = Field(default=None, ge=0, le=400)
    power: Literal["external", "battery"]  # on its backup battery: unplugged


class Inverter(_Data):
    inverter: str
    power_kw: Number = Field(ge=0, le=100_000)
    energy_kwh: Number = Field(ge=0)  # running total


class GridMeter(_Data):
    meter: str
    export_kwh: Number = Field(ge=0)  # running total


class Weather(_Data):
    station: str
    irradiance_wm2: Number = Field(ge=0, le=2_000)  # plane of array
    module_temp_c: Number | None = Field(default=None, ge=-60, le=120)


class Charge(_Data):
    pile: str
    session: str
    start: str = Field(pattern=_RFC3339.pattern)
    end: str = Field(pattern=_RFC3339.pattern)
    energy_kwh: Number = Field(ge=0, le=10_000)

    @model_validator(mode="after")
    def _in_order(self) -> Charge:
        if _moment(self.end) < _moment(self.start):
            raise ValueError("a session cannot end before it starts")
        return self

    @property
    def start_ms(self) -> int:
        return (_moment(self.start) - _EPOCH) // timedelta(milliseconds=1)

    @property
    def end_ms(self) -> int:
        return (_moment(self.end) - _EPOCH) // timedelta(milliseconds=1)


def _moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class Telemetry(_Data):
    schema_: str = Field(alias="schema", pattern=r"^[a-z][a-z0-9_.-]{0,62}@[1-9][0-9]{0,5}$")
    subject: str = Field(min_length=1, max_length=200)
    values: dict[Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9_]{0,62}$")], Number] = (
        Field(min_length=1, max_length=64)
    )


DATA_MODELS: Final[dict[str, type[_Data]]] = {
    "tag_read": TagRead,
    "collar": Collar,
    "head_count": HeadCount,
    "weight": Weight,
    "weighbridge": Weighbridge,
    "cycle_count": CycleCount,
    "cover": Cover,
    "climate": Climate,
    "door": Door,
    "intrusion": Intrusion,
    "tamper": Tamper,
    "heartbeat": Heartbeat,
    "machine": Machine,
    "vehicle_gps": VehicleGps,
    "inverter": Inverter,
    "grid_meter": GridMeter,
    "weather": Weather,
    "charge": Charge,
    "telemetry": Telemetry,
}


class Reading(BaseModel):
    """A signed device reading; ``data`` is checked against its kind's shape."""

    model_config = ConfigDict(strict=True, extra="forbid", frozen=True)

    device: DeviceId
    seq: int = Field(ge=0, le=2**63 - 1)
    time: str
    kind: Kind
    data: dict[str, JsonValue]
    signature: Signature

    @field_validator("time")
    @classmethod
    def _time(cls, value: str) -> str:
        if not _RFC3339.fullmatch(value):
            raise ValueError("expected RFC 3339 with an offset, e.g. 2026-11-20T06:00:00.000Z")
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)
        except (ValueError, OverflowError) as exc:
            raise ValueError(f"not a valid date-time: {exc}") from exc
        return value

    def model_post_init(self, _context: Any) -> None:
        DATA_MODELS[self.kind].model_validate(self.data)  # raises ValidationError

    @property
    def time_ms(self) -> int:
        moment = datetime.fromisoformat(self.time.replace("Z", "+00:00"))
        return (moment - _EPOCH) // timedelta(milliseconds=1)

    def parsed(self) -> Any:
        """``data`` as its kind's model (TagRead, Collar, …)."""
        return DATA_MODELS[self.kind].model_validate(self.data)

    def unsigned(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude={"signature"})


def reading_digest(unsigned: dict[str, Any]) -> bytes:
    """sha256(tag || 0x00 || JCS(reading without its signature))."""
    return hashlib.sha256(READING_TAG + b"\x00" + canonical_json(unsigned)).digest()


def reading_event_id(device: str, seq: int) -> str:
    """The fourflow event id of a device's ``seq``-th reading (the same on redelivery);
    it needs no escaping in a URL path."""
    return f"{device};seq={seq}"


def sign_reading(unsigned: dict[str, Any], *, private_key: bytes | str) -> Reading:
    """Sign ``unsigned`` (a reading dict without "signature") with a device key."""
    digest = reading_digest(unsigned)
    signed = Account.sign_message(encode_defunct(primitive=digest), private_key=private_key)
    return Reading.model_validate({**unsigned, "signature": "0x" + bytes(signed.signature).hex()})


def verify_reading(reading: Reading, *, address: str) -> None:
    """Raise InvalidSignature unless ``reading`` was signed by ``address``."""
    digest = reading_digest(reading.unsigned())
    try:
        signer = Account.recover_message(
            encode_defunct(primitive=digest), signature=bytes.fromhex(reading.signature[2:])
        )
    except Exception as exc:  # eth_keys raises several types for malformed signatures
        raise InvalidSignature(
            f"reading signature does not recover: {exc}", field="signature"
        ) from exc
    if signer != address:
        raise InvalidSignature(
            f"reading of {reading.device} is signed by {signer}, not by the device's "
            f"registered key {address}",
            field="signature",
        )


@dataclass(frozen=True)
class Device:
    """A registered device: its key, what it may report, where, about what."""

    id: str
    address: str  # EIP-55 address of the device's signing key
    kinds: frozenset[str]  # reading kinds it may send
    site: str  # e.g. "ranch-7" or "wh-shanghai-3"
    subject: str  # the herd or warehouse it watches
    heartbeat_s: int = 3_600  # silent longer than this: the device is stale

    def check(self, reading: Reading) -> None:
        """Raise InvalidInput unless ``reading`` is one this device may send, signed by it."""
        if reading.device != self.id:
            raise InvalidInput(f"reading is from {reading.device}, not {self.id}", field="device")
        if reading.kind not in self.kinds and reading.kind != "heartbeat":
            raise InvalidInput(
                f"{self.id} is registered for {sorted(self.kinds)}, not {reading.kind!r} readings",
                field="kind",
                code="kind_not_allowed",
            )
        verify_reading(reading, address=self.address)


@dataclass(frozen=True)
class Alarm:
    """A rule's finding about a subject (a herd, animal, lot, zone or device).

    ``key`` identifies the condition so re-deriving it (a restart replaying readings)
    finds the same alarm instead of opening a second one. ``fact`` names the on-chain
    covenant fact it calls for, if any ("quantity", "unauthorized_movement",
    "tag_removal", "covenant_breach", "stale_data").
    """

    key: str
    rule: str
    subject: str
    severity: Literal["info", "warning", "breach"]
    time_ms: int
    message: str
    evidence: tuple[str, ...]  # fourflow event ids of the readings behind it
    details: dict[str, Any] = field(default_factory=dict)
    fact: str | None = None
