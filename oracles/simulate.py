"""Simulated sites for the demo, the CLI (``fourflow simulate``) and the benchmarks: a
dairy herd and a bonded steel warehouse, their devices' signed readings, the EPCIS
documents and on-chain releases around them, and incidents injected at known times.

Pure and deterministic: no network, no store, no clock. The same (scenario, seed, days,
start, options) gives byte-identical readings and documents. Every random choice comes
from a stream named after what it drives (the collars of day 3, the 17:00 gate pass,
...), and the incidents are drawn from their own stream whichever are enabled: a
scenario with incidents is its clean run plus the incidents' signals (a device that an
incident silences or moves only shifts its own later sequence numbers).

Scenarios (both UTC+08:00; each starts at local midnight of ``start``'s date)
=========================================================================================

========== =================================================================================
dairy      A dairy herd near Hohhot, Inner Mongolia (default start 2026-07-06, summer
           grazing). Ear tags ``urn:fourflow:eartag:CN:NM07:{n:06d}``, pens of about 60.
           - parlour gate (UHF): reads the herd at milking, 06:00 and 17:00, in batches of
             10 tags; a pass misses 1–3 % of the animals, never one missed at the pass
             before, so every animal is read every day
           - a collar per animal every ``collar_interval_min`` (60): position in the
             pasture 07:00–16:59 and in the barn otherwise, activity (steps/h) with a
             day/night rhythm, temperature 38.6 ± 0.3 °C (never outside 38.1–39.1)
           - a camera per pen: head count at 03:00, 09:00, 15:00, 21:00 (±1 noise,
             confidence 0.90–0.99)
           - parlour scale: every animal after the morning milking of days 1, 4, 7, ...
             (day 0 in a one-day run)
           - gate, scale and cameras: hourly heartbeats
warehouse  Bonded warehouse wh-shanghai-3 (default start 2026-11-23). One pallet of
           ``coils`` steel coils (lot COIL2026) arrives by the EPCIS journey of
           ``oracles.custody.steel_coil_document``: trucks weighed and read in at dock-1
           from 08:00 of day 0, received 09:00, stored 10:00, each coil in its own bay of
           zone B under a sensing cover (fitted as the coil is placed; reports every 3 h
           and when the coil is lifted).
           - RFID cycle count of the lot at 06:30 and 18:30 (a coil is missed rarely,
             never twice in a row)
           - climate sensors in zones A and B every 15 min
           - doors dock-1 (in), dock-2 (out), staff-1; business hours 07:00–19:00
           - a weighbridge, readers at dock-1 and dock-2, infrared and camera intrusion
             detectors in zone B; hourly heartbeats
           - a legitimate outbound of a quarter of the coils: released on-chain
             (``releases``, day 1 09:00–09:30, or day 0 12:30–13:00 in a one-day run),
             an hour later weighed in, lifted (covers empty), read "out" at dock-2,
             weighed out with the lot, shipped by an EPCIS shipping document
========== =================================================================================

Incidents (``incidents=None``: all of them)
=========================================================================================

Times are drawn from the seed. With two or more days they fall on day 1 or later, so
day 0 is clean; night incidents of a run shorter than three days happen late on its
last day. Each incident's ``items`` names what it concerns.

=========================== ===================== ==========================================
scenario / incident         expected rule         signal in the readings
=========================== ===================== ==========================================
dairy theft                 below_minimum         ~7 % of the herd, from one pen, leave at
                                                  night (23:00–03:00; 20:00–20:40 in a short
                                                  run): no tag read, collar or weight of
                                                  theirs again, the pen's camera count drops
                                                  by that many, the herd falls below its
                                                  minimum; items: the ear tags
dairy tag_removal           tag_removal           a collar sends tamper "removed"
                                                  (10:00–15:00), then lies still: activity
                                                  0, one spot, ambient 21–29 °C; the ear tag
                                                  is still read at milking; items: tag,
                                                  collar
dairy sensor_drift          abnormal_temperature  one collar's temperature drifts up from
                                                  08:00–18:00, +1.6 °C by the end, activity
                                                  normal; items: tag, collar
dairy silent_gateway        stale_device          the parlour gate sends nothing for 12 h
                                                  from 12:00–15:00, missing a 17:00 pass
                                                  (01:00–04:00 and the 06:00 pass in a short
                                                  run); it speaks again before the end
dairy outside_geofence      outside_fence         one animal 60–300 m outside the fence for
                                                  3 h from 09:30–12:00
dairy night_outside_barn    outside_barn          one animal stays in the pasture 5 h from
                                                  20:30–22:00 (3 h from 20:30–21:00 in a
                                                  short run); its pen's night count is one
                                                  short
dairy fever                 abnormal_temperature  one animal from 02:00–10:00: ~40.4 °C
                                                  after 6 h, held to 36 h, normal by 48 h;
                                                  activity halved
warehouse                   unauthorized_movement a truck at night (22:30–23:15): weighed
unauthorized_outbound                             in, dock-2 opens, covers go empty,
                                                  unreleased coils read "out" at dock-2,
                                                  weighed out loaded with no lot; the lot
                                                  falls below its minimum; items: the coils
warehouse tag_removal       tag_removal           a coil's cover sends tamper "removed"
                                                  (14:00–17:00); the coil is in no later
                                                  cycle count while its cover stays occupied
warehouse sensor_drift      climate               zone B's climate sensor: humidity drifts
                                                  up from 08:00–12:00, +22 %RH by the end;
                                                  zone A stays normal
warehouse silent_gateway    stale_device          zone B's RFID reader sends nothing for 12 h
                                                  from 12:00–15:00, missing an 18:30 count
                                                  (00:30–03:00 and the 06:30 count in a
                                                  short run); it speaks again before the end
warehouse door_after_hours  door_after_hours      staff-1 opens at 20:30–22:00, closes 25–70
                                                  min later
warehouse intrusion         intrusion             01:00–04:00: three infrared detections in
                                                  zone B, each confirmed by the camera
=========================== ===================== ==========================================

Subjects: dairy ``{herd, farm, animals, pens {pen: tags}, geofence, barn, night,
milking, minimum, utc_offset}``; warehouse ``{lot, zone, items, bays {bay: item},
outbound_doors, inbound_doors, hours, minimum, utc_offset}``. Polygons are closed
GeoJSON-style rings of [lon, lat]; items are GS1 Digital Link URIs, as EPCIS capture
normalises them. Devices watch the herd, the lot (covers, cycle counts) or a zone.

Signing: readings are signed exactly as ``oracles.readings.sign_reading`` signs them
(EIP-191 over ``reading_digest``, RFC 6979 nonce, low s: the same bytes), with one
libsecp256k1 key per device instead of eth-account's per-call key parsing (~40 µs a
signature, not ~0.3 ms). Device keys are sha256("fourflow/sim/{seed}/{device id}"):
simulation keys only.

Sequence numbers start at the scenario's start in Unix seconds and count up per device,
so a scenario that starts after an earlier one ended never reuses a (device, seq).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from coincurve import PrivateKey
from eth_utils.address import to_checksum_address
from eth_utils.crypto import keccak

from ledger.errors import InvalidInput
from oracles.custody import WAREHOUSE, WAREHOUSE_PARTY, coil_epc, steel_coil_document
from oracles.readings import Device, Reading, reading_digest

__all__ = [
    "DAIRY_INCIDENTS",
    "WAREHOUSE_INCIDENTS",
    "Incident",
    "Scenario",
    "SimDevice",
    "dairy",
    "oracle_config",
    "warehouse",
]

DAIRY_INCIDENTS: Final = (
    "theft",
    "tag_removal",
    "sensor_drift",
    "silent_gateway",
    "outside_geofence",
    "night_outside_barn",
    "fever",
)
WAREHOUSE_INCIDENTS: Final = (
    "unauthorized_outbound",
    "tag_removal",
    "sensor_drift",
    "silent_gateway",
    "door_after_hours",
    "intrusion",
)

_UTC_OFFSET: Final = "+08:00"
_TZ: Final = timezone(timedelta(hours=8))
_MIN: Final = 60_000
_HOUR: Final = 3_600_000
_DAY: Final = 86_400_000
_NEVER: Final = 2**62  # a time after every scenario: "this never happens"


@dataclass(frozen=True)
class SimDevice:
    """A simulated device: its registration and its (simulation-only) signing key."""

    device: Device
    private_key: str  # 0x-hex


@dataclass(frozen=True)
class Incident:
    """Something wrong injected into a scenario, and the alarm it should raise.

    ``end_ms`` is None when the condition lasts to the end of the scenario; ``items``
    lists what it concerns (stolen ear tags or coils, the drifting device, ...).
    """

    kind: str
    start_ms: int
    end_ms: int | None
    subject: str
    description: str
    expected_rule: str
    items: tuple[str, ...] = ()


@dataclass
class Scenario:
    """A generated scenario: devices, signed readings and EPCIS documents in time order,
    the on-chain releases (time, items) a lender makes, the injected incidents, and the
    subject the rule engines watch (its keys are listed in the module docstring)."""

    name: str
    seed: int
    start_ms: int
    days: int
    utc_offset: str
    devices: list[SimDevice]
    subject: dict[str, Any]
    readings: list[Reading]
    documents: list[dict[str, Any]]
    releases: list[tuple[int, list[str]]]
    incidents: list[Incident]

    @property
    def end_ms(self) -> int:
        return self.start_ms + self.days * _DAY

    def summary(self) -> dict[str, Any]:
        """Counts for a progress line: readings per kind, incidents per kind."""
        kinds = Counter(r.kind for r in self.readings)
        return {
            "scenario": self.name,
            "seed": self.seed,
            "days": self.days,
            "devices": len(self.devices),
            "readings": len(self.readings),
            "kinds": dict(sorted(kinds.items())),
            "documents": len(self.documents),
            "releases": len(self.releases),
            "incidents": dict(sorted(Counter(i.kind for i in self.incidents).items())),
        }


# --- public generators -------------------------------------------------------------------


def dairy(
    *,
    days: int,
    seed: int,
    animals: int = 120,
    incidents: Sequence[str] | None = None,
    start: datetime | None = None,
    collar_interval_min: int = 60,
) -> Scenario:
    """A dairy herd in Inner Mongolia for ``days`` days (see the module docstring)."""
    _check_range("days", days, 1, 366)
    _check_range("animals", animals, 20, 2_000)
    _check_range("collar_interval_min", collar_interval_min, 5, 1_440)
    if _DAY % (collar_interval_min * _MIN):
        raise InvalidInput(
            f"collar_interval_min must divide a day (1440 minutes), got {collar_interval_min}",
            field="collar_interval_min",
        )
    chosen = _chosen(incidents, DAIRY_INCIDENTS)
    first = _local_midnight(start, datetime(2026, 7, 6, tzinfo=_TZ))
    farm = _Dairy(
        days=days,
        seed=seed,
        animals=animals,
        interval_ms=collar_interval_min * _MIN,
        start_ms=int(first.timestamp() * 1000),
        chosen=chosen,
    )
    return farm.scenario()


def warehouse(
    *,
    days: int,
    seed: int,
    coils: int = 40,
    incidents: Sequence[str] | None = None,
    start: datetime | None = None,
) -> Scenario:
    """A bonded steel warehouse in Shanghai for ``days`` days (see the module docstring)."""
    _check_range("days", days, 1, 366)
    _check_range("coils", coils, 8, 500)
    chosen = _chosen(incidents, WAREHOUSE_INCIDENTS)
    first = _local_midnight(start, datetime(2026, 11, 23, tzinfo=_TZ))
    site = _Warehouse(
        days=days, seed=seed, coils=coils, start_ms=int(first.timestamp() * 1000), chosen=chosen
    )
    return site.scenario()


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise InvalidInput(f"{name} must be {low}..{high}, got {value}", field=name)


def _chosen(incidents: Sequence[str] | None, known: tuple[str, ...]) -> frozenset[str]:
    if incidents is None:
        return frozenset(known)
    unknown = sorted(set(incidents) - set(known))
    if unknown:
        raise InvalidInput(
            f"unknown incident(s) {unknown}; expected some of {list(known)}",
            field="incidents",
            code="unknown_incident",
        )
    return frozenset(incidents)


def _local_midnight(start: datetime | None, default: datetime) -> datetime:
    moment = start or default
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=_TZ)
    return moment.astimezone(_TZ).replace(hour=0, minute=0, second=0, microsecond=0)


def _iso(ms: int) -> str:
    """``ms`` as RFC 3339 in local time with milliseconds, as the devices write it."""
    moment = datetime.fromtimestamp(ms // 1000, _TZ)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{ms % 1000:03d}{_UTC_OFFSET}"


def _rng(seed: int, *parts: object) -> random.Random:
    return random.Random("fourflow/sim/" + "/".join(map(str, parts)) + f"/{seed}")


# --- signing -----------------------------------------------------------------------------
# A simulated week is tens of thousands of readings. sign_reading goes through
# eth-account, which parses the key and derives its public key on every call (~0.3 ms);
# this keeps one libsecp256k1 key per device and signs the same EIP-191 hash of
# reading_digest with the same RFC 6979 nonce and low s (~40 µs), so the signature bytes
# are exactly those sign_reading makes (tests/unit/test_simulate.py checks it).

_EIP191_PREFIX: Final = b"\x19Ethereum Signed Message:\n32"


class _Signer:
    def __init__(self, secret: bytes) -> None:
        self.key = PrivateKey(secret)
        public = self.key.public_key.format(compressed=False)[1:]
        self.address = to_checksum_address(keccak(public)[-20:])

    def sign(self, unsigned: dict[str, Any]) -> str:
        msg_hash = keccak(_EIP191_PREFIX + reading_digest(unsigned))
        raw = self.key.sign_recoverable(msg_hash, hasher=None)  # r || s || recovery id
        return "0x" + raw[:64].hex() + f"{27 + raw[64]:02x}"


def _device_secret(seed: int, device_id: str) -> bytes:
    return hashlib.sha256(f"fourflow/sim/{seed}/{device_id}".encode()).digest()


class _Recorder:
    """Collects a site's devices and readings; signs them in time order at the end."""

    def __init__(self, *, seed: int, site: str) -> None:
        self.seed = seed
        self.site = site
        self.devices: list[SimDevice] = []
        self._signers: dict[str, _Signer] = {}
        self._drafts: list[tuple[int, str, str, dict[str, Any]]] = []
        self.silent: dict[str, tuple[int, int]] = {}  # device -> [from, to) it sends nothing

    def device(self, name: str, kinds: set[str], *, subject: str, heartbeat_s: int) -> str:
        device_id = f"urn:fourflow:device:{self.site}:{name}"
        signer = _Signer(_device_secret(self.seed, device_id))
        self._signers[device_id] = signer
        registration = Device(
            id=device_id,
            address=signer.address,
            kinds=frozenset(kinds),
            site=self.site,
            subject=subject,
            heartbeat_s=heartbeat_s,
        )
        self.devices.append(SimDevice(registration, "0x" + signer.key.secret.hex()))
        return device_id

    def emit(self, time_ms: int, device: str, kind: str, data: dict[str, Any]) -> None:
        self._drafts.append((time_ms, device, kind, data))

    def _sends(self, time_ms: int, device: str) -> bool:
        window = self.silent.get(device)
        return window is None or not window[0] <= time_ms < window[1]

    def readings(self, *, start_ms: int, end_ms: int) -> list[Reading]:
        drafts = sorted(
            (d for d in self._drafts if start_ms <= d[0] < end_ms and self._sends(d[0], d[1])),
            key=lambda d: (d[0], d[1]),
        )
        next_seq: dict[str, int] = {}
        out: list[Reading] = []
        for time_ms, device, kind, data in drafts:
            seq = next_seq.get(device, start_ms // 1000)
            next_seq[device] = seq + 1
            unsigned = {
                "device": device,
                "seq": seq,
                "time": _iso(time_ms),
                "kind": kind,
                "data": data,
            }
            signature = self._signers[device].sign(unsigned)
            out.append(Reading.model_validate({**unsigned, "signature": signature}))
        return out

    def scenario(
        self,
        name: str,
        *,
        start_ms: int,
        days: int,
        subject: dict[str, Any],
        incidents: list[Incident],
        documents: list[dict[str, Any]] | None = None,
        releases: list[tuple[int, list[str]]] | None = None,
    ) -> Scenario:
        """The scenario of this recorder's devices: their readings signed, in time order,
        over ``days`` days from ``start_ms``."""
        return Scenario(
            name=name,
            seed=self.seed,
            start_ms=start_ms,
            days=days,
            utc_offset=_UTC_OFFSET,
            devices=self.devices,
            subject=subject,
            readings=self.readings(start_ms=start_ms, end_ms=start_ms + days * _DAY),
            documents=[] if documents is None else documents,
            releases=[] if releases is None else releases,
            incidents=incidents,
        )


def _pick_day(
    rng: random.Random, days: int, *, last: int | None = None, avoid: int | None = None
) -> int:
    """A day for an incident: 1.. when there are two or more days (day 0 stays clean),
    up to ``last``, other than ``avoid`` if there is a choice."""
    top = days - 1 if last is None else min(last, days - 1)
    low = min(1 if days >= 2 else 0, top)
    return rng.choice([x for x in range(low, top + 1) if x != avoid] or [top])


def _between(rng: random.Random, day_ms: int, from_h: float, to_h: float) -> int:
    """A time on the minute between from_h and to_h (hours after the day's midnight)."""
    return day_ms + rng.randint(int(from_h * 60), int(to_h * 60) - 1) * _MIN


def _when(start_ms: int, ms: int) -> str:
    """'day 1 02:13' for a description."""
    offset = ms - start_ms
    return f"day {offset // _DAY} {offset % _DAY // _HOUR:02d}:{offset % _HOUR // _MIN:02d}"


def _ring(west: float, south: float, east: float, north: float) -> list[list[float]]:
    """A closed GeoJSON-style ring of [lon, lat] pairs."""
    return [[west, south], [east, south], [east, north], [west, north], [west, south]]


# --- dairy -------------------------------------------------------------------------------

_FARM: Final = "NM07"
_HERD: Final = "urn:fourflow:herd:CN:NM07:H1"
_FENCE: Final = (111.6400, 40.7950, 111.6600, 40.8050)  # west, south, east, north
_BARN: Final = (111.6405, 40.7953, 111.6425, 40.7963)
_PASTURE_BOX: Final = (111.6440, 40.7965, 111.6590, 40.8040)  # inside the fence, off the barn
_BARN_BOX: Final = (111.6408, 40.7955, 111.6422, 40.7961)
_OUTSIDE_BOX: Final = (111.6450, 40.8056, 111.6550, 40.8077)  # 60-300 m north of the fence
_MILKING_H: Final = (6, 17)
_CAMERA_H: Final = (3, 9, 15, 21)
_PASTURE_H: Final = range(7, 17)
# steps per hour by local hour: resting at night, walking to milking, grazing by day
_ACTIVITY: Final = (
    40, 40, 40, 40, 45, 350, 500, 380, 300, 300, 280, 260,
    220, 240, 300, 320, 340, 500, 250, 150, 60, 50, 45, 40,
)  # fmt: skip
_FEVER_PEAK_C: Final = 1.8
_DRIFT_C: Final = 1.6


def _in_box(rng: random.Random, box: tuple[float, float, float, float]) -> tuple[float, float]:
    west, south, east, north = box
    return round(west + (east - west) * rng.random(), 6), round(
        south + (north - south) * rng.random(), 6
    )


class _Dairy:
    def __init__(
        self,
        *,
        days: int,
        seed: int,
        animals: int,
        interval_ms: int,
        start_ms: int,
        chosen: frozenset[str],
    ) -> None:
        self.days, self.seed, self.n = days, seed, animals
        self.interval_ms = interval_ms
        self.start_ms = start_ms
        self.end_ms = start_ms + days * _DAY
        self.tags = [f"urn:fourflow:eartag:CN:{_FARM}:{i + 1:06d}" for i in range(animals)]
        self.pens = max(1, round(animals / 60))
        self.pen_of = [i * self.pens // animals for i in range(animals)]
        self.rec = _Recorder(seed=seed, site="nm07-dairy")
        hourly = 2 * 3_600
        self.gate = self.rec.device("parlour-gate", {"tag_read"}, subject=_HERD, heartbeat_s=hourly)
        self.scale = self.rec.device("parlour-scale", {"weight"}, subject=_HERD, heartbeat_s=hourly)
        self.cameras = [
            self.rec.device(
                f"camera-pen-{p + 1}", {"head_count"}, subject=_HERD, heartbeat_s=hourly
            )
            for p in range(self.pens)
        ]
        collar_s = 2 * interval_ms // 1000
        self.collars = [
            self.rec.device(
                f"collar-{i + 1:04d}", {"collar", "tamper"}, subject=_HERD, heartbeat_s=collar_s
            )
            for i in range(animals)
        ]
        # a theft takes ~7 % of the herd (at most half a pen) and breaks the minimum
        self.stolen_n = min(animals // self.pens // 2, max(3, math.ceil(0.07 * animals)))
        self.minimum = animals - self.stolen_n + max(1, self.stolen_n // 3)
        self.incidents: list[Incident] = []
        self._plan(chosen)

    # incidents, drawn whether enabled or not so each keeps its time and animals
    def _plan(self, chosen: frozenset[str]) -> None:
        rng = _rng(self.seed, "dairy", "incidents")

        def day(index: int) -> int:
            return self.start_ms + index * _DAY

        stolen_n = self.stolen_n
        pen = rng.randrange(self.pens)
        in_pen = [i for i in range(self.n) if self.pen_of[i] == pen]
        stolen = sorted(rng.sample(in_pen, stolen_n))
        others = rng.sample([i for i in range(self.n) if i not in stolen], 5)
        removed, drifting, outside, night, fever = others
        d = self.days
        # nights that fit in the run: one from day 1 on, or late on the last day if short
        theft_at = (
            _between(rng, day(_pick_day(rng, d, last=d - 2)), 23, 27)
            if d >= 3
            else _between(rng, day(d - 1), 20, 20 + 40 / 60)  # before the 21:00 count
        )
        removal_day = _pick_day(rng, d)
        removal_at = _between(rng, day(removal_day), 10, 15)
        drift_at = _between(rng, day(_pick_day(rng, d, last=max(1, (d - 1) // 2))), 8, 18)
        # 12 h within the run over a 17:00 pass (the 06:00 pass in a short run), on
        # another day than the tag removal if it can, so its ear tag is read after it
        silent_at = (
            _between(rng, day(_pick_day(rng, d, last=d - 2, avoid=removal_day)), 12, 15)
            if d >= 3
            else _between(rng, day(d - 1), 1, 4)
        )
        outside_at = _between(rng, day(_pick_day(rng, d)), 9.5, 12)
        night_at = (
            _between(rng, day(_pick_day(rng, d, last=d - 2)), 20.5, 22)
            if d >= 3
            else _between(rng, day(d - 1), 20.5, 21)
        )
        fever_at = _between(rng, day(_pick_day(rng, d)), 2, 10)
        outside_span = max(3 * _HOUR, 2 * self.interval_ms)
        night_span = 5 * _HOUR if d >= 3 else 3 * _HOUR

        def end(ms: int) -> int | None:
            return ms if ms < self.end_ms else None

        self.theft = (
            (theft_at, frozenset(stolen)) if "theft" in chosen else (_NEVER, frozenset[int]())
        )
        self.removal = (removal_at, removed) if "tag_removal" in chosen else (_NEVER, -1)
        self.drift = (drift_at, drifting) if "sensor_drift" in chosen else (_NEVER, -1)
        self.outside = (
            (outside_at, outside_at + outside_span, outside)
            if "outside_geofence" in chosen
            else (_NEVER, _NEVER, -1)
        )
        self.night = (
            (night_at, night_at + night_span, night)
            if "night_outside_barn" in chosen
            else (_NEVER, _NEVER, -1)
        )
        self.fever = (
            (fever_at, fever_at + 48 * _HOUR, fever) if "fever" in chosen else (_NEVER, _NEVER, -1)
        )
        silent_end = min(silent_at + 12 * _HOUR, self.end_ms)
        if "silent_gateway" in chosen:
            self.rec.silent[self.gate] = (silent_at, silent_end)
        tag = self.tags.__getitem__
        found: list[Incident] = []
        if "theft" in chosen:
            found.append(Incident(
                "theft", theft_at, None, _HERD,
                f"{stolen_n} animals of pen-{pen + 1} taken at night ({_when(self.start_ms, theft_at)}): "
                f"their ear tags, collars and weights are never seen again and the pen's camera "
                f"count drops by {stolen_n}; the herd is {self.n - stolen_n}, minimum {self.minimum}",
                "below_minimum", tuple(tag(i) for i in stolen),
            ))  # fmt: skip
        if "tag_removal" in chosen:
            found.append(Incident(
                "tag_removal", removal_at, None, tag(removed),
                f"collar of {tag(removed)} removed ({_when(self.start_ms, removal_at)}): tamper "
                "'removed', then the collar lies still at ambient temperature; the ear tag is "
                "still read at milking",
                "tag_removal", (tag(removed), self.collars[removed]),
            ))  # fmt: skip
        if "sensor_drift" in chosen:
            found.append(Incident(
                "sensor_drift", drift_at, None, tag(drifting),
                f"collar of {tag(drifting)} drifts from {_when(self.start_ms, drift_at)}: "
                f"temperature +{_DRIFT_C} °C by the end, activity normal",
                "abnormal_temperature", (tag(drifting), self.collars[drifting]),
            ))  # fmt: skip
        if "silent_gateway" in chosen:
            found.append(Incident(
                "silent_gateway", silent_at, silent_end, self.gate,
                f"parlour gate reader silent for 12 h from {_when(self.start_ms, silent_at)}: "
                "no tag reads, no heartbeats",
                "stale_device", (self.gate,),
            ))  # fmt: skip
        if "outside_geofence" in chosen:
            found.append(Incident(
                "outside_geofence", outside_at, end(outside_at + outside_span), tag(outside),
                f"{tag(outside)} outside the farm fence for {outside_span // _HOUR} h from "
                f"{_when(self.start_ms, outside_at)}",
                "outside_fence", (tag(outside),),
            ))  # fmt: skip
        if "night_outside_barn" in chosen:
            found.append(Incident(
                "night_outside_barn", night_at, end(night_at + night_span), tag(night),
                f"{tag(night)} stays in the pasture for {night_span // _HOUR} h from "
                f"{_when(self.start_ms, night_at)}; its pen's night camera count is one short",
                "outside_barn", (tag(night),),
            ))  # fmt: skip
        if "fever" in chosen:
            found.append(Incident(
                "fever", fever_at, end(fever_at + 48 * _HOUR), tag(fever),
                f"{tag(fever)} runs a fever from {_when(self.start_ms, fever_at)}: ~40.4 °C "
                "after 6 h for a day and a half, activity halved",
                "abnormal_temperature", (tag(fever),),
            ))  # fmt: skip
        self.incidents = sorted(found, key=lambda i: i.start_ms)

    def _present(self, i: int, t: int) -> bool:
        return not (i in self.theft[1] and t >= self.theft[0])

    def scenario(self) -> Scenario:
        self._gate_passes()
        self._collars()
        self._cameras()
        self._heartbeats([self.gate, self.scale, *self.cameras])
        subject = {
            "herd": _HERD,
            "farm": _FARM,
            "animals": list(self.tags),
            "pens": {
                f"pen-{p + 1}": [t for t, q in zip(self.tags, self.pen_of, strict=True) if q == p]
                for p in range(self.pens)
            },
            "geofence": _ring(*_FENCE),
            "barn": _ring(*_BARN),
            "night": ["20:00", "05:00"],
            "milking": [f"{h:02d}:00" for h in _MILKING_H],
            "minimum": self.minimum,
            "utc_offset": _UTC_OFFSET,
        }
        return self.rec.scenario(
            "dairy",
            start_ms=self.start_ms,
            days=self.days,
            subject=subject,
            incidents=self.incidents,
        )

    def _gate_passes(self) -> None:
        passes = [
            self.start_ms + d * _DAY + h * _HOUR for d in range(self.days) for h in _MILKING_H
        ]
        window = self.rec.silent.get(self.gate, (_NEVER, _NEVER))
        spacing = min(15_000, 2_400_000 // self.n)
        dark = [window[0] < p + self.n * spacing and p < window[1] for p in passes]
        missed_before: set[int] = set()
        for index, pass_ms in enumerate(passes):
            rng = _rng(self.seed, "dairy", "gate", index)
            order = list(range(self.n))
            rng.shuffle(order)
            # 1-3 % of the herd missed, none missed at the pass before; none next to a
            # silent pass, so every animal is still read that day
            misses = round(rng.uniform(0.01, 0.03) * self.n)
            candidates = rng.sample(order, 3 * misses)
            jitter = [rng.randrange(8_000) for _ in order]
            quiet = (index > 0 and dark[index - 1]) or (index + 1 < len(passes) and dark[index + 1])
            eligible = [] if quiet else [i for i in candidates if i not in missed_before]
            missed = set(eligible[:misses])
            missed_before = set(range(self.n)) if dark[index] else missed
            batch: list[str] = []
            weigh = index % 2 == 0 and (index // 2) % 3 == (1 if self.days > 1 else 0)
            weights = [rng.gauss(0, 2) for _ in order] if weigh else []
            for position, i in enumerate(order):
                t = pass_ms + position * spacing + jitter[position]
                if not self._present(i, t):
                    continue
                if i not in missed:
                    batch.append(self.tags[i])
                if weigh:
                    kg = (
                        520
                        + 160 * _unit(self.seed, "weight", i)
                        + 0.3 * (index // 2)
                        + weights[position]
                    )
                    self.rec.emit(
                        t + 4 * _MIN,
                        self.scale,
                        "weight",
                        {"tag": self.tags[i], "kg": round(kg, 1)},
                    )
                if len(batch) == 10:
                    self.rec.emit(
                        t + 500,
                        self.gate,
                        "tag_read",
                        {"tags": batch, "zone": "parlour", "direction": "in"},
                    )
                    batch = []
            if batch:
                last = pass_ms + self.n * spacing + 8_000
                self.rec.emit(
                    last,
                    self.gate,
                    "tag_read",
                    {"tags": batch, "zone": "parlour", "direction": "in"},
                )

    def _collars(self) -> None:
        offsets = [
            int(_unit(self.seed, "collar-offset", i) * self.interval_ms) for i in range(self.n)
        ]
        drift_at, drifting = self.drift
        removal_at, removed = self.removal
        out_from, out_to, outside = self.outside
        night_from, night_to, night = self.night
        fever_from, fever_to, fevered = self.fever
        west, south, east, north = _PASTURE_BOX
        dropped = (  # where the removed collar lies
            round(west + (east - west) * _unit(self.seed, "dropped", "lon"), 6),
            round(south + (north - south) * _unit(self.seed, "dropped", "lat"), 6),
        )
        if removal_at < self.end_ms:
            tamper = {"tag": self.tags[removed], "event": "removed"}
            self.rec.emit(removal_at, self.collars[removed], "tamper", tamper)
        for d in range(self.days):
            day_ms = self.start_ms + d * _DAY
            rng = _rng(self.seed, "dairy", "collars", d)
            centres = [_in_box(rng, _PASTURE_BOX) for _ in range(self.n)]
            for slot in range(_DAY // self.interval_ms):
                for i in range(self.n):
                    t = day_ms + slot * self.interval_ms + offsets[i]
                    hour = (t - day_ms) // _HOUR
                    # baseline draws, always made, so incidents do not shift them
                    jitter_lon, jitter_lat = (
                        rng.uniform(-0.0008, 0.0008),
                        rng.uniform(-0.0006, 0.0006),
                    )
                    barn = _in_box(rng, _BARN_BOX)
                    steps = _ACTIVITY[hour] * (0.75 + 0.5 * rng.random())
                    temp = (
                        38.6 + 0.15 * math.sin(2 * math.pi * (hour - 10) / 24) + rng.gauss(0, 0.1)
                    )
                    temp = min(39.1, max(38.1, temp))
                    far = _in_box(rng, _OUTSIDE_BOX)
                    if not self._present(i, t):
                        continue
                    grazing = (
                        round(min(east, max(west, centres[i][0] + jitter_lon)), 6),
                        round(min(north, max(south, centres[i][1] + jitter_lat)), 6),
                    )
                    lon, lat = grazing if hour in _PASTURE_H else barn
                    if i == outside and out_from <= t < out_to:
                        (lon, lat), steps = far, steps * 1.5
                    if i == night and night_from <= t < night_to:
                        (lon, lat), steps = grazing, 150 + steps
                    if i == fevered and fever_from <= t < fever_to:
                        temp += _FEVER_PEAK_C * _fever_shape(t - fever_from)
                        steps *= 0.5
                    if i == drifting and t >= drift_at:
                        temp += _DRIFT_C * (t - drift_at) / (self.end_ms - drift_at)
                    if i == removed and t >= removal_at:
                        (lon, lat), steps = dropped, 0
                        ambient = 25 + 4 * math.sin(2 * math.pi * (hour - 9) / 24)
                        temp = max(20.5, ambient + _unit(self.seed, "ambient", t) - 0.5)
                    data = {
                        "tag": self.tags[i],
                        "lat": lat,
                        "lon": lon,
                        "activity": round(steps),
                        "temperature": round(temp, 2),
                    }
                    self.rec.emit(t, self.collars[i], "collar", data)

    def _cameras(self) -> None:
        out_from, out_to, outside = self.outside
        night_from, night_to, night = self.night
        for d in range(self.days):
            for h in _CAMERA_H:
                for p, camera in enumerate(self.cameras):
                    t = (
                        self.start_ms
                        + d * _DAY
                        + h * _HOUR
                        + int(_unit(self.seed, "camera", p) * 60_000)
                    )
                    rng = _rng(self.seed, "dairy", "camera", p, d, h)
                    count = sum(
                        1
                        for i in range(self.n)
                        if self.pen_of[i] == p
                        and self._present(i, t)
                        and not (i == outside and out_from <= t < out_to)
                        and not (i == night and night_from <= t < night_to)
                    )
                    u = rng.random()
                    count += -1 if u < 0.08 else 1 if u > 0.92 else 0
                    data = {
                        "pen": f"pen-{p + 1}",
                        "count": count,
                        "confidence": round(rng.uniform(0.9, 0.99), 3),
                    }
                    self.rec.emit(t, camera, "head_count", data)

    def _heartbeats(self, devices: list[str]) -> None:
        _heartbeats(self.rec, devices, seed=self.seed, start_ms=self.start_ms, days=self.days)


def _unit(seed: int, *parts: object) -> float:
    """A fixed number in [0, 1) for (seed, parts): per-animal and per-device constants."""
    digest = hashlib.sha256(
        ("fourflow/sim/" + "/".join(map(str, parts)) + f"/{seed}").encode()
    ).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def _fever_shape(elapsed: int) -> float:
    """0..1: up over 6 h, held to 36 h, down by 48 h."""
    if elapsed < 6 * _HOUR:
        return elapsed / (6 * _HOUR)
    if elapsed < 36 * _HOUR:
        return 1.0
    return max(0.0, (48 * _HOUR - elapsed) / (12 * _HOUR))


def _heartbeats(rec: _Recorder, devices: list[str], *, seed: int, start_ms: int, days: int) -> None:
    """Hourly heartbeats at a per-device minute: signal strength, battery if it has one."""
    for device in devices:
        minute = int(_unit(seed, "heartbeat", device) * 3_600_000)
        battery = "door" in device  # door sensors run on batteries
        rng = _rng(seed, "heartbeat", device)
        for h in range(days * 24):
            data: dict[str, Any] = {"rssi": round(rng.gauss(-62, 3))}
            if battery:
                data["battery"] = round(92 - 0.01 * h, 2)
            rec.emit(start_ms + h * _HOUR + minute, device, "heartbeat", data)


# --- warehouse ---------------------------------------------------------------------------

_WH_SITE: Final = "wh-shanghai-3"
_LOT: Final = "https://id.gs1.org/01/10614141073464/10/COIL2026"  # lgtin 0614141.107346.COIL2026
_GTIN_DL: Final = "https://id.gs1.org/01/10614141073464/21/"
_ZONE_A: Final = "urn:fourflow:zone:wh-shanghai-3:A"
_ZONE_B: Final = "urn:fourflow:zone:wh-shanghai-3:B"
_STORE_LOCATION: Final = "https://id.gs1.org/414/0614141007776"
_BUYER_PARTY: Final = "urn:epc:id:pgln:0614141.00999"
_BUYER_SITE: Final = "urn:epc:id:sgln:0614141.00999.0"
_COUNT_H: Final = (6.5, 18.5)
_HOURS: Final = ("07:00", "19:00")
_COVER_EVERY: Final = 3 * _HOUR
_PER_TRUCK: Final = 12


class _Warehouse:
    def __init__(
        self, *, days: int, seed: int, coils: int, start_ms: int, chosen: frozenset[str]
    ) -> None:
        self.days, self.seed, self.n = days, seed, coils
        self.start_ms = start_ms
        self.end_ms = start_ms + days * _DAY
        serials = [
            int(coil_epc(2018_000 + seed * 1000 + i).rsplit(".", 1)[1]) for i in range(coils)
        ]
        self.items = [f"{_GTIN_DL}{s}" for s in serials]
        self.bays = [f"B-{i + 1:02d}" for i in range(coils)]
        self.tonnes = [round(2.2 + 0.6 * _unit(seed, "coil", i), 2) for i in range(coils)]
        rec = self.rec = _Recorder(seed=seed, site=_WH_SITE)
        hourly = 2 * 3_600
        self.rfid = rec.device("rfid-b", {"cycle_count"}, subject=_LOT, heartbeat_s=hourly)
        self.covers = [
            rec.device(
                f"cover-{bay}",
                {"cover", "tamper"},
                subject=_LOT,
                heartbeat_s=2 * _COVER_EVERY // 1000,
            )
            for bay in self.bays
        ]
        self.climate = {
            zone: rec.device(
                f"climate-{zone[-1].lower()}", {"climate"}, subject=zone, heartbeat_s=1_800
            )
            for zone in (_ZONE_A, _ZONE_B)
        }
        self.doors = {
            door: rec.device(f"door-{door}", {"door"}, subject=_ZONE_B, heartbeat_s=hourly)
            for door in ("dock-1", "dock-2", "staff-1")
        }
        self.readers = {
            door: rec.device(f"reader-{door}", {"tag_read"}, subject=_ZONE_B, heartbeat_s=hourly)
            for door in ("dock-1", "dock-2")
        }
        self.infrared = rec.device("infrared-b", {"intrusion"}, subject=_ZONE_B, heartbeat_s=hourly)
        self.camera = rec.device("camera-b", {"intrusion"}, subject=_ZONE_B, heartbeat_s=hourly)
        self.weighbridge = rec.device(
            "weighbridge", {"weighbridge"}, subject=_ZONE_B, heartbeat_s=hourly
        )
        self.released = sorted(
            _rng(seed, "warehouse", "release").sample(range(coils), max(1, coils // 4))
        )
        remaining = coils - len(self.released)
        self.stolen_n = max(1, min(4, remaining // 3))
        self.minimum = remaining - self.stolen_n + 1
        self.placed = [_NEVER] * coils  # when each coil is set in its bay
        self.lifted = [_NEVER] * coils  # when it leaves its bay
        self.unread = [_NEVER] * coils  # from when its tag is no longer read
        self.documents: list[tuple[int, dict[str, Any]]] = []
        self.releases: list[tuple[int, list[str]]] = []
        self.incidents: list[Incident] = []
        self._inbound()
        self._legit_outbound()
        self._plan(chosen)

    def _at(self, day: int, hours: float) -> int:
        return self.start_ms + day * _DAY + int(hours * _HOUR)

    def _truck(self, rng: random.Random, prefix: str) -> str:
        return f"{prefix}{rng.choice('ABCDEFGHJK')}{rng.randrange(10_000, 100_000)}"

    def _inbound(self) -> None:
        """The EPCIS journey ends on day 0: received 09:00, stored 10:00; trucks from 08:00."""
        journey = datetime.fromtimestamp(self._at(0, 10 - 32) / 1000, _TZ)
        document = steel_coil_document(coils=self.n, start=journey, seed=self.seed)
        self.documents.append((self._at(0, 11), document))
        rng = _rng(self.seed, "warehouse", "inbound")
        for truck, first in enumerate(range(0, self.n, _PER_TRUCK)):
            load = range(first, min(first + _PER_TRUCK, self.n))
            arrive = self._at(0, 8) + truck * 20 * _MIN + rng.randrange(60_000)
            plate, tare = self._truck(rng, "苏E"), rng.randrange(14_000, 16_500)
            gross = tare + sum(round(self.tonnes[i] * 1000) for i in load)
            self._weigh(arrive, plate, gross, "in", _LOT)
            self._door("dock-1", arrive + 4 * _MIN, arrive + 14 * _MIN)
            tags = [self.items[i] for i in load]
            self.rec.emit(
                arrive + 8 * _MIN,
                self.readers["dock-1"],
                "tag_read",
                {"tags": tags, "zone": "dock-1", "direction": "in"},
            )
            self._weigh(arrive + 18 * _MIN, plate, tare, "out", None)
        for i in range(self.n):
            self.placed[i] = self._at(0, 9.5) + i * (30 * _MIN // self.n)

    def _legit_outbound(self) -> None:
        rng = _rng(self.seed, "warehouse", "outbound")
        day, hour = (1, 9.0) if self.days >= 2 else (0, 12.5)
        release_at = self._at(day, hour) + rng.randrange(30) * _MIN
        items = [self.items[i] for i in self.released]
        self.releases.append((release_at, items))
        arrive = release_at + 60 * _MIN
        plate, tare = self._truck(rng, "沪A"), rng.randrange(14_000, 16_500)
        shipped_at = self._load_out(arrive, plate, tare, self.released, lot=_LOT)
        created = shipped_at + 2 * _MIN
        self.documents.append((created, _shipping_document(items, shipped_at, created, self.seed)))

    def _load_out(
        self, arrive: int, plate: str, tare: int, coils: list[int], *, lot: str | None
    ) -> int:
        """A truck takes ``coils`` out through dock-2; returns when the door closed."""
        self._weigh(arrive, plate, tare, "in", lot)
        lift = arrive + 8 * _MIN
        for j, i in enumerate(coils):
            self.lifted[i] = lift + j * 90_000
            self.rec.emit(
                self.lifted[i] + 40_000, self.readers["dock-2"], "tag_read",
                {"tags": [self.items[i]], "zone": "dock-2", "direction": "out"},
            )  # fmt: skip
        closed = lift + len(coils) * 90_000 + 3 * _MIN
        self._door("dock-2", arrive + 4 * _MIN, closed)
        gross = tare + sum(round(self.tonnes[i] * 1000) for i in coils)
        self._weigh(closed + 5 * _MIN, plate, gross, "out", lot)
        return closed

    def _weigh(self, t: int, plate: str, kg: int, direction: str, lot: str | None) -> None:
        data: dict[str, Any] = {"vehicle": plate, "kg": kg, "direction": direction}
        if lot is not None:
            data["lot"] = lot
        self.rec.emit(t, self.weighbridge, "weighbridge", data)

    def _door(self, door: str, opened: int, closed: int) -> None:
        self.rec.emit(opened, self.doors[door], "door", {"door": door, "state": "open"})
        self.rec.emit(closed, self.doors[door], "door", {"door": door, "state": "closed"})

    def _plan(self, chosen: frozenset[str]) -> None:
        rng = _rng(self.seed, "warehouse", "incidents")
        d = self.days
        kept = [i for i in range(self.n) if i not in self.released]
        stolen = sorted(rng.sample(kept, self.stolen_n))
        tagless = rng.choice([i for i in kept if i not in stolen])
        legit_day = 1 if d >= 2 else 0
        theft_day = max(legit_day, _pick_day(rng, d))
        theft_at = self._at(theft_day, 22.5) + rng.randrange(45) * _MIN
        removal_day = _pick_day(rng, d)
        removal_at = self._at(removal_day, 14) + rng.randrange(180) * _MIN
        drift_at = (
            self._at(_pick_day(rng, d, last=max(1, (d - 1) // 2)), 8) + rng.randrange(240) * _MIN
        )
        # 12 h within the run over an 18:30 count (the 06:30 count in a short run), on
        # another day than the tag removal if it can, so a later count misses that coil
        silent_at = (
            self._at(_pick_day(rng, d, last=d - 2, avoid=removal_day), 12)
            + rng.randrange(180) * _MIN
            if d >= 3
            else self._at(d - 1, 0.5) + rng.randrange(150) * _MIN
        )
        door_at = self._at(_pick_day(rng, d), 20.5) + rng.randrange(90) * _MIN
        door_for = rng.randrange(25, 71) * _MIN
        intrusion_at = self._at(_pick_day(rng, d), 1) + rng.randrange(180) * _MIN
        plate, tare = self._truck(rng, "沪C"), rng.randrange(14_000, 16_500)
        glimpses = [
            (rng.uniform(0.8, 0.95), rng.uniform(0.85, 0.97), rng.randrange(20_000, 50_000))
            for _ in range(3)
        ]
        found: list[Incident] = []
        if "unauthorized_outbound" in chosen:
            closed = self._load_out(theft_at, plate, tare, stolen, lot=None)
            found.append(Incident(
                "unauthorized_outbound", theft_at, closed + 5 * _MIN, _LOT,
                f"{len(stolen)} unreleased coils driven out through dock-2 at night "
                f"({_when(self.start_ms, theft_at)}, truck {plate}); the lot is "
                f"{self.n - len(self.released) - len(stolen)}, minimum {self.minimum}",
                "unauthorized_movement", tuple(self.items[i] for i in stolen),
            ))  # fmt: skip
        if "tag_removal" in chosen:
            self.unread[tagless] = removal_at
            self.rec.emit(
                removal_at,
                self.covers[tagless],
                "tamper",
                {"tag": self.items[tagless], "event": "removed"},
            )
            found.append(Incident(
                "tag_removal", removal_at, None, self.items[tagless],
                f"tag of the coil in bay {self.bays[tagless]} removed ({_when(self.start_ms, removal_at)}): "
                "tamper 'removed', never in a cycle count again, its cover stays occupied",
                "tag_removal", (self.items[tagless],),
            ))  # fmt: skip
        self.drift = drift_at if "sensor_drift" in chosen else _NEVER
        if "sensor_drift" in chosen:
            found.append(Incident(
                "sensor_drift", drift_at, None, self.climate[_ZONE_B],
                f"zone B climate sensor drifts from {_when(self.start_ms, drift_at)}: humidity "
                "+22 %RH by the end while zone A stays normal",
                "climate", (self.climate[_ZONE_B],),
            ))  # fmt: skip
        if "silent_gateway" in chosen:
            silent_end = min(silent_at + 12 * _HOUR, self.end_ms)
            self.rec.silent[self.rfid] = (silent_at, silent_end)
            found.append(Incident(
                "silent_gateway", silent_at, silent_end, self.rfid,
                f"zone B RFID reader silent for 12 h from {_when(self.start_ms, silent_at)}: "
                "no cycle counts, no heartbeats",
                "stale_device", (self.rfid,),
            ))  # fmt: skip
        if "door_after_hours" in chosen:
            self._door("staff-1", door_at, door_at + door_for)
            found.append(Incident(
                "door_after_hours", door_at, door_at + door_for, "staff-1",
                f"staff-1 door open after hours, {_when(self.start_ms, door_at)} for "
                f"{door_for // _MIN} min",
                "door_after_hours", (self.doors["staff-1"],),
            ))  # fmt: skip
        if "intrusion" in chosen:
            t = intrusion_at
            for infrared, camera, lag in glimpses:
                self.rec.emit(
                    t,
                    self.infrared,
                    "intrusion",
                    {"zone": _ZONE_B, "source": "infrared", "confidence": round(infrared, 3)},
                )
                self.rec.emit(
                    t + lag,
                    self.camera,
                    "intrusion",
                    {"zone": _ZONE_B, "source": "camera", "confidence": round(camera, 3)},
                )
                t += 2 * _MIN
            found.append(Incident(
                "intrusion", intrusion_at, t, _ZONE_B,
                f"someone in zone B at night ({_when(self.start_ms, intrusion_at)}): three "
                "infrared detections, each confirmed by the camera",
                "intrusion", (self.infrared, self.camera),
            ))  # fmt: skip
        self.incidents = sorted(found, key=lambda i: i.start_ms)

    def scenario(self) -> Scenario:
        self._covers()
        self._cycle_counts()
        self._climate()
        self._routine_doors()
        periodic = {
            self.rfid,
            *self.doors.values(),
            *self.readers.values(),
            self.infrared,
            self.camera,
            self.weighbridge,
        }
        _heartbeats(
            self.rec, sorted(periodic), seed=self.seed, start_ms=self.start_ms, days=self.days
        )
        subject = {
            "lot": _LOT,
            "zone": _ZONE_B,
            "items": list(self.items),
            "bays": dict(zip(self.bays, self.items, strict=True)),
            "outbound_doors": ["dock-2"],
            "inbound_doors": ["dock-1"],
            "hours": list(_HOURS),
            "minimum": self.minimum,
            "utc_offset": _UTC_OFFSET,
        }
        return self.rec.scenario(
            "warehouse",
            start_ms=self.start_ms,
            days=self.days,
            subject=subject,
            incidents=self.incidents,
            documents=[doc for _, doc in sorted(self.documents, key=lambda pair: pair[0])],
            releases=self.releases,
        )

    def _covers(self) -> None:
        """Every 3 h from when the coil is placed, and at once when it is lifted."""
        for i, cover in enumerate(self.covers):
            rng = _rng(self.seed, "warehouse", "cover", i)
            where = {"lot": _LOT, "bay": self.bays[i]}
            for t in range(self.placed[i], self.end_ms, _COVER_EVERY):
                load = round(self.tonnes[i] + rng.gauss(0, 0.004), 3)
                if t < self.lifted[i]:
                    self.rec.emit(t, cover, "cover", {**where, "occupied": True, "load_t": load})
                else:
                    self.rec.emit(t, cover, "cover", {**where, "occupied": False, "load_t": 0})
            if self.lifted[i] < self.end_ms:
                self.rec.emit(
                    self.lifted[i], cover, "cover", {**where, "occupied": False, "load_t": 0}
                )

    def _cycle_counts(self) -> None:
        window = self.rec.silent.get(self.rfid, (_NEVER, _NEVER))
        times = [self._at(d, h) for d in range(self.days) for h in _COUNT_H]
        times = [t for t in times if t > max(self.placed)]
        missed_before: set[int] = set()
        for index, t in enumerate(times):
            rng = _rng(self.seed, "warehouse", "count", index)
            draws = [rng.random() for _ in range(self.n)]
            dark = window[0] <= t < window[1]
            near_dark = any(
                window[0] <= u < window[1] for u in times[max(0, index - 1) : index + 2]
            )
            missed = (
                set()
                if near_dark
                else {i for i, u in enumerate(draws) if u < 0.005 and i not in missed_before}
            )
            missed_before = set(range(self.n)) if dark else missed
            tags = [
                self.items[i]
                for i in range(self.n)
                if self.placed[i] <= t < min(self.lifted[i], self.unread[i]) and i not in missed
            ]
            self.rec.emit(
                t + rng.randrange(60_000),
                self.rfid,
                "cycle_count",
                {"lot": _LOT, "zone": _ZONE_B, "tags": tags},
            )

    def _climate(self) -> None:
        for zone, device in self.climate.items():
            rng = _rng(self.seed, "warehouse", "climate", zone)
            offset = int(_unit(self.seed, "climate", zone) * 60_000)
            base_t, base_h = (13.5, 57.0) if zone == _ZONE_B else (14.5, 55.0)
            for q in range(self.days * 96):
                t = self.start_ms + q * 15 * _MIN + offset
                phase = math.sin(2 * math.pi * ((q % 96) / 96 - 9 / 24))
                temp = base_t + 2.5 * phase + rng.gauss(0, 0.15)
                humidity = base_h - 5 * phase + rng.gauss(0, 0.8)
                if device == self.climate[_ZONE_B] and t >= self.drift:
                    humidity += 22 * (t - self.drift) / (self.end_ms - self.drift)
                data = {
                    "zone": zone,
                    "temperature": round(temp, 2),
                    "humidity": round(min(100.0, humidity), 1),
                }
                self.rec.emit(t, device, "climate", data)

    def _routine_doors(self) -> None:
        """Staff in at 07:30 and out at 18:40; other lots' deliveries through dock-1."""
        for d in range(self.days):
            rng = _rng(self.seed, "warehouse", "doors", d)
            morning = self._at(d, 7.5) + rng.randrange(-5, 6) * _MIN
            evening = self._at(d, 18 + 40 / 60) + rng.randrange(-10, 11) * _MIN
            for opened in (morning, evening):
                self._door("staff-1", opened, opened + rng.randrange(40, 120) * 1000)
            for _ in range(rng.randrange(1, 4)):
                opened = self._at(d, 13) + rng.randrange(0, 240) * _MIN
                self._door("dock-1", opened, opened + rng.randrange(10, 26) * _MIN)


def _shipping_document(
    items: list[str], shipped_ms: int, created_ms: int, seed: int
) -> dict[str, Any]:
    """EPCIS 2.0: the released coils shipped from the warehouse to the buyer."""
    return {
        "@context": ["https://ref.gs1.org/standards/epcis/2.0.0/epcis-context.jsonld"],
        "type": "EPCISDocument",
        "schemaVersion": "2.0",
        "creationDate": _iso(created_ms),
        "epcisBody": {
            "eventList": [
                {
                    "type": "ObjectEvent",
                    "eventTime": _iso(shipped_ms),
                    "eventTimeZoneOffset": _UTC_OFFSET,
                    "action": "OBSERVE",
                    "epcList": items,
                    "bizStep": "shipping",
                    "disposition": "in_transit",
                    "readPoint": {"id": _STORE_LOCATION},
                    "bizTransactionList": [
                        {
                            "type": "desadv",
                            "bizTransaction": f"urn:epcglobal:cbv:bt:0614141007776:OUT{seed:06d}",
                        }
                    ],
                    "sourceList": [
                        {"type": "possessing_party", "source": WAREHOUSE_PARTY},
                        {"type": "location", "source": WAREHOUSE},
                    ],
                    "destinationList": [
                        {"type": "possessing_party", "destination": _BUYER_PARTY},
                        {"type": "location", "destination": _BUYER_SITE},
                    ],
                }
            ]
        },
    }


def _hours(window: Sequence[str]) -> list[int]:
    return [int(text.split(":")[0]) for text in window]


def oracle_config(
    scenario: Scenario,
    *,
    tenant: str = "sim",
    receipt_id: int | None = None,
    pledge_id: int | None = None,
) -> dict[str, Any]:
    """The oracle config (oracles.config.OracleConfig JSON) that watches ``scenario``:
    its devices, and its herd or lot with the scenario's minimum, fences and hours."""
    subject = scenario.subject
    devices = [
        {
            "id": sim.device.id,
            "address": sim.device.address,
            "kinds": sorted(sim.device.kinds),
            "site": sim.device.site,
            "subject": sim.device.subject,
            "heartbeat_s": sim.device.heartbeat_s,
        }
        for sim in scenario.devices
    ]
    watch: dict[str, Any] = {"receipt_id": receipt_id, "pledge_id": pledge_id}
    config: dict[str, Any] = {"tenant": tenant, "devices": devices, "herds": [], "lots": []}
    if scenario.name in ("solar", "charging"):  # oracles.sim_energy
        return config | {scenario.name: [watch | {"rules": subject["rules"]}]}
    if "plant" in subject:
        from oracles.sim_machines import factory_rules

        return config | {"plants": [watch | {"rules": factory_rules(scenario)}]}
    if "dealer" in subject:
        from oracles.sim_vehicles import rules_config

        return config | {"dealers": [watch | {"rules": rules_config(scenario)}]}
    if "watches" in subject:
        from oracles.sim_telemetry import telemetry_config

        telemetry = telemetry_config(scenario)
        return config | {
            "schemas": telemetry["schemas"],
            "telemetry": [{"rules": rules} for rules in telemetry["watches"]],
        }
    if "herd" in subject:
        watch["rules"] = {
            "herd": subject["herd"],
            "animals": list(subject["animals"]),
            "minimum": subject["minimum"],
            "geofence": [[lat, lon] for lon, lat in subject["geofence"]],  # rings are [lon, lat]
            "barn": [[lat, lon] for lon, lat in subject["barn"]],
            "night_hours": _hours(subject["night"]),
            "count_window_hours": 12,  # a theft at night shows in that day's count
            "utc_offset": subject["utc_offset"],
        }
        return {"tenant": tenant, "devices": devices, "herds": [watch], "lots": []}
    watch["rules"] = {
        "lot": subject["lot"],
        "zone": subject["zone"],
        "items": list(subject["items"]),
        "minimum": subject["minimum"],
        "bays": {item: bay for bay, item in subject["bays"].items()},
        "outbound_doors": list(subject["outbound_doors"]),
        "business_hours": _hours(subject["hours"]),
        "utc_offset": subject["utc_offset"],
    }
    return {"tenant": tenant, "devices": devices, "herds": [], "lots": [watch]}
