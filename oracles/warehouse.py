"""Goods pledged in a warehouse (仓单 / 存货质押): stock per lot and zone, and the alarms a lender acts on.

Pure: readings in (already signature-checked, see oracles.readings), on-chain releases
and EPCIS custody events in, ``StockLevel`` and ``Alarm`` out; no store, no chain, no
I/O. oracles.pipeline stores, signs, anchors and reports what this module derives.

    rules   = LotRules(lot=..., items=frozenset(coil_tags), zone="A", minimum=36, bays=...)
    monitor = WarehouseMonitor(rules, devices)
    alarms  = monitor.observe(reading)                    each reading, in time order
    monitor.release(items, time_ms)                       the pledge released them on-chain
    alarms  = monitor.custody_out(items, time_ms, eid)    an EPCIS shipping / departing event
    level, alarms = monitor.stock(now_ms)                 after each cycle count, or on demand
    alarms  = monitor.check(now_ms)                       every few minutes: the time rules

Rules (``RULES`` holds the base severity and fact; every key starts ``<rule>:<lot>:``)

| rule                     | condition                                                                 | severity | fact                  |
|--------------------------|---------------------------------------------------------------------------|----------|-----------------------|
| unauthorized_movement    | a pledged, unreleased item read by a tag_read with direction "out" at a   | breach   | unauthorized_movement |
|                          | zone in ``outbound_doors``, or named by a custody-out (custody without    |          |                       |
|                          | release is still unauthorized); raised at once                            |          |                       |
| unauthorized_movement    | a weighbridge "out" naming the lot whose net load (out kg − the vehicle's | breach   | unauthorized_movement |
|                          | last "in" kg) exceeds the released tonnage not yet weighed out by at      |          |                       |
|                          | least half the lightest item (without item weights: any load while no     |          |                       |
|                          | item is released)                                                         |          |                       |
| outbound_without_custody | a released item read "out" at an outbound door with no custody-out yet    | info     | —                     |
| stock_discrepancy        | ``stock``: pledged, unreleased items without a custody-out absent from    | warning  | —                     |
|                          | the latest cycle count (more than ``cycle_tolerance`` of them) and no     |          |                       |
|                          | cover says otherwise; or a cover newer than the count shows the bay empty |          |                       |
| stock_discrepancy        | ``stock``: as above, and the bay's cover also shows it empty              | breach   | —                     |
| below_minimum            | ``stock``: quantity (+ items no source observed) < ``minimum``            | breach   | quantity              |
| tag_removal              | a tamper "removed" / "cut" on a pledged, unreleased item's tag; or        | breach   | tag_removal           |
|                          | ``stock``: items absent from the count (more than ``cycle_tolerance``)    |          |                       |
|                          | while their bay's cover shows it occupied: the goods are there, the tag  |          |                       |
|                          | is not                                                                    |          |                       |
| climate                  | 2 consecutive trusted readings of one sensor in the lot's zone with the   | warning  | —                     |
|                          | temperature outside ``temperature_c`` or humidity above ``humidity_pct`` |          |                       |
| sensor_drift             | 3 consecutive readings of one climate sensor more than 5 °C from the      | warning  | —                     |
|                          | median of the zone's other fresh sensors                                  |          |                       |
| door_after_hours         | a door opens outside ``business_hours`` (local ``utc_offset`` time), or   | warning  | —                     |
|                          | an open door is still open when they end                                  |          |                       |
| intrusion                | an intrusion reading (infrared or camera) with confidence ≥ 0.8 in the    | warning  | —                     |
|                          | lot's zone or an outbound zone                                            |          |                       |
| door_after_hours,        | escalation: within 30 min of the door's after-hours moment or of the      | breach   | —                     |
| intrusion                | episode's last intrusion, pledged items go missing (a new discrepancy)    |          |                       |
|                          | or move without release; a second alarm, key ``<first key>:breach``       |          |                       |
| stale_device             | ``check``: a watched device silent longer than its ``heartbeat_s`` since it last spoke (a device never heard is not fitted yet) | warning  | stale_data            |

Limits are strict: a temperature on its range's edge, humidity equal to the limit, a
device silent exactly ``heartbeat_s``, an intrusion at exactly 0.8 confidence (that one
counts: ≥) and exactly ``cycle_tolerance`` missed items are in bounds.

Reconciliation (``stock``). Per pledged item, from the lot's latest cycle count, the
latest cover reading of the item's bay (``bays``), releases and custody-outs:

- released: released on-chain; no longer collateral, whatever the sensors say.
- departed: a custody-out and neither source says it is still here.
- present: read by the count; or (no count yet) its cover is occupied; or missed by the
  count while its cover is occupied (also ``untagged``: tag_removal); or a tolerated
  miss (at most ``cycle_tolerance`` misses in the count: read noise, not loss).
- missing: missed by the count (beyond the tolerance) with no cover, or its cover empty
  too (corroborated, breach); or a cover newer than the count (or, with no count, the
  only cover) shows its bay empty.
- unobserved: no count yet and no cover for its bay.

quantity = len(present) (unreleased items only). method = "cycle_count+covers" when the
latest count and at least one cover were used, "cycle_count" or "covers" when only one
was, "none" when neither (quantity 0, no alarms: a lot nobody counted is not an empty
lot).

    confidence = base(method) × supported / quantity    (base(method) when quantity is 0)
    base: cycle_count+covers 1.0, cycle_count 0.9, covers 0.7, none 0.0

where ``supported`` are the present items that every source with a word on them says
are present (read by the count and, if it has one, an occupied cover; or, with no
count, an occupied cover). Tolerated misses, untagged items and items the count read
while an older cover said empty are present but unsupported. Rounded to 4 places.
weight_t = the sum of ``item_weight_t`` over present items, when every one is known.

Sensor drift. A climate reading more than 5 °C from the median of the zone's other
sensors (their latest readings, if within their own ``heartbeat_s``) is *suspect*: it
counts toward sensor_drift and is left out of the climate rule (its runs restart), so
one drifting sensor never raises climate alarms alone. With no fresh peer a sensor is
trusted as it is. Two sensors that disagree are both suspect (nobody can tell which
one drifts): the zone needs a visit, which sensor_drift says. Drift is a warning, not
info: until the sensor is fixed the zone's climate is watched by fewer sensors.

Episodes and keys. An ongoing condition raises once: unauthorized movement and
discrepancies are per item (an item's episode ends when a count or an "in" read sees it
again, or a release or custody explains it); below_minimum ends when the quantity is
back at the minimum; climate and drift runs end at a reading back in bounds (or
trusted); a door's episode is one opening; intrusions within 30 min of the episode's
last one extend it. Each key carries what opened the episode (an event id or a time in
ms), never a wall clock, so a fresh monitor replaying the same readings, releases,
custody events and ``stock`` / ``check`` calls returns the same alarms with the same
keys. A monitor never returns a key twice. One alarm covers all items found by one
reading (one truck, one count): one fact on-chain, not forty.

Keys read ``<rule>:<lot>:<scope>``; the scope is the event id that found it for
unauthorized_movement, outbound_without_custody and tag_removal (the reading, custody
event or count), ``<severity>:<event id>`` for stock_discrepancy, the newest reading of
the opening reconciliation for below_minimum, ``<device>:<bound>:<first ms>`` for
climate, ``<device>:<first ms>`` for sensor_drift, ``<door>:<opened ms>`` for
door_after_hours, ``<zone>:<first ms>`` for intrusion and ``<device>:<last reading ms>``
for stale_device; an escalation's key is ``<its first key>:breach``. A key longer than
300 characters (the store's limit) keeps its head and gets a sha256 digest of the whole.

Order. Readings are expected in time order. A redelivered reading (same device and seq)
is ignored. A reading not newer than the state it would move (the latest count, a bay's
cover, a sensor's, a door's or an item's tamper reading) moves nothing. Event rules (an
outbound read, a weighbridge, an intrusion) act on late readings too.

Subject and evidence. Every alarm's subject is the lot (``details`` name the item,
zone, device or door); its evidence lists the event ids (``reading_event_id``, or the
custody event's id) it rests on, in time order where it has more than one.
"""

