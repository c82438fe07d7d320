"""Dealer floor-plan finance (汽车金融 / 库存融资): financed vehicles on a dealer's lot, their
certificates (合格证) and keys in the safe, and the alarms a lender acts on.

Pure: readings in (already signature-checked, see oracles.readings), on-chain releases
in, ``DealerDay`` and ``Alarm`` out; no store, no chain, no I/O, no clock.
oracles.pipeline stores, signs, anchors and reports what this module derives.

Each financed vehicle (a VIN) is a receipt. A GPS/BeiDou tracker in each vehicle sends
``vehicle_gps`` readings (every 10 min parked, every minute moving); an RFID reader at the
dealer's safe reads the certificate's and the key fob's tags as they are taken out
(``tag_read`` at zone ``safe_zone``, direction "out") and put back ("in").

    rules   = DealerRules(dealer=..., vehicles=frozenset(vins), lot=polygon,
                          certificates={vin: tag}, keys={vin: tag})
    monitor = DealerMonitor(rules, devices)
    alarms  = monitor.observe(reading)             for each reading, in time order
    monitor.release(vin, time_ms)                  the lender released it (paid off) on-chain
    alarms  = monitor.check(now_ms)                every few minutes: the time rules
    day, alarms = monitor.close_day("2026-11-24")  once the dealer's local day is over

Rules (``RULES`` holds severity and fact; ``key`` is the alarm's identity)

| rule                  | condition                                                            | severity | fact                  | key                                        |
|-----------------------|----------------------------------------------------------------------|----------|-----------------------|--------------------------------------------|
| unauthorized_movement | an unreleased vehicle's position outside ``lot``, not on a test      | breach   | unauthorized_movement | unauthorized_movement:<vin>:<start ms>     |
|                       | drive, ``streak`` times in a row, or once more than ``jitter_m``     |          |                       |                                            |
|                       | beyond the fence                                                     |          |                       |                                            |
| certificate_out       | the certificate of an unreleased vehicle read "out" at the safe      | breach   | unauthorized_movement | certificate_out:<vin>:<out ms>             |
| keys_out              | the keys of an unreleased vehicle out of the safe longer than        | warning  | —                     | keys_out:<vin>:<out ms>                    |
|                       | ``keys_out_hours`` (``check``, or the "in" read that ends it)        |          |                       |                                            |
| tracker_unplugged     | a position of an unreleased vehicle with power "battery"             | breach   | tag_removal           | tracker_unplugged:<vin>:<start ms>         |
| tracker_silent        | ``check``: a tracker (a device registered for vehicle_gps) silent    | warning  | stale_data            | tracker_silent:<device>:<last ms>          |
|                       | longer than its ``heartbeat_s``, unless its vehicle is released      |          |                       |                                            |
| reader_silent         | ``check``: another device of the dealer (the safe's reader) silent   | warning  | stale_data            | reader_silent:<device>:<last ms>           |
|                       | longer than its ``heartbeat_s``: custody is unwatched                |          |                       |                                            |
| unseen                | close_day: a vehicle financed all day (unreleased at the day's end)  | warning  | —                     | unseen:<vin>:<day>                         |
|                       | with no position that day                                            |          |                       |                                            |

Test drives. Dealers test-drive their stock: a position outside the lot while the
vehicle's keys are out of the safe, no longer than ``keys_out_hours`` after they were
taken out, is a test drive and counts toward nothing. A vehicle whose keys stay in the
safe (or that has no key tag in ``keys``) cannot be on a test drive.

GPS jitter. A parked tracker wanders a few metres, so one position just outside the
fence is not a movement: an episode needs ``streak`` consecutive positions outside (not
on a test drive), or a single one further than ``jitter_m`` metres beyond the fence
(a vehicle driven away is hundreds of metres out at its first moving position). The
distance beyond the fence is the shortest distance to the polygon's edges, on a local
equirectangular projection (110 574 m per degree of latitude, 111 320 × cos(lat) m per
degree of longitude): good to well under a metre at a dealer's scale.

Thresholds are strict: keys out for exactly ``keys_out_hours``, a position exactly
``jitter_m`` beyond the fence and a device silent for exactly ``heartbeat_s`` raise
nothing, and a test drive is still one at exactly ``keys_out_hours``. A point on the
lot polygon's edge is on the lot.

Episodes. An ongoing condition raises once: its episode opens with the reading that
starts it (the key carries that reading's time) and closes when a reading shows it gone:
a position on the lot (unauthorized_movement), the certificate or keys read "in" at the
safe, a position on external power (tracker_unplugged). The silence rules' episode is
the last reading before the silence (the monitor's first reading for a device never
heard). A release ends every episode of the vehicle: after it the vehicle, its
certificate and its keys may leave. A monitor never returns a key twice, so calling
``check`` every minute raises each condition once; a fresh monitor replaying the same
readings, releases and checks returns the same alarms with the same keys.

Custody. A certificate or key fob is presumed in the safe until a read says "out"
(the financing starts with them deposited). A read at the safe with no direction is an
inventory scan: the tag is in. Reads at other zones and tags not in ``certificates`` or
``keys`` are ignored, as are positions of VINs not in ``vehicles``.

Evidence. Every alarm carries the event ids (``reading_event_id``) of the readings behind
it, in time order: the positions of the run that opened a movement episode (the first
``streak``, and the far one that fired it), the read that took the certificate or keys
out (and for keys_out found at the return, the "in" read), the battery position, the
last reading before a silence, the vehicle's last known position for unseen (none if it
was never seen).

Order. Readings are expected in time order. A redelivered reading (same device and seq)
of a day still open is ignored. A reading not newer than the state it would move (a
vehicle's last position, a tag's last read at the safe) is late: it may still set its
day's last position of a vehicle, but moves no state and fires nothing. A reading whose
day is closed counts for no day. Silence rules start their clock at the first reading
this monitor observed. ``release`` takes the on-chain release time; a vehicle is
released for every reading at or after it.

The day (``close_day``), per local day of ``utc_offset`` ([00:00, 24:00) there). Per
vehicle in ``vehicles``, from its last position that day (first that applies):

- unseen: no position that day;
- tracker_unplugged: that position was on battery power and the vehicle is unreleased
  at the day's end;
- on_lot: that position is on the lot;
- off_lot_released: off the lot, released by the day's end;
- off_lot_unreleased: off the lot, unreleased (a test drive at midnight included).

Counts: ``financed`` = vehicles not released before the day began; ``released`` = the
VINs released during the day; one count per status (they add up to ``len(vehicles)``);
``certificates_in_safe`` / ``keys_in_safe`` = the tags of ``certificates`` / ``keys`` in
the safe at the day's end (its last read before 24:00). Positions in the payload are the
tracker's own degrees, unrounded; there is no other derived number. Evidence: the
vehicles' last positions of the day and the day's reads at the safe, in time order, at
most ``evidence_cap``; ``evidence_omitted`` counts the day's other readings of those kinds
(the positions before each vehicle's last) plus any cut by the cap.

VINs follow ISO 3779 (17 characters, no I, O or Q) with the check digit in position 9
(GB 16735 in China, 49 CFR 565 in North America): ``vin_check_digit`` computes it and
``DealerRules`` refuses a VIN whose check digit is wrong.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast

from ledger.errors import InvalidInput
from oracles.livestock import point_in_polygon
from oracles.readings import Alarm, Device, Reading, TagRead, VehicleGps
from oracles.rules import (
    Heartbeats,
    check_day,
    day_bounds,
    first_delivery,
    first_time,
    local_day,
    offset_ms,
    require,
    rule_alarm,
)

__all__ = [
    "RULES",
    "STATUSES",
    "DealerDay",
    "DealerMonitor",
    "DealerRules",
    "VehicleDay",
    "is_valid_vin",
    "metres_outside",
    "vin_check_digit",
]

Point = tuple[float, float]  # (lat, lon)
Polygon = tuple[Point, ...]
Severity = Literal["info", "warning", "breach"]
Status = Literal["on_lot", "off_lot_released", "off_lot_unreleased", "unseen", "tracker_unplugged"]
Custody = Literal["in", "out"]

RULES: Final[Mapping[str, tuple[Severity, str | None]]] = {
    "unauthorized_movement": ("breach", "unauthorized_movement"),
    "certificate_out": ("breach", "unauthorized_movement"),
    "keys_out": ("warning", None),
    "tracker_unplugged": ("breach", "tag_removal"),
    "tracker_silent": ("warning", "stale_data"),
    "reader_silent": ("warning", "stale_data"),
    "unseen": ("warning", None),
}
STATUSES: Final = (
    "on_lot",
    "off_lot_released",
    "off_lot_unreleased",
    "unseen",
    "tracker_unplugged",
)

_HOUR_MS: Final = 3_600_000
_VIN: Final = re.compile(r"^[A-HJ-NPR-Z0-9]{17}$")
_NEVER: Final = -(2**63)
_M_PER_DEG_LAT: Final = 110_574.0
_M_PER_DEG_LON: Final = 111_320.0  # at the equator; × cos(latitude)

# --- VINs ---------------------------------------------------------------------------------

_VALUES: Final = {
    **{str(d): d for d in range(10)},
    **dict(zip("ABCDEFGH", range(1, 9), strict=True)),
    **dict(zip("JKLMN", range(1, 6), strict=True)),
    "P": 7,
    "R": 9,
    **dict(zip("STUVWXYZ", range(2, 10), strict=True)),
}
_WEIGHTS: Final = (8, 7, 6, 5, 4, 3, 2, 10, 0, 9, 8, 7, 6, 5, 4, 3, 2)


def vin_check_digit(vin: str) -> str:
    """The check digit (position 9) a 17-character VIN should carry: the weighted sum of
    its transliterated characters mod 11, "X" for 10. InvalidInput for a malformed VIN."""
    if not _VIN.fullmatch(vin):
        raise InvalidInput(
            f"a VIN is 17 characters of A-Z (no I, O, Q) and 0-9, got {vin!r}", field="vin"
        )
    remainder = sum(_VALUES[c] * w for c, w in zip(vin, _WEIGHTS, strict=True)) % 11
    return "X" if remainder == 10 else str(remainder)


def is_valid_vin(vin: str) -> bool:
    """Whether ``vin`` is well formed and its position 9 is its check digit."""
    return bool(_VIN.fullmatch(vin)) and vin[8] == vin_check_digit(vin)


# --- geometry -----------------------------------------------------------------------------


def metres_outside(point: Point, polygon: Sequence[Point]) -> float:
    """How far (m) ``point`` lies beyond ``polygon``: 0.0 inside or on its edge, else the
    shortest distance to an edge (local equirectangular projection around the point)."""
    if point_in_polygon(point, polygon):
        return 0.0
    lat, lon = point
    x_scale = _M_PER_DEG_LON * math.cos(math.radians(lat))

    def xy(p: Point) -> tuple[float, float]:
        return (p[1] - lon) * x_scale, (p[0] - lat) * _M_PER_DEG_LAT

    best = math.inf
    for i, a in enumerate(polygon):
        (ax, ay), (bx, by) = xy(a), xy(polygon[(i + 1) % len(polygon)])
        dx, dy = bx - ax, by - ay
        length2 = dx * dx + dy * dy
        t = 0.0 if length2 == 0 else max(0.0, min(1.0, -(ax * dx + ay * dy) / length2))
        best = min(best, math.hypot(ax + t * dx, ay + t * dy))
    return best


# --- configuration ------------------------------------------------------------------------


@dataclass(frozen=True)
class DealerRules:
    """One dealer's floor plan: the financed VINs, the lot, and the custody tags.

    ``lot`` is (lat, lon) vertices. ``certificates`` and ``keys`` map a VIN to the RFID
    tag of its certificate (合格证) and of its key fob; a VIN may lack either.
    """

    dealer: str
    vehicles: frozenset[str]
    lot: Polygon
    certificates: Mapping[str, str] = field(default_factory=dict)
    keys: Mapping[str, str] = field(default_factory=dict)
    safe_zone: str = "safe"
    streak: int = 3
    jitter_m: float = 50.0
    keys_out_hours: float = 4.0
    utc_offset: str = "+08:00"
    evidence_cap: int = 5_000
    _offset_ms: int = field(init=False, repr=False, compare=False, default=0)
    _tags: Mapping[str, tuple[str, str]] = field(
        init=False, repr=False, compare=False, default_factory=dict
    )

    def __post_init__(self) -> None:
        require(bool(self.dealer), "dealer", "a dealer id is required")
        object.__setattr__(self, "vehicles", frozenset(self.vehicles))
        require(bool(self.vehicles), "vehicles", "at least one financed VIN is required")
        for vin in sorted(self.vehicles):
            require(
                is_valid_vin(vin),
                "vehicles",
                f"{vin!r} is not a valid VIN"
                + (
                    f" (its check digit should be {vin_check_digit(vin)})"
                    if _VIN.fullmatch(vin)
                    else ""
                ),
            )
        points = tuple((float(p[0]), float(p[1])) for p in self.lot)
        require(len(points) >= 3, "lot", "lot needs at least 3 (lat, lon) points")
        require(
            all(-90 <= lat <= 90 and -180 <= lon <= 180 for lat, lon in points),
            "lot",
            "lot points must be (lat, lon) in degrees",
        )
        object.__setattr__(self, "lot", points)
        tags: dict[str, tuple[str, str]] = {}
        for name in ("certificates", "keys"):
            mapping = dict(getattr(self, name))
            for vin, tag in sorted(mapping.items()):
                require(vin in self.vehicles, name, f"{name}: {vin} is not a financed VIN")
                require(bool(tag), name, f"{name}: the tag of {vin} is empty")
                require(tag not in tags, name, f"{name}: tag {tag!r} is used twice")
                tags[tag] = (vin, name)
            object.__setattr__(self, name, mapping)
        object.__setattr__(self, "_tags", tags)
        require(bool(self.safe_zone), "safe_zone", "safe_zone is required")
        require(self.streak >= 1, "streak", f"streak must be >= 1, got {self.streak}")
        require(
            math.isfinite(self.jitter_m) and self.jitter_m >= 0,
            "jitter_m",
            f"jitter_m must be >= 0, got {self.jitter_m}",
        )
        require(
            math.isfinite(self.keys_out_hours) and self.keys_out_hours > 0,
            "keys_out_hours",
            f"keys_out_hours must be > 0, got {self.keys_out_hours}",
        )
        require(self.evidence_cap >= 1, "evidence_cap", "evidence_cap must be >= 1")
        object.__setattr__(self, "_offset_ms", offset_ms(self.utc_offset))

    @property
    def keys_out_ms(self) -> int:
        return round(self.keys_out_hours * _HOUR_MS)

    def tag(self, tag: str) -> tuple[str, str] | None:
        """(vin, "certificates" | "keys") of a custody tag, None if it is not one."""
        return self._tags.get(tag)

    def day_of(self, time_ms: int) -> str:
        """The dealer's local date (ISO) of a moment."""
        return local_day(time_ms, self._offset_ms)

    def day_bounds(self, day: str) -> tuple[int, int]:
        """[start, end) of a local day, in unix milliseconds."""
        return day_bounds(day, self._offset_ms)


