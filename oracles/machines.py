"""Machines pledged under an equipment loan (设备贷 / 数字贷): a plant's daily utilization
(开工率), output and energy, and the alarms a lender acts on.

Pure: readings in (already signature-checked, see oracles.readings), ``PlantDay`` and
``Alarm`` out; no store, no chain, no I/O, no clock. oracles.pipeline stores, signs,
anchors and reports what this module derives.

    rules   = PlantRules(plant=..., running_a={"CNC-01": 10.0, ...}, min_utilization_pct=60,
                         floor_days=3, site=((31.33, 120.73), ...), scheduled_hours=16)
    monitor = PlantMonitor(rules, devices)
    alarms  = monitor.observe(reading)            for each reading, in time order
    alarms  = monitor.check(now_ms)               every few minutes: the silence rule
    report, alarms = monitor.close_day("2026-11-23")   once the plant's local day is over

The readings: a clamp-on current sensor per machine sends ``machine`` readings (machine
id, current in A, its energy meter total in kWh, optionally a position and the
machine's piece-counter total) every few minutes, ``tamper`` readings (tag = machine id)
when the clamp is taken off or put back, and ``heartbeat`` readings. The pledged
machines are the keys of ``running_a``; a reading naming another machine is ignored (it
is not collateral).

Rules (``RULES`` holds severity and fact; ``key`` is the alarm's identity)

| rule            | condition                                                                | severity | fact                  | key                                       |
|-----------------|--------------------------------------------------------------------------|----------|-----------------------|-------------------------------------------|
| low_utilization | close_day: the plant's utilization_pct < ``min_utilization_pct`` on      | breach   | covenant_breach       | low_utilization:<plant>:<run's first day> |
|                 | ``floor_days`` consecutive scheduled days (rest days and days with no    |          |                       |                                           |
|                 | data neither extend nor end a run); one alarm per run                    |          |                       |                                           |
| machine_moved   | a machine reading's position outside ``site``                            | breach   | unauthorized_movement | machine_moved:<machine>:<start ms>        |
| sensor_removed  | a tamper "removed" or "cut" naming a pledged machine, or ``streak``      | breach   | tag_removal           | sensor_removed:<machine>:<start ms>       |
|                 | consecutive machine readings at exactly 0 A while the machine's piece    |          |                       |                                           |
|                 | counter rose since the reading before (work with no current)             |          |                       |                                           |
| sensor_silent   | check: a device of the plant silent for more than its ``heartbeat_s``    | warning  | stale_data            | sensor_silent:<device>:<last ms>          |
|                 | (any reading of the device counts)                                       |          |                       |                                           |
| no_data         | close_day: no machine reading of any pledged machine in the whole day    | warning  | —                     | no_data:<plant>:<day>                     |

On-chain (oracles.pipeline, when the plant's receipt is pledged): low_utilization is a
broken performance covenant, reported as a ``covenant_breach`` fact citing the signed
alarm event, which freezes the pledge (FROZEN_COVENANT_BREACH) until the lender clears
it; machine_moved and sensor_removed freeze it likewise (unauthorized_movement,
tag_removal); sensor_silent asks the contract to judge the data stale.

Thresholds are strict: a utilization exactly at the floor, a device silent exactly
``heartbeat_s`` and a current exactly at ``running_a`` raise nothing (at the threshold a
machine is idle: it runs while current_a > running_a). A point on the site polygon's
edge is inside it. utilization_pct is compared as published (rounded, below).

What the clamp can tell. A clamp measures the current in the cable it is clamped on;
its energy meter integrates that current, so when the clamp is off the cable the sensor
reads 0 A and its meter stops: exactly what a machine switched off at its breaker
looks like. 0 A alone is therefore no removal (a machine switched off, or trucked away,
reads 0 A too). The sensor_removed rule rests on two signals that the clamp cannot fake
by being switched off: the clamp's own tamper switch, and the machine's piece counter
(read from its controller, not from the clamp) rising while the clamp sees no current,
which no machine can do. A machine without a counter has only the tamper switch. While
the clamp is off, the machine counts as not running: running hours and utilization
understate, never overstate, the work done.

Episodes. An ongoing condition raises once: its episode opens with the reading that
starts it (the key carries that reading's time) and closes when a reading shows the
condition gone: a position back inside ``site``; a tamper "reattached", or for a removal
seen through the counter, a machine reading above 0 A. A run of low days is one episode
(its key carries its first day). The silence rule's episode is the last reading before
the silence. A monitor never returns a key twice, so calling ``check`` every minute
raises each silence once; a fresh monitor replaying the same readings, checks and
closes returns the same alarms with the same keys, for the store to deduplicate.

Evidence. Every alarm carries the event ids (``reading_event_id``) of the readings behind
it, in time order: the reading that opened the episode (for a counter streak, its first
``streak`` readings; the last of them fired the rule), the device's last reading for
sensor_silent (none if it was never heard from), the closing day's evidence for
low_utilization, none for no_data. A ``PlantDay`` carries the day's machine and tamper
readings, at most ``evidence_cap`` of them: each machine's first and last reading of the
day first, then the earliest others (``evidence_omitted`` counts the rest).

Order. Readings are expected in time order. A redelivered reading (same device and seq)
of a day still open is ignored. A reading of a machine not newer than that machine's
last machine reading (or, for tamper, its last tamper reading) is late: it counts toward
its day (evidence, readings, machines reported) but moves no state, so it adds no
running time, energy or output and fires nothing. A reading whose day is closed counts
for no day (the day is final). Days are expected to be closed in calendar order, each
once its last reading is in. The silence rule starts its clock at the first reading
this monitor observed.

Derivations, per local day of ``utc_offset`` (the day is [00:00, 24:00) there):

- running_ms(machine): for each pair of consecutive machine readings (t0, t1) of the
  machine, the interval [t0, min(t1, t0 + ``max_gap_min``)) counts as running when the
  reading at t0 had current_a > running_a[machine]; intervals are clipped at the day's
  bounds (an interval over midnight is split). A machine's last reading so far counts up
  to ``max_gap_min`` after it, so a silent sensor does not count as running.
  running_h = running_ms / 3 600 000, rounded to 3 places.
- energy_kwh(machine): the sum, over the day's machine readings, of the meter's increase
  since the machine's previous machine reading (of any day): an interval belongs to the
  day of its closing reading. A decrease is a meter reset: that interval adds nothing and
  the new value is the new baseline. The first reading a monitor sees is a baseline only.
  Rounded to 3 places (Wh).
- output(machine): the same over the piece counter (readings carrying ``output``); None
  when none of the day's readings carries a counter.
- energy_per_unit_kwh(machine) = energy_kwh / output, rounded to 4 places; None when
  output is 0 or None.
- scheduled_h = ``scheduled_hours``, 0 on ``rest_days`` (ISO weekdays, 1 = Monday).
- utilization_pct = 100 × Σ running_ms / (number of pledged machines × scheduled_h ×
  3 600 000), computed exactly from integer milliseconds and rounded half to even to 2
  places; None on a rest day or a day with no machine reading (no_data). It exceeds 100
  when machines run outside their scheduled hours.
- running_h, energy_kwh, output of the plant: Σ over machines of the unrounded values,
  rounded as above (output None when no machine had a counter that day);
  machines_reported: pledged machines with at least one machine reading that day.

Python's ``round`` (half to even on the float's exact value) does every rounding but
utilization's, which rounds an exact fraction.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from fractions import Fraction
from types import MappingProxyType
from typing import Any, Final, Literal

from ledger.errors import InvalidInput
from oracles.livestock import point_in_polygon
from oracles.readings import Alarm, Device, Machine, Reading, Tamper
from oracles.rules import (
    Heartbeats,
    check_day,
    day_bounds,
    first_delivery,
    first_time,
    local_day,
    offset_ms,
    polygon,
    require,
    rule_alarm,
    select_evidence,
)

__all__ = [
    "RULES",
    "MachineDay",
    "PlantDay",
    "PlantMonitor",
    "PlantRules",
]

Point = tuple[float, float]  # (lat, lon)
Polygon = tuple[Point, ...]
Severity = Literal["info", "warning", "breach"]

RULES: Final[Mapping[str, tuple[Severity, str | None]]] = {
    "low_utilization": ("breach", "covenant_breach"),
    "machine_moved": ("breach", "unauthorized_movement"),
    "sensor_removed": ("breach", "tag_removal"),
    "sensor_silent": ("warning", "stale_data"),
    "no_data": ("warning", None),
}

_MIN_MS: Final = 60_000
_HOUR_MS: Final = 3_600_000
_NEVER: Final = -(2**63)


# --- configuration ------------------------------------------------------------------------


@dataclass(frozen=True)
class PlantRules:
    """One pledged plant's rules.

    ``running_a`` maps each pledged machine to its idle threshold in A (it runs while its
    current is above it). ``site`` is the plant's (lat, lon) polygon; None switches
    machine_moved off. ``rest_days`` are ISO weekdays (1 = Monday) with no scheduled
    hours. ``streak`` consecutive readings of work without current make a removal.
    """

    plant: str
    running_a: Mapping[str, float]
    min_utilization_pct: float
    floor_days: int = 3
    scheduled_hours: float = 24.0
    rest_days: frozenset[int] = frozenset()
    max_gap_min: int = 15
    site: Polygon | None = None
    streak: int = 3
    utc_offset: str = "+08:00"
    evidence_cap: int = 5_000
    _offset_ms: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        require(bool(self.plant), "plant", "a plant id is required")
        require(
            isinstance(self.running_a, Mapping) and len(self.running_a) > 0,
            "running_a",
            "running_a must map at least one pledged machine to its running threshold (A)",
        )
        for machine, amps in self.running_a.items():
            require(
                isinstance(machine, str) and bool(machine),
                "running_a",
                f"machine ids must be non-empty strings, got {machine!r}",
            )
            require(
                isinstance(amps, int | float) and not isinstance(amps, bool) and amps > 0,
                "running_a",
                f"running_a[{machine!r}] must be a number of amperes > 0, got {amps!r}",
            )
        thresholds = {m: float(self.running_a[m]) for m in sorted(self.running_a)}
        object.__setattr__(self, "running_a", MappingProxyType(thresholds))
        require(
            0 < self.min_utilization_pct <= 100,
            "min_utilization_pct",
            f"min_utilization_pct must be in (0, 100], got {self.min_utilization_pct}",
        )
        require(
            1 <= self.floor_days <= 366,
            "floor_days",
            f"floor_days must be 1..366, got {self.floor_days}",
        )
        require(
            0 < self.scheduled_hours <= 24,
            "scheduled_hours",
            f"scheduled_hours must be in (0, 24], got {self.scheduled_hours}",
        )
        rest = frozenset(self.rest_days)
        require(
            all(isinstance(d, int) and 1 <= d <= 7 for d in rest) and len(rest) < 7,
            "rest_days",
            f"rest_days must be ISO weekdays 1..7 (1 = Monday), not all seven, got {sorted(rest, key=str)}",
        )
        object.__setattr__(self, "rest_days", rest)
        require(
            1 <= self.max_gap_min <= 1_440,
            "max_gap_min",
            f"max_gap_min must be 1..1440, got {self.max_gap_min}",
        )
        object.__setattr__(self, "site", polygon(self.site, "site"))
        require(self.streak >= 1, "streak", "streak must be >= 1")
        require(self.evidence_cap >= 1, "evidence_cap", "evidence_cap must be >= 1")
        object.__setattr__(self, "_offset_ms", offset_ms(self.utc_offset))

    def day_of(self, time_ms: int) -> str:
        """The plant's local date (ISO) of a moment."""
        return local_day(time_ms, self._offset_ms)

    def day_bounds(self, day: str) -> tuple[int, int]:
        """[start, end) of a local day, in unix milliseconds."""
        return day_bounds(day, self._offset_ms)

    def scheduled_h(self, day: str) -> float:
        """The day's scheduled hours per machine: 0 on a rest day."""
        weekday = date.fromisoformat(check_day(day)).isoweekday()
        return 0.0 if weekday in self.rest_days else float(self.scheduled_hours)