from __future__ import annotations

import hashlib
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final, Literal, cast

from ledger.errors import InvalidInput
from oracles.readings import (
    Alarm,
    Climate,
    Cover,
    CycleCount,
    Device,
    Door,
    Intrusion,
    Reading,
    TagRead,
    Tamper,
    Weighbridge,
    reading_event_id,
)
from oracles.rules import first_time, in_window, offset_ms, require

__all__ = [
    "CLIMATE_READINGS",
    "DRIFT_C",
    "DRIFT_READINGS",
    "INTRUSION_CONFIDENCE",
    "RULES",
    "SECURITY_WINDOW_MS",
    "LotRules",
    "StockLevel",
    "WarehouseMonitor",
]

Method = Literal["cycle_count", "covers", "cycle_count+covers", "none"]
Severity = Literal["info", "warning", "breach"]

CLIMATE_READINGS: Final = 2  # consecutive out-of-bounds readings that make a climate alarm
DRIFT_C: Final = 5.0  # °C from the zone's other sensors that makes a reading suspect
DRIFT_READINGS: Final = 3  # consecutive suspect readings that make a drift alarm
INTRUSION_CONFIDENCE: Final = 0.8
SECURITY_WINDOW_MS: Final = 30 * 60 * 1000  # missing items this soon after escalate
RULES: Final[Mapping[str, tuple[Severity, str | None]]] = {
    "unauthorized_movement": ("breach", "unauthorized_movement"),
    "outbound_without_custody": ("info", None),
    "stock_discrepancy": ("warning", None),
    "below_minimum": ("breach", "quantity"),
    "tag_removal": ("breach", "tag_removal"),
    "climate": ("warning", None),
    "sensor_drift": ("warning", None),
    "door_after_hours": ("warning", None),
    "intrusion": ("warning", None),
    "stale_device": ("warning", "stale_data"),
}

_HOUR_MS: Final = 3_600_000
_DAY_MS: Final = 86_400_000
_METHODS: Final = ("cycle_count", "covers", "cycle_count+covers", "none")
_BASE_CONFIDENCE: Final[Mapping[str, float]] = {
    "cycle_count+covers": 1.0,
    "cycle_count": 0.9,
    "covers": 0.7,
    "none": 0.0,
}
_SEQ_WINDOW: Final = 10_000  # redelivery is remembered this many seqs back, per device
_KEY_MAX: Final = 300  # the alarms table's key column (ledger.oracle_state.AlarmRow)


# --- configuration ------------------------------------------------------------------------


