"""Simulated telemetry sites (oracles.telemetry): a water utility's pumping station and a
cold-chain room, their devices' signed ``telemetry`` readings, and incidents injected at
known times. Deterministic like oracles.simulate (whose helpers it uses): the same
(seed, days, start, options) gives byte-identical readings; every random choice comes
from a stream named after what it drives, and incidents are drawn from their own stream
whichever are enabled, so a run with incidents is its clean run plus their signals.

Sites (both UTC+08:00; the run starts at local midnight of ``start``'s date, default
2026-11-23), each a watched asset with one device reporting every ``interval_min``
(default 5) minutes, a few seconds late at most; ``heartbeat_s`` = 3 intervals.

============ ===============================================================================
pump station Booster station PS-3 of a water utility in Dongguan, Guangdong; one 110 kW
             variable-speed pump (``pump_station@1``), remote terminal unit ``rtu-1``:
             - flow_m3h: a residential diurnal demand curve (night minimum ~0.4 × the mean
               around 03:00, peaks ~1.45 × at 08:00 and ~1.5 × at 19:00), daily mean
               ~620 m3/h × a day factor 0.95–1.05, ±2 % noise
             - pressure_kpa: discharge pressure held by the drive near 455 kPa, sagging
               0.03 kPa per m3/h with the friction of higher flow, ±3 kPa noise
             - vibration_mms: ISO 10816-3 velocity r.m.s. of a healthy group-2 machine
               (15–300 kW) on a flexible foundation, 1.3 + 0.5 × flow / 900 mm/s ± 0.05:
               zone A/B (boundaries A/B 2.3, B/C 4.5, C/D 7.1 mm/s)
             - energy_kwh: the pump's meter, a running total from 1 284 000 kWh; power =
               flow (m3/s) × (pressure − 100 kPa suction) / 0.68 wire-to-water efficiency
               (~85 kW at 620 m3/h), integrated over time whether or not a reading is sent
cold room    Chilled room R1 (2–8 °C, set point 4 °C) of a cold store in Kunshan, Jiangsu
             (``cold_room@1``), data logger ``logger-r1``:
             - temperature_c: 4.0 °C, ±0.4 °C with the compressor's 28-minute cycle, ±0.08
               noise; a defrost every 6 h (02:00, 08:00, 14:00, 20:00) for 25 min, up to
               +2.0 °C; each door opening +0.25 °C (at most +0.8), halving every interval;
               never above 7.8 °C in a clean run
             - door_opens: openings in the interval: business hours 07:00–19:00 about 0.8
               per 5 min, at night rarely
============ ===============================================================================

Incidents (``incidents=None``: all of them). With two or more days they start on day 1 or
later, so day 0 is clean; ``items`` names the device.

============== ============== =============================================================
incident       expected rule  signal in the readings
============== ============== =============================================================
bearing_wear   vibration_alert pump vibration rises from 02:00–06:00 by up to +4.3 mm/s over
                              8 h (to ~6 mm/s, zone C, under C/D 7.1) and stays there
cold_room_warm cold_room_warm the cold room's compressor trips at 09:00–16:00 for 3 h: the
                              room warms toward ambient (to 12–13 °C), then cools back over
                              about an hour
silent         stale_device   the pump station's RTU sends nothing for 12 h from
                              01:00–04:00 (its meter keeps counting: the first reading after
                              shows the energy of the gap)
============== ============== =============================================================

``subject`` holds the config the oracle needs: ``schemas`` (TelemetrySchema configs) and
``watches`` (TelemetryRules configs, one per site); ``telemetry_config`` returns them.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from oracles.readings import Reading
from oracles.simulate import (
    _HOUR,
    _MIN,
    _TZ,
    _UTC_OFFSET,
    Incident,
    Scenario,
    _check_range,
    _chosen,
    _local_midnight,
    _pick_day,
    _Recorder,
    _rng,
    _unit,
    _when,
)

__all__ = [
    "COLD_ROOM",
    "COLD_ROOM_SCHEMA",
    "PUMP_SCHEMA",
    "PUMP_STATION",
    "TELEMETRY_INCIDENTS",
    "telemetry",
    "telemetry_config",
]

TELEMETRY_INCIDENTS: Final = ("bearing_wear", "cold_room_warm", "silent")

PUMP_STATION: Final = "urn:fourflow:asset:dg-water:ps3"
PUMP: Final = "urn:fourflow:asset:dg-water:ps3:pump-1"
COLD_ROOM: Final = "urn:fourflow:asset:ks-coldstore:cs2"
ROOM: Final = "urn:fourflow:asset:ks-coldstore:cs2:room-r1"

PUMP_SCHEMA: Final[dict[str, Any]] = {
    "name": "pump_station",
    "version": 1,
    "fields": {
        "flow_m3h": {"unit": "m3/h", "min": 0, "max": 5000, "aggregates": ["min", "max", "mean", "twa"]},
        "pressure_kpa": {"unit": "kPa", "min": 0, "max": 2500, "aggregates": ["min", "max", "mean"]},
        "vibration_mms": {"unit": "mm/s", "min": 0, "max": 100, "aggregates": ["max", "mean"]},
        "energy_kwh": {"unit": "kWh", "min": 0, "aggregates": ["delta", "last"]},
    },
}  # fmt: skip
COLD_ROOM_SCHEMA: Final[dict[str, Any]] = {
    "name": "cold_room",
    "version": 1,
    "fields": {
        "temperature_c": {"unit": "degC", "min": -40, "max": 60, "aggregates": ["min", "max", "mean", "twa"]},
        "door_opens": {"unit": "1", "min": 0, "max": 500, "aggregates": ["sum", "max"]},
    },
}  # fmt: skip
_PUMP_RULES: Final[list[dict[str, Any]]] = [
    {"name": "vibration_alert", "type": "threshold", "schema": "pump_station@1",
     "field": "vibration_mms", "above": 4.5, "streak": 3, "severity": "warning"},
    {"name": "low_throughput", "type": "daily", "schema": "pump_station@1",
     "field": "flow_m3h", "aggregate": "mean", "below": 300, "days": 2, "severity": "warning"},
]  # fmt: skip
_ROOM_RULES: Final[list[dict[str, Any]]] = [
    {"name": "cold_room_warm", "type": "threshold", "schema": "cold_room@1",
     "field": "temperature_c", "above": 8.0, "streak": 3, "severity": "breach"},
    {"name": "warm_days", "type": "daily", "schema": "cold_room@1",
     "field": "temperature_c", "aggregate": "mean", "above": 6.0, "days": 2, "severity": "warning"},
]  # fmt: skip

# residential demand by local hour, relative (normalised to a mean of 1)
_DEMAND: Final = (
    0.55, 0.45, 0.40, 0.38, 0.40, 0.55, 0.85, 1.30, 1.45, 1.30, 1.15, 1.10,
    1.15, 1.05, 0.95, 0.95, 1.05, 1.25, 1.45, 1.50, 1.35, 1.10, 0.85, 0.65,
)  # fmt: skip
_MEAN_FLOW: Final = 620.0  # m3/h
_METER_START: Final = 1_284_000.0  # kWh
_SUCTION_KPA: Final = 100.0
_EFFICIENCY: Final = 0.68
_WEAR_MMS: Final = 4.3
_WEAR_RAMP: Final = 8 * _HOUR
_DEFROST_H: Final = (2, 8, 14, 20)
_DEFROST: Final = 25 * _MIN
_CYCLE: Final = 28 * _MIN
_TRIP: Final = 3 * _HOUR


def telemetry(
    *,
    days: int,
    seed: int,
    incidents: Sequence[str] | None = None,
    start: datetime | None = None,
    interval_min: int = 5,
) -> Scenario:
    """The pumping station and the cold room for ``days`` days (see the module docstring)."""
    _check_range("days", days, 1, 366)
    _check_range("interval_min", interval_min, 1, 60)
    chosen = _chosen(incidents, TELEMETRY_INCIDENTS)
    first = _local_midnight(start, datetime(2026, 11, 23, tzinfo=_TZ))
    return _Sites(
        days=days,
        seed=seed,
        interval_ms=interval_min * _MIN,
        start_ms=int(first.timestamp() * 1000),
        chosen=chosen,
    ).scenario()


def telemetry_config(scenario: Scenario) -> dict[str, Any]:
    """The telemetry part of an oracle config for ``scenario``: its schemas and one
    rules config per watched asset (oracles.telemetry)."""
    return {
        "schemas": [dict(s) for s in scenario.subject["schemas"]],
        "watches": [dict(w) for w in scenario.subject["watches"]],
    }


_NEVER: Final = 2**62


class _Sites:
    def __init__(
        self, *, days: int, seed: int, interval_ms: int, start_ms: int, chosen: frozenset[str]
    ) -> None:
        self.days, self.seed, self.interval_ms = days, seed, interval_ms
        self.start_ms = start_ms
        self.end_ms = start_ms + days * 24 * _HOUR
        heartbeat_s = 3 * interval_ms // 1000
        self.water = _Recorder(seed=seed, site="dg-water-ps3")
        self.rtu = self.water.device(
            "rtu-1", {"telemetry"}, subject=PUMP_STATION, heartbeat_s=heartbeat_s
        )
        self.store = _Recorder(seed=seed, site="ks-coldstore-2")
        self.logger = self.store.device(
            "logger-r1", {"telemetry"}, subject=COLD_ROOM, heartbeat_s=heartbeat_s
        )
        self._plan(chosen)

    def _at(self, day: int, hours: float) -> int:
        return self.start_ms + day * 24 * _HOUR + round(hours * _HOUR)

    def _plan(self, chosen: frozenset[str]) -> None:
        rng = _rng(self.seed, "telemetry", "incidents")
        d = self.days
        wear_at = self._at(_pick_day(rng, d, last=max(1, d - 2)), 2) + rng.randrange(240) * _MIN
        trip_at = self._at(_pick_day(rng, d), 9) + rng.randrange(420) * _MIN
        silent_at = self._at(_pick_day(rng, d), 1) + rng.randrange(180) * _MIN
        self.wear = wear_at if "bearing_wear" in chosen else _NEVER
        self.trip = trip_at if "cold_room_warm" in chosen else _NEVER
        found: list[Incident] = []
        if "bearing_wear" in chosen:
            found.append(Incident(
                "bearing_wear", wear_at, None, PUMP,
                f"pump-1 bearing wear from {_when(self.start_ms, wear_at)}: vibration rises "
                f"by up to +{_WEAR_MMS} mm/s over 8 h, past the 4.5 mm/s alert level",
                "vibration_alert", (self.rtu,),
            ))  # fmt: skip
        if "cold_room_warm" in chosen:
            found.append(Incident(
                "cold_room_warm", trip_at, min(trip_at + _TRIP + _HOUR, self.end_ms), ROOM,
                f"cold room R1 compressor trips at {_when(self.start_ms, trip_at)} for 3 h: "
                "the room warms to 12–13 °C, above its 8 °C limit",
                "cold_room_warm", (self.logger,),
            ))  # fmt: skip
        if "silent" in chosen:
            silent_end = min(silent_at + 12 * _HOUR, self.end_ms)
            self.water.silent[self.rtu] = (silent_at, silent_end)
            found.append(Incident(
                "silent", silent_at, silent_end, self.rtu,
                f"pump station RTU silent for 12 h from {_when(self.start_ms, silent_at)}",
                "stale_device", (self.rtu,),
            ))  # fmt: skip
        self.incidents = sorted(found, key=lambda i: i.start_ms)

    def scenario(self) -> Scenario:
        self._pump()
        self._cold_room()
        readings: list[Reading] = [
            *self.water.readings(start_ms=self.start_ms, end_ms=self.end_ms),
            *self.store.readings(start_ms=self.start_ms, end_ms=self.end_ms),
        ]
        readings.sort(key=lambda r: (r.time_ms, r.device))
        subject = {
            "schemas": [PUMP_SCHEMA, COLD_ROOM_SCHEMA],
            "watches": [
                {"subject": PUMP_STATION, "rules": _PUMP_RULES, "utc_offset": _UTC_OFFSET},
                {"subject": COLD_ROOM, "rules": _ROOM_RULES, "utc_offset": _UTC_OFFSET},
            ],
            "utc_offset": _UTC_OFFSET,
        }
        return Scenario(
            name="telemetry",
            seed=self.seed,
            start_ms=self.start_ms,
            days=self.days,
            utc_offset=_UTC_OFFSET,
            devices=[*self.water.devices, *self.store.devices],
            subject=subject,
            readings=readings,
            documents=[],
            releases=[],
            incidents=self.incidents,
        )

    def _times(self, device: str) -> list[list[int]]:
        """Per day, every interval from midnight at the device's own second, a little late."""
        offset = int(_unit(self.seed, "telemetry", "offset", device) * 60_000)
        rng = _rng(self.seed, "telemetry", "jitter", device)
        days: list[list[int]] = [[] for _ in range(self.days)]
        for t in range(self.start_ms, self.end_ms, self.interval_ms):
            days[(t - self.start_ms) // (24 * _HOUR)].append(t + offset + rng.randrange(3_000))
        return days

    def _pump(self) -> None:
        energy = _METER_START
        previous: tuple[int, float] | None = None  # (time, power kW)
        for day, times in enumerate(self._times(self.rtu)):
            rng = _rng(self.seed, "telemetry", "pump", day)
            factor = rng.uniform(0.95, 1.05)
            for t in times:
                hours = (t - self.start_ms) % (24 * _HOUR) / _HOUR
                flow = _MEAN_FLOW * factor * _demand(hours) * (1 + rng.gauss(0, 0.02))
                pressure = 455 - 0.03 * flow + rng.gauss(0, 3)
                vibration = 1.3 + 0.5 * flow / 900 + rng.gauss(0, 0.05)
                if t >= self.wear:
                    vibration += _WEAR_MMS * min(1.0, (t - self.wear) / _WEAR_RAMP)
                power = flow / 3600 * (pressure - _SUCTION_KPA) / _EFFICIENCY  # kW
                if previous is not None:  # trapezoid: the meter counts between readings
                    energy += (previous[1] + power) / 2 * (t - previous[0]) / _HOUR
                previous = (t, power)
                values = {
                    "flow_m3h": round(flow, 1),
                    "pressure_kpa": round(pressure, 1),
                    "vibration_mms": round(max(0.1, vibration), 2),
                    "energy_kwh": round(energy, 1),
                }
                self.water.emit(
                    t, self.rtu, "telemetry", _telemetry("pump_station@1", PUMP, values)
                )

    def _cold_room(self) -> None:
        warmth = 0.0  # door openings' warm air, decaying
        for day, times in enumerate(self._times(self.logger)):
            rng = _rng(self.seed, "telemetry", "room", day)
            for t in times:
                local = (t - self.start_ms) % (24 * _HOUR)
                hour = local // _HOUR
                rate = 0.8 * self.interval_ms / (5 * _MIN) if 7 <= hour < 19 else 0.02
                opens = _poisson(rng, rate)
                noise = rng.gauss(0, 0.08)
                warmth = min(0.8, warmth / 2 + 0.25 * opens)
                temperature = 4.0 + 0.4 * math.sin(2 * math.pi * (local % _CYCLE) / _CYCLE)
                temperature += _defrost(local) + warmth + noise
                temperature = min(7.8, temperature)
                temperature += _trip(t - self.trip)
                values = {"temperature_c": round(temperature, 2), "door_opens": opens}
                self.store.emit(
                    t, self.logger, "telemetry", _telemetry("cold_room@1", ROOM, values)
                )


def _telemetry(schema: str, subject: str, values: dict[str, Any]) -> dict[str, Any]:
    return {"schema": schema, "subject": subject, "values": values}


def _demand(hours: float) -> float:
    """The demand curve at a local time, linear between hours, mean 1."""
    mean = sum(_DEMAND) / len(_DEMAND)
    low = int(hours) % 24
    share = hours - int(hours)
    return ((1 - share) * _DEMAND[low] + share * _DEMAND[(low + 1) % 24]) / mean


def _defrost(local_ms: int) -> float:
    """The defrost heater's warming: a half sine of +2.0 °C over 25 min, every 6 h."""
    for hour in _DEFROST_H:
        elapsed = local_ms - hour * _HOUR
        if 0 <= elapsed < _DEFROST:
            return 2.0 * math.sin(math.pi * elapsed / _DEFROST)
    return 0.0


def _trip(elapsed: int) -> float:
    """A tripped compressor: toward ambient (+8.5 °C, 1 h time constant) for 3 h, then
    back down (20 min time constant) until 2 h after the repair."""
    if elapsed < 0:
        return 0.0
    peak = 8.5 * (1 - math.exp(-min(elapsed, _TRIP) / _HOUR))
    if elapsed <= _TRIP:
        return peak
    if elapsed > _TRIP + 2 * _HOUR:
        return 0.0
    return peak * math.exp(-(elapsed - _TRIP) / (20 * _MIN))


def _poisson(rng: random.Random, rate: float) -> int:
    """A Poisson draw (Knuth), one uniform draw per event plus one."""
    limit, count, product = math.exp(-rate), 0, rng.random()
    while product > limit:
        count += 1
        product *= rng.random()
    return count