# --- the day ------------------------------------------------------------------------------


@dataclass(frozen=True)
class VehicleDay:
    """One VIN's day: its status, last position, release and custody at the day's end
    (``certificate`` / ``keys`` None when the VIN has no such tag)."""

    status: Status
    last_seen_ms: int | None = None
    lat: float | None = None
    lon: float | None = None
    released_ms: int | None = None
    certificate: Custody | None = None
    keys: Custody | None = None

    def to_payload(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "last_seen_ms": self.last_seen_ms,
            "lat": self.lat,
            "lon": self.lon,
            "released_ms": self.released_ms,
            "certificate": self.certificate,
            "keys": self.keys,
        }


@dataclass(frozen=True)
class DealerDay:
    """A dealer's floor plan for one local day (see the module docstring)."""

    dealer: str
    day: str
    financed: int
    released: tuple[str, ...]  # VINs released during the day
    on_lot: int
    off_lot_released: int
    off_lot_unreleased: int
    unseen: int
    tracker_unplugged: int
    certificates_in_safe: int
    keys_in_safe: int
    vehicles: Mapping[str, VehicleDay]
    evidence: tuple[str, ...]  # reading event ids, in time order
    evidence_omitted: int = 0

    def to_payload(self) -> dict[str, Any]:
        """A JSON-safe dict: the payload of the fourflow event that records this day."""
        return {
            "dealer": self.dealer,
            "day": self.day,
            "financed": self.financed,
            "released": list(self.released),
            "on_lot": self.on_lot,
            "off_lot_released": self.off_lot_released,
            "off_lot_unreleased": self.off_lot_unreleased,
            "unseen": self.unseen,
            "tracker_unplugged": self.tracker_unplugged,
            "certificates_in_safe": self.certificates_in_safe,
            "keys_in_safe": self.keys_in_safe,
            "vehicles": {vin: self.vehicles[vin].to_payload() for vin in sorted(self.vehicles)},
            "evidence": list(self.evidence),
            "evidence_omitted": self.evidence_omitted,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> DealerDay:
        """The inverse of ``to_payload``; InvalidInput when a field is missing, mistyped or
        the status counts disagree with the vehicles."""
        try:
            return _dealer_day(payload)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InvalidInput(f"not a dealer day payload: {exc!r}", field="payload") from exc


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _optional(value: Any, kind: type[float] | type[int]) -> Any:
    if value is None:
        return None
    return _int(value) if kind is int else float(value)


def _custody(value: Any) -> Custody | None:
    if value not in (None, "in", "out"):
        raise ValueError(f"custody {value!r}")
    return cast(Custody | None, value)


def _vehicle_day(v: Mapping[str, Any]) -> VehicleDay:
    if v["status"] not in STATUSES:
        raise ValueError(f"status {v['status']!r}")
    return VehicleDay(
        status=cast(Status, v["status"]),
        last_seen_ms=_optional(v["last_seen_ms"], int),
        lat=_optional(v["lat"], float),
        lon=_optional(v["lon"], float),
        released_ms=_optional(v["released_ms"], int),
        certificate=_custody(v["certificate"]),
        keys=_custody(v["keys"]),
    )


def _dealer_day(p: Mapping[str, Any]) -> DealerDay:
    vehicles = {str(vin): _vehicle_day(v) for vin, v in p["vehicles"].items()}
    day = DealerDay(
        dealer=str(p["dealer"]),
        day=check_day(p["day"]),
        financed=_int(p["financed"]),
        released=tuple(str(v) for v in p["released"]),
        on_lot=_int(p["on_lot"]),
        off_lot_released=_int(p["off_lot_released"]),
        off_lot_unreleased=_int(p["off_lot_unreleased"]),
        unseen=_int(p["unseen"]),
        tracker_unplugged=_int(p["tracker_unplugged"]),
        certificates_in_safe=_int(p["certificates_in_safe"]),
        keys_in_safe=_int(p["keys_in_safe"]),
        vehicles=vehicles,
        evidence=tuple(str(e) for e in p["evidence"]),
        evidence_omitted=_int(p["evidence_omitted"]),
    )
    statuses = Counter(v.status for v in vehicles.values())
    for status in STATUSES:
        if getattr(day, status) != statuses[status]:
            raise ValueError(
                f"{status} is {getattr(day, status)}, the vehicles say {statuses[status]}"
            )
    return day


# --- monitor state ------------------------------------------------------------------------


@dataclass
class _Position:
    time_ms: int
    event_id: str
    lat: float
    lon: float
    inside: bool
    battery: bool


@dataclass
class _Vehicle:
    gps_ms: int = _NEVER
    last_id: str | None = None
    run_start: int | None = None  # first of the consecutive unauthorized outside positions
    run_ids: list[str] = field(default_factory=list)
    run_length: int = 0
    moved_since: int | None = None  # unauthorized_movement episode start
    unplugged_since: int | None = None


@dataclass
class _Tag:
    """A certificate or key fob: its reads at the safe."""

    read_ms: int = _NEVER
    out_since: int | None = None
    out_id: str | None = None
    changes: list[tuple[int, bool]] = field(default_factory=list)  # (time, in the safe)

    def in_safe_at(self, time_ms: int) -> bool:
        state = True  # deposited when the financing started
        for at, in_safe in self.changes:
            if at >= time_ms:
                break
            state = in_safe
        return state


@dataclass
class _Day:
    seen: set[str] = field(default_factory=set)
    positions: dict[str, _Position] = field(default_factory=dict)
    position_count: int = 0
    safe_reads: list[tuple[int, str]] = field(default_factory=list)


# --- the monitor --------------------------------------------------------------------------


class DealerMonitor:
    """Turns one dealer's readings and releases into alarms and daily results."""

    def __init__(self, rules: DealerRules, devices: Mapping[str, Device]) -> None:
        self.rules = rules
        self._heartbeats = Heartbeats(subject=rules.dealer, what="dealer", devices=devices)
        self._vehicles = {vin: _Vehicle() for vin in rules.vehicles}
        self._tags = {tag: _Tag() for tag in (*rules.certificates.values(), *rules.keys.values())}
        self._released: dict[str, int] = {}
        self._tracker_vin: dict[str, str] = {}
        self._days: dict[str, _Day] = {}
        self._closed: set[str] = set()
        self._raised: set[str] = set()

    # public API

    def observe(self, reading: Reading) -> list[Alarm]:
        """Take one reading of the dealer's devices; returns the alarms it raised."""
        event_id, time_ms = self._heartbeats.admit(reading)
        day = self._open_day(self.rules.day_of(time_ms))
        if day is not None and not first_delivery(day.seen, event_id):
            return []
        data = reading.parsed()
        if isinstance(data, VehicleGps):
            return self._fresh(self._on_position(reading.device, data, time_ms, event_id, day))
        if isinstance(data, TagRead) and data.zone == self.rules.safe_zone:
            return self._fresh(self._on_safe_read(data, time_ms, event_id, day))
        return []

    def release(self, vin: str, time_ms: int) -> None:
        """The lender released ``vin`` on-chain at ``time_ms`` (paid off): from then on the
        vehicle, its certificate and its keys may leave. A second release keeps the first."""
        if vin not in self._vehicles:
            raise InvalidInput(
                f"{vin} is not a financed vehicle of dealer {self.rules.dealer}",
                field="vin",
                code="unknown_vehicle",
            )
        self._released.setdefault(vin, time_ms)

    def check(self, now_ms: int) -> list[Alarm]:
        """The time rules at ``now_ms``: keys out too long, silent trackers and readers."""
        if self._heartbeats.origin_ms is None:
            return []
        return self._fresh([*self._keys_rule(now_ms), *self._silent(now_ms)])

    def close_day(self, day: str) -> tuple[DealerDay, list[Alarm]]:
        """The dealer's result for a local day (final: its later readings count nowhere)
        and its unseen alarms."""
        day = check_day(day)
        if day in self._closed:
            raise InvalidInput(
                f"day {day} of dealer {self.rules.dealer} is already closed",
                field="day",
                code="day_closed",
            )
        self._closed.add(day)
        result = self._summarise(day, self._days.pop(day, _Day()))
        return result, self._fresh(self._unseen(result))

    # readings

    def _open_day(self, day: str) -> _Day | None:
        if day in self._closed:
            return None
        return self._days.setdefault(day, _Day())

    def _is_released(self, vin: str, time_ms: int) -> bool:
        released = self._released.get(vin)
        return released is not None and released <= time_ms

    def _on_position(
        self, device: str, gps: VehicleGps, time_ms: int, event_id: str, day: _Day | None
    ) -> list[Alarm]:
        vehicle = self._vehicles.get(gps.vin)
        if vehicle is None:
            return []
        lat, lon = float(gps.lat), float(gps.lon)
        beyond = metres_outside((lat, lon), self.rules.lot)
        battery = gps.power == "battery"
        if day is not None:
            day.position_count += 1
            kept = day.positions.get(gps.vin)
            if kept is None or time_ms >= kept.time_ms:
                day.positions[gps.vin] = _Position(
                    time_ms, event_id, lat, lon, beyond == 0.0, battery
                )
        if time_ms <= vehicle.gps_ms:
            return []  # late: moves no state
        vehicle.gps_ms, vehicle.last_id = time_ms, event_id
        self._tracker_vin[device] = gps.vin
        if self._is_released(gps.vin, time_ms):
            vehicle.moved_since = vehicle.unplugged_since = None
            _reset_run(vehicle)
            return []
        where = {"lat": gps.lat, "lon": gps.lon, "device": device}
        return [
            *self._unplugged_rule(gps.vin, vehicle, battery, time_ms, event_id, where),
            *self._movement_rule(gps.vin, vehicle, beyond, time_ms, event_id, where),
        ]

    def _unplugged_rule(
        self,
        vin: str,
        vehicle: _Vehicle,
        battery: bool,
        time_ms: int,
        event_id: str,
        where: dict[str, Any],
    ) -> list[Alarm]:
        if not battery:
            vehicle.unplugged_since = None
            return []
        if vehicle.unplugged_since is not None:
            return []
        vehicle.unplugged_since = time_ms
        message = f"tracker of {vin} runs on its backup battery: unplugged from the vehicle"
        return [self._alarm("tracker_unplugged", vin, time_ms, time_ms, message, [event_id], where)]

    def _movement_rule(
        self,
        vin: str,
        vehicle: _Vehicle,
        beyond: float,
        time_ms: int,
        event_id: str,
        where: dict[str, Any],
    ) -> list[Alarm]:
        if beyond == 0.0:
            vehicle.moved_since = None
            _reset_run(vehicle)
            return []
        if self._on_test_drive(vin, time_ms):
            _reset_run(vehicle)
            return []
        if vehicle.run_start is None:
            vehicle.run_start = time_ms
        vehicle.run_length += 1
        far = beyond > self.rules.jitter_m
        if vehicle.moved_since is not None:
            return []  # one episode, however long it lasts
        if len(vehicle.run_ids) < self.rules.streak or far:
            vehicle.run_ids.append(event_id)
        if not (far or vehicle.run_length >= self.rules.streak):
            return []
        vehicle.moved_since = vehicle.run_start
        metres = round(beyond, 1)
        message = (
            f"{vin} is off the lot of {self.rules.dealer} without release: {metres} m beyond "
            f"the fence" + ("" if far else f", {vehicle.run_length} positions in a row")
        )
        details = {**where, "metres_outside": metres, "positions": vehicle.run_length}
        return [
            self._alarm(
                "unauthorized_movement",
                vin,
                vehicle.run_start,
                time_ms,
                message,
                vehicle.run_ids,
                details,
            )
        ]

    def _on_test_drive(self, vin: str, time_ms: int) -> bool:
        tag = self.rules.keys.get(vin)
        if tag is None:
            return False
        out_since = self._tags[tag].out_since
        return out_since is not None and 0 <= time_ms - out_since <= self.rules.keys_out_ms

    def _on_safe_read(
        self, read: TagRead, time_ms: int, event_id: str, day: _Day | None
    ) -> list[Alarm]:
        found = [(tag, self.rules.tag(tag)) for tag in read.tags]
        custody = [(tag, known) for tag, known in found if known is not None]
        if not custody:
            return []
        if day is not None:
            day.safe_reads.append((time_ms, event_id))
        alarms: list[Alarm] = []
        for tag, (vin, what) in custody:
            state = self._tags[tag]
            if time_ms <= state.read_ms:
                continue  # late: moves no state
            state.read_ms = time_ms
            in_safe = read.direction != "out"
            if not state.changes or state.changes[-1][1] != in_safe:
                state.changes.append((time_ms, in_safe))
            if in_safe:
                if what == "keys":
                    alarms += self._keys_back(vin, tag, state, time_ms, event_id)
                state.out_since = state.out_id = None
                continue
            if state.out_since is not None:
                continue  # still out: one episode
            state.out_since, state.out_id = time_ms, event_id
            if what == "certificates" and not self._is_released(vin, time_ms):
                message = f"certificate of {vin} taken out of the safe without release"
                details = {"tag": tag, "zone": read.zone}
                alarms.append(
                    self._alarm(
                        "certificate_out", vin, time_ms, time_ms, message, [event_id], details
                    )
                )
        return alarms

    def _keys_back(
        self, vin: str, tag: str, state: _Tag, time_ms: int, event_id: str
    ) -> list[Alarm]:
        if state.out_since is None or state.out_id is None:
            return []
        if self._is_released(vin, time_ms) or time_ms - state.out_since <= self.rules.keys_out_ms:
            return []
        return [self._keys_alarm(vin, tag, state.out_since, time_ms, [state.out_id, event_id])]

    # time rules

    def _keys_rule(self, now_ms: int) -> list[Alarm]:
        alarms = []
        for vin, tag in sorted(self.rules.keys.items()):
            state = self._tags[tag]
            if state.out_since is None or state.out_id is None or self._is_released(vin, now_ms):
                continue
            if now_ms - state.out_since > self.rules.keys_out_ms:
                alarms.append(self._keys_alarm(vin, tag, state.out_since, now_ms, [state.out_id]))
        return alarms

    def _keys_alarm(
        self, vin: str, tag: str, out_ms: int, time_ms: int, evidence: list[str]
    ) -> Alarm:
        hours = round((time_ms - out_ms) / _HOUR_MS, 2)
        message = (
            f"keys of {vin} out of the safe for {hours} h (limit {self.rules.keys_out_hours} h)"
        )
        details = {"tag": tag, "out_ms": out_ms, "hours": hours}
        return self._alarm("keys_out", vin, out_ms, time_ms, message, evidence, details)

    def _silent(self, now_ms: int) -> list[Alarm]:
        alarms = []
        for s in self._heartbeats.silences(now_ms):
            tracker = "vehicle_gps" in s.device.kinds
            vin = self._tracker_vin.get(s.device.id)
            if tracker and vin is not None and self._is_released(vin, now_ms):
                continue  # the vehicle is paid off: its tracker may be taken out
            rule = "tracker_silent" if tracker else "reader_silent"
            details = {"device": s.device.id, "vin": vin, **s.details}
            alarms.append(
                self._alarm(rule, s.device.id, s.last_ms, now_ms, s.message, s.evidence, details)
            )
        return alarms

    # the day

    def _summarise(self, day: str, bucket: _Day) -> DealerDay:
        start_ms, end_ms = self.rules.day_bounds(day)
        vehicles: dict[str, VehicleDay] = {}
        for vin in sorted(self.rules.vehicles):
            released_ms = self._released.get(vin)
            released = released_ms is not None and released_ms < end_ms
            last = bucket.positions.get(vin)
            status: Status
            if last is None:
                status = "unseen"
            elif last.battery and not released:
                status = "tracker_unplugged"
            elif last.inside:
                status = "on_lot"
            else:
                status = "off_lot_released" if released else "off_lot_unreleased"
            certificate, keys = (
                self._custody_at(self.rules.certificates.get(vin), end_ms),
                self._custody_at(self.rules.keys.get(vin), end_ms),
            )
            vehicles[vin] = VehicleDay(
                status=status,
                last_seen_ms=None if last is None else last.time_ms,
                lat=None if last is None else last.lat,
                lon=None if last is None else last.lon,
                released_ms=released_ms if released else None,
                certificate=certificate,
                keys=keys,
            )
        statuses = Counter(v.status for v in vehicles.values())
        essential = sorted(
            [(p.time_ms, p.event_id) for p in bucket.positions.values()] + bucket.safe_reads
        )
        kept = essential[: self.rules.evidence_cap]
        kept.sort()
        others = bucket.position_count - len(bucket.positions)
        return DealerDay(
            dealer=self.rules.dealer,
            day=day,
            financed=sum(
                1
                for vin in self.rules.vehicles
                if vin not in self._released or self._released[vin] >= start_ms
            ),
            released=tuple(sorted(v for v, t in self._released.items() if start_ms <= t < end_ms)),
            on_lot=statuses["on_lot"],
            off_lot_released=statuses["off_lot_released"],
            off_lot_unreleased=statuses["off_lot_unreleased"],
            unseen=statuses["unseen"],
            tracker_unplugged=statuses["tracker_unplugged"],
            certificates_in_safe=sum(v.certificate == "in" for v in vehicles.values()),
            keys_in_safe=sum(v.keys == "in" for v in vehicles.values()),
            vehicles=vehicles,
            evidence=tuple(event_id for _, event_id in kept),
            evidence_omitted=others + len(essential) - len(kept),
        )

    def _custody_at(self, tag: str | None, time_ms: int) -> Custody | None:
        if tag is None:
            return None
        return "in" if self._tags[tag].in_safe_at(time_ms) else "out"

    def _unseen(self, result: DealerDay) -> list[Alarm]:
        _, end_ms = self.rules.day_bounds(result.day)
        alarms = []
        for vin, v in sorted(result.vehicles.items()):
            if v.status != "unseen" or v.released_ms is not None:
                continue
            last_id = self._vehicles[vin].last_id
            message = f"financed vehicle {vin} sent no position on {result.day}"
            details = {"day": result.day, "last_seen_ms": self._last_ms(vin)}
            evidence = [] if last_id is None else [last_id]
            alarms.append(
                self._alarm("unseen", vin, result.day, end_ms, message, evidence, details)
            )
        return alarms

    def _last_ms(self, vin: str) -> int | None:
        gps_ms = self._vehicles[vin].gps_ms
        return None if gps_ms == _NEVER else gps_ms

    # alarms

    def _alarm(
        self,
        rule: str,
        subject: str,
        start: int | str,
        time_ms: int,
        message: str,
        evidence: Iterable[str],
        details: Mapping[str, Any] | None = None,
    ) -> Alarm:
        details = {"dealer": self.rules.dealer, **(details or {})}
        return rule_alarm(RULES, rule, subject, start, time_ms, message, evidence, details)

    def _fresh(self, alarms: list[Alarm]) -> list[Alarm]:
        """The alarms whose key this monitor has not returned before."""
        return first_time(alarms, self._raised)


def _reset_run(vehicle: _Vehicle) -> None:
    vehicle.run_start, vehicle.run_ids, vehicle.run_length = None, [], 0
