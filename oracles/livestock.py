"""Dairy herds under a loan (养殖贷): a reconciled daily head count and the alarms a lender acts on.

Pure: readings in (already signature-checked, see oracles.readings), ``DailyCount`` and
``Alarm`` out; no store, no chain, no I/O. oracles.pipeline stores, signs, anchors and
reports what this module derives.

    rules    = HerdRules(herd=..., animals=frozenset(ear_tags), minimum=100, geofence=..., barn=...)
    monitor  = HerdMonitor(rules, devices)
    alarms   = monitor.observe(reading)          for each reading, in time order
    alarms   = monitor.check(now_ms)             every few minutes: the silence rules
    count, alarms = monitor.close_day("2026-11-20")   once the herd's local day is over

Rules (``RULES`` holds severity and fact; ``key`` is the alarm's identity)

| rule                 | condition                                                              | severity | fact         | key                                   |
|----------------------|------------------------------------------------------------------------|----------|--------------|---------------------------------------|
| below_minimum        | close_day: the day's head_count < ``minimum``                          | breach   | quantity     | below_minimum:<herd>:<day>            |
| daily_drop           | close_day: 100 × (P − H) > ``max_daily_drop_pct`` × P, P the previous  | breach   | — (details   | daily_drop:<herd>:<day>               |
|                      | closed day's head_count, H this day's (a drop of exactly X % is quiet) |          | say why)     |                                       |
| no_count             | close_day: no tag and no camera reading in the whole day               | warning  | —            | no_count:<herd>:<day>                 |
| unseen               | check: a registered tag last seen more than ``unseen_hours`` ago       | warning  | —            | unseen:<tag>:<last seen ms>           |
| stale_device         | check: a device of the herd silent for more than its ``heartbeat_s``   | warning  | stale_data   | stale_device:<device>:<last ms>       |
|                      | (any reading of the device counts as a heartbeat)                      |          |              |                                       |
| tag_removal          | a tamper reading "removed" or "cut", or ``streak`` consecutive collar  | breach   | tag_removal  | tag_removal:<tag>:<episode start ms>  |
|                      | readings at ambient (temperature < 30 °C and activity 0)               |          |              |                                       |
| outside_fence        | a collar position outside ``geofence``                                 | warning  | —            | outside_fence:<tag>:<start ms>        |
| outside_barn         | a collar position inside the fence but outside ``barn`` during         | warning  | —            | outside_barn:<tag>:<start ms>         |
|                      | ``night_hours`` (local time): out at an unauthorized time              |          |              |                                       |
| abnormal_temperature | ``streak`` consecutive collar readings outside ``temperature_c``       | warning  | —            | abnormal_temperature:<tag>:<start ms> |
| abnormal_activity    | ``streak`` consecutive collar readings outside ``activity``            | warning  | —            | abnormal_activity:<tag>:<start ms>    |

Thresholds are strict: a tag unseen for exactly ``unseen_hours``, a device silent for
exactly ``heartbeat_s``, a temperature or activity exactly on its range's edge and a
drop of exactly ``max_daily_drop_pct`` raise nothing. Range edges are in range; a point
on a polygon's edge is inside it.

Episodes. An ongoing condition raises once: its episode opens with the reading that
starts it (the key carries that reading's time) and closes when a reading shows the
condition gone (back inside the fence or barn, or daytime; a temperature or activity
back in range; a tamper "reattached", or for a removal seen by the collar, a collar
reading off ambient). The silence rules' episode is the last sighting before the
silence. A monitor also never returns a key twice, so calling ``check`` every minute
raises each silence once; a fresh monitor replaying the same readings and checks returns
the same alarms with the same keys, for the store to deduplicate.

Evidence. Every alarm carries the event ids (``reading_event_id``) of the readings behind
it, in time order: the reading that opened the episode (for a streak, the first
``streak`` readings of it; the last of them fired the rule), or the last sighting for the
silence rules (none if the tag or device was never heard from), or the day's evidence for
the count rules.

Order. Readings are expected in time order. A redelivered reading (same device and seq)
of a day still open is ignored. A reading not newer than the state it would move (an
animal's last collar reading, its last tamper reading, a device's last reading) is
late: it still counts toward its day (sighting, camera, weight, evidence) and may move a
day's last-seen time, but it moves no state, so it fires nothing and never delays a
silence rule. A reading whose day is closed counts for no day (the count is final).
Silence rules start their clock at the first reading this monitor observed.

Reconciliation (``reconcile``), per local day of ``utc_offset`` (the day is
[00:00, 24:00) there):

- tags: registered animals seen that day (tag_read, collar or weight reading naming the
  tag) whose status is present, sick or outside_fence; a removed tag counts no head.
- camera: the day's largest sweep, a sweep being the sum over pens of each pen's latest
  head_count reading within one local clock hour (the camera's own confidence is not
  used; a sweep missing a pen is simply smaller).
- both within ``camera_tolerance``: head_count = tags, "tags+camera", confidence 0.99
- both further apart: head_count = min(tags, camera), "tags+camera",
  confidence = 0.99 × min / max (rounded to 4 places, so always below 0.99)
- tags only: "tags", 0.90; camera only: "camera", 0.80; neither: 0 head, "none", 0.0
  (and no_count rather than below_minimum: a day nobody counted is not a day of 0 head).

Animal status for the day, first that applies: unregistered (a tag seen that is not in
``animals``), tag_removed (a removal episode open at the day's end), missing (not seen
that day), outside_fence (its last collar position that day was outside), sick (an
abnormal temperature or activity episode open at its last collar reading that day),
present.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, cast

from ledger.errors import InvalidInput
from oracles.readings import (
    Alarm,
    Collar,
    Device,
    HeadCount,
    Reading,
    TagRead,
    Tamper,
    Weight,
)
from oracles.rules import (
    Heartbeats,
    check_day,
    day_bounds,
    first_delivery,
    first_time,
    in_window,
    local_day,
    offset_ms,
    polygon,
    require,
    rule_alarm,
    select_evidence,
)

__all__ = [
    "AMBIENT_C",
    "RULES",
    "AnimalDay",
    "DailyCount",
    "HerdMonitor",
    "HerdRules",
    "WeightSummary",
    "point_in_polygon",
    "reconcile",
]

Point = tuple[float, float]  # (lat, lon)
Polygon = tuple[Point, ...]
Method = Literal["tags", "camera", "tags+camera", "none"]
Status = Literal["present", "missing", "tag_removed", "outside_fence", "sick", "unregistered"]
Severity = Literal["info", "warning", "breach"]

AMBIENT_C: Final = 30.0  # a collar colder than this, with no activity, is not on an animal
RULES: Final[Mapping[str, tuple[Severity, str | None]]] = {
    "below_minimum": ("breach", "quantity"),
    "daily_drop": ("breach", None),
    "no_count": ("warning", None),
    "unseen": ("warning", None),
    "stale_device": ("warning", "stale_data"),
    "tag_removal": ("breach", "tag_removal"),
    "outside_fence": ("warning", None),
    "outside_barn": ("warning", None),
    "abnormal_temperature": ("warning", None),
    "abnormal_activity": ("warning", None),
}

_HOUR_MS: Final = 3_600_000
_COUNTED: Final = frozenset({"present", "sick", "outside_fence"})
_METHODS: Final = ("tags", "camera", "tags+camera", "none")
_STATUSES: Final = ("present", "missing", "tag_removed", "outside_fence", "sick", "unregistered")
_EVIDENCE_KINDS: Final = frozenset({"tag_read", "collar", "head_count", "weight", "tamper"})
_NEVER: Final = -(2**63)


# --- geometry -----------------------------------------------------------------------------


def point_in_polygon(point: Point, polygon: Sequence[Point]) -> bool:
    """Whether (lat, lon) lies inside ``polygon`` or on its edge (ray casting along lon).

    Plane geometry on raw degrees: fine for a farm, wrong across the antimeridian.
    """
    lat, lon = point
    inside = False
    for i, (a_lat, a_lon) in enumerate(polygon):
        b_lat, b_lon = polygon[(i + 1) % len(polygon)]
        if _on_segment(lat, lon, a_lat, a_lon, b_lat, b_lon):
            return True
        if (a_lat > lat) != (b_lat > lat):
            crossing = a_lon + (lat - a_lat) * (b_lon - a_lon) / (b_lat - a_lat)
            if lon < crossing:
                inside = not inside
    return inside


def _on_segment(
    lat: float, lon: float, a_lat: float, a_lon: float, b_lat: float, b_lon: float
) -> bool:
    cross = (b_lat - a_lat) * (lon - a_lon) - (b_lon - a_lon) * (lat - a_lat)
    if abs(cross) > 1e-12:
        return False
    return min(a_lat, b_lat) <= lat <= max(a_lat, b_lat) and min(a_lon, b_lon) <= lon <= max(
        a_lon, b_lon
    )


# --- configuration ------------------------------------------------------------------------


@dataclass(frozen=True)
class HerdRules:
    """One pledged herd's rules; ``animals`` are the pledged receipt's ear-tag ids.

    Polygons are (lat, lon) vertices; ``geofence`` None or ``barn`` None switches its rule
    off. ``night_hours`` = (start, end) local hours, wrapping midnight when start > end.
    ``streak`` consecutive collar readings make an abnormal-health or ambient episode.
    """

    herd: str
    animals: frozenset[str]
    minimum: int
    max_daily_drop_pct: float = 5.0
    unseen_hours: float = 24.0
    geofence: Polygon | None = None
    barn: Polygon | None = None
    night_hours: tuple[int, int] = (20, 6)
    temperature_c: tuple[float, float] = (37.5, 39.8)
    activity: tuple[float, float] = (20.0, 600.0)
    streak: int = 3
    utc_offset: str = "+08:00"
    camera_tolerance: int = 2
    evidence_cap: int = 5_000
    count_window_hours: int = 24  # count who was seen in the day's last N hours (12: at its end)
    _offset_ms: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        require(bool(self.herd), "herd", "a herd id is required")
        object.__setattr__(self, "animals", frozenset(self.animals))
        require(self.minimum >= 0, "minimum", f"minimum must be >= 0, got {self.minimum}")
        require(
            0 < self.max_daily_drop_pct <= 100,
            "max_daily_drop_pct",
            f"max_daily_drop_pct must be in (0, 100], got {self.max_daily_drop_pct}",
        )
        require(self.unseen_hours > 0, "unseen_hours", "unseen_hours must be > 0")
        for name in ("geofence", "barn"):
            object.__setattr__(self, name, polygon(getattr(self, name), name))
        start, end = self.night_hours
        require(
            0 <= start <= 23 and 0 <= end <= 23 and start != end,
            "night_hours",
            f"night_hours must be two different hours in 0..23, got {self.night_hours}",
        )
        for name in ("temperature_c", "activity"):
            low, high = getattr(self, name)
            require(low < high, name, f"{name} must be (low, high) with low < high")
        require(self.streak >= 1, "streak", "streak must be >= 1")
        require(self.camera_tolerance >= 0, "camera_tolerance", "camera_tolerance must be >= 0")
        require(self.evidence_cap >= 1, "evidence_cap", "evidence_cap must be >= 1")
        require(
            1 <= self.count_window_hours <= 24,
            "count_window_hours",
            f"count_window_hours must be 1..24, got {self.count_window_hours}",
        )
        object.__setattr__(self, "_offset_ms", offset_ms(self.utc_offset))

    def day_of(self, time_ms: int) -> str:
        """The herd's local date (ISO) of a moment."""
        return local_day(time_ms, self._offset_ms)

    def day_bounds(self, day: str) -> tuple[int, int]:
        """[start, end) of a local day, in unix milliseconds."""
        return day_bounds(day, self._offset_ms)

    def local_hour(self, time_ms: int) -> int:
        return ((time_ms + self._offset_ms) // _HOUR_MS) % 24

    def is_night(self, time_ms: int) -> bool:
        return in_window(self.local_hour(time_ms), self.night_hours)


# --- the daily count ----------------------------------------------------------------------


@dataclass(frozen=True)
class AnimalDay:
    """One ear tag's day: its status, last sighting and last collar temperature."""

    status: Status
    last_seen_ms: int | None
    last_temperature: float | None = None

    def to_payload(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "last_seen_ms": self.last_seen_ms,
            "last_temperature": self.last_temperature,
        }


@dataclass(frozen=True)
class WeightSummary:
    mean_kg: float  # rounded to 0.1 kg
    n: int


@dataclass(frozen=True)
class DailyCount:
    """A herd's reconciled count for one local day (see the module docstring)."""

    herd: str
    day: str
    head_count: int
    method: Method
    confidence: float
    tags_seen: int
    camera_count: int | None
    weight: WeightSummary | None
    animals: Mapping[str, AnimalDay]
    evidence: tuple[str, ...]  # reading event ids, in time order
    evidence_omitted: int = 0  # contributing readings left out of ``evidence`` (the cap)

    def to_payload(self) -> dict[str, Any]:
        """A JSON-safe dict: the payload of the fourflow event that records this count."""
        weight = (
            None if self.weight is None else {"mean_kg": self.weight.mean_kg, "n": self.weight.n}
        )
        return {
            "herd": self.herd,
            "day": self.day,
            "head_count": self.head_count,
            "method": self.method,
            "confidence": self.confidence,
            "tags_seen": self.tags_seen,
            "camera_count": self.camera_count,
            "weight": weight,
            "animals": {tag: self.animals[tag].to_payload() for tag in sorted(self.animals)},
            "evidence": list(self.evidence),
            "evidence_omitted": self.evidence_omitted,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> DailyCount:
        """The inverse of ``to_payload``; InvalidInput when a field is missing or mistyped."""
        try:
            return _daily_count(payload)
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidInput(f"not a daily count payload: {exc!r}", field="payload") from exc


def _daily_count(p: Mapping[str, Any]) -> DailyCount:
    if p["method"] not in _METHODS:
        raise ValueError(f"method {p['method']!r}")
    weight = p["weight"]
    return DailyCount(
        herd=str(p["herd"]),
        day=check_day(p["day"]),
        head_count=int(p["head_count"]),
        method=cast(Method, p["method"]),
        confidence=float(p["confidence"]),
        tags_seen=int(p["tags_seen"]),
        camera_count=None if p["camera_count"] is None else int(p["camera_count"]),
        weight=None
        if weight is None
        else WeightSummary(float(weight["mean_kg"]), int(weight["n"])),
        animals={tag: _animal_day(v) for tag, v in p["animals"].items()},
        evidence=tuple(str(e) for e in p["evidence"]),
        evidence_omitted=int(p["evidence_omitted"]),
    )


def _animal_day(v: Mapping[str, Any]) -> AnimalDay:
    if v["status"] not in _STATUSES:
        raise ValueError(f"status {v['status']!r}")
    seen, temperature = v["last_seen_ms"], v["last_temperature"]
    return AnimalDay(
        status=cast(Status, v["status"]),
        last_seen_ms=None if seen is None else int(seen),
        last_temperature=None if temperature is None else float(temperature),
    )


def reconcile(tags: int | None, camera: int | None, *, tolerance: int) -> tuple[int, Method, float]:
    """(head_count, method, confidence) from the tag count and the camera count (None: no such source)."""
    if tags is not None and camera is not None:
        if abs(tags - camera) <= tolerance:
            return tags, "tags+camera", 0.99
        low, high = min(tags, camera), max(tags, camera)
        return low, "tags+camera", round(0.99 * low / high, 4)
    if tags is not None:
        return tags, "tags", 0.90
    if camera is not None:
        return camera, "camera", 0.80
    return 0, "none", 0.0


# --- monitor state ------------------------------------------------------------------------


@dataclass
class _Run:
    """Consecutive collar readings in one condition; ``ids`` keeps the first ``streak``."""

    start_ms: int
    ids: list[str]
    length: int = 1


@dataclass
class _Interval:
    start_ms: int
    end_ms: int | None = None


@dataclass
class _Animal:
    last_seen_ms: int | None = None
    last_seen_id: str | None = None
    collar_ms: int = _NEVER
    tamper_ms: int = _NEVER
    runs: dict[str, _Run] = field(default_factory=dict)
    fence_start: int | None = None
    barn_start: int | None = None
    removal_source: str | None = None  # "tamper" | "collar" while a removal episode is open
    removals: list[_Interval] = field(default_factory=list)

    def is_sick(self, streak: int) -> bool:
        runs = (self.runs.get("abnormal_temperature"), self.runs.get("abnormal_activity"))
        return any(run is not None and run.length >= streak for run in runs)

    def removed_at(self, time_ms: int) -> bool:
        return any(
            iv.start_ms < time_ms and (iv.end_ms is None or iv.end_ms >= time_ms)
            for iv in self.removals
        )


@dataclass
class _Sighting:
    """A tag within one day."""

    last_seen_ms: int
    last_id: str
    collar_ms: int = _NEVER
    temperature: float | None = None
    outside: bool = False
    sick: bool = False


@dataclass
class _Day:
    seen: set[str] = field(default_factory=set)
    evidence: list[tuple[int, str]] = field(default_factory=list)
    tags: dict[str, _Sighting] = field(default_factory=dict)
    sweeps: dict[int, dict[str, tuple[int, int, str]]] = field(default_factory=dict)
    weights: list[float] = field(default_factory=list)
    tag_source: bool = False

    def sight(self, tag: str, time_ms: int, event_id: str) -> _Sighting:
        self.tag_source = True
        seen = self.tags.get(tag)
        if seen is None:
            seen = self.tags[tag] = _Sighting(time_ms, event_id)
        elif time_ms > seen.last_seen_ms:
            seen.last_seen_ms, seen.last_id = time_ms, event_id
        return seen

    def camera(self, *, since_hour: int = 0) -> tuple[int | None, list[str]]:
        """The largest sweep's total from ``since_hour`` (local) on, and its readings
        (the earliest hour on a tie)."""
        best: tuple[int | None, list[str]] = (None, [])
        for hour in sorted(h for h in self.sweeps if h >= since_hour):
            pens = self.sweeps[hour].values()
            total = sum(count for _, count, _ in pens)
            if best[0] is None or total > best[0]:
                best = (total, [event_id for _, _, event_id in pens])
        return best


# --- the monitor --------------------------------------------------------------------------


class HerdMonitor:
    """Turns one herd's readings into alarms and daily counts (see the module docstring)."""

    def __init__(self, rules: HerdRules, devices: Mapping[str, Device]) -> None:
        self.rules = rules
        self._heartbeats = Heartbeats(subject=rules.herd, what="herd", devices=devices)
        self._animals = {tag: _Animal() for tag in rules.animals}
        self._days: dict[str, _Day] = {}
        self._closed: dict[str, tuple[int, Method]] = {}
        self._raised: set[str] = set()

    # public API

    def observe(self, reading: Reading) -> list[Alarm]:
        """Take one reading of the herd's devices; returns the alarms it raised."""
        event_id, time_ms = self._heartbeats.admit(reading)
        day = self._open_day(self.rules.day_of(time_ms))
        if day is not None:
            if not first_delivery(day.seen, event_id):
                return []
            if reading.kind in _EVIDENCE_KINDS:
                day.evidence.append((time_ms, event_id))
        return self._fresh(self._dispatch(reading.parsed(), time_ms, event_id, day))

    def check(self, now_ms: int) -> list[Alarm]:
        """The silence rules at ``now_ms``: unseen tags and stale devices."""
        origin_ms = self._heartbeats.origin_ms
        if origin_ms is None:
            return []
        return self._fresh([*self._unseen(now_ms, origin_ms), *self._stale(now_ms)])

    def close_day(self, day: str) -> tuple[DailyCount, list[Alarm]]:
        """Reconcile a local day (final: its later readings count nowhere) and run the count rules."""
        day = check_day(day)
        if day in self._closed:
            raise InvalidInput(
                f"day {day} of herd {self.rules.herd} is already closed",
                field="day",
                code="day_closed",
            )
        count = self._reconcile(day, self._days.pop(day, _Day()))
        alarms = self._count_alarms(count)
        self._closed[day] = (count.head_count, count.method)
        return count, self._fresh(alarms)

    # readings

    def _open_day(self, day: str) -> _Day | None:
        if day in self._closed:
            return None
        return self._days.setdefault(day, _Day())

    def _dispatch(self, data: Any, time_ms: int, event_id: str, day: _Day | None) -> list[Alarm]:
        if isinstance(data, Collar):
            return self._on_collar(data, time_ms, event_id, day)
        if isinstance(data, Tamper):
            return self._on_tamper(data, time_ms, event_id)
        if isinstance(data, TagRead):
            for tag in data.tags:
                self._sight(tag, time_ms, event_id, day)
        elif isinstance(data, Weight):
            if data.tag is not None:
                self._sight(data.tag, time_ms, event_id, day)
            if day is not None and (data.tag is None or data.tag in self._animals):
                day.weights.append(float(data.kg))
        elif isinstance(data, HeadCount) and day is not None:
            pens = day.sweeps.setdefault(self.rules.local_hour(time_ms), {})
            if data.pen not in pens or time_ms >= pens[data.pen][0]:
                pens[data.pen] = (time_ms, data.count, event_id)
        return []

    def _sight(self, tag: str, time_ms: int, event_id: str, day: _Day | None) -> _Sighting | None:
        animal = self._animals.get(tag)
        if animal is not None and (animal.last_seen_ms is None or time_ms > animal.last_seen_ms):
            animal.last_seen_ms, animal.last_seen_id = time_ms, event_id
        return None if day is None else day.sight(tag, time_ms, event_id)

    def _on_collar(
        self, collar: Collar, time_ms: int, event_id: str, day: _Day | None
    ) -> list[Alarm]:
        seen = self._sight(collar.tag, time_ms, event_id, day)
        outside = self.rules.geofence is not None and not point_in_polygon(
            (collar.lat, collar.lon), self.rules.geofence
        )
        animal = self._animals.get(collar.tag)
        alarms: list[Alarm] = []
        sick: bool | None = None
        if animal is not None and time_ms > animal.collar_ms:
            animal.collar_ms = time_ms
            alarms = [
                *self._ambient_rule(collar, animal, time_ms, event_id),
                *self._health_rules(collar, animal, time_ms, event_id),
                *self._position_rules(collar, animal, time_ms, event_id, outside),
            ]
            sick = animal.is_sick(self.rules.streak)
        if seen is not None and time_ms >= seen.collar_ms:
            seen.collar_ms, seen.temperature, seen.outside = (
                time_ms,
                float(collar.temperature),
                outside,
            )
            seen.sick = seen.sick if sick is None else sick
        return alarms

    def _on_tamper(self, tamper: Tamper, time_ms: int, event_id: str) -> list[Alarm]:
        animal = self._animals.get(tamper.tag)
        if animal is None or time_ms <= animal.tamper_ms:
            return []
        animal.tamper_ms = time_ms
        if tamper.event == "reattached":
            _end_removal(animal, time_ms)
            return []
        return self._open_removal(
            tamper.tag, animal, time_ms, time_ms, [event_id], source="tamper", how=tamper.event
        )

    # episode rules

    def _ambient_rule(
        self, collar: Collar, animal: _Animal, time_ms: int, event_id: str
    ) -> list[Alarm]:
        if not _is_ambient(collar):
            animal.runs.pop("ambient", None)
            if animal.removal_source == "collar":
                _end_removal(animal, time_ms)
            return []
        run = _extend(animal.runs, "ambient", time_ms, event_id, self.rules.streak)
        if run.length != self.rules.streak:
            return []
        return self._open_removal(
            collar.tag, animal, run.start_ms, time_ms, run.ids, source="collar", how="ambient"
        )

    def _open_removal(
        self,
        tag: str,
        animal: _Animal,
        start_ms: int,
        time_ms: int,
        evidence: list[str],
        *,
        source: str,
        how: str,
    ) -> list[Alarm]:
        if animal.removal_source is not None:
            return []  # one episode, however many readings say so
        animal.removal_source = source
        animal.removals.append(_Interval(start_ms))
        message = (
            f"tag {tag} reported {how} by its tamper sensor"
            if source == "tamper"
            else f"collar {tag} at ambient temperature with no activity for {self.rules.streak} readings"
        )
        return [
            self._alarm(
                "tag_removal",
                tag,
                start_ms,
                time_ms,
                message,
                evidence,
                {"source": source, "event": how},
            )
        ]

    def _health_rules(
        self, collar: Collar, animal: _Animal, time_ms: int, event_id: str
    ) -> list[Alarm]:
        checks = (
            ("abnormal_temperature", collar.temperature, self.rules.temperature_c, "°C"),
            ("abnormal_activity", collar.activity, self.rules.activity, "steps/h"),
        )
        alarms = []
        for rule, value, (low, high), unit in checks:
            if _is_ambient(collar) or low <= value <= high:
                animal.runs.pop(rule, None)  # an ambient collar says nothing about the animal
                continue
            run = _extend(animal.runs, rule, time_ms, event_id, self.rules.streak)
            if run.length == self.rules.streak:
                message = (
                    f"{collar.tag}: {value} {unit}, outside {low}–{high} for {run.length} readings"
                )
                details = {"value": value, "low": low, "high": high, "readings": run.length}
                alarms.append(
                    self._alarm(rule, collar.tag, run.start_ms, time_ms, message, run.ids, details)
                )
        return alarms

    def _position_rules(
        self, collar: Collar, animal: _Animal, time_ms: int, event_id: str, outside: bool
    ) -> list[Alarm]:
        where = {"lat": collar.lat, "lon": collar.lon}
        alarms = []
        if not outside:
            animal.fence_start = None
        elif animal.fence_start is None:
            animal.fence_start = time_ms
            message = f"{collar.tag} is outside the farm's geofence at ({collar.lat}, {collar.lon})"
            alarms.append(
                self._alarm(
                    "outside_fence", collar.tag, time_ms, time_ms, message, [event_id], where
                )
            )
        barn = self.rules.barn
        out_at_night = (
            barn is not None
            and not outside
            and self.rules.is_night(time_ms)
            and not point_in_polygon((collar.lat, collar.lon), barn)
        )
        if not out_at_night:
            animal.barn_start = None
        elif animal.barn_start is None:
            animal.barn_start = time_ms
            message = f"{collar.tag} is out of the barn at night (local hour {self.rules.local_hour(time_ms)})"
            alarms.append(
                self._alarm(
                    "outside_barn", collar.tag, time_ms, time_ms, message, [event_id], where
                )
            )
        return alarms

    # silence rules

    def _unseen(self, now_ms: int, origin_ms: int) -> list[Alarm]:
        limit = round(self.rules.unseen_hours * _HOUR_MS)
        alarms = []
        for tag in sorted(self._animals):
            animal = self._animals[tag]
            since = origin_ms if animal.last_seen_ms is None else animal.last_seen_ms
            if now_ms - since > limit:
                evidence = [] if animal.last_seen_id is None else [animal.last_seen_id]
                hours = round((now_ms - since) / _HOUR_MS, 2)
                message = f"{tag} not seen for {hours} h (limit {self.rules.unseen_hours} h)"
                details = {"last_seen_ms": animal.last_seen_ms, "hours": hours}
                alarms.append(self._alarm("unseen", tag, since, now_ms, message, evidence, details))
        return alarms

    def _stale(self, now_ms: int) -> list[Alarm]:
        return [
            self._alarm(
                "stale_device", s.device.id, s.last_ms, now_ms, s.message, s.evidence, s.details
            )
            for s in self._heartbeats.silences(now_ms)
        ]

    # the day

    def _reconcile(self, day: str, bucket: _Day) -> DailyCount:
        _, end_ms = self.rules.day_bounds(day)
        animals = {
            tag: self._status(tag, bucket.tags.get(tag), end_ms)
            for tag in sorted(self.rules.animals | bucket.tags.keys())
        }
        window_start = end_ms - self.rules.count_window_hours * 3_600_000
        counted = [
            tag
            for tag, a in animals.items()
            if a.status in _COUNTED
            and tag in bucket.tags
            and bucket.tags[tag].last_seen_ms >= window_start
        ]
        camera, sweep = bucket.camera(since_hour=24 - self.rules.count_window_hours)
        head, method, confidence = reconcile(
            len(counted) if bucket.tag_source else None,
            camera,
            tolerance=self.rules.camera_tolerance,
        )
        essential = {bucket.tags[tag].last_id for tag in counted} | set(sweep)
        evidence, omitted = select_evidence(bucket.evidence, essential, self.rules.evidence_cap)
        weight = None
        if bucket.weights:
            weight = WeightSummary(
                round(sum(bucket.weights) / len(bucket.weights), 1), len(bucket.weights)
            )
        return DailyCount(
            herd=self.rules.herd,
            day=day,
            head_count=head,
            method=method,
            confidence=confidence,
            tags_seen=len(counted),
            camera_count=camera,
            weight=weight,
            animals=animals,
            evidence=evidence,
            evidence_omitted=omitted,
        )

    def _status(self, tag: str, seen: _Sighting | None, end_ms: int) -> AnimalDay:
        status: Status
        animal = self._animals.get(tag)
        if animal is None:
            status = "unregistered"
        elif animal.removed_at(end_ms):
            status = "tag_removed"
        elif seen is None:
            status = "missing"
        else:
            status = "outside_fence" if seen.outside else "sick" if seen.sick else "present"
        if seen is None:
            return AnimalDay(status, None)
        return AnimalDay(status, seen.last_seen_ms, seen.temperature)

    def _count_alarms(self, count: DailyCount) -> list[Alarm]:
        herd, day = self.rules.herd, count.day
        _, end_ms = self.rules.day_bounds(day)
        base = {
            "day": day,
            "head_count": count.head_count,
            "method": count.method,
            "confidence": count.confidence,
        }
        if count.method == "none":
            message = f"no tag or camera reading of herd {herd} on {day}: the day is uncounted"
            return [self._alarm("no_count", herd, day, end_ms, message, [], base)]
        alarms = []
        if count.head_count < self.rules.minimum:
            message = f"herd {herd} counted {count.head_count} head on {day}, below the minimum {self.rules.minimum}"
            details = {**base, "minimum": self.rules.minimum, "quantity": count.head_count}
            alarms.append(
                self._alarm("below_minimum", herd, day, end_ms, message, count.evidence, details)
            )
        previous = self._previous(day)
        if previous is not None and self._dropped(previous[1], count.head_count):
            prev_day, prev_head = previous
            pct = round(100 * (prev_head - count.head_count) / prev_head, 2)
            message = f"herd {herd} dropped {pct} % in a day: {prev_head} head on {prev_day}, {count.head_count} on {day}"
            details = {
                **base,
                "previous_day": prev_day,
                "previous_head_count": prev_head,
                "drop_pct": pct,
                "limit_pct": self.rules.max_daily_drop_pct,
                "fact": "none: a drop alone is no covenant fact; below_minimum reports the quantity",
            }
            alarms.append(
                self._alarm("daily_drop", herd, day, end_ms, message, count.evidence, details)
            )
        return alarms

    def _previous(self, day: str) -> tuple[str, int] | None:
        earlier = [d for d, (_, method) in self._closed.items() if d < day and method != "none"]
        if not earlier:
            return None
        last = max(earlier)
        return last, self._closed[last][0]

    def _dropped(self, previous: int, current: int) -> bool:
        return (
            previous > 0 and (previous - current) * 100 > self.rules.max_daily_drop_pct * previous
        )

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
        details = {"herd": self.rules.herd, **(details or {})}
        return rule_alarm(RULES, rule, subject, start, time_ms, message, evidence, details)

    def _fresh(self, alarms: list[Alarm]) -> list[Alarm]:
        """The alarms whose key this monitor has not returned before."""
        return first_time(alarms, self._raised)


def _is_ambient(collar: Collar) -> bool:
    return collar.temperature < AMBIENT_C and collar.activity == 0


def _extend(runs: dict[str, _Run], name: str, time_ms: int, event_id: str, keep: int) -> _Run:
    run = runs.get(name)
    if run is None:
        run = runs[name] = _Run(time_ms, [event_id])
        return run
    run.length += 1
    if len(run.ids) < keep:
        run.ids.append(event_id)
    return run


def _end_removal(animal: _Animal, time_ms: int) -> None:
    if animal.removal_source is not None:
        animal.removal_source = None
        animal.removals[-1].end_ms = time_ms
