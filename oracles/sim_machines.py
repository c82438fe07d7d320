"""A simulated plant for the equipment-loan oracle (oracles.machines): a CNC machining
and injection-moulding shop in Suzhou Industrial Park whose machines are pledged, the
signed readings of its clamp-on current sensors, and incidents injected at known times.

Pure and deterministic, like oracles.simulate (whose helpers it uses): no network, no
store, no clock; the same (seed, days, machines, start, interval, incidents) gives
byte-identical readings. Every random choice comes from a stream named after what it
drives (machine CNC-03 on day 2, the incidents, ...), and the incidents are drawn whether
enabled or not: a run with incidents is its clean run plus the incidents' signals.

    scenario = factory(days=7, seed=1)                 all incidents; incidents=() for none
    rules    = PlantRules(**factory_rules(scenario))   the plant's covenant, as JSON values

The plant (UTC+08:00; the run starts at local midnight of ``start``, default Monday
2026-11-23)

- ``machines`` machines (default 12): every third an injection-moulding machine
  (IMM-nn: running 38–60 A, idle 3–5 A, 25–50 s cycles of 2, 4 or 8 cavities, a piece
  counter), the others CNC machining centres (CNC-nn: running 20–35 A, idle 2–4 A,
  3–8 min a part; every other one has a piece counter, the rest are older machines
  without one). A machine runs while its current is above 10 A.
- two shifts, 08:00–24:00, Monday to Friday: each machine starts 08:00–08:30, stops
  5–20 min at the 16:00 handover and 2–4 times 10–45 min (tool and mould changes,
  breakdowns), and winds down 5–20 min before midnight; it idles on its standby current
  the rest of the time and all weekend. A normal weekday runs at about 85 %.
- a clamp-on current sensor per machine (``clamp-cnc-01`` ...): a ``machine`` reading
  every ``interval_min`` (5) minutes at a per-sensor second: current (running ×
  (1 + N(0, 0.06)) within ±25 %, idle + N(0, 0.25 A) within 1.5–6 A, 0.1 A resolution),
  an energy meter total integrating √3 × 380 V × I × 0.85 over each interval (the
  current of the interval's opening reading), the machine's piece-counter total if it
  has one, and a GNSS position (±2 m noise) in the machine hall; an hourly heartbeat
  with its signal strength. A sensor is stale after max(1800 s, 3 intervals) of silence.

Incidents (``incidents=None``: all of them; times and machines are drawn from the seed;
with two or more days they fall on day 1 or later, so day 0 is clean)

============== =============== ===========================================================
incident       expected rule   signal in the readings
============== =============== ===========================================================
slowdown       low_utilization the night shift is cancelled on ``floor_days`` consecutive
                               working days (3, fewer when the run has fewer): one shift,
                               so the plant runs below 50 % of its 16 scheduled hours;
                               items: the days
moved          machine_moved   a machine is unplugged at night (01:00–04:00: 0 A, its
                               meter and counter stop), rigged for 40 min, trucked off
                               site for 40 min and left in a yard in Wujiang ~20 km away;
                               its sensor keeps reporting on battery; items: machine,
                               sensor
clamp_removed  sensor_removed  on a working day 10:00–13:00 a counted machine's clamp
                               sends tamper "removed" and reads 0 A (its meter stops) for
                               6 h while the machine keeps producing (its counter rises),
                               then "reattached"; items: machine, sensor
silent         sensor_silent   a sensor sends nothing (no reading, no heartbeat) for 6 h
                               from 09:00–12:00; it speaks again before the end of the
                               run if it can; items: sensor, machine
============== =============== ===========================================================

Subject: ``{plant, site (closed GeoJSON ring of [lon, lat]), machines {id: {kind,
running_a, counter, device}}, shifts, rest_days, scheduled_hours, min_utilization_pct,
floor_days, max_gap_min, utc_offset}``; ``factory_rules`` turns it into PlantRules'
JSON fields. The scenario's ``documents`` and ``releases`` are empty.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, Final

from ledger.errors import InvalidInput
from oracles.simulate import (
    _DAY,
    _HOUR,
    _MIN,
    _NEVER,
    _TZ,
    _UTC_OFFSET,
    Incident,
    Scenario,
    _check_range,
    _chosen,
    _heartbeats,
    _local_midnight,
    _pick_day,
    _Recorder,
    _ring,
    _rng,
    _unit,
    _when,
)

__all__ = ["FACTORY_INCIDENTS", "factory", "factory_rules"]

FACTORY_INCIDENTS: Final = ("slowdown", "moved", "clamp_removed", "silent")

_SITE_NAME: Final = "szip-precision"
_PLANT: Final = "urn:fourflow:plant:CN:SZ:SIP-017"
_SITE: Final = (120.7300, 31.3300, 120.7326, 31.3316)  # west, south, east, north: ~250 × 180 m
_HALL: Final = (120.7305, 31.3304, 120.7321, 31.3312)  # the machine hall, ≥ 40 m inside
_GATE: Final = (120.7313, 31.3297)  # lon, lat: just outside the south fence
_YARD: Final = (120.6381, 31.1652)  # lon, lat: a yard in Wujiang, ~20 km south-west
_VOLTS: Final = 380.0
_POWER_FACTOR: Final = 0.85
_RUNNING_A: Final = 10.0
_SHIFTS: Final = ("08:00", "24:00")
_SCHEDULED_H: Final = 16
_REST_DAYS: Final = (6, 7)
_MIN_UTILIZATION_PCT: Final = 60.0
_FLOOR_DAYS: Final = 3


def factory(
    *,
    days: int,
    seed: int,
    machines: int = 12,
    incidents: Sequence[str] | None = None,
    start: datetime | None = None,
    interval_min: int = 5,
) -> Scenario:
    """A CNC / injection-moulding plant in Suzhou for ``days`` days (see the module docstring)."""
    _check_range("days", days, 1, 366)
    _check_range("machines", machines, 4, 60)
    _check_range("interval_min", interval_min, 1, 30)
    if 1_440 % interval_min:
        raise InvalidInput(
            f"interval_min must divide a day (1440 minutes), got {interval_min}",
            field="interval_min",
        )
    chosen = _chosen(incidents, FACTORY_INCIDENTS)
    first = _local_midnight(start, datetime(2026, 11, 23, tzinfo=_TZ))
    plant = _Factory(
        days=days,
        seed=seed,
        machines=machines,
        interval_ms=interval_min * _MIN,
        first=first,
        chosen=chosen,
    )
    return plant.scenario()


def factory_rules(scenario: Scenario) -> dict[str, Any]:
    """The plant's rules as JSON values: ``PlantRules(**factory_rules(scenario))``."""
    subject = scenario.subject
    return {
        "plant": subject["plant"],
        "running_a": {m: spec["running_a"] for m, spec in subject["machines"].items()},
        "min_utilization_pct": subject["min_utilization_pct"],
        "floor_days": subject["floor_days"],
        "scheduled_hours": subject["scheduled_hours"],
        "rest_days": list(subject["rest_days"]),
        "max_gap_min": subject["max_gap_min"],
        "site": [[lat, lon] for lon, lat in subject["site"]],  # rings are [lon, lat]
        "utc_offset": subject["utc_offset"],
    }


