"""Pledged energy assets (光伏电站 solar plants, 充电场站 charging stations): daily output,
revenue and the alarms a lender acts on.

Pure: readings in (already signature-checked, see oracles.readings), ``SolarDay``,
``StationDay`` and ``Alarm`` out; no store, no chain, no I/O, no clock. oracles.pipeline
stores, signs, anchors and reports what this module derives. Two monitors, one per kind
of site, because their readings, figures and rules barely overlap; they share the local
day, the revenue window and the silence rule.

    rules   = SolarRules(plant=..., dc_kwp=6000, inverters=frozenset(names),
                         tariff_cny_per_kwh=Decimal("0.391"), min_pr_pct=75,
                         min_window_revenue_cny=Decimal("30000"))
    monitor = SolarMonitor(rules, devices)
    alarms  = monitor.observe(reading)           each inverter / grid_meter / weather /
                                                 heartbeat reading, in time order
    alarms  = monitor.check(now_ms)              every few minutes: the silence rules
    day, alarms = monitor.close_day("2026-11-23")     once the plant's local day is over

    rules   = StationRules(station=..., piles=frozenset(names), energy_tariff_cny_per_kwh=...,
                           service_fee_cny_per_kwh=..., min_window_revenue_cny=...)
    monitor = StationMonitor(rules, devices)     observe / check / close_day as above

Rules (``RULES`` holds severity and fact; every key starts ``<rule>:<plant or station>:``)

| rule            | condition                                                                   | severity | fact            | key                                         |
|-----------------|-----------------------------------------------------------------------------|----------|-----------------|---------------------------------------------|
| low_performance | close_day (plant): PR < ``min_pr_pct`` on ``floor_days`` consecutive judged | breach   | covenant_breach | low_performance:<plant>:<run's first day>   |
|                 | days; a day is judged when H ≥ ``min_insolation_kwh_m2`` (duller days say   |          |                 |                                             |
|                 | nothing: they neither extend nor break the run)                             |          |                 |                                             |
| low_revenue     | close_day: the revenue of the ``revenue_window_days`` local days ending     | breach   | covenant_breach | low_revenue:<site>:<episode's first day>    |
|                 | with the closed day < ``min_window_revenue_cny``; judged once the window    |          |                 |                                             |
|                 | starts on or after the first day this monitor closed                        |          |                 |                                             |
| inverter_down   | ``down_readings`` consecutive readings of one inverter at 0 kW while the    | warning  | —               | inverter_down:<plant>:<inverter>:<start ms> |
|                 | plant's irradiance is > ``down_irradiance_wm2``                             |          |                 |                                             |
| meter_mismatch  | close_day (plant): export_kwh > generation_kwh × (1 + ``mismatch_pct``/100) | warning  | —               | meter_mismatch:<plant>:<day>                |
| meter_silent    | check (plant): a grid_meter device silent for more than its heartbeat_s     | warning  | stale_data      | meter_silent:<plant>:<device>:<last ms>     |
| sensor_silent   | check (plant): any other device of the plant (inverter, weather station)    | warning  | stale_data      | sensor_silent:<plant>:<device>:<last ms>    |
|                 | silent for more than its heartbeat_s                                        |          |                 |                                             |
| pile_silent     | check (station): a device of the station silent for more than heartbeat_s   | warning  | stale_data      | pile_silent:<station>:<device>:<last ms>    |

On-chain (oracles.pipeline, when the site's receipt is pledged): low_performance and
low_revenue are broken performance covenants, reported as ``covenant_breach`` facts
citing the signed alarm event, which freeze the pledge (FROZEN_COVENANT_BREACH) until the
lender clears it; the silence rules ask the contract to judge the data stale.

Thresholds are strict: a PR exactly at ``min_pr_pct``, revenue exactly at the floor,
irradiance exactly at ``down_irradiance_wm2``, export exactly at the tolerance and a
device silent exactly ``heartbeat_s`` raise nothing. A day with H exactly at
``min_insolation_kwh_m2`` is judged.

Episodes. An ongoing condition raises once. low_performance: the run of low judged days
(its key carries its first day) ends at a judged day with PR ≥ ``min_pr_pct``.
low_revenue: the episode opens at the first closed day whose window is short and ends
at a closed day whose window is not. inverter_down: the run opens with the first 0 kW
reading in sun and ends with a reading above 0 kW; readings with the irradiance at or
below the threshold (or none fresh) neither extend nor break it, so an inverter down
overnight stays one episode. Silence: the episode is the last reading before it. A
monitor never returns a key twice; a fresh monitor replaying the same readings, checks
and closes returns the same alarms with the same keys.

Evidence. inverter_down: the ``down_readings`` readings of the run; silence: the
device's last reading (none if never heard); the close_day rules: the closed day's
evidence (that of the day that opened or fired the episode). Daily results list the
day's reading event ids (``reading_event_id``) in time order, at most ``evidence_cap``
of them, the meter readings first (``evidence_omitted`` counts the rest).

Order. Readings are expected in time order. A redelivered reading (same device and seq)
is ignored, and so is a charge session already counted (same pile and session id, sent
again under a new seq). A reading not newer than the state it would move (a meter's or
inverter's last total, a weather station's last irradiance, an inverter's last power) is
late: it still counts as a sign of life and as evidence of its day, but moves nothing.
A reading whose day is closed counts for no day. Silence rules start their clock at the
first reading this monitor observed. Local days are [00:00, 24:00) at ``utc_offset``.

Plant derivations, per local day (inverters and meters are named by their reading's
``inverter`` / ``meter`` field):

- generation_kwh = Σ over inverters of the deltas of ``energy_kwh`` between consecutive
  readings of the inverter, each delta counted on the day of its later reading. A total
  lower than the last one is a meter reset: a new total starts from 0, the delta is the
  new total (``meter_resets`` counts them). An inverter's first reading is its baseline.
  Inverters not in ``inverters`` count too (they report through the plant's devices).
- export_kwh: the same over the grid_meter readings' ``export_kwh``. Both are exact
  decimal sums (a JSON number is read as the decimal it was written as), rounded half up
  to 0.001 kWh.
- insolation_kwh_m2 (H) = mean over the weather stations that reported that day of
  Σ (G₁ + G₂) / 2 × Δt (trapezoid between a station's consecutive readings, on the day of
  the later one, Δt capped at ``max_gap_s``: a silent sensor invents no hours of sun),
  in kWh/m², rounded to 0.0001. None with no weather reading that day.
- pr_pct = 100 × export_kwh / (dc_kwp × H / 1 kW/m²), rounded to 0.01; None when H is
  None or below ``PR_MIN_INSOLATION_KWH_M2`` (0.05 kWh/m², a night's worth of noise).
- revenue_fen = export_kwh × ``tariff_cny_per_kwh`` × 100, in Decimal, rounded half up to
  the fen (integer fen: money never goes through a float).
- availability_pct = 100 × registered inverters with an inverter reading that day /
  len(``inverters``), rounded to 0.01.

Station derivations, per local day: a session is counted on the local day it ends
(``end``), whole (its occupied hours too), once per (pile, session id).

- sessions, energy_kwh (exact decimal sum, rounded half up to 0.001 kWh)
- energy_fen = energy_kwh × ``energy_tariff_cny_per_kwh`` × 100, service_fen likewise with
  ``service_fee_cny_per_kwh``, each rounded half up to the fen; revenue_fen = their sum
- utilization_pct = 100 × Σ occupied hours (end − start) / (len(``piles``) × 24), to 0.01
- per pile: sessions, energy_kwh, occupied_h (to 0.001 h); piles_reporting: registered
  piles with a charge reading that day, or whose device sent any reading that day

Revenue window (both): the sum of revenue_fen over the closed days within the
``revenue_window_days`` local days ending with the closed day; a day in the window this
monitor never closed counts 0 (nobody saw it earn anything).

Rounding: kWh and fen as said (Decimal, half up); the other derived numbers (H, PR,
percentages, hours, peak kW) are Python's ``round`` of the float (half to even on an
exact binary tie), so a replay rounds the same way. A close_day rule compares the rounded
figure the day publishes, so anyone can re-check it from the payload.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Final, Literal

from ledger.errors import InvalidInput
from oracles.readings import (
    Alarm,
    Charge,
    Device,
    GridMeter,
    Inverter,
    Reading,
    Weather,
)
from oracles.rules import (
    Heartbeats,
    check_day,
    day_bounds,
    first_time,
    local_day,
    offset_ms,
    require,
    rule_alarm,
    select_evidence,
)

__all__ = [
    "PR_MIN_INSOLATION_KWH_M2",
    "RULES",
    "InverterDay",
    "PileDay",
    "SolarDay",
    "SolarMonitor",
    "SolarRules",
    "StationDay",
    "StationMonitor",
    "StationRules",
]

Severity = Literal["info", "warning", "breach"]
Money = Decimal | int | str | float

PR_MIN_INSOLATION_KWH_M2: Final = 0.05  # below this H, PR is noise: None
RULES: Final[Mapping[str, tuple[Severity, str | None]]] = {
    "low_performance": ("breach", "covenant_breach"),
    "low_revenue": ("breach", "covenant_breach"),
    "inverter_down": ("warning", None),
    "meter_mismatch": ("warning", None),
    "meter_silent": ("warning", "stale_data"),
    "sensor_silent": ("warning", "stale_data"),
    "pile_silent": ("warning", "stale_data"),
}

_HOUR_MS: Final = 3_600_000
_DAY_MS: Final = 86_400_000
_KWH: Final = Decimal("0.001")
_FEN: Final = Decimal(1)
_NEVER: Final = -(2**63)


# --- shared helpers -----------------------------------------------------------------------


def _day_end(day: str, offset: int) -> int:
    return day_bounds(day, offset)[1]


def _shift(day: str, days: int) -> str:
    return (date.fromisoformat(day) + timedelta(days=days)).isoformat()


def _decimal(value: Any) -> Decimal:
    """A JSON number (or a config value) as the decimal it was written as."""
    return value if isinstance(value, Decimal) else Decimal(str(value))


def _kwh(value: Decimal) -> float:
    return float(value.quantize(_KWH, rounding=ROUND_HALF_UP))


def _fen(kwh: float, cny_per_kwh: Decimal) -> int:
    return int((_decimal(kwh) * cny_per_kwh * 100).quantize(_FEN, rounding=ROUND_HALF_UP))


def _money(value: Money, name: str, *, positive: bool) -> Decimal:
    try:
        amount = _decimal(value)
    except (InvalidOperation, ValueError, TypeError):
        amount = Decimal("NaN")
    require(amount.is_finite(), name, f"{name} must be a decimal amount of CNY, got {value!r}")
    if positive:
        require(amount > 0, name, f"{name} must be > 0, got {value!r}")
    else:
        require(amount >= 0, name, f"{name} must be >= 0, got {value!r}")
    return amount


def _fen_text(fen: int) -> str:
    return str((Decimal(fen) / 100).quantize(Decimal("0.01")))


def _payload_error(kind: str, exc: Exception) -> InvalidInput:
    return InvalidInput(f"not a {kind} payload: {exc!r}", field="payload")


@dataclass
class _Total:
    """A running-total meter: its last (time, total)."""

    time_ms: int
    total: Decimal


def _delta(meters: dict[str, _Total], name: str, time_ms: int, total: Decimal) -> Decimal | None:
    """The energy since the meter's last reading (None: baseline or late); a lower total
    is a reset, and the new total is what was counted since."""
    last = meters.get(name)
    if last is not None and time_ms <= last.time_ms:
        return None
    meters[name] = _Total(time_ms, total)
    if last is None:
        return None
    return total - last.total if total >= last.total else total


class _Site:
    """What both monitors share: devices and their silence (oracles.rules.Heartbeats),
    local days, the revenue window."""

    def __init__(
        self,
        *,
        subject: str,
        what: str,
        devices: Mapping[str, Device],
        utc_offset: str,
        window_days: int,
        min_window_fen: int,
    ) -> None:
        self.subject, self.what = subject, what
        self.heartbeats = Heartbeats(subject=subject, what=what, devices=devices)
        self.devices = self.heartbeats.devices
        self.offset = offset_ms(utc_offset)
        self.window_days, self.min_window_fen = window_days, min_window_fen
        self.closed: dict[str, int] = {}  # day -> revenue_fen
        self.revenue_start: str | None = None  # the open low_revenue episode's first day
        self.raised: set[str] = set()

    def admit(self, reading: Reading) -> tuple[str, int, str]:
        """(event id, time, local day) of a reading of the site's devices; records the
        device's sign of life."""
        event_id, time_ms = self.heartbeats.admit(reading)
        return event_id, time_ms, local_day(time_ms, self.offset)

    def close(self, day: str) -> str:
        day = check_day(day)
        if day in self.closed:
            raise InvalidInput(
                f"day {day} of {self.what} {self.subject} is already closed",
                field="day",
                code="day_closed",
            )
        return day

    def silent(self, now_ms: int, rule_of: Mapping[str, str]) -> list[Alarm]:
        return [
            self.alarm(
                rule_of[s.device.id],
                f"{s.device.id}:{s.last_ms}",
                now_ms,
                s.message,
                s.evidence,
                {"device": s.device.id, **s.details},
            )
            for s in self.heartbeats.silences(now_ms)
        ]

    def revenue(
        self, day: str, revenue_fen: int, evidence: tuple[str, ...]
    ) -> tuple[int | None, list[Alarm]]:
        """Record a closed day's revenue; (the window's revenue or None when not judged,
        the low_revenue alarm if its episode opens)."""
        self.closed[day] = revenue_fen
        first = _shift(day, 1 - self.window_days)
        if first < min(self.closed):
            return None, []
        window = sum(fen for d, fen in self.closed.items() if first <= d <= day)
        if window >= self.min_window_fen:
            self.revenue_start = None
            return window, []
        if self.revenue_start is None:
            self.revenue_start = day
        floor = _fen_text(self.min_window_fen)
        message = (
            f"{self.what} {self.subject} earned {_fen_text(window)} CNY in the "
            f"{self.window_days} days {first}..{day}, below the {floor} CNY it was sized on"
        )
        details = {
            "day": day,
            "window_first_day": first,
            "window_days": self.window_days,
            "window_revenue_fen": window,
            "min_window_revenue_fen": self.min_window_fen,
        }
        end_ms = _day_end(day, self.offset)
        alarm = self.alarm("low_revenue", self.revenue_start, end_ms, message, evidence, details)
        return window, [alarm]

    def alarm(
        self,
        rule: str,
        scope: str,
        time_ms: int,
        message: str,
        evidence: Iterable[str],
        details: Mapping[str, Any],
    ) -> Alarm:
        """An alarm about the site, keyed ``<rule>:<site>:<scope>``."""
        details = {self.what: self.subject, **details}
        return rule_alarm(RULES, rule, self.subject, scope, time_ms, message, evidence, details)

    def fresh(self, alarms: list[Alarm]) -> list[Alarm]:
        return first_time(alarms, self.raised)


