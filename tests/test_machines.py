"""oracles.machines and oracles.sim_machines: running hours, energy, output and
utilization per local (+08:00) day; each rule fires on its condition and not at its
threshold, once per episode, with the readings behind it; a replay gives the same alarms
and keys; the simulated plant is deterministic, quiet when clean, and each incident
raises exactly its rule.

Unit readings are really signed (sign_reading with fixed device keys), cached per
(device, seq, time, data) because signing costs about 3 ms.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from typing import Any

import pytest
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.canonical import canonical_json
from ledger.errors import InvalidInput
from oracles import machines, sim_machines
from oracles.machines import RULES, MachineDay, PlantDay, PlantMonitor, PlantRules
from oracles.readings import Alarm, Device, Reading, reading_event_id, sign_reading
from oracles.sim_machines import FACTORY_INCIDENTS, factory, factory_rules
from oracles.simulate import Scenario

PLANT = "urn:fourflow:plant:CN:SZ:TEST-1"
A, B, C = "CNC-01", "CNC-02", "IMM-01"
MON, TUE, WED, THU, FRI, SAT, SUN = (f"2026-11-{d}" for d in range(23, 30))
LOCAL = timezone(timedelta(hours=8))
MIDNIGHT = datetime(2026, 11, 23, tzinfo=LOCAL)  # Monday, the plant's local start of MON
MIN, HOUR, DAY = 60_000, 3_600_000, 86_400_000

CLAMP_A, CLAMP_B, CLAMP_C = (f"urn:fourflow:device:sz-test:clamp-{n}" for n in ("a", "b", "c"))
KEYS = {device: bytes([i + 1]) * 32 for i, device in enumerate((CLAMP_A, CLAMP_B, CLAMP_C))}
DEVICES = {
    device: Device(
        id=device,
        address=Account.from_key(KEYS[device]).address,
        kinds=frozenset({"machine", "tamper"}),
        site="sz-test",
        subject=PLANT,
        heartbeat_s=3_600,
    )
    for device in KEYS
}
CLAMP_OF = {A: CLAMP_A, B: CLAMP_B, C: CLAMP_C}
SITE = ((31.330, 120.730), (31.330, 120.733), (31.332, 120.733), (31.332, 120.730))
HALL = (31.331, 120.731)
OFF_SITE = (31.165, 120.638)


def rules(**changes: Any) -> PlantRules:
    settings: dict[str, Any] = {
        "plant": PLANT,
        "running_a": {A: 10.0, B: 10.0},
        "min_utilization_pct": 50.0,
        "floor_days": 1,
        "max_gap_min": 15,
        "site": SITE,
    }
    return PlantRules(**{**settings, **changes})


def monitor(**changes: Any) -> PlantMonitor:
    return PlantMonitor(rules(**changes), DEVICES)


def at(hours: float, day: int = 0) -> str:
    """A local (+08:00) time, ``hours`` after midnight of MON + ``day``."""
    return (MIDNIGHT + timedelta(days=day, hours=hours)).isoformat(timespec="milliseconds")


def ms(hours: float, day: int = 0) -> int:
    moment = MIDNIGHT + timedelta(days=day, hours=hours)
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


@cache
def _signed(device: str, seq: int, time: str, kind: str, data: str) -> Reading:
    unsigned = {"device": device, "seq": seq, "time": time, "kind": kind, "data": json.loads(data)}
    return sign_reading(unsigned, private_key=KEYS[device])


class Feed:
    """Signed readings with per-device sequence numbers, as the clamps send them."""

    def __init__(self) -> None:
        self.seq: Counter[str] = Counter()

    def reading(self, device: str, kind: str, time: str, **data: Any) -> Reading:
        seq = self.seq[device]
        self.seq[device] += 1
        return _signed(device, seq, time, kind, json.dumps(data, sort_keys=True))

    def machine(
        self,
        time: str,
        machine: str = A,
        amps: float = 30.0,
        kwh: float = 100.0,
        output: int | None = None,
        where: tuple[float, float] | None = HALL,
    ) -> Reading:
        data: dict[str, Any] = {"machine": machine, "current_a": amps, "energy_kwh": kwh}
        if where is not None:
            data["lat"], data["lon"] = where
        if output is not None:
            data["output"] = output
        return self.reading(CLAMP_OF.get(machine, CLAMP_A), "machine", time, **data)

    def tamper(self, time: str, machine: str, event: str) -> Reading:
        return self.reading(
            CLAMP_OF.get(machine, CLAMP_A), "tamper", time, tag=machine, event=event
        )

    def heartbeat(self, device: str, time: str) -> Reading:
        return self.reading(device, "heartbeat", time, rssi=-60)


def eid(reading: Reading) -> str:
    return reading_event_id(reading.device, reading.seq)


def feed(m: PlantMonitor, readings: Iterable[Reading]) -> list[Alarm]:
    return [alarm for reading in readings for alarm in m.observe(reading)]


def only(alarms: Iterable[Alarm], rule: str) -> list[Alarm]:
    return [a for a in alarms if a.rule == rule]


def day_of(
    readings: Iterable[Reading], day: str = MON, **changes: Any
) -> tuple[PlantDay, list[Alarm]]:
    m = monitor(**changes)
    alarms = feed(m, readings)
    report, closing = m.close_day(day)
    return report, alarms + closing


# --- module surface -------------------------------------------------------------------------


def test_public_names_are_pinned() -> None:
    assert machines.__all__ == ["RULES", "MachineDay", "PlantDay", "PlantMonitor", "PlantRules"]
    assert sim_machines.__all__ == ["FACTORY_INCIDENTS", "factory", "factory_rules"]


def test_docstring_table_states_every_rule_with_its_severity_and_fact() -> None:
    doc = machines.__doc__ or ""
    rows = {line.split("|")[1].strip(): line for line in doc.splitlines() if line.startswith("| ")}
    assert set(RULES) <= set(rows)
    for rule, (severity, fact) in RULES.items():
        cells = [c.strip() for c in rows[rule].split("|")]
        assert cells[3] == severity
        assert cells[4] == (fact or "—")
        assert cells[5].startswith(f"{rule}:")


# --- configuration --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"plant": ""}, "plant"),
        ({"running_a": {}}, "running_a"),
        ({"running_a": {A: 0}}, "running_a"),
        ({"running_a": {A: -1.0}}, "running_a"),
        ({"running_a": {A: True}}, "running_a"),
        ({"running_a": {"": 5.0}}, "running_a"),
        ({"min_utilization_pct": 0}, "min_utilization_pct"),
        ({"min_utilization_pct": 100.5}, "min_utilization_pct"),
        ({"floor_days": 0}, "floor_days"),
        ({"scheduled_hours": 0}, "scheduled_hours"),
        ({"scheduled_hours": 25}, "scheduled_hours"),
        ({"rest_days": {0}}, "rest_days"),
        ({"rest_days": {1, 2, 3, 4, 5, 6, 7}}, "rest_days"),
        ({"max_gap_min": 0}, "max_gap_min"),
        ({"max_gap_min": 1_441}, "max_gap_min"),
        ({"site": ((31.0, 120.0), (31.1, 120.1))}, "site"),
        ({"site": [["north", 120.0], [1, 2], [3, 4]]}, "site"),
        ({"streak": 0}, "streak"),
        ({"evidence_cap": 0}, "evidence_cap"),
        ({"utc_offset": "8"}, "utc_offset"),
    ],
)
def test_rules_refuse_bad_settings(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        rules(**change)
    assert caught.value.field == field


def test_rules_take_json_values() -> None:
    r = rules(site=[[lat, lon] for lat, lon in SITE], rest_days=[6, 7], running_a={B: 8, A: 12.5})
    assert r.site == SITE
    assert r.rest_days == frozenset({6, 7})
    assert dict(r.running_a) == {A: 12.5, B: 8.0}
    assert list(r.running_a) == [A, B]
    assert r.scheduled_h(FRI) == 24.0 and r.scheduled_h(SAT) == 0.0
    assert r.day_of(ms(0)) == MON and r.day_of(ms(0) - 1) == "2026-11-22"
    assert r.day_bounds(MON) == (ms(0), ms(24))


# --- derivations ----------------------------------------------------------------------------


def test_running_time_follows_the_opening_reading_and_is_capped_after_the_last() -> None:
    f = Feed()
    readings = [
        f.machine(at(10)),  # running
        f.machine(at(10 + 5 / 60)),  # running
        f.machine(at(10 + 10 / 60), amps=3.2),  # idle
        f.machine(at(10 + 15 / 60)),  # running: counts 15 min (max_gap) after it
    ]
    report, _ = day_of(readings)
    assert report.machines[A].running_h == round(25 / 60, 3)
    assert report.machines[A].readings == 4
    assert report.machines[B] == MachineDay(0.0, 0.0, None, None, 0)
    assert report.running_h == round(25 / 60, 3)


def test_a_current_exactly_at_the_threshold_is_idle() -> None:
    f = Feed()
    at_threshold = [f.machine(at(10), amps=10.0), f.machine(at(10.25), amps=10.0)]
    assert day_of(at_threshold)[0].machines[A].running_h == 0.0
    f = Feed()
    above = [f.machine(at(10), amps=10.1), f.machine(at(10.25), amps=2.0)]
    assert day_of(above)[0].machines[A].running_h == 0.25


def test_a_silent_sensor_counts_no_more_than_max_gap() -> None:
    f = Feed()
    report, _ = day_of([f.machine(at(10)), f.machine(at(14), amps=3.0)], max_gap_min=30)
    assert report.machines[A].running_h == 0.5


def test_an_interval_over_midnight_is_split_whichever_comes_first() -> None:
    f = Feed()
    before, after = f.machine(at(23 + 50 / 60)), f.machine(at(10 / 60, day=1))
    # the next day's reading arrives before the day is closed
    m = monitor(max_gap_min=30)
    feed(m, [before, after])
    mon, _ = m.close_day(MON)
    tue, _ = m.close_day(TUE)
    assert mon.machines[A].running_h == round(10 / 60, 3)
    assert tue.machines[A].running_h == round(40 / 60, 3)  # 00:00-00:10, then 30 min after
    # the day is closed before the next day's reading arrives: the same split
    m = monitor(max_gap_min=30)
    feed(m, [before])
    assert m.close_day(MON)[0] == mon
    feed(m, [after])
    assert m.close_day(TUE)[0].machines[A].running_h == tue.machines[A].running_h


def test_energy_is_the_meter_delta_and_a_reset_starts_a_new_total() -> None:
    f = Feed()
    readings = [
        f.machine(at(1), kwh=100.0),  # a baseline
        f.machine(at(2), kwh=101.5),
        f.machine(at(3), kwh=103.0),
        f.machine(at(4), kwh=0.4),  # reset: adds nothing
        f.machine(at(5), kwh=1.0),
        f.machine(at(6), B, kwh=50.0),
    ]
    report, _ = day_of(readings)
    assert report.machines[A].energy_kwh == 3.6
    assert report.machines[B].energy_kwh == 0.0
    assert report.energy_kwh == 3.6


def test_energy_of_an_interval_belongs_to_the_day_of_its_closing_reading() -> None:
    f = Feed()
    m = monitor()
    feed(m, [f.machine(at(23), kwh=10.0), f.machine(at(23.5), kwh=12.0)])
    feed(m, [f.machine(at(0.5, day=1), kwh=14.5)])
    assert m.close_day(MON)[0].energy_kwh == 2.0
    assert m.close_day(TUE)[0].energy_kwh == 2.5


def test_output_and_energy_per_unit() -> None:
    f = Feed()
    readings = [
        f.machine(at(8), kwh=100.0, output=500),
        f.machine(at(9), kwh=110.0, output=510),
        f.machine(at(10), kwh=120.5, output=530),
        f.machine(at(8), B, kwh=10.0),
        f.machine(at(9), B, kwh=20.0),
    ]
    report, _ = day_of(readings)
    assert report.machines[A].output == 30
    assert report.machines[A].energy_per_unit_kwh == round(20.5 / 30, 4)
    assert report.machines[B].output is None
    assert report.machines[B].energy_per_unit_kwh is None
    assert report.output == 30
    assert report.machines_reported == 2


def test_no_output_gives_no_energy_per_unit_and_a_counter_reset_adds_nothing() -> None:
    f = Feed()
    readings = [
        f.machine(at(8), kwh=100.0, output=500),
        f.machine(at(9), kwh=110.0, output=500),
        f.machine(at(10), kwh=120.0, output=3),  # counter reset
    ]
    report, _ = day_of(readings)
    assert report.machines[A].output == 0
    assert report.machines[A].energy_per_unit_kwh is None
    assert report.output == 0


def test_utilization_is_running_time_over_scheduled_time_of_every_pledged_machine() -> None:
    f = Feed()
    readings = [
        f.machine(at(0), amps=30),
        f.machine(at(12), amps=3),
        f.machine(at(0), B, amps=3),
    ]
    report, _ = day_of(readings, max_gap_min=720)
    assert report.utilization_pct == 25.0  # 12 h of 2 machines x 24 h
    assert report.scheduled_h == 24.0
    f = Feed()
    report, _ = day_of(
        [f.machine(at(0), amps=30), f.machine(at(12), amps=3)],
        max_gap_min=720,
        scheduled_hours=16,
    )
    assert report.utilization_pct == 37.5  # 12 h of 2 machines x 16 h
    assert report.machines_reported == 1


def test_utilization_rounds_the_exact_ratio_half_to_even() -> None:
    f = Feed()
    running_ms = 10_666_080  # 12.345 % of a day, exactly
    later = (MIDNIGHT + timedelta(milliseconds=running_ms)).isoformat(timespec="milliseconds")
    readings = [f.machine(at(0)), f.machine(later, amps=3)]
    report, _ = day_of(readings, running_a={A: 10.0}, max_gap_min=1_440)
    assert report.utilization_pct == 12.34
    assert report.running_h == 2.963


def test_a_rest_day_has_no_utilization() -> None:
    f = Feed()
    report, alarms = day_of(
        [f.machine(at(9, day=5)), f.machine(at(10, day=5))], day=SAT, rest_days={6, 7}
    )
    assert report.scheduled_h == 0.0
    assert report.utilization_pct is None
    assert report.running_h == 0.5  # 15 min capped after 09:00, 15 after 10:00
    assert alarms == []


# --- low_utilization ------------------------------------------------------------------------


def plant_days(kinds: str, *, floor_days: int, start: int = 0) -> list[Alarm]:
    """Closes one day per letter from MON + ``start``: L low (50 %), O ok (100 %),
    R rest (a weekend day: no utilization), D dark (no reading)."""
    m = monitor(running_a={A: 10.0}, floor_days=floor_days, min_utilization_pct=60.0,
                max_gap_min=720, rest_days={6, 7})  # fmt: skip
    f = Feed()
    alarms: list[Alarm] = []
    for i, kind in enumerate(kinds):
        day = start + i
        if kind in "LOR":
            second = 3.0 if kind == "L" else 30.0
            alarms += feed(m, [f.machine(at(0, day)), f.machine(at(12, day), amps=second)])
        _, closing = m.close_day((MIDNIGHT + timedelta(days=day)).date().isoformat())
        alarms += closing
    return only(alarms, "low_utilization")


def test_low_utilization_after_floor_days_once_per_run() -> None:
    assert plant_days("LL", floor_days=3) == []
    [alarm] = plant_days("LLLL", floor_days=3)
    assert alarm.key == f"low_utilization:{PLANT}:{MON}"
    assert alarm.details["run"] == [MON, TUE, WED]
    assert alarm.time_ms == ms(24, day=2)
    assert (alarm.severity, alarm.fact) == ("breach", "covenant_breach")
    assert alarm.evidence  # the closing day's readings
    two = plant_days("LLOLL", floor_days=2)
    assert [a.key for a in two] == [f"low_utilization:{PLANT}:{d}" for d in (MON, THU)]


def test_an_ok_day_ends_a_run() -> None:
    assert plant_days("LLOLL", floor_days=3) == []


def test_rest_days_and_dark_days_neither_extend_nor_end_a_run() -> None:
    # Thursday and Friday low, the weekend off, Monday low
    [alarm] = plant_days("LLRRL", floor_days=3, start=3)
    assert alarm.details["run"] == [THU, FRI, "2026-11-30"]
    [alarm] = plant_days("LDLL", floor_days=3)
    assert alarm.details["run"] == [MON, WED, THU]
    assert plant_days("LDL", floor_days=3) == []


def test_utilization_exactly_at_the_floor_is_quiet() -> None:
    f = Feed()
    readings = [f.machine(at(0)), f.machine(at(12), amps=3.0)]
    _, alarms = day_of(readings, running_a={A: 10.0}, max_gap_min=720, min_utilization_pct=50.0)
    assert only(alarms, "low_utilization") == []
    _, alarms = day_of(readings, running_a={A: 10.0}, max_gap_min=720, min_utilization_pct=50.01)
    [alarm] = only(alarms, "low_utilization")
    assert alarm.details["utilization_pct"] == 50.0


# --- no_data --------------------------------------------------------------------------------


def test_a_day_with_no_machine_reading_is_no_data() -> None:
    f = Feed()
    report, alarms = day_of([f.heartbeat(CLAMP_A, at(9))])
    [alarm] = alarms
    assert (alarm.rule, alarm.key, alarm.severity) == (
        "no_data",
        f"no_data:{PLANT}:{MON}",
        "warning",
    )
    assert report.machines_reported == 0 and report.utilization_pct is None
    assert only(day_of([Feed().machine(at(9))])[1], "no_data") == []


# --- machine_moved --------------------------------------------------------------------------


def test_a_machine_outside_the_site_once_per_episode() -> None:
    f = Feed()
    m = monitor()
    inside, edge = f.machine(at(1)), f.machine(at(1.1), where=(31.330, 120.7315))
    unknown = f.machine(at(1.2), where=None)
    assert feed(m, [inside, edge, unknown]) == []
    out = f.machine(at(2), amps=0, where=OFF_SITE)
    [alarm] = m.observe(out)
    assert alarm.key == f"machine_moved:{A}:{ms(2)}"
    assert (alarm.severity, alarm.fact) == ("breach", "unauthorized_movement")
    assert alarm.evidence == (eid(out),)
    assert (
        feed(m, [f.machine(at(2.1), amps=0, where=None), f.machine(at(2.2), where=OFF_SITE)]) == []
    )
    assert feed(m, [f.machine(at(3))]) == []  # back inside: the episode ends
    [again] = m.observe(f.machine(at(4), where=OFF_SITE))
    assert again.key == f"machine_moved:{A}:{ms(4)}"


def test_no_site_no_movement_rule() -> None:
    assert feed(monitor(site=None), [Feed().machine(at(1), where=OFF_SITE)]) == []


# --- sensor_removed -------------------------------------------------------------------------


def test_a_tamper_removal_is_one_alarm_per_episode() -> None:
    f = Feed()
    m = monitor()
    removed = f.tamper(at(10), A, "removed")
    [alarm] = m.observe(removed)
    assert alarm.key == f"sensor_removed:{A}:{ms(10)}"
    assert (alarm.severity, alarm.fact) == ("breach", "tag_removal")
    assert alarm.evidence == (eid(removed),)
    assert alarm.details["source"] == "tamper"
    assert m.observe(f.tamper(at(10.5), A, "cut")) == []
    assert m.observe(f.tamper(at(11), A, "reattached")) == []
    [again] = m.observe(f.tamper(at(12), A, "cut"))
    assert again.key == f"sensor_removed:{A}:{ms(12)}"
    assert m.observe(f.tamper(at(13), "CNC-99", "removed")) == []  # not pledged


def counter_run(currents: list[float], outputs: list[int]) -> tuple[list[Alarm], list[Reading]]:
    f = Feed()
    readings = [
        f.machine(at(10 + i / 12), amps=a, output=o)
        for i, (a, o) in enumerate(zip(currents, outputs, strict=True))
    ]
    return feed(monitor(), readings), readings


def test_work_with_no_current_for_streak_readings_is_a_removal() -> None:
    alarms, readings = counter_run([30, 0, 0, 0], [100, 104, 108, 112])
    [alarm] = alarms
    assert alarm.key == f"sensor_removed:{A}:{readings[1].time_ms}"
    assert alarm.evidence == tuple(eid(r) for r in readings[1:4])
    assert alarm.time_ms == readings[3].time_ms
    assert alarm.details["source"] == "counter"


def test_just_short_of_the_streak_or_no_work_is_no_removal() -> None:
    assert counter_run([30, 0, 0, 30], [100, 104, 108, 112])[0] == []  # streak - 1
    assert counter_run([30, 0, 0, 0], [100, 104, 104, 104])[0] == []  # switched off
    assert counter_run([30, 0, 0, 0, 0], [100, 104, 104, 108, 112])[0] == []  # broken run
    f = Feed()
    no_counter = [f.machine(at(10 + i / 12), amps=0) for i in range(6)]
    assert feed(monitor(), no_counter) == []


def test_a_removal_seen_by_tamper_and_counter_is_one_alarm() -> None:
    f = Feed()
    m = monitor()
    readings = [
        f.machine(at(10), output=100),
        f.tamper(at(10.05), A, "removed"),
        *(f.machine(at(10.1 + i / 12), amps=0, output=104 + 4 * i) for i in range(5)),
    ]
    assert [a.details["source"] for a in feed(m, readings)] == ["tamper"]


def test_a_counter_removal_ends_when_the_clamp_sees_current_again() -> None:
    f = Feed()
    m = monitor()
    first = [f.machine(at(10 + i / 12), amps=0, output=100 + 4 * i) for i in range(4)]
    assert len(feed(m, first)) == 1
    assert feed(m, [f.machine(at(11), amps=30, output=120)]) == []
    second = [f.machine(at(12 + i / 12), amps=0, output=130 + 4 * i) for i in range(4)]
    [again] = feed(m, second)
    assert again.key == f"sensor_removed:{A}:{second[0].time_ms}"  # 130 > 120: work at once


# --- sensor_silent --------------------------------------------------------------------------


def test_a_sensor_silent_past_its_heartbeat_is_stale_data() -> None:
    f = Feed()
    m = monitor()
    assert m.check(ms(1)) == []  # no reading yet: no clock
    first = f.machine(at(6))
    feed(m, [first, f.machine(at(6), B)])
    assert m.check(ms(7)) == []  # exactly heartbeat_s
    alarms = m.check(ms(7) + 1)
    assert [a.subject for a in alarms] == [CLAMP_A, CLAMP_B, CLAMP_C]
    alarm = alarms[0]
    assert alarm.key == f"sensor_silent:{CLAMP_A}:{ms(6)}"
    assert (alarm.severity, alarm.fact) == ("warning", "stale_data")
    assert alarm.evidence == (eid(first),)
    assert m.check(ms(7) + 2) == []  # nothing returned twice
    assert m.check(ms(9)) == []  # once per silence
    feed(m, [f.heartbeat(CLAMP_A, at(10))])  # any reading counts
    [again] = [a for a in m.check(ms(11) + 1) if a.subject == CLAMP_A]
    assert again.key == f"sensor_silent:{CLAMP_A}:{ms(10)}"


def test_a_sensor_never_heard_is_silent_from_the_monitors_first_reading() -> None:
    m = monitor()
    feed(m, [Feed().machine(at(6))])
    silent = {a.subject: a for a in m.check(ms(7) + 1)}
    assert silent[CLAMP_C].key == f"sensor_silent:{CLAMP_C}:{ms(6)}"
    assert silent[CLAMP_C].evidence == ()


# --- order, redelivery, closing -------------------------------------------------------------


def test_a_late_reading_counts_for_its_day_but_moves_no_state() -> None:
    f = Feed()
    m = monitor()
    early, late = f.machine(at(10), kwh=100.0), f.machine(at(9), kwh=50.0, where=OFF_SITE)
    later = f.machine(at(10.25), amps=3, kwh=101.0)
    assert feed(m, [early, late, later]) == []  # the late one fires nothing
    report, _ = m.close_day(MON)
    assert report.machines[A].readings == 3
    assert report.machines[A].running_h == 0.25
    assert report.machines[A].energy_kwh == 1.0
    assert eid(late) in report.evidence


def test_a_redelivered_reading_is_ignored() -> None:
    f = Feed()
    m = monitor()
    first, second = f.machine(at(10), kwh=100.0), f.machine(at(10.25), kwh=101.0)
    feed(m, [first, second, first, second])
    report, _ = m.close_day(MON)
    assert report.machines[A].readings == 2
    assert report.evidence == (eid(first), eid(second))


def test_a_closed_day_is_final() -> None:
    f = Feed()
    m = monitor()
    feed(m, [f.machine(at(10), kwh=100.0)])
    report, _ = m.close_day(MON)
    assert m.observe(f.machine(at(11), kwh=105.0, where=OFF_SITE))  # state still moves
    with pytest.raises(InvalidInput) as caught:
        m.close_day(MON)
    assert caught.value.code == "day_closed"
    with pytest.raises(InvalidInput) as bad:
        m.close_day("23-11-2026")
    assert bad.value.field == "day"
    assert report.machines[A].readings == 1


def test_a_reading_from_a_device_of_another_plant_is_refused() -> None:
    other = {**DEVICES, CLAMP_A: Device(CLAMP_A, DEVICES[CLAMP_A].address,
                                        frozenset({"machine"}), "sz-test", "urn:other")}  # fmt: skip
    m = PlantMonitor(rules(), other)
    with pytest.raises(InvalidInput) as caught:
        m.observe(Feed().machine(at(6)))
    assert caught.value.code == "unknown_device"


def test_a_reading_of_an_unpledged_machine_is_ignored() -> None:
    f = Feed()
    report, alarms = day_of([f.machine(at(6), "CNC-99", where=OFF_SITE)])
    assert report.machines_reported == 0 and set(report.machines) == {A, B}
    assert [a.rule for a in alarms] == ["no_data"]


def script(f: Feed) -> list[Reading | int | str]:
    """Two days of a plant in trouble: readings, check times (int) and days to close (str)."""
    return [
        f.machine(at(8), output=10),
        f.machine(at(8), B, amps=3),
        f.machine(at(8.1), output=14, amps=0),
        f.tamper(at(8.2), B, "cut"),
        f.machine(at(8.2), output=18, amps=0),
        f.machine(at(8.3), output=22, amps=0),
        f.machine(at(9), B, where=OFF_SITE),
        ms(12),
        MON,
        f.machine(at(9, day=1), amps=3),
        TUE,
        ms(12, day=2),
    ]


def run(m: PlantMonitor, steps: list[Reading | int | str]) -> list[Any]:
    out: list[Any] = []
    for step in steps:
        if isinstance(step, Reading):
            out.extend(m.observe(step))
        elif isinstance(step, int):
            out.extend(m.check(step))
        else:
            report, alarms = m.close_day(step)
            out.extend([report, *alarms])
    return out


def test_a_replay_gives_the_same_alarms_and_keys() -> None:
    first = run(monitor(), script(Feed()))
    second = run(monitor(), script(Feed()))
    assert first == second
    alarms = [a for a in first if isinstance(a, Alarm)]
    assert Counter(a.rule for a in alarms) == {
        "sensor_removed": 2,
        "machine_moved": 1,
        "sensor_silent": 4,
        "low_utilization": 1,
    }
    keys = [a.key for a in alarms]
    assert len(keys) == len(set(keys))


def test_redelivering_everything_raises_nothing_new() -> None:
    m = monitor()
    steps = script(Feed())
    run(m, steps)
    assert feed(m, [s for s in steps if isinstance(s, Reading)]) == []
    assert m.check(ms(12, day=2)) == []


# --- payload --------------------------------------------------------------------------------


def sample_day() -> PlantDay:
    f = Feed()
    readings = [
        f.machine(at(8), kwh=100.0, output=500),
        f.machine(at(9), kwh=110.0, output=530),
        f.machine(at(8), B, amps=3, kwh=10.0),
        f.machine(at(9), B, amps=3, kwh=10.5),
    ]
    return day_of(readings)[0]


def test_the_payload_is_json_safe_and_round_trips() -> None:
    report = sample_day()
    payload = report.to_payload()
    assert json.loads(json.dumps(payload, allow_nan=False)) == payload
    canonical_json(payload)
    assert payload["machines"][A] == {
        "running_h": 0.5,
        "energy_kwh": 10.0,
        "output": 30,
        "energy_per_unit_kwh": 0.3333,
        "readings": 2,
    }
    assert payload["utilization_pct"] == round(100 * 0.5 / 48, 2)
    assert list(payload["machines"]) == sorted(payload["machines"])
    assert PlantDay.from_payload(payload) == report
    assert PlantDay.from_payload(json.loads(json.dumps(payload))) == report


@pytest.mark.parametrize(
    "broken",
    [
        {},
        {"day": "23-11-2026"},
        {"output": "30"},
        {"utilization_pct": "25"},
        {"machines_reported": -1},
        {"machines": [1, 2]},
        {"machines": {A: {"running_h": 1.0}}},
        {"evidence": "x;seq=1"},
    ],
)
def test_a_broken_payload_is_refused(broken: dict[str, Any]) -> None:
    payload = {**sample_day().to_payload(), **broken} if broken else broken
    with pytest.raises(InvalidInput):
        PlantDay.from_payload(payload)


def test_evidence_over_the_cap_keeps_each_machines_first_and_last() -> None:
    f = Feed()
    readings = [f.machine(at(8 + i)) for i in range(4)]
    report, _ = day_of(readings, evidence_cap=3)
    assert report.evidence == (eid(readings[0]), eid(readings[1]), eid(readings[3]))
    assert report.evidence_omitted == 1


# --- the simulated plant --------------------------------------------------------------------

SIM: dict[str, Any] = {"days": 4, "seed": 7, "machines": 6, "interval_min": 15}


def drive(s: Scenario) -> tuple[list[PlantDay], list[Alarm]]:
    """Feed a scenario as the oracle would: checks every 5 minutes, each day closed once
    the first reading after it arrives (and the rest at the end)."""
    r = PlantRules(**factory_rules(s))
    m = PlantMonitor(r, {d.device.id: d.device for d in s.devices})
    reports: list[PlantDay] = []
    alarms: list[Alarm] = []
    check, closed = s.start_ms + 5 * MIN, 0
    for reading in s.readings:
        while check <= reading.time_ms:
            alarms += m.check(check)
            check += 5 * MIN
        while reading.time_ms >= s.start_ms + (closed + 1) * DAY:
            report, closing = m.close_day(r.day_of(s.start_ms + closed * DAY))
            reports.append(report)
            alarms += closing
            closed += 1
        alarms += m.observe(reading)
    while check <= s.end_ms:
        alarms += m.check(check)
        check += 5 * MIN
    for d in range(closed, s.days):
        report, closing = m.close_day(r.day_of(s.start_ms + d * DAY))
        reports.append(report)
        alarms += closing
    return reports, alarms


@pytest.fixture(scope="module")
def clean() -> tuple[Scenario, list[PlantDay], list[Alarm]]:
    s = factory(**SIM, incidents=())
    return (s, *drive(s))


def test_the_simulation_is_deterministic_and_signed() -> None:
    small: dict[str, Any] = {"days": 1, "machines": 4, "interval_min": 30}
    first, again, other = (factory(seed=n, **small) for n in (5, 5, 6))
    dump = [r.model_dump(mode="json") for r in first.readings]
    assert dump == [r.model_dump(mode="json") for r in again.readings]
    assert dump != [r.model_dump(mode="json") for r in other.readings]
    devices = {d.device.id: d.device for d in first.devices}
    for reading in first.readings:
        devices[reading.device].check(reading)
    times = [r.time_ms for r in first.readings]
    assert times == sorted(times) and first.start_ms <= times[0] and times[-1] < first.end_ms


def test_the_simulation_refuses_bad_arguments() -> None:
    with pytest.raises(InvalidInput, match="unknown incident"):
        factory(days=1, seed=1, incidents=["fire"])
    with pytest.raises(InvalidInput, match="divide a day"):
        factory(days=1, seed=1, interval_min=7)
    with pytest.raises(InvalidInput, match="machines must be"):
        factory(days=1, seed=1, machines=2)
    weekend = datetime(2026, 11, 28, tzinfo=LOCAL)
    with pytest.raises(InvalidInput, match="working day"):
        factory(days=2, seed=1, start=weekend, incidents=["slowdown"])


def test_a_clean_plant_raises_nothing_and_runs_like_a_plant(
    clean: tuple[Scenario, list[PlantDay], list[Alarm]],
) -> None:
    s, reports, alarms = clean
    assert alarms == []
    assert [r.day for r in reports] == [MON, TUE, WED, THU]
    counted = {m for m, spec in s.subject["machines"].items() if spec["counter"]}
    for report in reports:
        assert report.utilization_pct is not None and 70 < report.utilization_pct < 95
        assert report.machines_reported == 6
        for machine, day in report.machines.items():
            assert 10 < day.running_h < 16.5
            assert (day.output is not None) == (machine in counted)
            assert day.energy_kwh > 100
        moulding = [d.energy_per_unit_kwh for m, d in report.machines.items() if m[:3] == "IMM"]
        cnc = [
            d.energy_per_unit_kwh
            for m, d in report.machines.items()
            if m in counted and m[:3] == "CNC"
        ]
        assert moulding and cnc
        assert all(u is not None and 0.01 < u < 0.5 for u in moulding)
        assert all(u is not None and 0.3 < u < 5 for u in cnc)


def test_a_weekend_is_idle_and_unscheduled() -> None:
    s = factory(days=2, seed=3, machines=4, interval_min=30, incidents=(),
                start=datetime(2026, 11, 28, tzinfo=LOCAL))  # fmt: skip
    reports, alarms = drive(s)
    assert alarms == []
    assert [r.utilization_pct for r in reports] == [None, None]
    assert reports[1].running_h == 0.0


@pytest.mark.parametrize("incident", FACTORY_INCIDENTS)
def test_each_incident_raises_exactly_its_rule(incident: str) -> None:
    s = factory(**SIM, incidents=[incident])
    [injected] = s.incidents
    _, alarms = drive(s)
    assert alarms, incident
    assert {a.rule for a in alarms} == {injected.expected_rule}
    [alarm] = alarms
    if incident == "slowdown":
        assert alarm.details["run"] == list(injected.items)
    else:
        assert alarm.subject in injected.items
        assert injected.start_ms <= alarm.time_ms


def test_all_incidents_together_raise_their_rules_once_each() -> None:
    s = factory(**SIM)
    assert sorted(i.kind for i in s.incidents) == sorted(FACTORY_INCIDENTS)
    _, alarms = drive(s)
    assert Counter(a.rule for a in alarms) == Counter(i.expected_rule for i in s.incidents)
    for i in s.incidents:
        assert s.start_ms + DAY <= i.start_ms < s.end_ms


# --- a property: what the days add up to does not depend on when they are closed ---------

STEPS = st.lists(
    st.tuples(
        st.integers(0, 3 * 1_440 - 1),  # minute of MON..WED
        st.sampled_from([0.0, 3.0, 30.0]),  # off, idle, running
        st.one_of(st.floats(0, 5).map(lambda x: round(x, 3)), st.just(-1.0)),  # -1: reset
    ),
    min_size=2,
    max_size=8,
    unique_by=lambda step: step[0],
)


@settings(derandomize=True, max_examples=25, deadline=None)
@given(STEPS)
def test_days_add_up_to_the_readings_whichever_way_they_are_closed(
    steps: list[tuple[int, float, float]],
) -> None:
    steps = sorted(steps)
    f, meter, gap = Feed(), 100.0, 15 * MIN
    readings, expected_kwh = [], 0.0
    for minute, amps, step in steps:
        new = 0.5 if step < 0 else round(meter + step, 3)
        expected_kwh += max(0.0, new - meter) if readings else 0.0
        meter = new
        readings.append(f.machine(at(minute / 60), amps=amps, kwh=meter))
    times = [r.time_ms for r in readings] + [ms(24, day=2) + gap]
    expected_ms = sum(
        min(times[i + 1], times[i] + gap, ms(24, day=2)) - times[i]
        for i, (_, amps, _) in enumerate(steps)
        if amps > 10
    )
    days = [MON, TUE, WED]
    late = monitor(running_a={A: 10.0})  # every reading in, then the days closed
    feed(late, readings)
    closed_late = [late.close_day(d)[0] for d in days]
    eager = monitor(running_a={A: 10.0})  # each day closed as soon as the next one starts
    closed_eager, index = [], 0
    for reading in readings:
        while reading.time_ms >= ms(24, day=index):
            closed_eager.append(eager.close_day(days[index])[0])
            index += 1
        eager.observe(reading)
    closed_eager += [eager.close_day(d)[0] for d in days[index:]]
    assert closed_eager == closed_late
    assert abs(sum(d.running_h for d in closed_late) - expected_ms / HOUR) < 0.002
    assert abs(sum(d.energy_kwh for d in closed_late) - expected_kwh) < 0.002