# --- the daily report ---------------------------------------------------------------------


@dataclass(frozen=True)
class MachineDay:
    """One machine's day (see the module docstring for how each value is derived)."""

    running_h: float
    energy_kwh: float
    output: int | None
    energy_per_unit_kwh: float | None
    readings: int

    def to_payload(self) -> dict[str, Any]:
        return {
            "running_h": self.running_h,
            "energy_kwh": self.energy_kwh,
            "output": self.output,
            "energy_per_unit_kwh": self.energy_per_unit_kwh,
            "readings": self.readings,
        }


@dataclass(frozen=True)
class PlantDay:
    """A plant's utilization, output and energy for one local day."""

    plant: str
    day: str
    scheduled_h: float
    utilization_pct: float | None
    running_h: float
    energy_kwh: float
    output: int | None
    machines_reported: int
    machines: Mapping[str, MachineDay]
    evidence: tuple[str, ...]  # reading event ids, in time order
    evidence_omitted: int = 0  # contributing readings left out of ``evidence`` (the cap)

    def to_payload(self) -> dict[str, Any]:
        """A JSON-safe dict: the payload of the fourflow event that records this day."""
        return {
            "plant": self.plant,
            "day": self.day,
            "scheduled_h": self.scheduled_h,
            "utilization_pct": self.utilization_pct,
            "running_h": self.running_h,
            "energy_kwh": self.energy_kwh,
            "output": self.output,
            "machines_reported": self.machines_reported,
            "machines": {m: self.machines[m].to_payload() for m in sorted(self.machines)},
            "evidence": list(self.evidence),
            "evidence_omitted": self.evidence_omitted,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> PlantDay:
        """The inverse of ``to_payload``; InvalidInput when a field is missing or mistyped."""
        try:
            return _plant_day(payload)
        except (KeyError, TypeError, ValueError, AttributeError, InvalidInput) as exc:
            raise InvalidInput(f"not a plant day payload: {exc!r}", field="payload") from exc


def _plant_day(p: Mapping[str, Any]) -> PlantDay:
    return PlantDay(
        plant=_text(p["plant"]),
        day=check_day(p["day"]),
        scheduled_h=_number(p["scheduled_h"]),
        utilization_pct=_optional_number(p["utilization_pct"]),
        running_h=_number(p["running_h"]),
        energy_kwh=_number(p["energy_kwh"]),
        output=_optional_count(p["output"]),
        machines_reported=_count(p["machines_reported"]),
        machines={_text(m): _machine_day(v) for m, v in p["machines"].items()},
        evidence=tuple(_text(e) for e in _list(p["evidence"])),
        evidence_omitted=_count(p["evidence_omitted"]),
    )


def _machine_day(v: Mapping[str, Any]) -> MachineDay:
    return MachineDay(
        running_h=_number(v["running_h"]),
        energy_kwh=_number(v["energy_kwh"]),
        output=_optional_count(v["output"]),
        energy_per_unit_kwh=_optional_number(v["energy_per_unit_kwh"]),
        readings=_count(v["readings"]),
    )


def _list(value: Any) -> list[Any]:
    if not isinstance(value, list):
        raise TypeError(f"expected a list, got {value!r}")
    return value


def _text(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


def _count(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"expected a count, got {value!r}")
    return value


def _optional_number(value: Any) -> float | None:
    return None if value is None else _number(value)


def _optional_count(value: Any) -> int | None:
    return None if value is None else _count(value)


# --- monitor state ------------------------------------------------------------------------


@dataclass
class _Run:
    """Consecutive readings in one condition; ``ids`` keeps the first ``streak``."""

    start_ms: int
    ids: list[str]
    length: int = 1


@dataclass
class _Machine:
    last_ms: int = _NEVER  # the last machine reading in time order
    running: bool = False
    energy_kwh: float | None = None
    output: int | None = None
    tamper_ms: int = _NEVER
    outside_start: int | None = None
    removal_source: str | None = None  # "tamper" | "counter" while a removal is open
    work_run: _Run | None = None  # readings at 0 A with the counter rising


@dataclass
class _MachineDay:
    running_ms: int = 0
    energy_kwh: float = 0.0
    output: int | None = None
    readings: int = 0
    first: tuple[int, str] | None = None
    last: tuple[int, str] | None = None

    def sight(self, time_ms: int, event_id: str) -> None:
        self.readings += 1
        if self.first is None or (time_ms, event_id) < self.first:
            self.first = (time_ms, event_id)
        if self.last is None or (time_ms, event_id) > self.last:
            self.last = (time_ms, event_id)


@dataclass
class _Day:
    seen: set[str] = field(default_factory=set)
    evidence: list[tuple[int, str]] = field(default_factory=list)
    machines: dict[str, _MachineDay] = field(default_factory=dict)

    def machine(self, machine: str) -> _MachineDay:
        return self.machines.setdefault(machine, _MachineDay())


# --- the monitor --------------------------------------------------------------------------


class PlantMonitor:
    """Turns one plant's readings into alarms and daily reports (see the module docstring)."""

    def __init__(self, rules: PlantRules, devices: Mapping[str, Device]) -> None:
        self.rules = rules
        self._heartbeats = Heartbeats(subject=rules.plant, what="plant", devices=devices)
        self._machines = {m: _Machine() for m in rules.running_a}
        self._days: dict[str, _Day] = {}
        self._closed: dict[str, str] = {}  # day -> "low" | "ok" | "rest" | "dark"
        self._raised: set[str] = set()
        self._gap_ms = rules.max_gap_min * _MIN_MS

    # public API

    def observe(self, reading: Reading) -> list[Alarm]:
        """Take one reading of the plant's devices; returns the alarms it raised."""
        event_id, time_ms = self._heartbeats.admit(reading)
        day = self._open_day(self.rules.day_of(time_ms))
        if day is not None and not first_delivery(day.seen, event_id):
            return []
        data = reading.parsed()
        if isinstance(data, Machine):
            return self._fresh(self._on_machine(data, time_ms, event_id, day))
        if isinstance(data, Tamper):
            return self._fresh(self._on_tamper(data, time_ms, event_id, day))
        return []

    def check(self, now_ms: int) -> list[Alarm]:
        """The silence rule at ``now_ms``: devices silent past their heartbeat."""
        return self._fresh(self._silent(now_ms))

    def close_day(self, day: str) -> tuple[PlantDay, list[Alarm]]:
        """Derive a local day (final: its later readings count nowhere) and run the day rules."""
        day = check_day(day)
        if day in self._closed:
            raise InvalidInput(
                f"day {day} of plant {self.rules.plant} is already closed",
                field="day",
                code="day_closed",
            )
        bucket = self._days.pop(day, _Day())
        self._credit_open_intervals(day, bucket)
        report = self._report(day, bucket)
        alarms = self._day_alarms(report)
        return report, self._fresh(alarms)

    # readings

    def _open_day(self, day: str) -> _Day | None:
        if day in self._closed:
            return None
        return self._days.setdefault(day, _Day())

    def _on_machine(
        self, data: Machine, time_ms: int, event_id: str, day: _Day | None
    ) -> list[Alarm]:
        state = self._machines.get(data.machine)
        if state is None:
            return []  # not a pledged machine
        if day is not None:
            day.evidence.append((time_ms, event_id))
            day.machine(data.machine).sight(time_ms, event_id)
        if time_ms <= state.last_ms:
            return []  # late: moves no state
        first = state.last_ms == _NEVER
        if not first and state.running:
            self._credit(data.machine, state.last_ms, min(time_ms, state.last_ms + self._gap_ms))
        state.last_ms = time_ms
        state.running = data.current_a > self.rules.running_a[data.machine]
        energy = float(data.energy_kwh)
        if state.energy_kwh is not None and day is not None and energy > state.energy_kwh:
            day.machine(data.machine).energy_kwh += energy - state.energy_kwh
        state.energy_kwh = energy
        worked = False
        if data.output is not None:
            if day is not None:
                machine_day = day.machine(data.machine)
                gain = (
                    data.output - state.output
                    if state.output is not None and data.output > state.output
                    else 0
                )
                machine_day.output = (machine_day.output or 0) + gain
            worked = state.output is not None and data.output > state.output
            state.output = data.output
        return [
            *self._removal_by_counter(data, state, worked, time_ms, event_id),
            *self._position_rule(data, state, time_ms, event_id),
        ]

    def _credit(self, machine: str, start_ms: int, end_ms: int) -> None:
        """Add running time [start, end) to the open days it overlaps."""
        moment = start_ms
        while moment < end_ms:
            day = self.rules.day_of(moment)
            _, day_end = self.rules.day_bounds(day)
            upto = min(end_ms, day_end)
            bucket = self._open_day(day)
            if bucket is not None:
                bucket.machine(machine).running_ms += upto - moment
            moment = upto

    def _credit_open_intervals(self, day: str, bucket: _Day) -> None:
        """Each machine's last reading counts up to ``max_gap_min`` after it: its share of ``day``."""
        start, end = self.rules.day_bounds(day)
        for machine, state in self._machines.items():
            if state.last_ms == _NEVER or not state.running:
                continue
            lo, hi = max(start, state.last_ms), min(end, state.last_ms + self._gap_ms)
            if lo < hi:
                bucket.machine(machine).running_ms += hi - lo

    def _on_tamper(
        self, data: Tamper, time_ms: int, event_id: str, day: _Day | None
    ) -> list[Alarm]:
        state = self._machines.get(data.tag)
        if state is None:
            return []
        if day is not None:
            day.evidence.append((time_ms, event_id))
        if time_ms <= state.tamper_ms:
            return []
        state.tamper_ms = time_ms
        if data.event == "reattached":
            state.removal_source = None
            return []
        message = (
            f"the current clamp of machine {data.tag} reported {data.event!r} by its tamper switch"
        )
        return self._open_removal(
            data.tag, state, time_ms, time_ms, [event_id], message, source="tamper", how=data.event
        )

    # episode rules

    def _removal_by_counter(
        self, data: Machine, state: _Machine, worked: bool, time_ms: int, event_id: str
    ) -> list[Alarm]:
        if not (data.current_a == 0 and worked):
            state.work_run = None
            if data.current_a > 0 and state.removal_source == "counter":
                state.removal_source = None
            return []
        run = state.work_run
        if run is None:
            run = state.work_run = _Run(time_ms, [event_id])
        else:
            run.length += 1
            if len(run.ids) < self.rules.streak:
                run.ids.append(event_id)
        if run.length != self.rules.streak:
            return []
        message = (
            f"machine {data.machine} counted pieces while its clamp read 0 A for "
            f"{self.rules.streak} readings: the clamp is off the machine's cable"
        )
        return self._open_removal(
            data.machine,
            state,
            run.start_ms,
            time_ms,
            run.ids,
            message,
            source="counter",
            how="0 A",
        )

    def _open_removal(
        self,
        machine: str,
        state: _Machine,
        start_ms: int,
        time_ms: int,
        evidence: list[str],
        message: str,
        *,
        source: str,
        how: str,
    ) -> list[Alarm]:
        if state.removal_source is not None:
            return []  # one episode, however many readings say so
        state.removal_source = source
        details = {"machine": machine, "source": source, "event": how}
        return [
            self._alarm("sensor_removed", machine, start_ms, time_ms, message, evidence, details)
        ]

    def _position_rule(
        self, data: Machine, state: _Machine, time_ms: int, event_id: str
    ) -> list[Alarm]:
        site = self.rules.site
        if site is None or data.lat is None or data.lon is None:
            return []
        if point_in_polygon((data.lat, data.lon), site):
            state.outside_start = None
            return []
        if state.outside_start is not None:
            return []
        state.outside_start = time_ms
        message = f"machine {data.machine} is outside the plant's site at ({data.lat}, {data.lon})"
        details = {"machine": data.machine, "lat": data.lat, "lon": data.lon}
        return [
            self._alarm(
                "machine_moved", data.machine, time_ms, time_ms, message, [event_id], details
            )
        ]

    # silence rule

    def _silent(self, now_ms: int) -> list[Alarm]:
        return [
            self._alarm(
                "sensor_silent", s.device.id, s.last_ms, now_ms, s.message, s.evidence, s.details
            )
            for s in self._heartbeats.silences(now_ms)
        ]

    # the day

    def _report(self, day: str, bucket: _Day) -> PlantDay:
        machines: dict[str, MachineDay] = {}
        total_ms, total_kwh, counted = 0, 0.0, 0
        total_output: int | None = None
        essential: set[str] = set()
        for machine in self.rules.running_a:
            m = bucket.machines.get(machine, _MachineDay())
            per_unit = None
            if m.output:
                per_unit = round(m.energy_kwh / m.output, 4)
            machines[machine] = MachineDay(
                running_h=float(round(Fraction(m.running_ms, _HOUR_MS), 3)),
                energy_kwh=round(m.energy_kwh, 3),
                output=m.output,
                energy_per_unit_kwh=per_unit,
                readings=m.readings,
            )
            total_ms += m.running_ms
            total_kwh += m.energy_kwh
            if m.output is not None:
                total_output = (total_output or 0) + m.output
            if m.readings:
                counted += 1
            essential |= {seen[1] for seen in (m.first, m.last) if seen is not None}
        scheduled = self.rules.scheduled_h(day)
        utilization = None
        if scheduled and counted:
            ratio = Fraction(100 * total_ms) / (
                len(self.rules.running_a) * Fraction(scheduled) * _HOUR_MS
            )
            utilization = float(round(ratio, 2))
        evidence, omitted = select_evidence(bucket.evidence, essential, self.rules.evidence_cap)
        return PlantDay(
            plant=self.rules.plant,
            day=day,
            scheduled_h=scheduled,
            utilization_pct=utilization,
            running_h=float(round(Fraction(total_ms, _HOUR_MS), 3)),
            energy_kwh=round(total_kwh, 3),
            output=total_output,
            machines_reported=counted,
            machines=machines,
            evidence=evidence,
            evidence_omitted=omitted,
        )

    def _day_alarms(self, report: PlantDay) -> list[Alarm]:
        plant, day = self.rules.plant, report.day
        _, end_ms = self.rules.day_bounds(day)
        if report.machines_reported == 0:
            self._closed[day] = "rest" if report.scheduled_h == 0 else "dark"
            message = f"no machine of plant {plant} reported on {day}"
            return [self._alarm("no_data", plant, day, end_ms, message, [], {"day": day})]
        if report.utilization_pct is None:
            self._closed[day] = "rest"
            return []
        floor = self.rules.min_utilization_pct
        if report.utilization_pct >= floor:
            self._closed[day] = "ok"
            return []
        self._closed[day] = "low"
        run = self._low_run(day)
        if len(run) < self.rules.floor_days:
            return []
        first = run[0]
        message = (
            f"plant {plant} ran at {report.utilization_pct} % on {day}, below the floor of "
            f"{floor} % for {len(run)} scheduled days since {first}"
        )
        details = {
            "day": day,
            "utilization_pct": report.utilization_pct,
            "min_utilization_pct": floor,
            "floor_days": self.rules.floor_days,
            "run": run,
        }
        return [
            self._alarm("low_utilization", plant, first, end_ms, message, report.evidence, details)
        ]

    def _low_run(self, day: str) -> list[str]:
        """The low days of the run ``day`` ends, oldest first: back through closed days,
        over rest and no-data days, to the first day at or above the floor or not closed."""
        run = [day]
        moment = date.fromisoformat(day)
        while True:
            moment -= timedelta(days=1)
            status = self._closed.get(moment.isoformat())
            if status == "low":
                run.append(moment.isoformat())
            elif status not in ("rest", "dark"):
                return run[::-1]

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
        details = {"plant": self.rules.plant, **(details or {})}
        return rule_alarm(RULES, rule, subject, start, time_ms, message, evidence, details)

    def _fresh(self, alarms: list[Alarm]) -> list[Alarm]:
        """The alarms whose key this monitor has not returned before."""
        return first_time(alarms, self._raised)