class _Machine:
    """One machine's constants, drawn from the seed."""

    def __init__(self, seed: int, index: int, count: int) -> None:
        def u(what: str) -> float:
            return _unit(seed, "factory", index, what)

        moulding = index % 3 == 2
        number = index // 3 + 1 if moulding else index - index // 3 + 1
        self.id = f"IMM-{number:02d}" if moulding else f"CNC-{number:02d}"
        self.kind = "injection_moulding" if moulding else "cnc"
        if moulding:
            self.run_a = 38 + 22 * u("run")
            self.idle_a = 3 + 2 * u("idle")
            self.cycle_s = 25 + 25 * u("cycle")
            self.cavities = (2, 4, 8)[int(3 * u("cavities"))]
        else:
            self.run_a = 20 + 15 * u("run")
            self.idle_a = 2 + 2 * u("idle")
            self.cycle_s = 180 + 300 * u("cycle")
            self.cavities = 1
        self.counter = moulding or number % 2 == 1
        self.meter_kwh = round(5_000 + 60_000 * u("meter"), 3)
        self.pieces = round(10_000 + 900_000 * u("pieces"))
        west, south, east, north = _HALL
        columns = 6
        rows = math.ceil(count / columns)
        self.lon = west + (east - west) * (index % columns + 0.5) / columns
        self.lat = south + (north - south) * (index // columns + 0.5) / rows


def _kw(current_a: float) -> float:
    return math.sqrt(3) * _VOLTS * current_a * _POWER_FACTOR / 1000


class _Factory:
    def __init__(
        self,
        *,
        days: int,
        seed: int,
        machines: int,
        interval_ms: int,
        first: datetime,
        chosen: frozenset[str],
    ) -> None:
        self.days, self.seed, self.interval_ms = days, seed, interval_ms
        self.first = first.date()
        self.start_ms = int(first.timestamp() * 1000)
        self.end_ms = self.start_ms + days * _DAY
        self.machines = [_Machine(seed, i, machines) for i in range(machines)]
        self.rec = _Recorder(seed=seed, site=_SITE_NAME)
        interval_s = interval_ms // 1000
        self.heartbeat_s = max(1_800, 3 * interval_s)
        self.devices = [
            self.rec.device(
                f"clamp-{m.id.lower()}",
                {"machine", "tamper"},
                subject=_PLANT,
                heartbeat_s=self.heartbeat_s,
            )
            for m in self.machines
        ]
        self.offsets = [
            int(_unit(seed, "factory", "clamp-offset", i) * interval_s) * 1000
            for i in range(machines)
        ]
        self._plan(chosen)

    def _day_ms(self, d: int) -> int:
        return self.start_ms + d * _DAY

    def _works(self, d: int) -> bool:
        return (self.first + timedelta(days=d)).isoweekday() not in _REST_DAYS

    def _date(self, d: int) -> str:
        return (self.first + timedelta(days=d)).isoformat()

    # incidents, drawn whether enabled or not so each keeps its time and machine
    def _plan(self, chosen: frozenset[str]) -> None:
        rng = _rng(self.seed, "factory", "incidents")
        d = self.days
        low = 1 if d >= 2 else 0
        working = [x for x in range(low, d) if self._works(x)]
        self.floor_days = max(1, min(_FLOOR_DAYS, len(working)))
        at = rng.randrange(max(1, len(working) - self.floor_days + 1))
        slow_days = working[at : at + self.floor_days]
        counted = [i for i, m in enumerate(self.machines) if m.counter]
        removed = rng.choice(counted)
        moved, silent = rng.sample([i for i in range(len(self.machines)) if i != removed], 2)
        removal_day = rng.choice([x for x in working if x not in slow_days] or working or [low])
        removal_at = self._day_ms(removal_day) + rng.randrange(10 * 60, 13 * 60) * _MIN
        moved_at = self._day_ms(_pick_day(rng, d)) + rng.randrange(60, 4 * 60) * _MIN
        silent_at = self._day_ms(_pick_day(rng, d)) + rng.randrange(9 * 60, 12 * 60) * _MIN

        def end(ms: int) -> int | None:
            return ms if ms < self.end_ms else None

        self.slow = frozenset(slow_days) if "slowdown" in chosen else frozenset[int]()
        self.removal = (
            (removal_at, removal_at + 6 * _HOUR, removed)
            if "clamp_removed" in chosen
            else (_NEVER, _NEVER, -1)
        )
        self.moved = (moved_at, moved) if "moved" in chosen else (_NEVER, -1)
        silent_end = min(silent_at + 6 * _HOUR, self.end_ms)
        if "silent" in chosen:
            self.rec.silent[self.devices[silent]] = (silent_at, silent_end)
        found: list[Incident] = []
        if "slowdown" in chosen:
            if not working:
                raise InvalidInput(
                    "the slowdown incident needs a working day (Monday to Friday) in the run "
                    "after its first day",
                    field="incidents",
                )
            first_slow, last_slow = self._day_ms(slow_days[0]), self._day_ms(slow_days[-1])
            found.append(Incident(
                "slowdown", first_slow, end(last_slow + _DAY), _PLANT,
                f"the night shift is cancelled on {len(slow_days)} working days from "
                f"{self._date(slow_days[0])}: one shift, the plant below "
                f"{_MIN_UTILIZATION_PCT} % of its {_SCHEDULED_H} scheduled hours",
                "low_utilization", tuple(self._date(x) for x in slow_days),
            ))  # fmt: skip
        if "moved" in chosen:
            m = self.machines[moved]
            found.append(Incident(
                "moved", moved_at, None, m.id,
                f"{m.id} unplugged at night ({_when(self.start_ms, moved_at)}), trucked off "
                "site 40 min later and left in a yard in Wujiang; its sensor keeps reporting",
                "machine_moved", (m.id, self.devices[moved]),
            ))  # fmt: skip
        if "clamp_removed" in chosen:
            m = self.machines[removed]
            found.append(Incident(
                "clamp_removed", removal_at, end(removal_at + 6 * _HOUR), m.id,
                f"the clamp of {m.id} taken off its cable ({_when(self.start_ms, removal_at)}) "
                "for 6 h: tamper 'removed', 0 A while the piece counter rises",
                "sensor_removed", (m.id, self.devices[removed]),
            ))  # fmt: skip
        if "silent" in chosen:
            m = self.machines[silent]
            found.append(Incident(
                "silent", silent_at, end(silent_end), self.devices[silent],
                f"the sensor of {m.id} silent for 6 h from {_when(self.start_ms, silent_at)}: "
                "no readings, no heartbeats",
                "sensor_silent", (self.devices[silent], m.id),
            ))  # fmt: skip
        self.incidents = sorted(found, key=lambda i: i.start_ms)

    def scenario(self) -> Scenario:
        for i in range(len(self.machines)):
            self._machine(i)
        _heartbeats(
            self.rec, list(self.devices), seed=self.seed, start_ms=self.start_ms, days=self.days
        )
        subject = {
            "plant": _PLANT,
            "site": _ring(*_SITE),
            "machines": {
                m.id: {
                    "kind": m.kind,
                    "running_a": _RUNNING_A,
                    "counter": m.counter,
                    "device": device,
                }
                for m, device in zip(self.machines, self.devices, strict=True)
            },
            "shifts": list(_SHIFTS),
            "rest_days": list(_REST_DAYS),
            "scheduled_hours": _SCHEDULED_H,
            "min_utilization_pct": _MIN_UTILIZATION_PCT,
            "floor_days": self.floor_days,
            "max_gap_min": 3 * self.interval_ms // _MIN,
            "utc_offset": _UTC_OFFSET,
        }
        return self.rec.scenario(
            "factory",
            start_ms=self.start_ms,
            days=self.days,
            subject=subject,
            incidents=self.incidents,
        )

    def _plan_day(self, i: int, d: int) -> list[tuple[int, int]]:
        """The machine's running windows on day ``d``, in ms after midnight (drawn always)."""
        rng = _rng(self.seed, "factory", "plan", i, d)
        start = 8 * _HOUR + rng.randrange(0, 31) * _MIN
        handover = 16 * _HOUR + rng.randrange(0, 6) * _MIN
        handover_end = handover + rng.randrange(5, 21) * _MIN
        end = _DAY - rng.randrange(5, 21) * _MIN
        stops: list[tuple[int, int]] = []
        for _ in range(rng.randint(2, 4)):
            at = start + rng.randrange(0, (end - start) // _MIN) * _MIN
            stops.append((at, at + rng.randrange(10, 46) * _MIN))
        if not self._works(d):
            return []
        if d in self.slow:
            end = 16 * _HOUR  # the night shift is cancelled
        cuts = sorted([(handover, handover_end), *stops])
        windows: list[tuple[int, int]] = []
        moment = start
        for cut_from, cut_to in cuts:
            if cut_from > moment:
                windows.append((moment, min(cut_from, end)))
            moment = max(moment, cut_to)
        windows.append((moment, end))
        return [(a, b) for a, b in windows if a < b]

    def _machine(self, i: int) -> None:
        m, device = self.machines[i], self.devices[i]
        removal_from, removal_to, removed = self.removal
        moved_at, moved = self.moved
        meter, made = m.meter_kwh, 0.0
        interval_h = self.interval_ms / _HOUR
        if i == removed and removal_from < self.end_ms:
            self.rec.emit(removal_from, device, "tamper", {"tag": m.id, "event": "removed"})
            if removal_to < self.end_ms:
                self.rec.emit(removal_to, device, "tamper", {"tag": m.id, "event": "reattached"})
        for d in range(self.days):
            windows = self._plan_day(i, d)
            rng = _rng(self.seed, "factory", "machine", i, d)
            day_ms = self._day_ms(d)
            for slot in range(_DAY // self.interval_ms):
                t = day_ms + slot * self.interval_ms + self.offsets[i]
                # noise drawn for every slot, so incidents do not shift it
                load, standby = rng.gauss(0, 0.06), rng.gauss(0, 0.25)
                north, east = rng.gauss(0, 1.5e-5), rng.gauss(0, 1.5e-5)
                running = any(a <= t - day_ms < b for a, b in windows)
                if running:
                    current = m.run_a * (1 + min(0.25, max(-0.25, load)))
                else:
                    current = min(6.0, max(1.5, m.idle_a + standby))
                lon, lat = m.lon + _bounded(east), m.lat + _bounded(north)
                if i == moved and t >= moved_at:
                    running, current = False, 0.0  # unplugged
                    lon, lat = _road(t - moved_at, lon - m.lon, lat - m.lat, (m.lon, m.lat))
                if i == removed and removal_from <= t < removal_to:
                    current = 0.0  # the clamp hangs off the cable; the machine works on
                current = round(current, 1)
                data: dict[str, Any] = {
                    "machine": m.id,
                    "current_a": current,
                    "energy_kwh": round(meter, 3),
                    "lat": round(lat, 6),
                    "lon": round(lon, 6),
                }
                if m.counter:
                    data["output"] = m.pieces + math.floor(made)
                self.rec.emit(t, device, "machine", data)
                meter += _kw(current) * interval_h
                if running:
                    made += self.interval_ms / 1000 / m.cycle_s * m.cavities


def _bounded(noise: float) -> float:
    return min(5e-5, max(-5e-5, noise))


def _road(
    since_ms: int, east: float, north: float, home: tuple[float, float]
) -> tuple[float, float]:
    """(lon, lat) of a machine ``since_ms`` after it was unplugged: rigged at home for
    40 min, on a truck from the gate to the yard for 40 min, then in the yard."""
    rigging, driving = 40 * _MIN, 40 * _MIN
    if since_ms < rigging:
        return home[0] + east, home[1] + north
    share = min(1.0, (since_ms - rigging) / driving)
    lon = _GATE[0] + (_YARD[0] - _GATE[0]) * share
    lat = _GATE[1] + (_YARD[1] - _GATE[1]) * share
    return lon + east, lat + north