# --- solar plant: configuration -----------------------------------------------------------


@dataclass(frozen=True)
class SolarRules:
    """One pledged solar plant's rules and the figures its loan was sized on.

    ``dc_kwp`` is the array's nameplate DC power (kWp); ``inverters`` the names its
    inverter readings carry. Money is Decimal (a str, int or float is read as the decimal
    it prints as); a list of inverters is taken as a set, so the JSON of a config works. ``max_gap_s`` caps an irradiance segment; ``irradiance_fresh_s`` is how
    old the latest weather reading may be for inverter_down to use it.
    """

    plant: str
    dc_kwp: float
    inverters: frozenset[str]
    tariff_cny_per_kwh: Decimal
    min_pr_pct: float
    min_window_revenue_cny: Decimal
    floor_days: int = 3
    min_insolation_kwh_m2: float = 1.0
    revenue_window_days: int = 30
    down_irradiance_wm2: float = 200.0
    down_readings: int = 3
    mismatch_pct: float = 2.0
    max_gap_s: int = 900
    irradiance_fresh_s: int = 600
    utc_offset: str = "+08:00"
    evidence_cap: int = 5_000

    def __post_init__(self) -> None:
        require(bool(self.plant), "plant", "a plant id is required")
        require(self.dc_kwp > 0, "dc_kwp", f"dc_kwp must be > 0, got {self.dc_kwp}")
        object.__setattr__(self, "inverters", frozenset(self.inverters))
        require(bool(self.inverters), "inverters", "at least one inverter is required")
        object.__setattr__(
            self,
            "tariff_cny_per_kwh",
            _money(self.tariff_cny_per_kwh, "tariff_cny_per_kwh", positive=True),
        )
        object.__setattr__(
            self,
            "min_window_revenue_cny",
            _money(self.min_window_revenue_cny, "min_window_revenue_cny", positive=False),
        )
        require(
            0 < self.min_pr_pct <= 100,
            "min_pr_pct",
            f"min_pr_pct must be in (0, 100], got {self.min_pr_pct}",
        )
        require(self.floor_days >= 1, "floor_days", "floor_days must be >= 1")
        require(
            self.min_insolation_kwh_m2 >= PR_MIN_INSOLATION_KWH_M2,
            "min_insolation_kwh_m2",
            f"min_insolation_kwh_m2 must be >= {PR_MIN_INSOLATION_KWH_M2}, got {self.min_insolation_kwh_m2}",
        )
        _check_window(self.revenue_window_days)
        require(
            self.down_irradiance_wm2 >= 0,
            "down_irradiance_wm2",
            "down_irradiance_wm2 must be >= 0",
        )
        require(self.down_readings >= 1, "down_readings", "down_readings must be >= 1")
        require(self.mismatch_pct >= 0, "mismatch_pct", "mismatch_pct must be >= 0")
        require(self.max_gap_s >= 1, "max_gap_s", "max_gap_s must be >= 1")
        require(
            self.irradiance_fresh_s >= 1, "irradiance_fresh_s", "irradiance_fresh_s must be >= 1"
        )
        require(self.evidence_cap >= 1, "evidence_cap", "evidence_cap must be >= 1")
        offset_ms(self.utc_offset)

    @property
    def min_window_revenue_fen(self) -> int:
        return int((self.min_window_revenue_cny * 100).quantize(_FEN, rounding=ROUND_HALF_UP))


