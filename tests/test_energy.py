"""oracles.energy and oracles.sim_energy: a solar plant's and a charging station's daily
figures (meter deltas across resets, trapezoid insolation with capped gaps, PR, revenue in
fen), each rule on its condition and not just short of it, once per episode, with its
evidence; a replay gives the same alarms; the simulator is deterministic, its clean runs
are quiet and each incident raises its rule.

Readings are really signed, with the simulator's libsecp256k1 signer (the same bytes as
``sign_reading``, ~40 µs instead of ~3 ms).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import InvalidInput
from oracles import energy
from oracles.energy import (
    RULES,
    SolarDay,
    SolarMonitor,
    SolarRules,
    StationDay,
    StationMonitor,
    StationRules,
)
from oracles.readings import Alarm, Device, Reading, reading_event_id
from oracles.sim_energy import (
    CHARGING_INCIDENTS,
    SOLAR_INCIDENTS,
    charging,
    solar,
    solar_rules,
    station_rules,
)
from oracles.simulate import Scenario, _Signer

PLANT = "urn:fourflow:plant:CN:JS:TEST-1"
STATION = "urn:fourflow:station:CN:SH:TEST-1"
LOCAL = timezone(timedelta(hours=8))
MIDNIGHT = datetime(2026, 11, 23, tzinfo=LOCAL)
DAYS = [(MIDNIGHT + timedelta(days=d)).date().isoformat() for d in range(10)]
HOUR = 3_600_000
MIN = 60_000

INV1, INV2, METER, WS, PILE1, PILE2 = (
    f"urn:fourflow:device:test:{name}"
    for name in ("inv-1", "inv-2", "meter", "ws", "pile-1", "pile-2")
)
KINDS = {
    INV1: ("inverter", PLANT, 7_200),
    INV2: ("inverter", PLANT, 7_200),
    METER: ("grid_meter", PLANT, 3_600),
    WS: ("weather", PLANT, 1_800),
    PILE1: ("charge", STATION, 7_200),
    PILE2: ("charge", STATION, 7_200),
}
SIGNERS = {device: _Signer(bytes([i + 1]) * 32) for i, device in enumerate(KINDS)}
DEVICES = {
    device: Device(
        id=device,
        address=SIGNERS[device].address,
        kinds=frozenset({kind}),
        site="test",
        subject=subject,
        heartbeat_s=heartbeat,
    )
    for device, (kind, subject, heartbeat) in KINDS.items()
}


def solar_rules_(**changes: Any) -> SolarRules:
    values: dict[str, Any] = {
        "plant": PLANT,
        "dc_kwp": 100.0,
        "inverters": frozenset({"INV-1", "INV-2"}),
        "tariff_cny_per_kwh": Decimal("0.391"),
        "min_pr_pct": 75.0,
        "min_window_revenue_cny": Decimal(0),
        "floor_days": 3,
        "revenue_window_days": 3,
    }
    return SolarRules(**{**values, **changes})


def station_rules_(**changes: Any) -> StationRules:
    values: dict[str, Any] = {
        "station": STATION,
        "piles": frozenset({"P1", "P2"}),
        "energy_tariff_cny_per_kwh": Decimal("0.75"),
        "service_fee_cny_per_kwh": Decimal("0.80"),
        "min_window_revenue_cny": Decimal(0),
        "revenue_window_days": 2,
    }
    return StationRules(**{**values, **changes})


def ms(hours: float, day: int = 0) -> int:
    moment = MIDNIGHT + timedelta(days=day, hours=hours)
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


def at(hours: float, day: int = 0) -> str:
    return (MIDNIGHT + timedelta(days=day, hours=hours)).isoformat(timespec="milliseconds")


class Feed:
    """Signed readings with per-device sequence numbers, as the devices send them."""

    def __init__(self) -> None:
        self.seq: Counter[str] = Counter()
        self.generated = self.exported = 0.0

    def reading(self, device: str, kind: str, time: str, **data: Any) -> Reading:
        seq = self.seq[device]
        self.seq[device] += 1
        unsigned = {"device": device, "seq": seq, "time": time, "kind": kind, "data": data}
        return Reading.model_validate({**unsigned, "signature": SIGNERS[device].sign(unsigned)})

    def inverter(self, time: str, kw: float, kwh: float, device: str = INV1) -> Reading:
        name = "INV-1" if device == INV1 else "INV-2"
        return self.reading(device, "inverter", time, inverter=name, power_kw=kw, energy_kwh=kwh)

    def meter(self, time: str, kwh: float) -> Reading:
        return self.reading(METER, "grid_meter", time, meter="GM-1", export_kwh=kwh)

    def weather(self, time: str, g: float) -> Reading:
        return self.reading(WS, "weather", time, station="WS-1", irradiance_wm2=g)

    def charge(
        self, start: str, end: str, kwh: float, pile: str = "P1", session: str = "S1"
    ) -> Reading:
        device = PILE1 if pile == "P1" else PILE2
        data = {"pile": pile, "session": session, "start": start, "end": end, "energy_kwh": kwh}
        return self.reading(device, "charge", end, **data)

    def heartbeat(self, device: str, time: str) -> Reading:
        return self.reading(device, "heartbeat", time, rssi=-60)

    def day(
        self,
        day: int,
        *,
        g: float = 400.0,
        export: float = 264.0,
        generation: float | None = None,
    ) -> list[Reading]:
        """A plant day: the pyranometer every 15 min at ``g`` W/m² 08:00–16:00 (H = g ×
        8.25 h: a 15-min ramp each side), ``export`` kWh on the meter and ``generation``
        (default export / 0.985) on INV-1 between 00:00 and 23:45, the totals running on from the day before."""
        generation = round(export / 0.985, 3) if generation is None else generation
        out = []
        for q in range(96):
            hours = q / 4
            out.append(self.weather(at(hours, day), g if 8 <= hours <= 16 else 0.0))
        start, end = self.generated, self.exported
        self.generated, self.exported = round(start + generation, 3), round(end + export, 3)
        out += [
            self.inverter(at(0, day), 0, start),
            self.inverter(at(23.75, day), 0, self.generated),
            self.meter(at(0, day), end),
            self.meter(at(23.75, day), self.exported),
        ]
        return sorted(out, key=lambda r: r.time_ms)


def eid(reading: Reading) -> str:
    return reading_event_id(reading.device, reading.seq)


def feed(m: SolarMonitor | StationMonitor, readings: Iterable[Reading]) -> list[Alarm]:
    return [alarm for reading in readings for alarm in m.observe(reading)]


def only(alarms: Iterable[Alarm], rule: str) -> list[Alarm]:
    return [a for a in alarms if a.rule == rule]


def solar_plant() -> SolarMonitor:
    return SolarMonitor(solar_rules_(), DEVICES)


# --- module surface -------------------------------------------------------------------------


def test_public_names_are_pinned() -> None:
    assert energy.__all__ == [
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


def test_docstring_table_states_every_rule_with_its_severity_and_fact() -> None:
    doc = energy.__doc__ or ""
    rows = {line.split("|")[1].strip(): line for line in doc.splitlines() if line.startswith("| ")}
    for rule, (severity, fact) in RULES.items():
        cells = [c.strip() for c in rows[rule].split("|")]
        assert cells[3] == severity, rule
        assert cells[4].startswith(fact or "—"), rule


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"plant": ""}, "plant"),
        ({"dc_kwp": 0}, "dc_kwp"),
        ({"inverters": frozenset()}, "inverters"),
        ({"tariff_cny_per_kwh": "abc"}, "tariff_cny_per_kwh"),
        ({"tariff_cny_per_kwh": Decimal(0)}, "tariff_cny_per_kwh"),
        ({"tariff_cny_per_kwh": "NaN"}, "tariff_cny_per_kwh"),
        ({"min_window_revenue_cny": -1}, "min_window_revenue_cny"),
        ({"min_pr_pct": 0}, "min_pr_pct"),
        ({"min_pr_pct": 100.5}, "min_pr_pct"),
        ({"floor_days": 0}, "floor_days"),
        ({"min_insolation_kwh_m2": 0.01}, "min_insolation_kwh_m2"),
        ({"revenue_window_days": 0}, "revenue_window_days"),
        ({"down_readings": 0}, "down_readings"),
        ({"mismatch_pct": -1}, "mismatch_pct"),
        ({"max_gap_s": 0}, "max_gap_s"),
        ({"evidence_cap": 0}, "evidence_cap"),
        ({"utc_offset": "+8"}, "utc_offset"),
    ],
)
def test_bad_plant_rules_are_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        solar_rules_(**change)
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"station": ""}, "station"),
        ({"piles": frozenset()}, "piles"),
        ({"energy_tariff_cny_per_kwh": "-0.1"}, "energy_tariff_cny_per_kwh"),
        ({"energy_tariff_cny_per_kwh": 0, "service_fee_cny_per_kwh": 0}, "service_fee_cny_per_kwh"),
        ({"revenue_window_days": 367}, "revenue_window_days"),
        ({"utc_offset": "+15:00"}, "utc_offset"),
    ],
)
def test_bad_station_rules_are_refused_naming_the_field(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        station_rules_(**change)
    assert caught.value.field == field


def test_money_is_read_as_the_decimal_it_was_written_as() -> None:
    rules = solar_rules_(tariff_cny_per_kwh=0.391, min_window_revenue_cny="1234.565")
    assert rules.tariff_cny_per_kwh == Decimal("0.391")
    assert rules.min_window_revenue_fen == 123_457  # half up, not to even
    from_json = solar_rules_(**json.loads('{"inverters": ["INV-1"], "tariff_cny_per_kwh": "0.4"}'))
    assert from_json.inverters == frozenset({"INV-1"})
    assert from_json.tariff_cny_per_kwh == Decimal("0.4")


# --- plant: the day's figures ---------------------------------------------------------------


def test_a_plant_day_derives_generation_export_insolation_pr_revenue() -> None:
    m, f = solar_plant(), Feed()
    assert feed(m, f.day(0, g=400.0, export=264.0, generation=270.0)) == []
    day, alarms = m.close_day(DAYS[0])
    assert alarms == []
    assert day.generation_kwh == 270.0
    assert day.export_kwh == 264.0
    assert day.insolation_kwh_m2 == 3.3  # 400 W/m² × 8.25 h
    assert day.pr_pct == 80.0  # 264 / (100 kWp × 3.3 h)
    assert day.judged
    assert day.revenue_fen == 10_322  # 264 × 0.391 = 103.224 CNY
    assert day.revenue_cny == Decimal("103.22")
    assert day.inverters_reporting == 1
    assert day.availability_pct == 50.0
    assert day.inverters["INV-1"].energy_kwh == 270.0
    assert day.meter_resets == 0


def test_a_lower_total_is_a_meter_reset_starting_a_new_total() -> None:
    m, f = solar_plant(), Feed()
    feed(
        m,
        [
            f.inverter(at(8), 10, 1_000.0),
            f.inverter(at(9), 10, 1_100.5),
            f.inverter(at(10), 10, 50.25),  # reset: 50.25 kWh since
            f.inverter(at(11), 10, 80.25),
            f.meter(at(8), 5_000.0),
            f.meter(at(9), 4.0),  # reset
            f.meter(at(10), 9.5),
        ],
    )
    day, _ = m.close_day(DAYS[0])
    assert day.generation_kwh == 180.75  # 100.5 + 50.25 + 30
    assert day.export_kwh == 9.5
    assert day.meter_resets == 2


def test_decimal_sums_do_not_drift() -> None:
    m, f = solar_plant(), Feed()
    total = 0.0
    readings = [f.meter(at(0), 0)]
    for i in range(1, 11):
        total = round(total + 0.1, 1)
        readings.append(f.meter(at(i), total))
    feed(m, readings)
    day, _ = m.close_day(DAYS[0])
    assert day.export_kwh == 1.0  # ten float steps of 0.1 sum to 0.9999999999999999


def test_insolation_is_a_trapezoid_with_gaps_capped() -> None:
    m, f = solar_plant(), Feed()
    feed(m, [f.weather(at(8), 600.0), f.weather(at(8.25), 600.0), f.weather(at(10.25), 600.0)])
    day, _ = m.close_day(DAYS[0])
    # 15 min at 600 W/m², then a 2 h gap counted as max_gap_s = 900 s
    assert day.insolation_kwh_m2 == 0.3


def test_revenue_rounds_half_up_to_the_fen() -> None:
    for export, fen in ((0.009, 0), (0.01, 1), (0.03, 2)):
        m, f = SolarMonitor(solar_rules_(tariff_cny_per_kwh="0.5"), DEVICES), Feed()
        feed(m, [f.meter(at(1), 100.0), f.meter(at(2), 100.0 + export)])
        day, _ = m.close_day(DAYS[0])
        assert day.revenue_fen == fen, export  # 0.5 and 1.5 fen: half up, not to even


def test_no_irradiance_or_a_dark_day_gives_no_pr() -> None:
    m, f = solar_plant(), Feed()
    feed(m, [f.meter(at(1), 100.0), f.meter(at(2), 200.0)])
    day, _ = m.close_day(DAYS[0])
    assert (day.insolation_kwh_m2, day.pr_pct, day.judged) == (None, None, False)
    feed(m, [f.weather(at(10, 1), 20.0), f.weather(at(11, 1), 20.0), f.meter(at(12, 1), 300)])
    day, _ = m.close_day(DAYS[1])
    assert day.insolation_kwh_m2 == 0.005  # capped at 900 s: under 0.05, no PR
    assert (day.pr_pct, day.judged) == (None, False)


def test_redelivered_and_late_readings_move_nothing() -> None:
    m, f = solar_plant(), Feed()
    readings = f.day(0)
    feed(m, readings)
    late = f.weather(at(12), 1_000.0)  # newer seq, older time
    feed(m, [*readings[:50], late])
    day, _ = m.close_day(DAYS[0])
    assert (day.insolation_kwh_m2, day.export_kwh) == (3.3, 264.0)
    assert eid(late) in day.evidence  # still evidence of its day


def test_a_closed_day_is_final() -> None:
    m, f = solar_plant(), Feed()
    feed(m, f.day(0))
    m.close_day(DAYS[0])
    with pytest.raises(InvalidInput) as caught:
        m.close_day(DAYS[0])
    assert caught.value.code == "day_closed"
    feed(m, [f.meter(at(23.9), 10_000.0)])  # in the closed day: counts nowhere
    day, _ = m.close_day(DAYS[1])
    assert day.export_kwh == 0.0
    with pytest.raises(InvalidInput):
        m.close_day("2026-13-01")


def test_a_device_of_another_subject_is_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        solar_plant().observe(Feed().charge(at(1), at(2), 30.0))
    assert caught.value.code == "unknown_device"


def test_evidence_is_capped_keeping_the_meter_readings() -> None:
    m, f = SolarMonitor(solar_rules_(evidence_cap=3), DEVICES), Feed()
    readings = f.day(0)
    feed(m, readings)
    day, _ = m.close_day(DAYS[0])
    meters = [eid(r) for r in readings if r.kind == "grid_meter"]
    assert len(day.evidence) == 3 and set(meters) <= set(day.evidence)
    assert day.evidence_omitted == len(readings) - 3


# --- plant: rules ---------------------------------------------------------------------------


def low_days(m: SolarMonitor, f: Feed, exports: list[float], g: float = 400.0) -> list[Alarm]:
    alarms = []
    for d, export in enumerate(exports):
        alarms += feed(m, f.day(d, g=g, export=export))
        alarms += m.close_day(DAYS[d])[1]
    return alarms


def test_low_performance_needs_floor_days_judged_days_below() -> None:
    m, f = solar_plant(), Feed()
    # 247.5 kWh is PR 75.00 exactly (on the floor: not low); 247.4 is 74.97
    alarms = low_days(m, f, [247.5, 247.4, 247.4])
    assert only(alarms, "low_performance") == []
    more = low_days_from(m, f, 3, [247.4, 247.4])
    (alarm,) = only(more, "low_performance")
    assert alarm.key == f"low_performance:{PLANT}:{DAYS[1]}"
    assert alarm.severity == "breach" and alarm.fact == "covenant_breach"
    assert alarm.details["run_days"] == DAYS[1:4]


def low_days_from(m: SolarMonitor, f: Feed, first: int, exports: list[float]) -> list[Alarm]:
    alarms = []
    for d, export in enumerate(exports, start=first):
        alarms += feed(m, f.day(d, export=export))
        alarms += m.close_day(DAYS[d])[1]
    return alarms


def test_dull_days_neither_extend_nor_break_a_run_and_a_good_day_ends_it() -> None:
    m, f = solar_plant(), Feed()
    alarms = low_days(m, f, [200.0, 200.0])
    # a dull day (H = 0.99 kWh/m² < 1.0) with a poor PR is not judged
    alarms += feed(m, f.day(2, g=120.0, export=50.0))
    day, fired = m.close_day(DAYS[2])
    assert not day.judged and day.pr_pct is not None
    alarms += fired + low_days_from(m, f, 3, [200.0])
    (alarm,) = only(alarms, "low_performance")
    assert alarm.details["run_days"] == [DAYS[0], DAYS[1], DAYS[3]]
    again = low_days_from(m, f, 4, [200.0, 264.0, 200.0, 200.0])  # one episode, then a good day
    assert only(again, "low_performance") == []
    (second,) = only(low_days_from(m, f, 8, [200.0]), "low_performance")
    assert second.key == f"low_performance:{PLANT}:{DAYS[6]}"


def test_a_day_exactly_at_the_minimum_insolation_is_judged() -> None:
    m, f = solar_plant(), Feed()
    feed(m, f.day(0, g=1000 / 8.25, export=50.0))
    day, _ = m.close_day(DAYS[0])
    assert day.insolation_kwh_m2 == 1.0 and day.judged


def test_low_revenue_on_the_trailing_window_strictly_below_the_floor() -> None:
    # three days of 264 kWh × 0.391 = 103.224 CNY: 309.66 CNY in the window
    m, f = SolarMonitor(solar_rules_(min_window_revenue_cny="309.66"), DEVICES), Feed()
    alarms = low_days(m, f, [264.0, 264.0, 264.0])
    assert only(alarms, "low_revenue") == []
    m, f = SolarMonitor(solar_rules_(min_window_revenue_cny="309.67"), DEVICES), Feed()
    alarms = low_days(m, f, [264.0, 264.0])
    assert alarms == []  # the window is not full yet: not judged
    alarms = low_days_from(m, f, 2, [264.0, 264.0])
    (alarm,) = only(alarms, "low_revenue")
    assert alarm.key == f"low_revenue:{PLANT}:{DAYS[2]}"
    assert alarm.details["window_revenue_fen"] == 30_966
    assert alarm.details["window_first_day"] == DAYS[0]
    alarms = low_days_from(m, f, 4, [400.0, 264.0, 1.0])
    (third,) = only(alarms, "low_revenue")  # back above on day 4, a new episode on day 6
    assert third.key == f"low_revenue:{PLANT}:{DAYS[6]}"


def test_meter_mismatch_beyond_the_tolerance() -> None:
    m, f = solar_plant(), Feed()
    feed(m, f.day(0, export=102.0, generation=100.0))
    assert m.close_day(DAYS[0])[1] == []  # exactly 2 % more: in tolerance
    feed(m, f.day(1, export=102.01, generation=100.0))
    (alarm,) = m.close_day(DAYS[1])[1]
    assert alarm.rule == "meter_mismatch" and alarm.severity == "warning"
    assert alarm.key == f"meter_mismatch:{PLANT}:{DAYS[1]}"


def sunny_and_down(f: Feed, start_h: float, powers: list[float], g: float = 201.0) -> list[Reading]:
    out = []
    for i, kw in enumerate(powers):
        t = start_h + i * 5 / 60
        out += [f.weather(at(t - 1 / 60), g), f.inverter(at(t), kw, 1_000.0 + i)]
    return out


def test_inverter_down_after_n_readings_at_zero_in_sun() -> None:
    m, f = solar_plant(), Feed()
    readings = sunny_and_down(f, 10, [0, 0, 0, 0])
    alarms = feed(m, readings)
    (alarm,) = alarms
    inverter_readings = [r for r in readings if r.kind == "inverter"]
    assert alarm.rule == "inverter_down" and alarm.severity == "warning"
    assert alarm.key == f"inverter_down:{PLANT}:INV-1:{inverter_readings[0].time_ms}"
    assert alarm.evidence == tuple(eid(r) for r in inverter_readings[:3])
    assert alarm.time_ms == inverter_readings[2].time_ms
    assert feed(m, sunny_and_down(f, 11, [0, 0, 0])) == []  # the same episode
    assert feed(m, sunny_and_down(f, 12, [5.0, 0, 0, 0])) != []  # recovered, down again


def test_inverter_down_is_quiet_at_the_threshold_or_without_fresh_irradiance() -> None:
    m, f = solar_plant(), Feed()
    assert feed(m, sunny_and_down(f, 10, [0, 0, 0, 0], g=200.0)) == []
    m, f = solar_plant(), Feed()
    stale = [f.weather(at(9), 800.0)] + [f.inverter(at(10 + i / 12), 0, 10.0) for i in range(4)]
    assert feed(m, stale) == []
    m, f = solar_plant(), Feed()
    assert feed(m, sunny_and_down(f, 10, [0, 0, 3.0, 0, 0])) == []  # broken by 3 kW


def test_readings_in_the_dark_neither_extend_nor_break_the_run() -> None:
    m, f = solar_plant(), Feed()
    readings = [
        *sunny_and_down(f, 16, [0, 0]),
        *sunny_and_down(f, 17, [0, 0], g=0.0),
    ]
    assert feed(m, readings) == []
    (alarm,) = feed(m, sunny_and_down(f, 18, [0]))
    assert alarm.details["start_ms"] == readings[1].time_ms


def test_silence_meter_and_sensor_rules() -> None:
    m, f = solar_plant(), Feed()
    feed(m, [f.heartbeat(INV1, at(0)), f.heartbeat(METER, at(0.5)), f.heartbeat(WS, at(1.25))])
    assert m.check(ms(1.5)) == []  # the meter silent exactly heartbeat_s: quiet
    alarms = m.check(ms(1.5) + 1)
    (meter,) = alarms
    assert meter.rule == "meter_silent" and meter.fact == "stale_data"
    assert meter.key == f"meter_silent:{PLANT}:{METER}:{ms(0.5)}"
    assert m.check(ms(1.6)) == []  # once per episode
    sensors = m.check(ms(2) + 1)
    assert {a.details["device"] for a in sensors} == {INV2, WS, INV1}
    inv2 = next(a for a in sensors if a.details["device"] == INV2)
    assert inv2.rule == "sensor_silent" and inv2.evidence == ()  # never heard: since origin
    assert inv2.details["last_ms"] is None


def test_a_replay_gives_the_same_alarms_and_keys() -> None:
    f = Feed()
    readings = [r for d in range(4) for r in f.day(d, export=200.0)]
    readings += sunny_and_down(f, 12, [0, 0, 0])

    def run() -> list[Alarm]:
        m, alarms = solar_plant(), []
        for r in sorted(readings, key=lambda r: r.time_ms):
            alarms += m.observe(r)
        for d in range(4):
            alarms += m.close_day(DAYS[d])[1]
        return alarms + m.check(ms(0, 5))

    first = run()
    assert {a.rule for a in first} >= {"low_performance", "inverter_down", "sensor_silent"}
    assert first == run()


def test_plant_day_payload_round_trips() -> None:
    m, f = solar_plant(), Feed()
    feed(m, f.day(0))
    day, _ = m.close_day(DAYS[0])
    payload = json.loads(json.dumps(day.to_payload()))
    assert SolarDay.from_payload(payload) == day
    for broken in ({**payload, "revenue_fen": 1.5}, {**payload, "day": "soon"}, {}):
        with pytest.raises(InvalidInput):
            SolarDay.from_payload(broken)


# --- charging station -----------------------------------------------------------------------


def station() -> StationMonitor:
    return StationMonitor(station_rules_(), DEVICES)


def test_a_station_day_counts_sessions_on_the_day_they_end_once() -> None:
    m, f = station(), Feed()
    first = f.charge(at(10), at(10.5), 30.5, "P1", "S1")
    readings = [
        first,
        f.charge(at(12), at(13.5), 45.25, "P2", "S2"),
        f.charge(at(10), at(10.5), 30.5, "P1", "S1"),  # sent again, new seq
        f.charge(at(23.5), at(24.5), 20.0, "P1", "S3"),  # ends on day 1
    ]
    assert feed(m, [*readings, readings[0]]) == []
    day, alarms = m.close_day(DAYS[0])
    assert alarms == []
    assert (day.sessions, day.energy_kwh, day.duplicates) == (2, 75.75, 1)
    assert day.energy_fen == 5_681  # 75.75 × 0.75 = 56.8125 CNY
    assert day.service_fen == 6_060  # 75.75 × 0.80
    assert day.revenue_fen == 11_741
    assert day.utilization_pct == 4.17  # 2 h / (2 piles × 24 h)
    assert day.piles["P1"].occupied_h == 0.5 and day.piles["P2"].energy_kwh == 45.25
    assert day.piles_reporting == 2
    assert day.evidence == (eid(first), eid(readings[1]))
    day1, _ = m.close_day(DAYS[1])
    assert (day1.sessions, day1.piles["P1"].occupied_h) == (1, 1.0)


def test_station_low_revenue_below_the_floor() -> None:
    # a day of 40 kWh: 30 + 32 CNY = 62.00 CNY; the window is two days
    def run(floor: str) -> list[Alarm]:
        m, f, alarms = (
            StationMonitor(station_rules_(min_window_revenue_cny=floor), DEVICES),
            Feed(),
            [],
        )
        for d in range(3):
            alarms += feed(m, [f.charge(at(9, d), at(10, d), 40.0, session=f"S{d}")])
            alarms += m.close_day(DAYS[d])[1]
        return alarms

    assert run("124.00") == []
    alarms = run("124.01")
    assert [a.key for a in alarms] == [f"low_revenue:{STATION}:{DAYS[1]}"]
    assert alarms[0].severity == "breach"


def test_pile_silent() -> None:
    m, f = station(), Feed()
    feed(m, [f.heartbeat(PILE1, at(0)), f.heartbeat(PILE2, at(1))])
    assert m.check(ms(2)) == []
    (alarm,) = m.check(ms(2) + 1)
    assert (alarm.rule, alarm.fact, alarm.details["device"]) == ("pile_silent", "stale_data", PILE1)
    assert alarm.evidence == (reading_event_id(PILE1, 0),)


def test_station_day_payload_round_trips() -> None:
    m, f = station(), Feed()
    feed(m, [f.charge(at(9), at(10), 33.3), f.charge(at(9), at(11), 12.0, "P2", "S9")])
    day, _ = m.close_day(DAYS[0])
    assert StationDay.from_payload(json.loads(json.dumps(day.to_payload()))) == day
    with pytest.raises(InvalidInput):
        StationDay.from_payload({**day.to_payload(), "piles": {"P1": {"sessions": "2"}}})


@settings(max_examples=30, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=600_000), min_size=1, max_size=12))
def test_station_revenue_is_the_exact_decimal_sum(energies_wh: list[int]) -> None:
    m, f = station(), Feed()
    for i, wh in enumerate(energies_wh):
        m.observe(f.charge(at(1), at(2), wh / 10_000, session=f"S{i}"))
    day, _ = m.close_day(DAYS[0])
    kwh = sum(Decimal(wh) / 10_000 for wh in energies_wh).quantize(Decimal("0.001"), ROUND_HALF_UP)
    assert day.energy_kwh == float(kwh)
    parts = (kwh * Decimal(rate) * 100 for rate in ("0.75", "0.80"))
    assert day.revenue_fen == sum(int(p.quantize(Decimal(1), ROUND_HALF_UP)) for p in parts)


# --- the simulator --------------------------------------------------------------------------


SOLAR_ARGS: dict[str, Any] = {"days": 6, "seed": 3, "inverters": 3}
CHARGING_ARGS: dict[str, Any] = {"days": 10, "seed": 3, "piles": 10}


def replay(s: Scenario) -> tuple[list[Any], list[Alarm]]:
    """Feed a scenario's readings in order, check every 10 min, close each day an hour
    after it ends (late uploads of sessions that ended before midnight)."""
    m: SolarMonitor | StationMonitor = (
        SolarMonitor(solar_rules(s), {d.device.id: d.device for d in s.devices})
        if s.name == "solar"
        else StationMonitor(station_rules(s), {d.device.id: d.device for d in s.devices})
    )
    first = datetime.fromtimestamp(s.start_ms / 1000, LOCAL)
    closes = [
        (s.start_ms + (d + 1) * 24 * HOUR + HOUR, (first + timedelta(days=d)).date().isoformat())
        for d in range(s.days)
    ]
    days: list[Any] = []
    alarms: list[Alarm] = []
    next_check = s.start_ms + 10 * MIN

    def until(t: int) -> None:
        nonlocal next_check
        while next_check <= min(t, s.end_ms):  # the devices stop at the end
            alarms.extend(m.check(next_check))
            next_check += 10 * MIN
        while closes and closes[0][0] <= t:
            result, fired = m.close_day(closes.pop(0)[1])
            days.append(result)
            alarms.extend(fired)

    for reading in s.readings:
        until(reading.time_ms)
        alarms.extend(m.observe(reading))
    until(s.end_ms + HOUR)
    return days, alarms


@pytest.fixture(scope="module")
def clean_plant() -> Scenario:
    return solar(**{**SOLAR_ARGS, "days": 3}, incidents=())


@pytest.fixture(scope="module")
def troubled_plant() -> Scenario:
    return solar(**SOLAR_ARGS)


@pytest.fixture(scope="module")
def clean_station() -> Scenario:
    return charging(**CHARGING_ARGS, incidents=())


def test_the_simulator_is_deterministic_and_seeded() -> None:
    def dump(s: Scenario) -> str:
        return json.dumps([r.model_dump(mode="json") for r in s.readings])

    for make, size in ((solar, {"inverters": 2}), (charging, {"piles": 4})):
        a, b, c = (make(days=1, seed=seed, incidents=(), **size) for seed in (7, 7, 8))
        assert dump(a) == dump(b) != dump(c)


def test_simulated_readings_are_signed_by_their_devices(
    clean_plant: Scenario, clean_station: Scenario
) -> None:
    for scenario in (clean_plant, clean_station):
        devices = {d.device.id: d.device for d in scenario.devices}
        for reading in scenario.readings[::97]:
            devices[reading.device].check(reading)
        times = [r.time_ms for r in scenario.readings]
        assert times == sorted(times)


def test_bad_simulator_arguments_are_refused() -> None:
    with pytest.raises(InvalidInput):
        solar(days=0, seed=1)
    with pytest.raises(InvalidInput) as caught:
        solar(days=3, seed=1, incidents=["nope"])
    assert caught.value.code == "unknown_incident"
    with pytest.raises(InvalidInput) as caught:
        solar(days=3, seed=1, incidents=["inverter_down"])
    assert caught.value.code == "too_short"
    with pytest.raises(InvalidInput):
        charging(days=5, seed=1)


def test_a_clean_plant_is_quiet_with_a_realistic_pr(clean_plant: Scenario) -> None:
    days, alarms = replay(clean_plant)
    assert alarms == []
    assert len(days) == clean_plant.days
    judged = [d for d in days if d.judged]
    assert len(judged) >= 2
    assert all(78 <= d.pr_pct <= 84 for d in judged), [d.pr_pct for d in judged]
    assert all(d.availability_pct == 100.0 for d in days)
    assert all(0.97 < d.export_kwh / d.generation_kwh < 0.99 for d in days)
    clear = max(d.insolation_kwh_m2 for d in days)
    assert 3.5 < clear < 5.5  # kWh/m² on the tilted plane, a clear late-November day


def test_a_clean_station_is_quiet_with_realistic_sessions(clean_station: Scenario) -> None:
    days, alarms = replay(clean_station)
    assert alarms == []
    piles = len(clean_station.subject["piles"])
    assert all(8.5 <= d.sessions / piles <= 14.5 for d in days), [d.sessions for d in days]
    assert all(20 <= d.energy_kwh / d.sessions <= 60 for d in days)
    assert sum(d.duplicates for d in days) > 0
    hours = Counter(
        datetime.fromisoformat(r.data["end"]).hour
        for r in clean_station.readings
        if r.kind == "charge"
    )
    assert hours[12] > 2 * hours[4] and hours[19] > 2 * hours[4]


def test_each_solar_incident_raises_its_rule(troubled_plant: Scenario) -> None:
    s = troubled_plant
    assert sorted(i.kind for i in s.incidents) == sorted(SOLAR_INCIDENTS)
    days, alarms = replay(s)
    assert {a.rule for a in alarms} == {i.expected_rule for i in s.incidents}
    by_rule = {i.expected_rule: i for i in s.incidents}
    for alarm in alarms:
        incident = by_rule[alarm.rule]
        assert alarm.time_ms >= incident.start_ms, alarm.key
        if alarm.rule == "inverter_down":
            assert alarm.details["inverter"] == incident.items[0]
            assert alarm.time_ms < (incident.end_ms or s.end_ms)
        if alarm.rule == "meter_silent":
            assert alarm.details["device"] == incident.items[0]
    (low,) = only(alarms, "low_performance")
    assert all(d.pr_pct < 75 for d in days if d.judged and d.day in low.details["run_days"])


def test_incidents_leave_the_weather_alone(clean_plant: Scenario, troubled_plant: Scenario) -> None:
    def weather(s: Scenario) -> list[str]:
        return [
            r.signature
            for r in s.readings
            if r.kind == "weather" and r.time_ms < clean_plant.end_ms
        ]

    assert weather(troubled_plant) == weather(clean_plant)


def test_revenue_shortfall_raises_low_revenue() -> None:
    s = charging(**CHARGING_ARGS, incidents=list(CHARGING_INCIDENTS))
    (expected,) = s.incidents
    _, alarms = replay(s)
    (alarm,) = alarms
    assert alarm.rule == expected.expected_rule == "low_revenue"
    assert alarm.time_ms > expected.start_ms
