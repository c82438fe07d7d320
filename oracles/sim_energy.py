"""Simulated energy assets for oracles.energy: a solar plant in Jiangsu and a DC charging
station in Shanghai, their devices' signed readings, and incidents injected at known
times. Built on the private helpers of oracles.simulate (signing, named random streams,
heartbeats), and as pure and deterministic: the same (scenario, seed, days, start,
options) gives byte-identical readings.

Scenarios (both UTC+08:00; each starts at local midnight of ``start``'s date)
=========================================================================================

========= ==================================================================================
solar     A 6 MWp plant near Yangzhou, Jiangsu (32.4° N, 119.4° E; default start
          2026-11-23), modules tilted 25° due south, ``inverters`` string inverters (20)
          of 6000 / n kWp DC each, AC rating DC / 1.15 (clipping only on summer noons).
          - sky: a clear-sky plane-of-array curve (solar declination, equation of time,
            Haurwitz GHI × 0.85 for the delta's haze, 85 % beam on the tilted plane,
            isotropic diffuse, albedo 0.2), times a cloud transmittance per day from
            stream ("solar", "sky", day): clear (45 %, 0.95–0.99), broken cloud (40 %,
            a base of 0.55–0.80 with passing clouds of 20–110 min) or overcast (15 %,
            0.15–0.35; never more than two overcast days in any seven)
          - air 9–14 °C mean, ±4 °C by day; module = air + 0.03 °C per W/m²
          - inverters: power = min(AC rating, kWp × G / 1000 × (1 − 0.0035 × (T − 25)) ×
            0.870 (soiling, mismatch, wiring, degradation, optics) × (1 − 0.08 e^(−G/300))
            (weak light) × 0.975 (inverter) × the unit's own ±1 %), ±0.3 % noise;
            readings every 5 min while the sun is up, energy_kwh a running total to
            0.1 kWh (the trapezoid of its own readings)
          - the grid export meter (every 15 min, day and night): 0.985 × the inverters'
            totals (transformer and line losses), to 0.01 kWh; PR comes out 80–83 %
          - two pyranometers (WS-1, WS-2; ±1.5 % calibration each, ±2 W/m² noise) every
            5 min day and night, with the module temperature
          - hourly heartbeats from every device
charging  A 20-pile DC station in Pudong, Shanghai (default start 2026-11-23): drivers
          arrive as a Poisson stream of ~244 a day peaking at noon (19/h) and in the
          evening (20/h), quiet at night (2/h); each takes a free pile (none free: they
          leave), 20–60 kWh at 40–100 kW plus 2–6 min plugging in; the pile sends one
          ``charge`` reading 5–60 s after the session ends, and about 1 % again under a
          new seq 5–15 min later (a retried upload); hourly heartbeats
========= ==================================================================================

Incidents (``incidents=None``: all of the scenario's; they need ``days`` ≥ 6 for solar,
≥ 10 for charging). Times are drawn from the stream ("<scenario>", "incidents") whichever
are enabled; day 0 is always clean.

=========================== ===================== ==========================================
scenario / incident         expected rule         signal in the readings
=========================== ===================== ==========================================
solar soiling_or_fault      low_performance       from local midnight of a day 1..days − 5
                                                  to the end, every inverter gives 80 % (a
                                                  dust storm's soiling or a string fault):
                                                  PR ~65 %, under the 75 % floor on every
                                                  judged day; items: the plant
solar inverter_down         inverter_down         one inverter reports 0 kW (energy frozen)
                                                  for 3–5 h from 09:30–11:59 of a day that
                                                  is not overcast, then recovers; items:
                                                  its name and device
solar meter_silent          meter_silent          the grid meter sends nothing (readings and
                                                  heartbeats) for 3–4 h from 09:00–11:59;
                                                  its total catches up at once after, the
                                                  day's export is unchanged
charging revenue_shortfall  low_revenue           from local midnight of a day days − 6 ..
                                                  days − 4 to the end, drivers arrive at
                                                  30 % of the usual rate (a competitor
                                                  opened next door): the 7-day revenue falls
                                                  under the floor
=========================== ===================== ==========================================

Subjects: solar ``{plant, site, dc_kwp, inverters, latitude, longitude, tilt_deg,
utc_offset, rules}``, charging ``{station, site, piles, utc_offset, rules}``; ``rules`` is
the JSON of oracles.energy.SolarRules / StationRules (money as decimal strings) that the
scenario was sized for, and ``solar_rules`` / ``station_rules`` build them. The revenue
floors: solar, 25 % of a week of clear days at PR 81 % (a bad week of weather still
clears it); charging, 75 % of the expected week (244 sessions a day × 40 kWh × 1.55
CNY/kWh).
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from ledger.errors import InvalidInput
from oracles.energy import SolarRules, StationRules
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
    _iso,
    _local_midnight,
    _Recorder,
    _rng,
    _unit,
    _when,
)

__all__ = [
    "CHARGING_INCIDENTS",
    "SOLAR_INCIDENTS",
    "charging",
    "solar",
    "solar_rules",
    "station_rules",
]

SOLAR_INCIDENTS: Final = ("soiling_or_fault", "inverter_down", "meter_silent")
CHARGING_INCIDENTS: Final = ("revenue_shortfall",)

_DEFAULT_START: Final = datetime(2026, 11, 23, tzinfo=_TZ)

# --- solar -------------------------------------------------------------------------------

_PLANT: Final = "urn:fourflow:plant:CN:JS:YZ-PV-018"
_PV_SITE: Final = "js-yz-pv018"
_LAT: Final = 32.4
_LON: Final = 119.4
_TILT: Final = 25.0
_DC_KWP: Final = 6000.0
_DC_AC: Final = 1.15
_DC_LOSS: Final = 0.870
_INVERTER_EFF: Final = 0.975
_EXPORT_LOSS: Final = 0.985
_GAMMA: Final = -0.0035  # per °C above 25
_HAZE: Final = 0.85  # the Yangtze delta's aerosols: Haurwitz's clear sky is too clear there
_LOW_LIGHT: Final = 0.08  # relative efficiency lost at low irradiance: 8 % × e^(−G/300)
_PV_TARIFF: Final = "0.391"  # Jiangsu's coal benchmark price, CNY/kWh
_SAMPLE: Final = 5 * _MIN
_SOILING: Final = 0.80


def solar(
    *,
    days: int,
    seed: int,
    inverters: int = 20,
    incidents: Sequence[str] | None = None,
    start: datetime | None = None,
) -> Scenario:
    """A 6 MWp solar plant in Jiangsu for ``days`` days (see the module docstring)."""
    _check_range("days", days, 1, 366)
    _check_range("inverters", inverters, 2, 100)
    chosen = _chosen(incidents, SOLAR_INCIDENTS)
    if chosen and days < 6:
        raise InvalidInput(
            f"solar incidents need days >= 6, got {days}", field="days", code="too_short"
        )
    first = _local_midnight(start, _DEFAULT_START)
    return _Solar(
        days=days, seed=seed, n=inverters, start_ms=int(first.timestamp() * 1000), chosen=chosen
    ).scenario()


def solar_rules(scenario: Scenario) -> SolarRules:
    """The SolarRules the solar ``scenario`` was sized for."""
    return SolarRules(**scenario.subject["rules"])  # lists and decimal strings are fine


def _clear_poa(t_ms: int) -> float:
    """Clear-sky irradiance on the tilted plane (W/m²) at a moment."""
    moment = datetime.fromtimestamp(t_ms / 1000, _TZ)
    n = moment.timetuple().tm_yday
    decl = math.radians(23.45 * math.sin(math.radians(360 / 365 * (284 + n))))
    b = math.radians(360 * (n - 81) / 364)
    eot = 9.87 * math.sin(2 * b) - 7.53 * math.cos(b) - 1.5 * math.sin(b)
    clock_h = moment.hour + moment.minute / 60 + moment.second / 3600
    solar_h = clock_h + (4 * (_LON - 120) + eot) / 60
    omega = math.radians(15 * (solar_h - 12))
    lat, tilt = math.radians(_LAT), math.radians(_TILT)
    cos_z = math.sin(lat) * math.sin(decl) + math.cos(lat) * math.cos(decl) * math.cos(omega)
    if cos_z <= 0.01:
        return 0.0
    ghi = _HAZE * 1098 * cos_z * math.exp(-0.057 / cos_z)
    beam_h, diffuse = 0.85 * ghi, 0.15 * ghi
    dni = min(950.0, beam_h / cos_z)
    cos_i = math.sin(decl) * math.sin(lat - tilt) + math.cos(decl) * math.cos(
        lat - tilt
    ) * math.cos(omega)
    return (
        dni * max(0.0, cos_i)
        + diffuse * (1 + math.cos(tilt)) / 2
        + 0.2 * ghi * (1 - math.cos(tilt)) / 2
    )


class _Sky:
    """One day's cloud transmittance: clear, broken or overcast."""

    def __init__(self, rng: random.Random, kind: str) -> None:
        self.kind = kind
        if kind == "clear":
            self.base, self.swing = rng.uniform(0.95, 0.99), 0.01
        elif kind == "broken":
            self.base, self.swing = rng.uniform(0.55, 0.80), 0.35
        else:
            self.base, self.swing = rng.uniform(0.15, 0.35), 0.05
        self.waves = [
            (rng.uniform(20, 110) * _MIN, rng.uniform(0, 2 * math.pi), rng.random())
            for _ in range(4)
        ]
        total = sum(w for _, _, w in self.waves)
        self.waves = [(p, phase, w / total) for p, phase, w in self.waves]
        self.air_c = rng.uniform(9, 14) - (2 if kind == "overcast" else 0)

    def transmittance(self, t_ms: int) -> float:
        wave = sum(w * math.sin(2 * math.pi * t_ms / p + phase) for p, phase, w in self.waves)
        return min(1.0, max(0.12, self.base + self.swing * wave))

    def air(self, t_ms: int, day_ms: int) -> float:
        hour = (t_ms - day_ms) / _HOUR
        return self.air_c + (4 if self.kind != "overcast" else 1.5) * math.sin(
            2 * math.pi * (hour - 9) / 24
        )