def _check_window(days: int) -> None:
    require(
        1 <= days <= 366,
        "revenue_window_days",
        f"revenue_window_days must be 1..366, got {days}",
    )


# --- solar plant: the day -----------------------------------------------------------------


@dataclass(frozen=True)
class InverterDay:
    """One inverter's day: energy (kWh, to 0.001), peak power (kW), readings."""

    energy_kwh: float
    peak_kw: float
    readings: int

    def to_payload(self) -> dict[str, Any]:
        return {"energy_kwh": self.energy_kwh, "peak_kw": self.peak_kw, "readings": self.readings}


@dataclass(frozen=True)
class SolarDay:
    """A solar plant's figures for one local day (see the module docstring)."""

    plant: str
    day: str
    generation_kwh: float
    export_kwh: float
    insolation_kwh_m2: float | None
    pr_pct: float | None
    judged: bool  # H ≥ min_insolation_kwh_m2 and a PR: the day counts for low_performance
    tariff_cny_per_kwh: Decimal
    revenue_fen: int
    inverters_reporting: int
    availability_pct: float
    meter_resets: int
    inverters: Mapping[str, InverterDay]
    evidence: tuple[str, ...]
    evidence_omitted: int = 0

    @property
    def revenue_cny(self) -> Decimal:
        return Decimal(self.revenue_fen) / 100

    def to_payload(self) -> dict[str, Any]:
        """A JSON-safe dict: the payload of the fourflow event that records this day."""
        return {
            "plant": self.plant,
            "day": self.day,
            "generation_kwh": self.generation_kwh,
            "export_kwh": self.export_kwh,
            "insolation_kwh_m2": self.insolation_kwh_m2,
            "pr_pct": self.pr_pct,
            "judged": self.judged,
            "tariff_cny_per_kwh": str(self.tariff_cny_per_kwh),
            "revenue_fen": self.revenue_fen,
            "inverters_reporting": self.inverters_reporting,
            "availability_pct": self.availability_pct,
            "meter_resets": self.meter_resets,
            "inverters": {n: self.inverters[n].to_payload() for n in sorted(self.inverters)},
            "evidence": list(self.evidence),
            "evidence_omitted": self.evidence_omitted,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> SolarDay:
        """The inverse of ``to_payload``; InvalidInput when a field is missing or mistyped."""
        try:
            p = payload
            return cls(
                plant=str(p["plant"]),
                day=check_day(p["day"]),
                generation_kwh=float(p["generation_kwh"]),
                export_kwh=float(p["export_kwh"]),
                insolation_kwh_m2=_optional_float(p["insolation_kwh_m2"]),
                pr_pct=_optional_float(p["pr_pct"]),
                judged=_bool(p["judged"]),
                tariff_cny_per_kwh=_money(str(p["tariff_cny_per_kwh"]), "tariff", positive=True),
                revenue_fen=_int(p["revenue_fen"]),
                inverters_reporting=_int(p["inverters_reporting"]),
                availability_pct=float(p["availability_pct"]),
                meter_resets=_int(p["meter_resets"]),
                inverters={
                    str(name): InverterDay(
                        float(v["energy_kwh"]), float(v["peak_kw"]), _int(v["readings"])
                    )
                    for name, v in p["inverters"].items()
                },
                evidence=tuple(str(e) for e in p["evidence"]),
                evidence_omitted=_int(p["evidence_omitted"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError, InvalidInput) as exc:
            raise _payload_error("plant day", exc) from exc


def _optional_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise TypeError(f"expected true or false, got {value!r}")
    return value


@dataclass
class _PlantBucket:
    seen: set[str] = field(default_factory=set)
    evidence: list[tuple[int, str]] = field(default_factory=list)
    meter_ids: set[str] = field(default_factory=set)
    generation: Decimal = Decimal(0)
    export: Decimal = Decimal(0)
    resets: int = 0
    inverter_kwh: dict[str, Decimal] = field(default_factory=dict)
    inverter_peak: dict[str, float] = field(default_factory=dict)
    inverter_readings: dict[str, int] = field(default_factory=dict)
    insolation_wh: dict[str, float] = field(default_factory=dict)  # station -> Wh/m²


@dataclass
class _DownRun:
    start_ms: int
    ids: list[str]
    length: int = 1


# --- solar plant: the monitor -------------------------------------------------------------


class SolarMonitor:
    """Turns one solar plant's readings into alarms and daily figures (see the module
    docstring)."""

    def __init__(self, rules: SolarRules, devices: Mapping[str, Device]) -> None:
        self.rules = rules
        self._site = _Site(
            subject=rules.plant,
            what="plant",
            devices=devices,
            utc_offset=rules.utc_offset,
            window_days=rules.revenue_window_days,
            min_window_fen=rules.min_window_revenue_fen,
        )
        self._rule_of = {
            d.id: "meter_silent" if "grid_meter" in d.kinds else "sensor_silent"
            for d in self._site.devices.values()
        }
        self._days: dict[str, _PlantBucket] = {}
        self._inverters: dict[str, _Total] = {}
        self._meters: dict[str, _Total] = {}
        self._stations: dict[str, tuple[int, float]] = {}  # station -> (ms, W/m²)
        self._power_ms: dict[str, int] = {}
        self._down: dict[str, _DownRun] = {}
        self._judged: dict[str, bool] = {}  # closed judged day -> PR below the floor

    # public API

    def observe(self, reading: Reading) -> list[Alarm]:
        """Take one reading of the plant's devices; returns the alarms it raised."""
        event_id, time_ms, day = self._site.admit(reading)
        bucket = None if day in self._site.closed else self._days.setdefault(day, _PlantBucket())
        if bucket is not None:
            if event_id in bucket.seen:
                return []
            bucket.seen.add(event_id)
            if reading.kind in ("inverter", "grid_meter", "weather"):
                bucket.evidence.append((time_ms, event_id))
        data = reading.parsed()
        if isinstance(data, Inverter):
            return self._site.fresh(self._on_inverter(data, time_ms, event_id, bucket))
        if isinstance(data, GridMeter):
            total = _decimal(data.export_kwh)
            last = self._meters.get(data.meter)
            delta = _delta(self._meters, data.meter, time_ms, total)
            if bucket is not None:
                bucket.meter_ids.add(event_id)
                if delta is not None and last is not None:
                    bucket.export += delta
                    bucket.resets += total < last.total
        elif isinstance(data, Weather):
            self._on_weather(data, time_ms, bucket)
        return []

    def check(self, now_ms: int) -> list[Alarm]:
        """The silence rules at ``now_ms``: meter_silent and sensor_silent."""
        return self._site.fresh(self._site.silent(now_ms, self._rule_of))

    def close_day(self, day: str) -> tuple[SolarDay, list[Alarm]]:
        """The plant's figures for a local day (final: its later readings count nowhere)
        and the daily rules."""
        day = self._site.close(day)
        result = self._figures(day, self._days.pop(day, _PlantBucket()))
        alarms = self._day_rules(result)
        _, revenue = self._site.revenue(day, result.revenue_fen, result.evidence)
        return result, self._site.fresh([*alarms, *revenue])

    # readings

    def _on_inverter(
        self, data: Inverter, time_ms: int, event_id: str, bucket: _PlantBucket | None
    ) -> list[Alarm]:
        name = data.inverter
        total = _decimal(data.energy_kwh)
        last = self._inverters.get(name)
        delta = _delta(self._inverters, name, time_ms, total)
        if bucket is not None:
            bucket.inverter_readings[name] = bucket.inverter_readings.get(name, 0) + 1
            bucket.inverter_peak[name] = max(
                bucket.inverter_peak.get(name, 0.0), float(data.power_kw)
            )
            kwh = bucket.inverter_kwh.setdefault(name, Decimal(0))
            if delta is not None and last is not None:
                bucket.inverter_kwh[name] = kwh + delta
                bucket.generation += delta
                bucket.resets += total < last.total
        if time_ms <= self._power_ms.get(name, _NEVER):
            return []
        self._power_ms[name] = time_ms
        return self._down_rule(name, data, time_ms, event_id)

    def _down_rule(self, name: str, data: Inverter, time_ms: int, event_id: str) -> list[Alarm]:
        if data.power_kw > 0:
            self._down.pop(name, None)
            return []
        irradiance = self._irradiance(time_ms)
        if irradiance is None or irradiance <= self.rules.down_irradiance_wm2:
            return []  # no sun to judge by: the run neither grows nor ends
        run = self._down.get(name)
        if run is None:
            run = self._down[name] = _DownRun(time_ms, [event_id])
        else:
            run.length += 1
            if len(run.ids) < self.rules.down_readings:
                run.ids.append(event_id)
        if run.length != self.rules.down_readings:
            return []
        message = (
            f"inverter {name} at 0 kW for {run.length} readings while the irradiance is "
            f"{round(irradiance, 1)} W/m² (> {self.rules.down_irradiance_wm2})"
        )
        details = {
            "inverter": name,
            "start_ms": run.start_ms,
            "readings": run.length,
            "irradiance_wm2": round(irradiance, 1),
        }
        return [
            self._site.alarm(
                "inverter_down", f"{name}:{run.start_ms}", time_ms, message, run.ids, details
            )
        ]

    def _irradiance(self, time_ms: int) -> float | None:
        """The mean of the weather stations' latest readings at most irradiance_fresh_s old."""
        limit = self.rules.irradiance_fresh_s * 1000
        fresh = [g for ms, g in self._stations.values() if 0 <= time_ms - ms <= limit]
        return sum(fresh) / len(fresh) if fresh else None

    def _on_weather(self, data: Weather, time_ms: int, bucket: _PlantBucket | None) -> None:
        g = float(data.irradiance_wm2)
        last = self._stations.get(data.station)
        if last is not None and time_ms <= last[0]:
            return
        self._stations[data.station] = (time_ms, g)
        if bucket is None:
            return
        wh = bucket.insolation_wh.setdefault(data.station, 0.0)
        if last is not None:
            dt_h = min(time_ms - last[0], self.rules.max_gap_s * 1000) / _HOUR_MS
            bucket.insolation_wh[data.station] = wh + (last[1] + g) / 2 * dt_h

    # the day

    def _figures(self, day: str, bucket: _PlantBucket) -> SolarDay:
        rules = self.rules
        export = _kwh(bucket.export)
        h = None
        if bucket.insolation_wh:
            h = round(sum(bucket.insolation_wh.values()) / len(bucket.insolation_wh) / 1000, 4)
        pr = None
        if h is not None and h >= PR_MIN_INSOLATION_KWH_M2:
            pr = round(100 * export / (rules.dc_kwp * h), 2)
        reporting = len(rules.inverters & bucket.inverter_readings.keys())
        inverters = {
            name: InverterDay(
                _kwh(bucket.inverter_kwh.get(name, Decimal(0))),
                bucket.inverter_peak[name],
                count,
            )
            for name, count in sorted(bucket.inverter_readings.items())
        }
        evidence, omitted = select_evidence(bucket.evidence, bucket.meter_ids, rules.evidence_cap)
        return SolarDay(
            plant=rules.plant,
            day=day,
            generation_kwh=_kwh(bucket.generation),
            export_kwh=export,
            insolation_kwh_m2=h,
            pr_pct=pr,
            judged=pr is not None and h is not None and h >= rules.min_insolation_kwh_m2,
            tariff_cny_per_kwh=rules.tariff_cny_per_kwh,
            revenue_fen=_fen(export, rules.tariff_cny_per_kwh),
            inverters_reporting=reporting,
            availability_pct=round(100 * reporting / len(rules.inverters), 2),
            meter_resets=bucket.resets,
            inverters=inverters,
            evidence=evidence,
            evidence_omitted=omitted,
        )

    def _day_rules(self, result: SolarDay) -> list[Alarm]:
        rules, day = self.rules, result.day
        end_ms = _day_end(day, self._site.offset)
        base: dict[str, Any] = {
            "day": day,
            "pr_pct": result.pr_pct,
            "insolation_kwh_m2": result.insolation_kwh_m2,
            "generation_kwh": result.generation_kwh,
            "export_kwh": result.export_kwh,
        }
        alarms = []
        if result.export_kwh * 100 > result.generation_kwh * (100 + rules.mismatch_pct):
            message = (
                f"plant {rules.plant} exported {result.export_kwh} kWh on {day} but its "
                f"inverters generated {result.generation_kwh} kWh (tolerance {rules.mismatch_pct} %)"
            )
            details = {**base, "mismatch_pct": rules.mismatch_pct}
            alarms.append(
                self._site.alarm("meter_mismatch", day, end_ms, message, result.evidence, details)
            )
        if result.judged and result.pr_pct is not None:
            self._judged[day] = result.pr_pct < rules.min_pr_pct
            run = self._low_run(day)
            if len(run) >= rules.floor_days:
                message = (
                    f"plant {rules.plant}: PR below {rules.min_pr_pct} % on {len(run)} judged days "
                    f"{run[0]}..{run[-1]} (PR {result.pr_pct} % on {day})"
                )
                details = {
                    **base,
                    "min_pr_pct": rules.min_pr_pct,
                    "run_days": run,
                    "floor_days": rules.floor_days,
                }
                alarms.append(
                    self._site.alarm(
                        "low_performance", run[0], end_ms, message, result.evidence, details
                    )
                )
        return alarms

    def _low_run(self, day: str) -> list[str]:
        """The judged days up to ``day`` whose PR was below the floor, back to the last
        judged day that was not."""
        run: list[str] = []
        for judged in sorted((d for d in self._judged if d <= day), reverse=True):
            if not self._judged[judged]:
                break
            run.append(judged)
        return run[::-1]


# --- charging station ---------------------------------------------------------------------


@dataclass(frozen=True)
class StationRules:
    """One pledged charging station's rules: its piles (the names charge readings carry),
    the contracted tariff (electricity + service fee, CNY/kWh, Decimal) and the revenue
    floor its loan was sized on."""

    station: str
    piles: frozenset[str]
    energy_tariff_cny_per_kwh: Decimal
    service_fee_cny_per_kwh: Decimal
    min_window_revenue_cny: Decimal
    revenue_window_days: int = 30
    utc_offset: str = "+08:00"
    evidence_cap: int = 5_000

    def __post_init__(self) -> None:
        require(bool(self.station), "station", "a station id is required")
        object.__setattr__(self, "piles", frozenset(self.piles))
        require(bool(self.piles), "piles", "at least one pile is required")
        for name in ("energy_tariff_cny_per_kwh", "service_fee_cny_per_kwh"):
            object.__setattr__(self, name, _money(getattr(self, name), name, positive=False))
        require(
            self.energy_tariff_cny_per_kwh + self.service_fee_cny_per_kwh > 0,
            "service_fee_cny_per_kwh",
            "the tariff and the service fee cannot both be 0",
        )
        object.__setattr__(
            self,
            "min_window_revenue_cny",
            _money(self.min_window_revenue_cny, "min_window_revenue_cny", positive=False),
        )
        _check_window(self.revenue_window_days)
        require(self.evidence_cap >= 1, "evidence_cap", "evidence_cap must be >= 1")
        offset_ms(self.utc_offset)

    @property
    def min_window_revenue_fen(self) -> int:
        return int((self.min_window_revenue_cny * 100).quantize(_FEN, rounding=ROUND_HALF_UP))


@dataclass(frozen=True)
class PileDay:
    """One pile's day: sessions ended, energy (kWh, to 0.001), occupied hours (to 0.001)."""

    sessions: int
    energy_kwh: float
    occupied_h: float

    def to_payload(self) -> dict[str, Any]:
        return {
            "sessions": self.sessions,
            "energy_kwh": self.energy_kwh,
            "occupied_h": self.occupied_h,
        }


@dataclass(frozen=True)
class StationDay:
    """A charging station's figures for one local day (see the module docstring)."""

    station: str
    day: str
    sessions: int
    energy_kwh: float
    energy_fen: int
    service_fen: int
    revenue_fen: int
    utilization_pct: float
    piles_reporting: int
    duplicates: int  # sessions sent again and counted once
    piles: Mapping[str, PileDay]
    evidence: tuple[str, ...]
    evidence_omitted: int = 0

    @property
    def revenue_cny(self) -> Decimal:
        return Decimal(self.revenue_fen) / 100

    def to_payload(self) -> dict[str, Any]:
        """A JSON-safe dict: the payload of the fourflow event that records this day."""
        return {
            "station": self.station,
            "day": self.day,
            "sessions": self.sessions,
            "energy_kwh": self.energy_kwh,
            "energy_fen": self.energy_fen,
            "service_fen": self.service_fen,
            "revenue_fen": self.revenue_fen,
            "utilization_pct": self.utilization_pct,
            "piles_reporting": self.piles_reporting,
            "duplicates": self.duplicates,
            "piles": {n: self.piles[n].to_payload() for n in sorted(self.piles)},
            "evidence": list(self.evidence),
            "evidence_omitted": self.evidence_omitted,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> StationDay:
        """The inverse of ``to_payload``; InvalidInput when a field is missing or mistyped."""
        try:
            p = payload
            return cls(
                station=str(p["station"]),
                day=check_day(p["day"]),
                sessions=_int(p["sessions"]),
                energy_kwh=float(p["energy_kwh"]),
                energy_fen=_int(p["energy_fen"]),
                service_fen=_int(p["service_fen"]),
                revenue_fen=_int(p["revenue_fen"]),
                utilization_pct=float(p["utilization_pct"]),
                piles_reporting=_int(p["piles_reporting"]),
                duplicates=_int(p["duplicates"]),
                piles={
                    str(name): PileDay(
                        _int(v["sessions"]), float(v["energy_kwh"]), float(v["occupied_h"])
                    )
                    for name, v in p["piles"].items()
                },
                evidence=tuple(str(e) for e in p["evidence"]),
                evidence_omitted=_int(p["evidence_omitted"]),
            )
        except (KeyError, TypeError, ValueError, AttributeError, InvalidInput) as exc:
            raise _payload_error("station day", exc) from exc


@dataclass
class _StationBucket:
    seen: set[str] = field(default_factory=set)
    evidence: list[tuple[int, str]] = field(default_factory=list)
    devices: set[str] = field(default_factory=set)
    sessions: dict[str, int] = field(default_factory=dict)
    energy: dict[str, Decimal] = field(default_factory=dict)
    occupied_ms: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0


class StationMonitor:
    """Turns one charging station's readings into alarms and daily figures (see the module
    docstring)."""

    def __init__(self, rules: StationRules, devices: Mapping[str, Device]) -> None:
        self.rules = rules
        self._site = _Site(
            subject=rules.station,
            what="station",
            devices=devices,
            utc_offset=rules.utc_offset,
            window_days=rules.revenue_window_days,
            min_window_fen=rules.min_window_revenue_fen,
        )
        self._rule_of = dict.fromkeys(self._site.devices, "pile_silent")
        self._days: dict[str, _StationBucket] = {}
        self._sessions: set[tuple[str, str]] = set()
        self._device_piles: dict[str, set[str]] = {}

    def observe(self, reading: Reading) -> list[Alarm]:
        """Take one reading of the station's devices; returns the alarms it raised (none:
        the station's reading rules run at close_day and check)."""
        event_id, time_ms, day = self._site.admit(reading)
        seen_day = self._bucket(day)
        if seen_day is not None:
            if event_id in seen_day.seen:
                return []
            seen_day.seen.add(event_id)
            seen_day.devices.add(reading.device)
        data = reading.parsed()
        if not isinstance(data, Charge):
            return []
        self._device_piles.setdefault(reading.device, set()).add(data.pile)
        bucket = self._bucket(local_day(data.end_ms, self._site.offset))
        if bucket is None:
            return []  # the session's day is closed: it counts for no day
        key = (data.pile, data.session)
        if key in self._sessions:
            bucket.duplicates += 1
            return []
        self._sessions.add(key)
        bucket.evidence.append((time_ms, event_id))
        pile = data.pile
        bucket.sessions[pile] = bucket.sessions.get(pile, 0) + 1
        bucket.energy[pile] = bucket.energy.get(pile, Decimal(0)) + _decimal(data.energy_kwh)
        bucket.occupied_ms[pile] = bucket.occupied_ms.get(pile, 0) + data.end_ms - data.start_ms
        return []

    def check(self, now_ms: int) -> list[Alarm]:
        """The silence rule at ``now_ms``: pile_silent."""
        return self._site.fresh(self._site.silent(now_ms, self._rule_of))

    def close_day(self, day: str) -> tuple[StationDay, list[Alarm]]:
        """The station's figures for a local day (final: sessions ending in it that arrive
        later count nowhere) and the revenue rule."""
        day = self._site.close(day)
        result = self._figures(day, self._days.pop(day, _StationBucket()))
        _, alarms = self._site.revenue(day, result.revenue_fen, result.evidence)
        return result, self._site.fresh(alarms)

    def _bucket(self, day: str) -> _StationBucket | None:
        if day in self._site.closed:
            return None
        return self._days.setdefault(day, _StationBucket())

    def _figures(self, day: str, bucket: _StationBucket) -> StationDay:
        rules = self.rules
        energy = _kwh(sum(bucket.energy.values(), Decimal(0)))
        energy_fen = _fen(energy, rules.energy_tariff_cny_per_kwh)
        service_fen = _fen(energy, rules.service_fee_cny_per_kwh)
        occupied_ms = sum(bucket.occupied_ms.values())
        piles = {
            pile: PileDay(
                bucket.sessions[pile],
                _kwh(bucket.energy[pile]),
                round(bucket.occupied_ms[pile] / _HOUR_MS, 3),
            )
            for pile in sorted(bucket.sessions)
        }
        heard = set(bucket.sessions)
        for device in bucket.devices:
            heard |= self._device_piles.get(device, set())
        reporting = len(rules.piles & heard)
        evidence, omitted = select_evidence(bucket.evidence, set(), rules.evidence_cap)
        return StationDay(
            station=rules.station,
            day=day,
            sessions=sum(bucket.sessions.values()),
            energy_kwh=energy,
            energy_fen=energy_fen,
            service_fen=service_fen,
            revenue_fen=energy_fen + service_fen,
            utilization_pct=round(100 * occupied_ms / (len(rules.piles) * _DAY_MS), 2),
            piles_reporting=reporting,
            duplicates=bucket.duplicates,
            piles=piles,
            evidence=evidence,
            evidence_omitted=omitted,
        )
