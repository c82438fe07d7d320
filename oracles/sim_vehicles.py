"""A simulated car dealer under floor-plan finance (汽车金融): financed vehicles with
GPS/BeiDou trackers on a lot in Chengdu, their certificates (合格证) and keys in a safe
watched by an RFID reader, test drives, paid-off sales, and incidents at known times.

Pure and deterministic, as oracles.simulate: the same (seed, days, vehicles, start,
incidents) gives byte-identical readings; every random choice comes from a stream named
after what it drives, and the incidents and sales are drawn from their own streams
whichever incidents are enabled, so a run with incidents is its clean run plus the
incidents' signals (test drives never use a vehicle that is sold or in an incident).

The dealer (UTC+08:00; the run starts at local midnight of ``start``, default
2026-11-23, a Monday)

- the lot: a five-sided yard of about 110 m × 150 m in Wuhou district (30.5700 N,
  104.0650 E); each vehicle has a parking spot at least 14 m inside the fence
- ``vehicles`` financed vehicles (default 40), VINs of Chinese makers (WMI LSV SAIC
  Volkswagen, LFV FAW-Volkswagen, LGB Dongfeng Nissan, LGX BYD, LVS Changan Ford), model
  years 2025 and 2026, with a valid check digit (``oracles.vehicles.vin_check_digit``)
- a tracker per vehicle: a position every 10 min while parked (GPS noise σ 3 m, at most
  8 m), every minute while moving, speed in km/h, power "external"; every 30 min on
  its backup battery
- certificates and key fobs carry UHF tags (GIAI ``urn:epc:id:giai:6901234.HGZ<VIN>``,
  ``….KEY<VIN>``); the safe's reader (zone "safe") reads them "out" and "in", and sends
  hourly heartbeats
- test drives in business hours (09:30–18:00): 3–6 a weekday, 6–10 a weekend day, on
  different vehicles; the keys go out 30–90 min, the vehicle leaves 3–8 min later,
  drives 2–25 km out and back at 20–35 km/h on average, and is back 3–8 min before the
  keys
- sales paid off: about 0.6 a day (1 to 4 in a run), from day 1 on (day 0 in a one-day
  run): released on-chain (``releases``, 10:00–15:30), 20–40 min later the certificate
  and keys go out together, 10–20 min later the vehicle drives 5–25 km to its buyer
  and stays there (its tracker still reports)

Incidents (``incidents=None``: all of them; with two or more days they fall on day 1 or
later; items name what each concerns)

============================= ===================== =====================================
incident                      expected rule         signal in the readings
============================= ===================== =====================================
sold_unpaid                   unauthorized_movement a vehicle sold without release
                                                    (10:00–16:00): certificate and keys
                                                    out, it drives 20–60 km away and never
                                                    returns; also raises certificate_out
                                                    at once and keys_out, and
                                                    unauthorized_movement once the keys
                                                    have been out ``keys_out_hours``
                                                    (no longer a test drive); items: VIN,
                                                    certificate tag, key tag
certificate_pledged_elsewhere certificate_out       a certificate taken out of the safe at
                                                    night (22:00–02:00; 21:00–23:30 of the
                                                    last day in a short run), never back;
                                                    the vehicle stays; items: VIN, tag
tracker_unplugged             tracker_unplugged     19:00–22:00 a tracker goes on its
                                                    battery for 2–5 h (reporting every
                                                    30 min), the vehicle stays on the lot;
                                                    items: VIN, tracker
tracker_silent                tracker_silent        a tracker sends nothing for 6–10 h
                                                    from 08:00–14:00; items: tracker
============================= ===================== =====================================

Subject: ``{dealer, site, vehicles, lot (closed ring of [lon, lat]), certificates {vin:
tag}, keys {vin: tag}, safe_zone, hours, keys_out_hours, utc_offset}``;
``rules_config`` turns it into ``oracles.vehicles.DealerRules`` arguments. Devices: the
trackers (``vehicle_gps``, heartbeat 3 600 s) and the safe reader (``tag_read``,
7 200 s), all watching the dealer.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from oracles.simulate import (
    _DAY,
    _HOUR,
    _MIN,
    _TZ,
    _UTC_OFFSET,
    Incident,
    Scenario,
    _between,
    _check_range,
    _chosen,
    _heartbeats,
    _local_midnight,
    _pick_day,
    _Recorder,
    _rng,
    _unit,
    _when,
)
from oracles.vehicles import vin_check_digit

__all__ = ["DEALER_INCIDENTS", "dealer", "rules_config"]

DEALER_INCIDENTS: Final = (
    "sold_unpaid",
    "certificate_pledged_elsewhere",
    "tracker_unplugged",
    "tracker_silent",
)

_SITE: Final = "cd-wuhou-dealer"
_DEALER: Final = "urn:fourflow:dealer:CN:SC-CD:D0117"
_GIAI: Final = "urn:epc:id:giai:6901234"
_SAFE: Final = "safe"
_HOURS: Final = ("09:00", "18:00")
_KEYS_OUT_HOURS: Final = 4.0
# (lat, lon): a five-sided yard, gate on the south side
_LOT: Final = (
    (30.57000, 104.06500),
    (30.57000, 104.06640),
    (30.57080, 104.06660),
    (30.57110, 104.06580),
    (30.57090, 104.06500),
)
_GATE: Final = (30.57000, 104.06570)
_PARKING: Final = (30.57015, 104.06515, 30.57070, 104.06620)  # south, west, north, east
_M_LAT: Final = 110_574.0
_M_LON: Final = 111_320.0 * math.cos(math.radians(30.5705))
_PARKED_EVERY: Final = 10 * _MIN
_MOVING_EVERY: Final = _MIN
_BATTERY_EVERY: Final = 3  # parked slots: every 30 min on battery
# WMI, VDS (positions 4-8) choices, plant codes (position 11)
_MAKERS: Final = (
    ("LSV", ("AU2A3", "AL4F2", "DN6C1"), "2Y"),
    ("LFV", ("2A21K", "3A23C", "2B28U"), "3C"),
    ("LGB", ("H52E2", "K92E5", "F12A1"), "4W"),
    ("LGX", ("C16DF", "E26HC"), "BS"),
    ("LVS", ("HFAE2", "HCAM1"), "1C"),
)


@dataclass(frozen=True)
class _Trip:
    """A vehicle moving from the gate: out and back (a test drive) or away for good."""

    leave_ms: int
    end_ms: int  # back at the gate, or arrived
    bearing: float  # radians, clockwise from north
    reach_m: float
    returns: bool

    def at(self, t: int) -> tuple[float, float, float]:
        """(north m, east m, km/h) from the gate at ``t`` in [leave, end)."""
        span = self.end_ms - self.leave_ms
        f = (t - self.leave_ms) / span
        if self.returns:
            along = self.reach_m * math.sin(math.pi * f)
            side = 120 * math.sin(2 * math.pi * f)
            speed = self.reach_m * math.pi * abs(math.cos(math.pi * f)) / span * 3_600
        else:
            along = self.reach_m * f
            side = 0.04 * self.reach_m * math.sin(math.pi * f)
            speed = self.reach_m / span * 3_600
        north = along * math.cos(self.bearing) - side * math.sin(self.bearing)
        east = along * math.sin(self.bearing) + side * math.cos(self.bearing)
        return north, east, speed

    def parked_at(self) -> tuple[float, float]:
        """(north m, east m) from the gate where a departed vehicle stays."""
        return self.reach_m * math.cos(self.bearing), self.reach_m * math.sin(self.bearing)


def dealer(
    *,
    days: int,
    seed: int,
    vehicles: int = 40,
    incidents: Sequence[str] | None = None,
    start: datetime | None = None,
) -> Scenario:
    """A car dealer in Chengdu for ``days`` days (see the module docstring)."""
    _check_range("days", days, 1, 366)
    _check_range("vehicles", vehicles, 10, 200)
    chosen = _chosen(incidents, DEALER_INCIDENTS)
    first = _local_midnight(start, datetime(2026, 11, 23, tzinfo=_TZ))
    site = _Dealer(
        days=days,
        seed=seed,
        n=vehicles,
        start_ms=int(first.timestamp() * 1000),
        chosen=chosen,
    )
    return site.scenario()


def rules_config(scenario: Scenario) -> dict[str, Any]:
    """``oracles.vehicles.DealerRules`` arguments (JSON-safe) for a dealer scenario:
    ``DealerRules(**rules_config(s))``."""
    subject = scenario.subject
    ring = subject["lot"]
    return {
        "dealer": subject["dealer"],
        "vehicles": list(subject["vehicles"]),
        "lot": [[lat, lon] for lon, lat in ring[:-1]],  # rings are closed [lon, lat]
        "certificates": dict(subject["certificates"]),
        "keys": dict(subject["keys"]),
        "safe_zone": subject["safe_zone"],
        "keys_out_hours": subject["keys_out_hours"],
        "utc_offset": subject["utc_offset"],
    }


def _vins(seed: int, n: int) -> list[str]:
    vins: list[str] = []
    rng = _rng(seed, "dealer", "vins")
    while len(vins) < n:
        wmi, models, plants = rng.choice(_MAKERS)
        draft = (
            wmi
            + rng.choice(models)
            + "0"
            + rng.choice("ST")  # model year 2025 or 2026
            + rng.choice(plants)
            + f"{rng.randrange(1_000_000):06d}"
        )
        vin = draft[:8] + vin_check_digit(draft) + draft[9:]
        if vin not in vins:
            vins.append(vin)
    return sorted(vins)


def _offset(point: tuple[float, float], north: float, east: float) -> tuple[float, float]:
    return round(point[0] + north / _M_LAT, 6), round(point[1] + east / _M_LON, 6)


class _Dealer:
    def __init__(
        self, *, days: int, seed: int, n: int, start_ms: int, chosen: frozenset[str]
    ) -> None:
        self.days, self.seed, self.n = days, seed, n
        self.start_ms = start_ms
        self.end_ms = start_ms + days * _DAY
        self.vins = _vins(seed, n)
        self.certificates = {vin: f"{_GIAI}.HGZ{vin}" for vin in self.vins}
        self.keys = {vin: f"{_GIAI}.KEY{vin}" for vin in self.vins}
        self.rec = _Recorder(seed=seed, site=_SITE)
        self.trackers = [
            self.rec.device(
                f"tracker-{i + 1:03d}", {"vehicle_gps"}, subject=_DEALER, heartbeat_s=3_600
            )
            for i in range(n)
        ]
        self.reader = self.rec.device(
            "safe-reader", {"tag_read"}, subject=_DEALER, heartbeat_s=7_200
        )
        self.spots = self._spots()
        self.trips: list[list[_Trip]] = [[] for _ in range(n)]
        self.battery: dict[int, tuple[int, int]] = {}
        self.releases: list[tuple[int, list[str]]] = []
        self.incidents: list[Incident] = []
        reserved = self._sales()
        reserved |= self._plan(chosen, reserved)
        self._test_drives(reserved)

    def _day(self, index: int) -> int:
        return self.start_ms + index * _DAY

    def _spots(self) -> list[tuple[float, float]]:
        south, west, north, east = _PARKING
        cols = math.ceil(math.sqrt(self.n * 1.4))
        rows = math.ceil(self.n / cols)
        order = list(range(cols * rows))
        _rng(self.seed, "dealer", "spots").shuffle(order)
        return [
            (
                round(south + (north - south) * (k // cols + 0.5) / rows, 6),
                round(west + (east - west) * (k % cols + 0.5) / cols, 6),
            )
            for k in order[: self.n]
        ]

    def _read(self, t: int, tags: list[str], direction: str) -> None:
        data = {"tags": tags, "zone": _SAFE, "direction": direction}
        self.rec.emit(t, self.reader, "tag_read", data)

    def _away(self, i: int, leave: int, reach_m: float, kmh: float, bearing: float) -> None:
        arrive = leave + round(reach_m / (kmh / 3.6)) * 1000
        self.trips[i].append(_Trip(leave, arrive, bearing, reach_m, returns=False))

    # paid-off sales, drawn from their own stream
    def _sales(self) -> set[int]:
        rng = _rng(self.seed, "dealer", "sales")
        count = max(1, min(4, round(0.6 * self.days)))
        sold = rng.sample(range(self.n), count)
        for i in sold:
            vin = self.vins[i]
            released = _between(rng, self._day(_pick_day(rng, self.days)), 10, 15.5)
            handed = released + rng.randint(20, 40) * _MIN
            leave = handed + rng.randint(10, 20) * _MIN
            reach = rng.uniform(5_000, 25_000)
            kmh = rng.uniform(25, 40)
            bearing = math.radians(rng.uniform(100, 260))
            self.releases.append((released, [vin]))
            self._read(handed, [self.certificates[vin], self.keys[vin]], "out")
            self._away(i, leave, reach, kmh, bearing)
        self.releases.sort()
        return set(sold)

    # incidents, drawn whether enabled or not so each keeps its time and vehicle
    def _plan(self, chosen: frozenset[str], sold: set[int]) -> set[int]:
        rng = _rng(self.seed, "dealer", "incidents")
        d = self.days
        unpaid, pledged, unplugged, silent = rng.sample(
            [i for i in range(self.n) if i not in sold], 4
        )
        unpaid_at = _between(rng, self._day(_pick_day(rng, d)), 10, 16)
        unpaid_leave = unpaid_at + rng.randint(8, 20) * _MIN
        unpaid_reach, unpaid_kmh = rng.uniform(20_000, 60_000), rng.uniform(35, 60)
        unpaid_bearing = math.radians(rng.uniform(100, 260))
        pledged_at = (
            _between(rng, self._day(_pick_day(rng, d, last=d - 2)), 22, 26)
            if d >= 3
            else _between(rng, self._day(d - 1), 21, 23.5)
        )
        unplugged_at = _between(rng, self._day(_pick_day(rng, d)), 19, 22)
        unplugged_for = rng.randint(2 * 60, 5 * 60) * _MIN
        silent_at = _between(rng, self._day(_pick_day(rng, d)), 8, 14)
        silent_for = rng.randint(6 * 60, 10 * 60) * _MIN

        def end(ms: int) -> int | None:
            return ms if ms < self.end_ms else None

        vin = self.vins
        found: list[Incident] = []
        if "sold_unpaid" in chosen:
            self._read(unpaid_at, [self.certificates[vin[unpaid]], self.keys[vin[unpaid]]], "out")
            self._away(unpaid, unpaid_leave, unpaid_reach, unpaid_kmh, unpaid_bearing)
            found.append(Incident(
                "sold_unpaid", unpaid_at, None, vin[unpaid],
                f"{vin[unpaid]} sold without release ({_when(self.start_ms, unpaid_at)}): "
                f"certificate and keys out, driven {unpaid_reach / 1000:.1f} km away, never back",
                "unauthorized_movement",
                (vin[unpaid], self.certificates[vin[unpaid]], self.keys[vin[unpaid]]),
            ))  # fmt: skip
        if "certificate_pledged_elsewhere" in chosen:
            self._read(pledged_at, [self.certificates[vin[pledged]]], "out")
            found.append(Incident(
                "certificate_pledged_elsewhere", pledged_at, None, vin[pledged],
                f"certificate of {vin[pledged]} taken out of the safe at night "
                f"({_when(self.start_ms, pledged_at)}) and not returned; the vehicle stays",
                "certificate_out", (vin[pledged], self.certificates[vin[pledged]]),
            ))  # fmt: skip
        if "tracker_unplugged" in chosen:
            self.battery[unplugged] = (unplugged_at, unplugged_at + unplugged_for)
            found.append(Incident(
                "tracker_unplugged", unplugged_at, end(unplugged_at + unplugged_for),
                vin[unplugged],
                f"tracker of {vin[unplugged]} unplugged for {unplugged_for / _HOUR:.1f} h from "
                f"{_when(self.start_ms, unplugged_at)}: on its battery, the vehicle on the lot",
                "tracker_unplugged", (vin[unplugged], self.trackers[unplugged]),
            ))  # fmt: skip
        if "tracker_silent" in chosen:
            silent_end = min(silent_at + silent_for, self.end_ms)
            self.rec.silent[self.trackers[silent]] = (silent_at, silent_end)
            found.append(Incident(
                "tracker_silent", silent_at, silent_end, self.trackers[silent],
                f"tracker of {vin[silent]} silent for {silent_for / _HOUR:.1f} h from "
                f"{_when(self.start_ms, silent_at)}",
                "tracker_silent", (self.trackers[silent],),
            ))  # fmt: skip
        self.incidents = sorted(found, key=lambda i: i.start_ms)
        return {unpaid, pledged, unplugged, silent}

    def _test_drives(self, reserved: set[int]) -> None:
        free = [i for i in range(self.n) if i not in reserved]
        for d in range(self.days):
            rng = _rng(self.seed, "dealer", "drives", d)
            day_ms = self._day(d)
            weekend = datetime.fromtimestamp(day_ms / 1000, _TZ).weekday() >= 5
            count = rng.randint(6, 10) if weekend else rng.randint(3, 6)
            for i in rng.sample(free, min(count, len(free))):
                minutes = rng.randint(30, 90)
                keys_out = _between(rng, day_ms, 9.5, 18 - minutes / 60)
                keys_in = keys_out + minutes * _MIN
                leave = keys_out + rng.randint(3, 8) * _MIN
                back = keys_in - rng.randint(3, 8) * _MIN
                kmh = rng.uniform(20, 35)
                reach = kmh / 3.6 * (back - leave) / 1000 / 2
                bearing = math.radians(rng.uniform(100, 260))
                self.trips[i].append(_Trip(leave, back, bearing, reach, returns=True))
                self._read(keys_out, [self.keys[self.vins[i]]], "out")
                self._read(keys_in, [self.keys[self.vins[i]]], "in")

    # readings

    def scenario(self) -> Scenario:
        for i in range(self.n):
            self._positions(i)
        _heartbeats(self.rec, [self.reader], seed=self.seed, start_ms=self.start_ms, days=self.days)
        subject = {
            "dealer": _DEALER,
            "site": _SITE,
            "vehicles": list(self.vins),
            "lot": [[lon, lat] for lat, lon in (*_LOT, _LOT[0])],
            "certificates": dict(self.certificates),
            "keys": dict(self.keys),
            "safe_zone": _SAFE,
            "hours": list(_HOURS),
            "keys_out_hours": _KEYS_OUT_HOURS,
            "utc_offset": _UTC_OFFSET,
        }
        return self.rec.scenario(
            "dealer",
            start_ms=self.start_ms,
            days=self.days,
            subject=subject,
            incidents=self.incidents,
            releases=self.releases,
        )

    def _positions(self, i: int) -> None:
        tracker, vin, spot = self.trackers[i], self.vins[i], self.spots[i]
        trips = sorted(self.trips[i], key=lambda trip: trip.leave_ms)
        battery = self.battery.get(i, (self.end_ms, self.end_ms))
        offset = int(_unit(self.seed, "tracker-offset", i) * _PARKED_EVERY)
        for d in range(self.days):
            rng = _rng(self.seed, "dealer", "gps", i, d)
            for slot in range(_DAY // _PARKED_EVERY):
                t = self._day(d) + slot * _PARKED_EVERY + offset
                north, east = (max(-8.0, min(8.0, rng.gauss(0, 3))) for _ in range(2))
                if any(trip.leave_ms <= t < trip.end_ms for trip in trips):
                    continue  # moving: the trip's own readings
                on_battery = battery[0] <= t < battery[1]
                if on_battery and slot % _BATTERY_EVERY:
                    continue
                gone = [trip for trip in trips if not trip.returns and trip.end_ms <= t]
                base = _offset(_GATE, *gone[0].parked_at()) if gone else spot
                lat, lon = _offset(base, north, east)
                power = "battery" if on_battery else "external"
                data = {"vin": vin, "lat": lat, "lon": lon, "speed_kmh": 0, "power": power}
                self.rec.emit(t, tracker, "vehicle_gps", data)
        for k, trip in enumerate(trips):
            rng = _rng(self.seed, "dealer", "trip", i, k)
            for t in range(trip.leave_ms, trip.end_ms, _MOVING_EVERY):
                north, east, kmh = trip.at(t)
                lat, lon = _offset(_GATE, north, east)
                speed = round(max(5.0, kmh * rng.uniform(0.8, 1.2)), 1)
                power = "battery" if battery[0] <= t < battery[1] else "external"
                data = {"vin": vin, "lat": lat, "lon": lon, "speed_kmh": speed, "power": power}
                self.rec.emit(t, tracker, "vehicle_gps", data)