class _Solar:
    def __init__(
        self, *, days: int, seed: int, n: int, start_ms: int, chosen: frozenset[str]
    ) -> None:
        self.days, self.seed, self.n, self.start_ms = days, seed, n, start_ms
        self.end_ms = start_ms + days * _DAY
        self.rec = _Recorder(seed=seed, site=_PV_SITE)
        self.names = [f"INV-{i + 1:02d}" for i in range(n)]
        self.kwp = _DC_KWP / n
        self.inverters = [
            self.rec.device(
                f"inverter-{i + 1:02d}", {"inverter"}, subject=_PLANT, heartbeat_s=7_200
            )
            for i in range(n)
        ]
        self.meter = self.rec.device(
            "grid-meter", {"grid_meter"}, subject=_PLANT, heartbeat_s=3_600
        )
        self.stations = [
            self.rec.device(f"weather-{s}", {"weather"}, subject=_PLANT, heartbeat_s=1_800)
            for s in (1, 2)
        ]
        self.skies = self._skies()
        self.incidents: list[Incident] = []
        self.soiling_ms = _NEVER
        self.down: tuple[int, int, int] = (-1, _NEVER, _NEVER)  # inverter, from, to
        self._plan(chosen)

    def _skies(self) -> list[_Sky]:
        skies: list[_Sky] = []
        for d in range(self.days):
            rng = _rng(self.seed, "solar", "sky", d)
            draw = rng.random()
            kind = "clear" if draw < 0.45 else "broken" if draw < 0.85 else "overcast"
            recent = [s.kind for s in skies[-6:]]
            if kind == "overcast" and (recent.count("overcast") >= 2 or d == 0):
                kind = "broken"
            skies.append(_Sky(rng, kind))
        return skies

    def _plan(self, chosen: frozenset[str]) -> None:
        rng = _rng(self.seed, "solar", "incidents")
        d = self.days
        soiling_day = rng.randint(1, max(1, d - 5))
        sunny = [x for x in range(1, d) if self.skies[x].kind != "overcast"] or [d - 1]
        down_day = rng.choice(sunny)
        down_at = self._at(down_day, 9.5) + rng.randrange(150) * _MIN
        down_for = rng.randrange(180, 301) * _MIN
        down_unit = rng.randrange(self.n)
        silent_at = self._at(rng.randint(1, max(1, d - 1)), 9) + rng.randrange(180) * _MIN
        silent_for = rng.randrange(180, 241) * _MIN
        found: list[Incident] = []
        if "soiling_or_fault" in chosen:
            self.soiling_ms = self._at(soiling_day, 0)
            found.append(Incident(
                "soiling_or_fault", self.soiling_ms, None, _PLANT,
                f"every inverter gives {_SOILING:.0%} from {_when(self.start_ms, self.soiling_ms)} "
                "(soiling or a string fault): PR ~65 %, under the 75 % floor",
                "low_performance", (_PLANT,),
            ))  # fmt: skip
        if "inverter_down" in chosen:
            self.down = (down_unit, down_at, down_at + down_for)
            found.append(Incident(
                "inverter_down", down_at, down_at + down_for, self.names[down_unit],
                f"{self.names[down_unit]} at 0 kW for {down_for // _MIN} min from "
                f"{_when(self.start_ms, down_at)}, still reporting",
                "inverter_down", (self.names[down_unit], self.inverters[down_unit]),
            ))  # fmt: skip
        if "meter_silent" in chosen:
            self.rec.silent[self.meter] = (silent_at, silent_at + silent_for)
            found.append(Incident(
                "meter_silent", silent_at, silent_at + silent_for, self.meter,
                f"grid export meter silent for {silent_for // _MIN} min from "
                f"{_when(self.start_ms, silent_at)}: no readings, no heartbeats",
                "meter_silent", (self.meter,),
            ))  # fmt: skip
        self.incidents = sorted(found, key=lambda i: i.start_ms)

    def _at(self, day: int, hours: float) -> int:
        return self.start_ms + day * _DAY + int(hours * _HOUR)

    def scenario(self) -> Scenario:
        self._readings()
        _heartbeats(
            self.rec,
            [*self.inverters, self.meter, *self.stations],
            seed=self.seed,
            start_ms=self.start_ms,
            days=self.days,
        )
        subject = {
            "plant": _PLANT,
            "site": _PV_SITE,
            "dc_kwp": _DC_KWP,
            "inverters": list(self.names),
            "latitude": _LAT,
            "longitude": _LON,
            "tilt_deg": _TILT,
            "utc_offset": _UTC_OFFSET,
            "rules": self._rules(),
        }
        return self.rec.scenario(
            "solar",
            start_ms=self.start_ms,
            days=self.days,
            subject=subject,
            incidents=self.incidents,
        )

    def _rules(self) -> dict[str, Any]:
        clear_kwh_m2 = sum(_clear_poa(self.start_ms + s * _SAMPLE) for s in range(288)) / 12_000
        week_cny = 7 * _DC_KWP * clear_kwh_m2 * 0.81 * float(_PV_TARIFF)
        return {
            "plant": _PLANT,
            "dc_kwp": _DC_KWP,
            "inverters": list(self.names),
            "tariff_cny_per_kwh": _PV_TARIFF,
            "min_pr_pct": 75.0,
            "min_window_revenue_cny": str(round(0.25 * week_cny)),
            "floor_days": 3,
            "min_insolation_kwh_m2": 1.0,
            "revenue_window_days": 7,
            "utc_offset": _UTC_OFFSET,
        }

    def _readings(self) -> None:
        rngs = [_rng(self.seed, "solar", "inverter", i) for i in range(self.n)]
        units = [1 + 0.02 * (_unit(self.seed, "pv-unit", i) - 0.5) for i in range(self.n)]
        offsets = [int(_unit(self.seed, "pv-offset", i) * 50_000) for i in range(self.n)]
        totals = [800_000 + 1_600_000 * _unit(self.seed, "pv-total", i) for i in range(self.n)]
        last = [(-_NEVER, 0.0)] * self.n
        export0 = 20_000_000 + 5_000_000 * _unit(self.seed, "meter-total")
        produced = 0.0
        ws_rngs = [_rng(self.seed, "solar", "weather", s) for s in range(2)]
        ws_bias = [1 + 0.03 * (_unit(self.seed, "ws-bias", s) - 0.5) for s in range(2)]
        ws_offset = [int(_unit(self.seed, "ws-offset", s) * 30_000) for s in range(2)]
        rating = self.kwp / _DC_AC
        unit, down_from, down_to = self.down
        for d in range(self.days):
            day_ms = self._at(d, 0)
            sky = self.skies[d]
            for slot in range(_DAY // _SAMPLE):
                slot_ms = day_ms + slot * _SAMPLE
                for s, station in enumerate(self.stations):
                    t = slot_ms + ws_offset[s]
                    poa = _clear_poa(t) * sky.transmittance(t)
                    noise = ws_rngs[s].gauss(0, 2)
                    g = max(0.0, poa * ws_bias[s] + noise) if poa > 0 else 0.0
                    module = sky.air(t, day_ms) + 0.03 * poa
                    data = {
                        "station": f"WS-{s + 1}",
                        "irradiance_wm2": round(g, 1),
                        "module_temp_c": round(module, 1),
                    }
                    self.rec.emit(t, station, "weather", data)
                for i, device in enumerate(self.inverters):
                    t = slot_ms + offsets[i]
                    noise = rngs[i].gauss(0, 0.003)
                    clear = _clear_poa(t)
                    if clear <= 0:
                        continue  # asleep at night
                    poa = clear * sky.transmittance(t)
                    module = sky.air(t, day_ms) + 0.03 * poa
                    dc = self.kwp * poa / 1000 * (1 + _GAMMA * (module - 25)) * _DC_LOSS
                    dc *= 1 - _LOW_LIGHT * math.exp(-poa / 300)  # weak light: lower efficiency
                    power = min(rating, dc * _INVERTER_EFF * units[i]) * (1 + noise)
                    if t >= self.soiling_ms:
                        power *= _SOILING
                    if i == unit and down_from <= t < down_to:
                        power = 0.0
                    power = round(max(0.0, power), 2)
                    previous_t, previous_p = last[i]
                    if t - previous_t <= 2 * _SAMPLE:
                        kwh = (previous_p + power) / 2 * (t - previous_t) / _HOUR
                        totals[i] += kwh
                        produced += kwh
                    last[i] = (t, power)
                    self.rec.emit(
                        t,
                        device,
                        "inverter",
                        {
                            "inverter": self.names[i],
                            "power_kw": power,
                            "energy_kwh": round(totals[i], 1),
                        },
                    )
                if slot % 3 == 0:
                    t = slot_ms + 55_000  # after every inverter's reading of the slot
                    export = round(export0 + _EXPORT_LOSS * produced, 2)
                    self.rec.emit(
                        t, self.meter, "grid_meter", {"meter": "GM-1", "export_kwh": export}
                    )


# --- charging ----------------------------------------------------------------------------

_STATION: Final = "urn:fourflow:station:CN:SH:PD-018"
_EV_SITE: Final = "sh-pd-ev018"
_ENERGY_TARIFF: Final = "0.75"  # CNY/kWh, Shanghai commercial electricity (time-of-use mean)
_SERVICE_FEE: Final = "0.80"  # CNY/kWh
# arrivals per hour at the station, by local hour: night, noon peak, evening peak
_ARRIVALS: Final = (
    3, 2, 2, 2, 2, 3, 5, 8, 10, 11, 13, 17,
    19, 16, 11, 10, 11, 15, 19, 20, 17, 13, 9, 6,
)  # fmt: skip
_SHORTFALL: Final = 0.30


def charging(
    *,
    days: int,
    seed: int,
    piles: int = 20,
    incidents: Sequence[str] | None = None,
    start: datetime | None = None,
) -> Scenario:
    """A DC charging station in Shanghai for ``days`` days (see the module docstring)."""
    _check_range("days", days, 1, 366)
    _check_range("piles", piles, 2, 200)
    chosen = _chosen(incidents, CHARGING_INCIDENTS)
    if chosen and days < 10:
        raise InvalidInput(
            f"charging incidents need days >= 10, got {days}", field="days", code="too_short"
        )
    first = _local_midnight(start, _DEFAULT_START)
    return _Charging(
        days=days, seed=seed, n=piles, start_ms=int(first.timestamp() * 1000), chosen=chosen
    ).scenario()


def station_rules(scenario: Scenario) -> StationRules:
    """The StationRules the charging ``scenario`` was sized for."""
    return StationRules(**scenario.subject["rules"])


class _Charging:
    def __init__(
        self, *, days: int, seed: int, n: int, start_ms: int, chosen: frozenset[str]
    ) -> None:
        self.days, self.seed, self.n, self.start_ms = days, seed, n, start_ms
        self.end_ms = start_ms + days * _DAY
        self.rec = _Recorder(seed=seed, site=_EV_SITE)
        self.names = [f"P{i + 1:02d}" for i in range(n)]
        self.piles = [
            self.rec.device(f"pile-{i + 1:02d}", {"charge"}, subject=_STATION, heartbeat_s=7_200)
            for i in range(n)
        ]
        self.scale = n / 20  # arrivals grow with the station
        rng = _rng(seed, "charging", "incidents")
        shortfall_day = rng.randint(max(1, days - 6), max(1, days - 4))
        self.shortfall_ms = _NEVER
        self.incidents: list[Incident] = []
        if "revenue_shortfall" in chosen:
            self.shortfall_ms = start_ms + shortfall_day * _DAY
            self.incidents.append(Incident(
                "revenue_shortfall", self.shortfall_ms, None, _STATION,
                f"drivers arrive at {_SHORTFALL:.0%} of the usual rate from "
                f"{_when(start_ms, self.shortfall_ms)} (a competitor opened next door)",
                "low_revenue", (_STATION,),
            ))  # fmt: skip

    def scenario(self) -> Scenario:
        self._sessions()
        _heartbeats(self.rec, self.piles, seed=self.seed, start_ms=self.start_ms, days=self.days)
        week_cny = (
            7 * sum(_ARRIVALS) * self.scale * 40 * (float(_ENERGY_TARIFF) + float(_SERVICE_FEE))
        )
        rules = {
            "station": _STATION,
            "piles": list(self.names),
            "energy_tariff_cny_per_kwh": _ENERGY_TARIFF,
            "service_fee_cny_per_kwh": _SERVICE_FEE,
            "min_window_revenue_cny": str(round(0.75 * week_cny)),
            "revenue_window_days": 7,
            "utc_offset": _UTC_OFFSET,
        }
        subject = {
            "station": _STATION,
            "site": _EV_SITE,
            "piles": list(self.names),
            "utc_offset": _UTC_OFFSET,
            "rules": rules,
        }
        return self.rec.scenario(
            "charging",
            start_ms=self.start_ms,
            days=self.days,
            subject=subject,
            incidents=self.incidents,
        )

    def _sessions(self) -> None:
        free_at = [self.start_ms] * self.n
        for d in range(self.days):
            rng = _rng(self.seed, "charging", "arrivals", d)
            day_ms = self.start_ms + d * _DAY
            stamp = datetime.fromtimestamp(day_ms / 1000, _TZ).strftime("%Y%m%d")
            count = 0
            for hour, rate in enumerate(_ARRIVALS):
                t = day_ms + hour * _HOUR
                hour_end = t + _HOUR
                while True:
                    factor = _SHORTFALL if t >= self.shortfall_ms else 1.0
                    t += int(rng.expovariate(rate * self.scale * factor) * _HOUR)
                    if t >= hour_end:
                        break
                    energy = round(rng.uniform(20, 60), 2)
                    power_kw = rng.uniform(40, 100)
                    plug = rng.randrange(120_000, 360_000)
                    auth = rng.randrange(30_000, 120_000)
                    upload = rng.randrange(5_000, 60_000)
                    again = rng.random() < 0.01
                    resend = rng.randrange(5, 16) * _MIN
                    order = rng.sample(range(self.n), self.n)
                    free = [p for p in order if free_at[p] <= t]
                    if not free:
                        continue  # every pile busy: the driver goes elsewhere
                    pile = free[0]
                    count += 1
                    begin = t + auth
                    end = begin + int(energy / power_kw * _HOUR) + plug
                    free_at[pile] = end
                    data = {
                        "pile": self.names[pile],
                        "session": f"PD018-{stamp}-{count:04d}",
                        "start": _iso(begin),
                        "end": _iso(end),
                        "energy_kwh": energy,
                    }
                    self.rec.emit(end + upload, self.piles[pile], "charge", data)
                    if again:
                        self.rec.emit(end + upload + resend, self.piles[pile], "charge", data)