@dataclass(frozen=True)
class LotRules:
    """One pledged lot's rules; ``items`` are the tag ids of the pledged goods.

    ``bays`` maps an item to the bay whose sensing cover lies over it (items without a
    bay have no cover). ``item_weight_t`` is one weight for every item or a weight per
    item, in tonnes. ``business_hours`` = (start, end) local hours, wrapping midnight when
    start > end; (0, 24) switches the door rule off. ``outbound_doors`` are the door or
    zone names of tag_read readers where "out" means leaving the warehouse.
    """

    lot: str
    items: frozenset[str]
    zone: str
    minimum: int
    unit: Literal["item"] = "item"
    item_weight_t: Mapping[str, float] | float | None = None
    bays: Mapping[str, str] = field(default_factory=dict)
    temperature_c: tuple[float, float] = (-10.0, 40.0)
    humidity_pct: float = 70.0
    business_hours: tuple[int, int] = (7, 19)
    utc_offset: str = "+08:00"
    outbound_doors: frozenset[str] = frozenset()
    cycle_tolerance: int = 0
    _offset_ms: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        require(bool(self.lot), "lot", "a lot id is required")
        require(bool(self.zone), "zone", "a zone is required")
        object.__setattr__(self, "items", frozenset(self.items))
        object.__setattr__(self, "outbound_doors", frozenset(self.outbound_doors))
        require(bool(self.items), "items", "a lot needs at least one pledged item")
        require(
            0 <= self.minimum <= len(self.items),
            "minimum",
            f"minimum must be in 0..{len(self.items)} (the pledged items), got {self.minimum}",
        )
        require(self.unit == "item", "unit", f"unit must be 'item', got {self.unit!r}")
        object.__setattr__(self, "item_weight_t", self._weights())
        object.__setattr__(self, "bays", self._bays())
        low, high = self.temperature_c
        require(low < high, "temperature_c", "temperature_c must be (low, high) with low < high")
        require(
            0 < self.humidity_pct <= 100,
            "humidity_pct",
            f"humidity_pct must be in (0, 100], got {self.humidity_pct}",
        )
        start, end = self.business_hours
        require(
            0 <= start <= 23 and 1 <= end <= 24 and start != end,
            "business_hours",
            f"business_hours must be (start 0..23, end 1..24), different, got {self.business_hours}",
        )
        require(self.cycle_tolerance >= 0, "cycle_tolerance", "cycle_tolerance must be >= 0")
        object.__setattr__(self, "_offset_ms", offset_ms(self.utc_offset))

    def _weights(self) -> Mapping[str, float] | float | None:
        weights = self.item_weight_t
        if weights is None:
            return None
        if isinstance(weights, int | float):
            require(weights > 0, "item_weight_t", f"item_weight_t must be > 0, got {weights}")
            return float(weights)
        frozen = {item: float(t) for item, t in weights.items()}
        require(
            frozen.keys() <= self.items and all(t > 0 for t in frozen.values()),
            "item_weight_t",
            "item_weight_t must map pledged items to weights > 0",
        )
        return MappingProxyType(frozen)

    def _bays(self) -> Mapping[str, str]:
        bays = dict(self.bays)
        require(
            bays.keys() <= self.items and all(bays.values()),
            "bays",
            "bays must map pledged items to bay names",
        )
        return MappingProxyType(bays)

    def weight_of(self, item: str) -> float | None:
        """An item's weight in tonnes, if configured."""
        weights = self.item_weight_t
        if weights is None or isinstance(weights, float):
            return weights
        return weights.get(item)

    def lightest_t(self) -> float | None:
        """The lightest pledged item's weight, if every item's weight is known."""
        weights = [self.weight_of(item) for item in self.items]
        known = [w for w in weights if w is not None]
        return min(known) if len(known) == len(weights) else None

    def watches(self, device: Device) -> bool:
        """Whether ``device`` reports on this lot: its subject is the lot, its zone or an
        outbound door."""
        return device.subject in (self.lot, self.zone) or device.subject in self.outbound_doors

    def local_hour(self, time_ms: int) -> int:
        return ((time_ms + self._offset_ms) // _HOUR_MS) % 24

    def is_business_hour(self, time_ms: int) -> bool:
        return in_window(self.local_hour(time_ms), self.business_hours)

    def closing_ms(self, time_ms: int) -> int | None:
        """The first moment at or after ``time_ms`` outside business hours (None: never)."""
        if not self.is_business_hour(time_ms):
            return time_ms
        hour_start = (time_ms + self._offset_ms) // _HOUR_MS * _HOUR_MS - self._offset_ms
        for hours in range(1, 25):
            moment = hour_start + hours * _HOUR_MS
            if not self.is_business_hour(moment):
                return moment
        return None


# --- the stock level ----------------------------------------------------------------------


@dataclass(frozen=True)
class StockLevel:
    """A lot's reconciled stock at ``time_ms`` (see the module docstring).

    Item lists are sorted; ``untagged`` items are also ``present``. ``evidence`` holds
    the event ids of the count, the covers and the custody events used, in time order.
    """

    lot: str
    zone: str
    time_ms: int
    quantity: int
    method: Method
    confidence: float
    present: tuple[str, ...]
    missing: tuple[str, ...]
    released: tuple[str, ...]
    departed: tuple[str, ...]
    untagged: tuple[str, ...]
    unobserved: tuple[str, ...]
    weight_t: float | None
    evidence: tuple[str, ...]

    def to_payload(self) -> dict[str, Any]:
        """A JSON-safe dict: the payload of the fourflow event that records this level."""
        return {
            "lot": self.lot,
            "zone": self.zone,
            "time_ms": self.time_ms,
            "quantity": self.quantity,
            "unit": "item",
            "method": self.method,
            "confidence": self.confidence,
            "present": list(self.present),
            "missing": list(self.missing),
            "released": list(self.released),
            "departed": list(self.departed),
            "untagged": list(self.untagged),
            "unobserved": list(self.unobserved),
            "weight_t": self.weight_t,
            "evidence": list(self.evidence),
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> StockLevel:
        """The inverse of ``to_payload``; InvalidInput when a field is missing or mistyped."""
        try:
            return _stock_level(payload)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"not a stock level payload: {exc!r}", field="payload") from exc


def _stock_level(p: Mapping[str, Any]) -> StockLevel:
    if p["method"] not in _METHODS:
        raise ValueError(f"method {p['method']!r}")
    if p["unit"] != "item":
        raise ValueError(f"unit {p['unit']!r}")

    def names(key: str) -> tuple[str, ...]:
        if not isinstance(p[key], list):
            raise TypeError(f"{key} must be a list")
        return tuple(str(v) for v in p[key])

    return StockLevel(
        lot=str(p["lot"]),
        zone=str(p["zone"]),
        time_ms=int(p["time_ms"]),
        quantity=int(p["quantity"]),
        method=cast(Method, p["method"]),
        confidence=float(p["confidence"]),
        present=names("present"),
        missing=names("missing"),
        released=names("released"),
        departed=names("departed"),
        untagged=names("untagged"),
        unobserved=names("unobserved"),
        weight_t=None if p["weight_t"] is None else float(p["weight_t"]),
        evidence=names("evidence"),
    )


# --- monitor state ------------------------------------------------------------------------


@dataclass(frozen=True)
class _Count:
    time_ms: int
    event_id: str
    tags: frozenset[str]


@dataclass(frozen=True)
class _Cover:
    time_ms: int
    event_id: str
    occupied: bool


@dataclass
class _Run:
    """Consecutive readings in one condition; ``ids`` keeps the first few."""

    start_ms: int
    ids: list[str]
    length: int = 1


@dataclass
class _Sensor:
    time_ms: int
    temperature: float
    event_id: str
    runs: dict[str, _Run] = field(default_factory=dict)


@dataclass
class _Door:
    time_ms: int  # the door's latest reading
    open_ms: int | None = None  # set while open
    open_id: str | None = None
    closing_ms: int | None = None  # when this opening became after-hours
    raised: bool = False


@dataclass
class _Watch:
    """A security episode (door after hours, intrusion) that loss may escalate."""

    key: str
    rule: str
    start_ms: int
    last_ms: int
    evidence: list[str]
    escalated: bool = False

    def covers(self, time_ms: int) -> bool:
        return self.start_ms <= time_ms <= self.last_ms + SECURITY_WINDOW_MS


@dataclass
class _View:
    """One reconciliation, before it becomes a StockLevel and alarms."""

    method: Method = "none"
    present: list[str] = field(default_factory=list)
    supported: set[str] = field(default_factory=set)
    missing: dict[str, Severity] = field(default_factory=dict)
    untagged: list[str] = field(default_factory=list)
    released: list[str] = field(default_factory=list)
    departed: list[str] = field(default_factory=list)
    unobserved: list[str] = field(default_factory=list)
    evidence: dict[str, int] = field(default_factory=dict)  # event id -> time_ms
    sources: dict[str, list[tuple[int, str]]] = field(default_factory=dict)  # item -> its readings


# --- the monitor --------------------------------------------------------------------------


class WarehouseMonitor:
    """Turns one pledged lot's readings, releases and custody into stock and alarms."""

    def __init__(self, rules: LotRules, devices: Mapping[str, Device]) -> None:
        self.rules = rules
        self._devices = {d.id: d for d in devices.values() if rules.watches(d)}
        self._seqs: dict[str, set[int]] = {}
        self._device_last: dict[str, tuple[int, str]] = {}
        self._origin_ms: int | None = None
        self._released: dict[str, int] = {}
        self._custody: dict[str, tuple[int, str]] = {}
        self._shipped_t = 0.0  # released tonnes already weighed out
        self._tare: dict[str, tuple[float, str]] = {}
        self._count: _Count | None = None
        self._covers: dict[str, _Cover] = {}
        self._moved: dict[str, int] = {}  # item -> start of its unauthorized-movement episode
        self._noted: set[str] = set()  # released items seen leaving without custody
        self._issues: dict[str, Severity] = {}  # item -> its open discrepancy's severity
        self._untagged: dict[str, str] = {}  # item -> "tamper" | "count", while removed
        self._tamper_ms: dict[str, int] = {}
        self._below = False
        self._sensors: dict[str, _Sensor] = {}
        self._doors: dict[str, _Door] = {}
        self._intrusions: dict[str, _Watch] = {}
        self._watches: list[_Watch] = []
        self._raised: set[str] = set()

    # public API

    def observe(self, reading: Reading) -> list[Alarm]:
        """Take one reading of the lot's devices; returns the alarms it raised."""
        if reading.device not in self._devices:
            raise InvalidInput(
                f"{reading.device} is not a device of lot {self.rules.lot}",
                field="device",
                code="unknown_device",
            )
        if not self._first_delivery(reading):
            return []
        event_id, time_ms = reading_event_id(reading.device, reading.seq), reading.time_ms
        self._start(time_ms)
        last = self._device_last.get(reading.device)
        if last is None or time_ms > last[0]:
            self._device_last[reading.device] = (time_ms, event_id)
        return self._fresh(self._dispatch(reading, reading.parsed(), time_ms, event_id))

    def release(self, items: Iterable[str], time_ms: int) -> None:
        """Items released on-chain: no longer collateral, they may leave."""
        self._start(time_ms)
        for item in items:
            if item in self.rules.items:
                self._released.setdefault(item, time_ms)

    def custody_out(self, items: Iterable[str], time_ms: int, event_id: str) -> list[Alarm]:
        """An EPCIS shipping / departing event for ``items``; unreleased ones are an
        unauthorized movement."""
        self._start(time_ms)
        named = [item for item in dict.fromkeys(items) if item in self.rules.items]
        for item in named:
            self._custody.setdefault(item, (time_ms, event_id))
        return self._fresh(self._unauthorized(named, time_ms, [event_id], event_id, "custody-out"))

    def stock(self, now_ms: int) -> tuple[StockLevel, list[Alarm]]:
        """Reconcile the latest count with the covers, releases and custody."""
        view = self._reconcile()
        level = self._level(view, now_ms)
        alarms = [
            *self._discrepancy_rule(view),
            *self._untagged_rule(view),
            *self._minimum_rule(view, level),
        ]
        return level, self._fresh(alarms)

    def check(self, now_ms: int) -> list[Alarm]:
        """The time rules at ``now_ms``: silent devices, doors left open after hours."""
        if self._origin_ms is None:
            return []
        alarms = self._stale(now_ms, self._origin_ms)
        for name in sorted(self._doors):
            alarms += self._door_after_hours(name, self._doors[name], now_ms, [])
        self._prune(now_ms)
        return self._fresh(alarms)

    # readings

    def _first_delivery(self, reading: Reading) -> bool:
        seqs = self._seqs.setdefault(reading.device, set())
        if reading.seq in seqs:
            return False
        seqs.add(reading.seq)
        if len(seqs) > 2 * _SEQ_WINDOW:
            floor = max(seqs) - _SEQ_WINDOW
            self._seqs[reading.device] = {s for s in seqs if s > floor}
        return True

    def _start(self, time_ms: int) -> None:
        if self._origin_ms is None:
            self._origin_ms = time_ms

    def _dispatch(self, reading: Reading, data: Any, time_ms: int, event_id: str) -> list[Alarm]:
        if isinstance(data, TagRead):
            return self._on_tag_read(data, time_ms, event_id)
        if isinstance(data, Weighbridge):
            return self._on_weighbridge(data, time_ms, event_id)
        if isinstance(data, CycleCount):
            self._on_cycle_count(data, time_ms, event_id)
        elif isinstance(data, Cover):
            self._on_cover(data, time_ms, event_id)
        elif isinstance(data, Climate):
            return self._on_climate(reading.device, data, time_ms, event_id)
        elif isinstance(data, Door):
            return self._on_door(data, time_ms, event_id)
        elif isinstance(data, Intrusion):
            return self._on_intrusion(data, time_ms, event_id)
        elif isinstance(data, Tamper):
            return self._on_tamper(data, time_ms, event_id)
        return []

    def _on_tag_read(self, data: TagRead, time_ms: int, event_id: str) -> list[Alarm]:
        items = [tag for tag in dict.fromkeys(data.tags) if tag in self.rules.items]
        if data.direction == "in":
            self._back(items, time_ms)
            return []
        if data.direction != "out" or data.zone not in self.rules.outbound_doors:
            return []
        where = f"outbound door {data.zone}"
        return [
            *self._unauthorized(items, time_ms, [event_id], event_id, where),
            *self._undocumented(items, time_ms, event_id, data.zone),
        ]

    def _back(self, items: Iterable[str], time_ms: int) -> None:
        """Items seen in the warehouse again: their movement episode is over."""
        for item in items:
            if item in self._moved and time_ms > self._moved[item]:
                del self._moved[item]

    def _unauthorized(
        self, items: Sequence[str], time_ms: int, evidence: list[str], trigger: str, where: str
    ) -> list[Alarm]:
        moved = [i for i in items if i not in self._released and i not in self._moved]
        if not moved:
            return []
        for item in moved:
            self._moved[item] = time_ms
        message = (
            f"{len(moved)} pledged, unreleased item(s) of lot {self.rules.lot} leaving via {where}"
        )
        details = {"items": sorted(moved), "via": where}
        alarm = self._alarm("unauthorized_movement", trigger, time_ms, message, evidence, details)
        return [alarm, *self._escalate(time_ms, moved, evidence, "unauthorized_movement")]

    def _undocumented(
        self, items: Sequence[str], time_ms: int, event_id: str, door: str
    ) -> list[Alarm]:
        bare = [
            i
            for i in items
            if i in self._released and i not in self._custody and i not in self._noted
        ]
        if not bare:
            return []
        self._noted.update(bare)
        message = f"{len(bare)} released item(s) of lot {self.rules.lot} left via {door} before any custody-out"
        details = {"items": sorted(bare), "door": door}
        return [
            self._alarm("outbound_without_custody", event_id, time_ms, message, [event_id], details)
        ]

    def _on_weighbridge(self, data: Weighbridge, time_ms: int, event_id: str) -> list[Alarm]:
        if data.direction == "in":
            self._tare[data.vehicle] = (float(data.kg), event_id)
            return []
        if data.lot != self.rules.lot:
            return []
        tare_kg, tare_id = self._tare.pop(data.vehicle, (0.0, None))
        net_t = max(float(data.kg) - tare_kg, 0.0) / 1000
        excess = self._unreleased_load(net_t)
        if excess is None:
            return []
        evidence = [event_id] if tare_id is None else [tare_id, event_id]
        message = (
            f"vehicle {data.vehicle} left with {net_t:.3f} t of lot {self.rules.lot}, "
            f"{excess:.3f} t more than its releases cover"
        )
        details = {
            "vehicle": data.vehicle,
            "net_t": round(net_t, 3),
            "uncovered_t": round(excess, 3),
            "tare_kg": tare_kg if tare_id else None,
        }
        alarm = self._alarm("unauthorized_movement", event_id, time_ms, message, evidence, details)
        return [alarm, *self._escalate(time_ms, [], evidence, "unauthorized_movement")]

    def _unreleased_load(self, net_t: float) -> float | None:
        """The tonnes of a load no release covers (None: covered, or cannot be told)."""
        if net_t <= 0:
            return None
        weights = [self.rules.weight_of(item) for item in self._released]
        if None in weights:
            return None  # released items of unknown weight: the load cannot be checked
        available = sum(w for w in weights if w is not None) - self._shipped_t
        slack = 0.5 * (self.rules.lightest_t() or 0.0)
        if net_t <= available + slack:
            self._shipped_t += min(net_t, available)
            return None
        return net_t - max(available, 0.0)

    def _on_cycle_count(self, data: CycleCount, time_ms: int, event_id: str) -> None:
        if data.lot != self.rules.lot or data.zone != self.rules.zone:
            return
        if self._count is not None and time_ms <= self._count.time_ms:
            return
        self._count = _Count(time_ms, event_id, frozenset(data.tags))
        self._back(self._count.tags, time_ms)

    def _on_cover(self, data: Cover, time_ms: int, event_id: str) -> None:
        last = self._covers.get(data.bay)
        if data.lot == self.rules.lot and (last is None or time_ms > last.time_ms):
            self._covers[data.bay] = _Cover(time_ms, event_id, data.occupied)

    def _on_tamper(self, data: Tamper, time_ms: int, event_id: str) -> list[Alarm]:
        item = data.tag
        if item not in self.rules.items or item in self._released:
            return []
        if time_ms <= self._tamper_ms.get(item, -(2**63)):
            return []
        self._tamper_ms[item] = time_ms
        if data.event == "reattached":
            self._untagged.pop(item, None)
            return []
        if item in self._untagged:
            return []
        self._untagged[item] = "tamper"
        message = f"the tag of pledged item {item} reported {data.event} by its tamper sensor"
        details = {"items": [item], "source": "tamper", "event": data.event}
        return [self._alarm("tag_removal", event_id, time_ms, message, [event_id], details)]

    # climate

    def _on_climate(self, device: str, data: Climate, time_ms: int, event_id: str) -> list[Alarm]:
        if data.zone != self.rules.zone:
            return []
        sensor = self._sensors.get(device)
        if sensor is not None and time_ms <= sensor.time_ms:
            return []
        peers = self._peers(device, time_ms)
        temperature = float(data.temperature)
        if sensor is None:
            sensor = self._sensors[device] = _Sensor(time_ms, temperature, event_id)
        sensor.time_ms, sensor.temperature, sensor.event_id = time_ms, temperature, event_id
        reference = statistics.median(t for t, _ in peers) if peers else None
        suspect = reference is not None and abs(temperature - reference) > DRIFT_C
        alarms = self._drift_rule(device, sensor, suspect, reference, peers)
        if suspect:
            for bound in ("temperature_low", "temperature_high", "humidity_high"):
                sensor.runs.pop(bound, None)
            return alarms
        return alarms + self._climate_rule(device, sensor, data)

    def _peers(self, device: str, time_ms: int) -> list[tuple[float, str]]:
        """The latest temperature of each other zone sensor, if within its heartbeat."""
        peers = []
        for other in sorted(self._sensors):
            sensor = self._sensors[other]
            if (
                other != device
                and abs(time_ms - sensor.time_ms) <= self._devices[other].heartbeat_s * 1000
            ):
                peers.append((sensor.temperature, sensor.event_id))
        return peers

    def _drift_rule(
        self,
        device: str,
        sensor: _Sensor,
        suspect: bool,
        reference: float | None,
        peers: list[tuple[float, str]],
    ) -> list[Alarm]:
        if not suspect:
            sensor.runs.pop("drift", None)
            return []
        run = _extend(sensor.runs, "drift", sensor.time_ms, sensor.event_id, DRIFT_READINGS)
        if run.length != DRIFT_READINGS:
            return []
        message = (
            f"climate sensor {device} reads {sensor.temperature} °C, more than {DRIFT_C} °C from "
            f"the zone's other sensors ({reference} °C) for {run.length} readings"
        )
        details = {
            "device": device,
            "zone": self.rules.zone,
            "temperature": sensor.temperature,
            "peers_median": reference,
        }
        evidence = [*run.ids, *(event_id for _, event_id in peers)]
        return [
            self._alarm(
                "sensor_drift",
                f"{device}:{run.start_ms}",
                sensor.time_ms,
                message,
                evidence,
                details,
            )
        ]

    def _climate_rule(self, device: str, sensor: _Sensor, data: Climate) -> list[Alarm]:
        (low, high), humidity = self.rules.temperature_c, self.rules.humidity_pct
        checks = (
            ("temperature_low", data.temperature < low, data.temperature, low, "°C"),
            ("temperature_high", data.temperature > high, data.temperature, high, "°C"),
            ("humidity_high", data.humidity > humidity, data.humidity, humidity, "%RH"),
        )
        alarms = []
        for bound, out, value, limit, unit in checks:
            if not out:
                sensor.runs.pop(bound, None)
                continue
            run = _extend(sensor.runs, bound, sensor.time_ms, sensor.event_id, CLIMATE_READINGS)
            if run.length == CLIMATE_READINGS:
                message = f"zone {self.rules.zone}: {value} {unit} at {device}, beyond {limit} {unit} for {run.length} readings"
                details = {
                    "device": device,
                    "zone": self.rules.zone,
                    "bound": bound,
                    "value": value,
                    "limit": limit,
                }
                key = f"{device}:{bound}:{run.start_ms}"
                alarms.append(
                    self._alarm("climate", key, sensor.time_ms, message, run.ids, details)
                )
        return alarms

    # security

    def _on_door(self, data: Door, time_ms: int, event_id: str) -> list[Alarm]:
        door = self._doors.get(data.door)
        if door is not None and time_ms <= door.time_ms:
            return []
        if data.state == "closed":
            alarms = (
                [] if door is None else self._door_after_hours(data.door, door, time_ms, [event_id])
            )
            self._doors[data.door] = _Door(time_ms)
            return alarms
        if door is not None and door.open_ms is not None:
            door.time_ms = time_ms  # still open: the same opening
            return []
        door = self._doors[data.door] = _Door(
            time_ms, time_ms, event_id, self.rules.closing_ms(time_ms)
        )
        return self._door_after_hours(data.door, door, time_ms, [])

    def _door_after_hours(
        self, name: str, door: _Door, until_ms: int, closing: list[str]
    ) -> list[Alarm]:
        """Raise once if ``door`` was open after hours by ``until_ms``."""
        if (
            door.raised
            or door.open_ms is None
            or door.closing_ms is None
            or door.closing_ms > until_ms
        ):
            return []
        door.raised = True
        evidence = [e for e in (door.open_id, *closing) if e is not None]
        local = self.rules.local_hour(door.closing_ms)
        message = f"door {name} open outside business hours {self.rules.business_hours} (local hour {local})"
        details = {
            "door": name,
            "opened_ms": door.open_ms,
            "business_hours": list(self.rules.business_hours),
        }
        alarm = self._alarm(
            "door_after_hours",
            f"{name}:{door.open_ms}",
            door.closing_ms,
            message,
            evidence,
            details,
        )
        self._watches.append(
            _Watch(alarm.key, alarm.rule, door.closing_ms, door.closing_ms, list(evidence))
        )
        return [alarm]

    def _on_intrusion(self, data: Intrusion, time_ms: int, event_id: str) -> list[Alarm]:
        zones = {self.rules.zone, *self.rules.outbound_doors}
        if data.confidence < INTRUSION_CONFIDENCE or data.zone not in zones:
            return []
        watch = self._intrusions.get(data.zone)
        if (
            watch is not None
            and watch.start_ms - SECURITY_WINDOW_MS <= time_ms <= watch.last_ms + SECURITY_WINDOW_MS
        ):
            watch.last_ms = max(watch.last_ms, time_ms)
            return []
        message = f"intrusion in zone {data.zone}: {data.source}, confidence {data.confidence}"
        details = {"zone": data.zone, "source": data.source, "confidence": data.confidence}
        alarm = self._alarm(
            "intrusion", f"{data.zone}:{time_ms}", time_ms, message, [event_id], details
        )
        watch = self._intrusions[data.zone] = _Watch(
            alarm.key, alarm.rule, time_ms, time_ms, [event_id]
        )
        self._watches.append(watch)
        return [alarm]

    def _escalate(
        self, time_ms: int, items: Sequence[str], evidence: Sequence[str], finding: str
    ) -> list[Alarm]:
        """Breach alarms for the security episodes that loss at ``time_ms`` follows."""
        alarms = []
        for watch in self._watches:
            if watch.escalated or not watch.covers(time_ms):
                continue
            watch.escalated = True
            what = "a door open after hours" if watch.rule == "door_after_hours" else "an intrusion"
            message = f"{finding.replace('_', ' ')} at lot {self.rules.lot} within 30 min of {what}"
            details = {"items": sorted(items), "finding": finding, "escalates": watch.key}
            alarms.append(
                self._alarm(
                    watch.rule,
                    "",
                    time_ms,
                    message,
                    [*watch.evidence, *evidence],
                    details,
                    key=f"{watch.key}:breach",
                    severity="breach",
                )
            )
        self._prune(time_ms)
        return alarms

    def _prune(self, time_ms: int) -> None:
        """Forget security episodes escalated or over for a day (late readings aside)."""
        horizon = time_ms - _DAY_MS
        self._watches = [w for w in self._watches if not w.escalated and w.last_ms >= horizon]

    # silence

    def _stale(self, now_ms: int, origin_ms: int) -> list[Alarm]:
        alarms = []
        for device_id in sorted(self._devices):
            if device_id not in self._device_last:
                continue  # never heard: not fitted yet (a cover comes with its coil)
            last_ms, last_id = self._device_last[device_id]
            heartbeat_s = self._devices[device_id].heartbeat_s
            if now_ms - last_ms > heartbeat_s * 1000:
                message = f"{device_id} silent for {(now_ms - last_ms) // 1000} s (heartbeat {heartbeat_s} s)"
                details = {
                    "device": device_id,
                    "last_ms": last_ms if last_id else None,
                    "heartbeat_s": heartbeat_s,
                }
                evidence = [] if last_id is None else [last_id]
                alarms.append(
                    self._alarm(
                        "stale_device", f"{device_id}:{last_ms}", now_ms, message, evidence, details
                    )
                )
        return alarms

    # reconciliation

    def _reconcile(self) -> _View:
        view = _View()
        misses: dict[str, bool] = {}  # item -> its cover says occupied
        for item in sorted(self.rules.items):
            self._place(item, view, misses)
        tolerated = len(misses) <= self.rules.cycle_tolerance
        for item, covered in misses.items():
            if tolerated or covered:
                view.present.append(item)
            if covered and not tolerated:
                view.untagged.append(item)
            elif not tolerated:
                view.missing[item] = "warning"
        view.present.sort()
        view.method = self._method(view)
        return view

    def _place(self, item: str, view: _View, misses: dict[str, bool]) -> None:
        """Sort one pledged item into the view (misses: count misses, judged together)."""
        if item in self._released:
            view.released.append(item)
            return
        count, cover = self._count, self._cover_of(item)
        read = None if count is None else item in count.tags
        occupied = None if cover is None else cover.occupied
        sources = [(s.time_ms, s.event_id) for s in (count, cover) if s is not None]
        view.sources[item] = sources
        view.evidence.update({event_id: t for t, event_id in sources})
        if item in self._custody and not (read or (read is None and occupied)):
            view.departed.append(item)
            view.evidence.setdefault(self._custody[item][1], self._custody[item][0])
        elif read is None:
            _place_by_cover(item, occupied, view)
        elif read:
            newer_empty = (
                cover is not None
                and count is not None
                and not cover.occupied
                and cover.time_ms > count.time_ms
            )
            if newer_empty:
                view.missing[item] = "warning"
                return
            view.present.append(item)
            if occupied is not False:
                view.supported.add(item)
        elif occupied is False:
            view.missing[item] = "breach"
        else:
            misses[item] = bool(occupied)

    def _cover_of(self, item: str) -> _Cover | None:
        bay = self.rules.bays.get(item)
        return None if bay is None else self._covers.get(bay)

    def _method(self, view: _View) -> Method:
        covers = any(self._cover_of(item) is not None for item in view.sources)
        if self._count is not None:
            return "cycle_count+covers" if covers else "cycle_count"
        return "covers" if covers else "none"

    def _level(self, view: _View, now_ms: int) -> StockLevel:
        base = _BASE_CONFIDENCE[view.method]
        quantity = len(view.present)
        confidence = round(base * len(view.supported) / quantity, 4) if quantity else base
        weights = [self.rules.weight_of(item) for item in view.present]
        weight_t = None if None in weights else round(sum(w for w in weights if w is not None), 3)
        evidence = sorted(view.evidence.items(), key=lambda kv: (kv[1], kv[0]))
        return StockLevel(
            lot=self.rules.lot,
            zone=self.rules.zone,
            time_ms=now_ms,
            quantity=quantity,
            method=view.method,
            confidence=confidence,
            present=tuple(view.present),
            missing=tuple(sorted(view.missing)),
            released=tuple(view.released),
            departed=tuple(view.departed),
            untagged=tuple(view.untagged),
            unobserved=tuple(view.unobserved),
            weight_t=weight_t,
            evidence=tuple(event_id for event_id, _ in evidence),
        )

    def _discrepancy_rule(self, view: _View) -> list[Alarm]:
        previous, self._issues = self._issues, dict(view.missing)
        alarms = []
        for severity in ("warning", "breach"):
            fresh = [
                item
                for item, level in sorted(view.missing.items())
                if level == severity
                and previous.get(item) not in (severity, "breach")
                and item not in self._moved
            ]
            if fresh:
                alarms += self._discrepancy(view, fresh, severity)
        return alarms

    def _discrepancy(self, view: _View, items: list[str], severity: Severity) -> list[Alarm]:
        time_ms, stamp, evidence = _stamp(view, items)
        corroborated = (
            "the count and their bays' covers both show them gone"
            if severity == "breach"
            else "one source shows them gone (the count, or a cover newer than it)"
        )
        message = (
            f"{len(items)} pledged item(s) of lot {self.rules.lot} missing without release or "
            f"custody-out; {corroborated}"
        )
        details = {"items": items, "zone": self.rules.zone}
        alarm = self._alarm(
            "stock_discrepancy",
            f"{severity}:{stamp}",
            time_ms,
            message,
            evidence,
            details,
            severity=severity,
        )
        return [alarm, *self._escalate(time_ms, items, evidence, "stock_discrepancy")]

    def _untagged_rule(self, view: _View) -> list[Alarm]:
        for item, source in list(self._untagged.items()):
            if source == "count" and item not in view.untagged:
                del self._untagged[item]
        fresh = [item for item in view.untagged if item not in self._untagged]
        if not fresh:
            return []
        self._untagged.update(dict.fromkeys(fresh, "count"))
        time_ms, stamp, evidence = _stamp(view, fresh)
        message = (
            f"{len(fresh)} pledged item(s) of lot {self.rules.lot} missed by the cycle count while "
            f"their covers show them in place: the goods are there, their tags are not"
        )
        details = {"items": fresh, "source": "cycle_count+covers"}
        return [self._alarm("tag_removal", stamp, time_ms, message, evidence, details)]

    def _minimum_rule(self, view: _View, level: StockLevel) -> list[Alarm]:
        below = (
            view.method != "none" and level.quantity + len(level.unobserved) < self.rules.minimum
        )
        if not below or self._below:
            self._below = below
            return []
        self._below = True
        time_ms, stamp = max((t, event_id) for event_id, t in view.evidence.items())
        message = (
            f"lot {self.rules.lot} holds {level.quantity} pledged item(s), below the minimum "
            f"{self.rules.minimum} ({level.method}, confidence {level.confidence})"
        )
        details = {
            "quantity": level.quantity,
            "minimum": self.rules.minimum,
            "weight_t": level.weight_t,
            "method": level.method,
            "confidence": level.confidence,
            "missing": list(level.missing),
        }
        return [self._alarm("below_minimum", stamp, time_ms, message, level.evidence, details)]

    # alarms

    def _alarm(
        self,
        rule: str,
        scope: str,
        time_ms: int,
        message: str,
        evidence: Iterable[str],
        details: Mapping[str, Any],
        *,
        key: str | None = None,
        severity: Severity | None = None,
    ) -> Alarm:
        base, fact = RULES[rule]
        severity = severity or base
        return Alarm(
            key=_bounded(key or f"{rule}:{self.rules.lot}:{scope}"),
            rule=rule,
            subject=self.rules.lot,
            severity=severity,
            time_ms=time_ms,
            message=message,
            evidence=tuple(dict.fromkeys(evidence)),
            details={"lot": self.rules.lot, **details},
            fact=fact if severity == base else None,
        )

    def _fresh(self, alarms: list[Alarm]) -> list[Alarm]:
        """The alarms whose key this monitor has not returned before."""
        return first_time(alarms, self._raised)


def _bounded(key: str) -> str:
    """``key``, or if longer than the store allows, its head and a digest of all of it."""
    if len(key) <= _KEY_MAX:
        return key
    return f"{key[: _KEY_MAX - 33]}~{hashlib.sha256(key.encode()).hexdigest()[:32]}"


def _place_by_cover(item: str, occupied: bool | None, view: _View) -> None:
    if occupied is None:
        view.unobserved.append(item)
    elif occupied:
        view.present.append(item)
        view.supported.add(item)
    else:
        view.missing[item] = "warning"


def _stamp(view: _View, items: Sequence[str]) -> tuple[int, str, list[str]]:
    """(time, id) of the newest reading behind ``items``, and all of them in time order."""
    readings = sorted({source for item in items for source in view.sources.get(item, [])})
    time_ms, stamp = readings[-1]
    return time_ms, stamp, [event_id for _, event_id in readings]


def _extend(runs: dict[str, _Run], name: str, time_ms: int, event_id: str, keep: int) -> _Run:
    run = runs.get(name)
    if run is None:
        run = runs[name] = _Run(time_ms, [event_id])
        return run
    run.length += 1
    if len(run.ids) < keep:
        run.ids.append(event_id)
    return run
