"""oracles.vehicles and oracles.sim_vehicles: dealer floor-plan finance.

Each rule fires on its condition and not just short of it, once per episode, with the
readings behind it as evidence; test drives and releases are not movements; days are
local (+08:00); a replay gives the same alarms and keys; the daily result round-trips
through its payload. The simulated dealer is deterministic, its clean run raises no
alarm at all, and each incident raises its expected rule.

Readings are really signed (sign_reading with fixed device keys, cached per reading).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from typing import Any

import pytest
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import InvalidInput
from oracles.readings import Alarm, Device, Reading, reading_event_id, sign_reading
from oracles.sim_vehicles import DEALER_INCIDENTS, dealer, rules_config
from oracles.simulate import Scenario
from oracles.vehicles import (
    RULES,
    DealerDay,
    DealerMonitor,
    DealerRules,
    VehicleDay,
    is_valid_vin,
    metres_outside,
    vin_check_digit,
)

DEALER = "urn:fourflow:dealer:CN:SC-CD:T1"
LOCAL = timezone(timedelta(hours=8))
MIDNIGHT = datetime(2026, 11, 24, tzinfo=LOCAL)
DAY0, DAY1 = "2026-11-24", "2026-11-25"
HOUR = 3_600_000
MIN = 60_000


def _vin(draft: str) -> str:
    return draft[:8] + vin_check_digit(draft) + draft[9:]


VIN_A, VIN_B, VIN_C = (_vin(f"LSVAU2A30T2{n:06d}") for n in (101, 102, 103))
VINS = frozenset({VIN_A, VIN_B, VIN_C})
CERT = {vin: f"urn:epc:id:giai:6901234.HGZ{vin}" for vin in VINS}
KEY = {vin: f"urn:epc:id:giai:6901234.KEY{vin}" for vin in (VIN_A, VIN_B)}  # C: no key tag

LOT = ((30.5700, 104.0650), (30.5700, 104.0664), (30.5710, 104.0664), (30.5710, 104.0650))
ON_LOT = (30.5705, 104.0657)
NEAR = (30.56995, 104.0657)  # about 5.5 m south of the fence
FAR = (30.5600, 104.0657)  # about 1.1 km south

TRACKER, TRACKER_B, READER = (
    f"urn:fourflow:device:cd-test:{name}" for name in ("tracker-a", "tracker-b", "safe-reader")
)
KINDS = {TRACKER: "vehicle_gps", TRACKER_B: "vehicle_gps", READER: "tag_read"}
KEYS_ = {device: bytes([i + 7]) * 32 for i, device in enumerate(KINDS)}
DEVICES = {
    device: Device(
        id=device,
        address=Account.from_key(KEYS_[device]).address,
        kinds=frozenset({kind}),
        site="cd-test",
        subject=DEALER,
        heartbeat_s=3_600,
    )
    for device, kind in KINDS.items()
}


def rules(**changes: Any) -> DealerRules:
    base: dict[str, Any] = {
        "dealer": DEALER,
        "vehicles": VINS,
        "lot": LOT,
        "certificates": CERT,
        "keys": KEY,
    }
    return DealerRules(**{**base, **changes})


def monitor(**changes: Any) -> DealerMonitor:
    return DealerMonitor(rules(**changes), DEVICES)


def at(hours: float, day: int = 0) -> str:
    return (MIDNIGHT + timedelta(days=day, hours=hours)).isoformat(timespec="milliseconds")


def ms(hours: float, day: int = 0) -> int:
    moment = MIDNIGHT + timedelta(days=day, hours=hours)
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


@cache
def _signed(device: str, seq: int, time: str, kind: str, data: str) -> Reading:
    unsigned = {"device": device, "seq": seq, "time": time, "kind": kind, "data": json.loads(data)}
    return sign_reading(unsigned, private_key=KEYS_[device])


class Feed:
    """Signed readings with per-device sequence numbers."""

    def __init__(self) -> None:
        self.seq: Counter[str] = Counter()

    def reading(self, device: str, kind: str, time: str, **data: Any) -> Reading:
        seq = self.seq[device]
        self.seq[device] += 1
        return _signed(device, seq, time, kind, json.dumps(data, sort_keys=True))

    def gps(
        self,
        time: str,
        vin: str = VIN_A,
        where: tuple[float, float] = ON_LOT,
        power: str = "external",
        device: str = TRACKER,
    ) -> Reading:
        lat, lon = where
        return self.reading(
            device, "vehicle_gps", time, vin=vin, lat=lat, lon=lon, speed_kmh=0, power=power
        )

    def safe(self, time: str, tags: list[str], direction: str | None) -> Reading:
        data: dict[str, Any] = {"tags": tags, "zone": "safe"}
        if direction is not None:
            data["direction"] = direction
        return self.reading(READER, "tag_read", time, **data)


def eid(reading: Reading) -> str:
    return reading_event_id(reading.device, reading.seq)


def feed_all(m: DealerMonitor, readings: list[Reading]) -> list[Alarm]:
    return [a for r in readings for a in m.observe(r)]


def only(alarms: list[Alarm], rule: str) -> list[Alarm]:
    return [a for a in alarms if a.rule == rule]


# --- VINs and geometry --------------------------------------------------------------------


def test_check_digit_of_known_vins() -> None:
    assert vin_check_digit("1M8GDM9AXKP042788") == "X"  # the textbook example
    assert is_valid_vin("1M8GDM9AXKP042788")
    assert is_valid_vin("11111111111111111")
    assert not is_valid_vin("1M8GDM9A1KP042788")
    assert all(is_valid_vin(v) for v in VINS)


@pytest.mark.parametrize("bad", ["", "1M8GDM9AXKP04278", "1M8GDM9AXKP0427888", "IM8GDM9AXKP042788"])
def test_malformed_vin_is_refused(bad: str) -> None:
    assert not is_valid_vin(bad)
    with pytest.raises(InvalidInput):
        vin_check_digit(bad)


_CHARS = "0123456789ABCDEFGHJKLMNPRSTUVWXYZ"
_VALUE = dict(
    zip(_CHARS, [*range(10), *range(1, 9), *range(1, 6), 7, 9, *range(2, 10)], strict=True)
)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 16).filter(lambda p: p != 8), st.sampled_from(_CHARS))
def test_any_single_substitution_is_caught(position: int, char: str) -> None:
    vin = VIN_A
    changed = vin[:position] + char + vin[position + 1 :]
    assert is_valid_vin(changed) == (_VALUE[char] == _VALUE[vin[position]])


def test_metres_outside() -> None:
    assert metres_outside(ON_LOT, LOT) == 0.0
    assert metres_outside((30.5700, 104.0657), LOT) == 0.0  # on the fence
    assert metres_outside(NEAR, LOT) == pytest.approx(5.53, abs=0.05)
    assert metres_outside(FAR, LOT) == pytest.approx(1105.7, abs=0.5)
    corner = (30.5699, 104.0649)  # beyond a corner: the distance to the vertex
    assert metres_outside(corner, LOT) == pytest.approx(14.63, abs=0.05)


# --- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"dealer": ""}, "dealer"),
        ({"vehicles": frozenset()}, "vehicles"),
        ({"vehicles": VINS | {"LSVAU2A31T2000101"}}, "vehicles"),  # wrong check digit
        ({"vehicles": VINS | {"LSVAU2A3"}}, "vehicles"),
        ({"lot": LOT[:2]}, "lot"),
        ({"lot": ((104.0, 30.5), (104.1, 30.5), (104.1, 300.0))}, "lot"),
        ({"certificates": {**CERT, "LSVAU2A30T2999999": "x"}}, "certificates"),
        ({"keys": {VIN_A: CERT[VIN_A]}}, "keys"),  # a tag used twice
        ({"keys": {VIN_A: ""}}, "keys"),
        ({"safe_zone": ""}, "safe_zone"),
        ({"streak": 0}, "streak"),
        ({"jitter_m": -1}, "jitter_m"),
        ({"jitter_m": float("nan")}, "jitter_m"),
        ({"keys_out_hours": 0}, "keys_out_hours"),
        ({"evidence_cap": 0}, "evidence_cap"),
        ({"utc_offset": "+8"}, "utc_offset"),
    ],
)
def test_bad_configuration_is_refused(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as error:
        rules(**changes)
    assert error.value.field == field


def test_rules_table_names_facts() -> None:
    assert RULES["unauthorized_movement"] == ("breach", "unauthorized_movement")
    assert RULES["certificate_out"] == ("breach", "unauthorized_movement")
    assert RULES["tracker_unplugged"] == ("breach", "tag_removal")
    assert RULES["tracker_silent"] == ("warning", "stale_data")
    assert RULES["keys_out"] == ("warning", None)
    assert RULES["unseen"] == ("warning", None)


def test_unknown_device_and_vehicle_are_refused() -> None:
    m = monitor()
    stranger = Device(**{**DEVICES[TRACKER].__dict__, "subject": "urn:other"})
    m2 = DealerMonitor(rules(), {TRACKER: stranger})
    with pytest.raises(InvalidInput) as error:
        m2.observe(Feed().gps(at(10)))
    assert error.value.code == "unknown_device"
    with pytest.raises(InvalidInput) as error:
        m.release("LSVAU2A30T2999999", ms(10))
    assert error.value.code == "unknown_vehicle"


# --- unauthorized_movement ----------------------------------------------------------------


def test_near_positions_need_a_streak() -> None:
    m, f = monitor(), Feed()
    outs = [f.gps(at(10 + k / 6), where=NEAR) for k in range(4)]
    assert feed_all(m, outs[:2]) == []
    alarms = m.observe(outs[2])
    assert [a.rule for a in alarms] == ["unauthorized_movement"]
    alarm = alarms[0]
    assert alarm.key == f"unauthorized_movement:{VIN_A}:{ms(10)}"
    assert alarm.severity == "breach" and alarm.fact == "unauthorized_movement"
    assert alarm.evidence == tuple(eid(r) for r in outs[:3])
    assert alarm.subject == VIN_A
    assert m.observe(outs[3]) == []  # the same episode
    assert m.observe(f.gps(at(11))) == []  # back on the lot: the episode ends
    again = feed_all(m, [f.gps(at(12 + k / 6), where=NEAR) for k in range(3)])
    assert [a.key for a in again] == [f"unauthorized_movement:{VIN_A}:{ms(12)}"]


def test_a_position_back_on_the_lot_restarts_the_streak() -> None:
    m, f = monitor(), Feed()
    readings = [
        f.gps(at(10), where=NEAR),
        f.gps(at(10.1), where=NEAR),
        f.gps(at(10.2)),
        f.gps(at(10.3), where=NEAR),
        f.gps(at(10.4), where=NEAR),
    ]
    assert feed_all(m, readings) == []


def test_jitter_threshold_is_strict() -> None:
    beyond = metres_outside(NEAR, LOT)
    f = Feed()
    on_edge = monitor(jitter_m=beyond, streak=5)
    assert on_edge.observe(f.gps(at(10), where=NEAR)) == []
    f = Feed()
    under = monitor(jitter_m=beyond - 0.01, streak=5)
    first = f.gps(at(10), where=NEAR)
    alarms = under.observe(first)
    assert [a.rule for a in alarms] == ["unauthorized_movement"]
    assert alarms[0].evidence == (eid(first),)
    assert alarms[0].details["metres_outside"] == round(beyond, 1)


def test_test_drive_is_not_a_movement_until_the_keys_are_out_too_long() -> None:
    m, f = monitor(), Feed()
    assert m.observe(f.safe(at(10), [KEY[VIN_A]], "out")) == []
    drive = [f.gps(at(10 + k / 6), where=FAR) for k in range(1, 25)]  # to exactly 4 h
    assert feed_all(m, drive) == []
    late = f.gps(at(14), where=FAR)
    assert m.observe(late) == []  # a repeat of the 14:00 time: late, moves nothing
    over = f.gps(at(14 + 1 / 60), where=FAR)
    alarms = m.observe(over)
    assert [a.rule for a in alarms] == ["unauthorized_movement"]
    assert alarms[0].key == f"unauthorized_movement:{VIN_A}:{ms(14 + 1 / 60)}"


def test_no_key_tag_no_test_drive() -> None:
    m, f = monitor(), Feed()
    alarms = m.observe(f.gps(at(10), vin=VIN_C, where=FAR))
    assert [a.rule for a in alarms] == ["unauthorized_movement"]


def test_keys_of_another_vehicle_do_not_cover_it() -> None:
    m, f = monitor(), Feed()
    m.observe(f.safe(at(10), [KEY[VIN_B]], "out"))
    assert [a.rule for a in m.observe(f.gps(at(10.2), where=FAR))] == ["unauthorized_movement"]


def test_released_vehicle_may_leave() -> None:
    m, f = monitor(), Feed()
    m.release(VIN_A, ms(10))
    readings = [
        f.safe(at(10), [CERT[VIN_A], KEY[VIN_A]], "out"),
        *(f.gps(at(10 + k / 6), where=FAR, power="battery") for k in range(30)),
    ]
    assert feed_all(m, readings) == []
    assert only(m.check(ms(20)), "keys_out") == []


def test_release_ends_an_episode() -> None:
    m, f = monitor(), Feed()
    assert m.observe(f.gps(at(10), where=FAR)) != []
    m.release(VIN_A, ms(11))
    assert m.observe(f.gps(at(11), where=FAR)) == []
    assert m.observe(f.gps(at(12))) == []


# --- custody ------------------------------------------------------------------------------


def test_certificate_out_is_a_breach_per_episode() -> None:
    m, f = monitor(), Feed()
    out = f.safe(at(23), [CERT[VIN_B]], "out")
    alarms = m.observe(out)
    assert [(a.rule, a.severity, a.fact, a.subject) for a in alarms] == [
        ("certificate_out", "breach", "unauthorized_movement", VIN_B)
    ]
    assert alarms[0].key == f"certificate_out:{VIN_B}:{ms(23)}"
    assert alarms[0].evidence == (eid(out),)
    assert m.observe(f.safe(at(23.5), [CERT[VIN_B]], "out")) == []
    assert m.observe(f.safe(at(24), [CERT[VIN_B]], None)) == []  # inventory scan: back in
    assert [a.key for a in m.observe(f.safe(at(25), [CERT[VIN_B]], "out"))] == [
        f"certificate_out:{VIN_B}:{ms(25)}"
    ]


def test_reads_elsewhere_and_unknown_tags_are_ignored() -> None:
    m, f = monitor(), Feed()
    elsewhere = f.reading(
        READER, "tag_read", at(10), tags=[CERT[VIN_A]], zone="showroom", direction="out"
    )
    assert m.observe(elsewhere) == []
    assert m.observe(f.safe(at(10.1), ["urn:epc:id:giai:1.X"], "out")) == []


def test_keys_out_threshold_is_strict() -> None:
    m, f = monitor(), Feed()
    out = f.safe(at(10), [KEY[VIN_A]], "out")
    m.observe(out)
    assert only(m.check(ms(14)), "keys_out") == []
    alarms = only(m.check(ms(14) + 1), "keys_out")
    assert [(a.rule, a.severity, a.fact) for a in alarms] == [("keys_out", "warning", None)]
    assert alarms[0].key == f"keys_out:{VIN_A}:{ms(10)}"
    assert alarms[0].evidence == (eid(out),)
    assert only(m.check(ms(18)), "keys_out") == []
    assert m.observe(f.safe(at(19), [KEY[VIN_A]], "in")) == []  # the same episode


def test_keys_out_found_at_their_return() -> None:
    m, f = monitor(), Feed()
    out, back = f.safe(at(10), [KEY[VIN_A]], "out"), f.safe(at(15), [KEY[VIN_A]], "in")
    m.observe(out)
    alarms = m.observe(back)
    assert [a.key for a in alarms] == [f"keys_out:{VIN_A}:{ms(10)}"]
    assert alarms[0].evidence == (eid(out), eid(back))
    m2, f2 = monitor(), Feed()
    m2.observe(f2.safe(at(10), [KEY[VIN_A]], "out"))
    assert m2.observe(f2.safe(at(14), [KEY[VIN_A]], "in")) == []


def test_keys_of_a_released_vehicle_may_stay_out() -> None:
    m, f = monitor(), Feed()
    m.observe(f.safe(at(10), [KEY[VIN_A]], "out"))
    m.release(VIN_A, ms(11))
    assert only(m.check(ms(20)), "keys_out") == []


# --- trackers -----------------------------------------------------------------------------


def test_tracker_unplugged_is_a_breach_per_episode() -> None:
    m, f = monitor(), Feed()
    first = f.gps(at(20), power="battery")
    alarms = m.observe(first)
    assert [(a.rule, a.severity, a.fact) for a in alarms] == [
        ("tracker_unplugged", "breach", "tag_removal")
    ]
    assert alarms[0].key == f"tracker_unplugged:{VIN_A}:{ms(20)}" and alarms[0].evidence == (
        eid(first),
    )
    assert m.observe(f.gps(at(20.5), power="battery")) == []
    assert m.observe(f.gps(at(21))) == []
    assert [a.key for a in m.observe(f.gps(at(22), power="battery"))] == [
        f"tracker_unplugged:{VIN_A}:{ms(22)}"
    ]


def test_silence_threshold_is_strict_and_names_the_device() -> None:
    m, f = monitor(), Feed()
    a, b, r = f.gps(at(10)), f.gps(at(10), vin=VIN_B, device=TRACKER_B), f.safe(at(10), [], None)
    feed_all(m, [a, b, r])
    assert m.check(ms(11)) == []
    alarms = m.check(ms(11) + 1)
    assert sorted((x.rule, x.subject) for x in alarms) == [
        ("reader_silent", READER),
        ("tracker_silent", TRACKER),
        ("tracker_silent", TRACKER_B),
    ]
    silent = next(x for x in alarms if x.subject == TRACKER)
    assert silent.key == f"tracker_silent:{TRACKER}:{ms(10)}"
    assert silent.fact == "stale_data" and silent.evidence == (eid(a),)
    assert silent.details["vin"] == VIN_A
    assert m.check(ms(12)) == []


def test_tracker_of_a_released_vehicle_may_go_quiet() -> None:
    m, f = monitor(), Feed()
    feed_all(m, [f.gps(at(10)), f.gps(at(10), vin=VIN_B, device=TRACKER_B)])
    m.release(VIN_A, ms(10.5))
    assert [x.subject for x in m.check(ms(12)) if x.rule == "tracker_silent"] == [TRACKER_B]


def test_a_device_never_heard_is_silent_since_the_first_reading() -> None:
    m, f = monitor(), Feed()
    m.observe(f.gps(at(10)))
    alarms = m.check(ms(11) + 1)
    never = next(x for x in alarms if x.subject == TRACKER_B)
    assert never.key == f"tracker_silent:{TRACKER_B}:{ms(10)}" and never.evidence == ()
    assert monitor().check(ms(20)) == []  # nothing observed yet: no clock


# --- the day ------------------------------------------------------------------------------


def _day_feed() -> tuple[DealerMonitor, list[Reading]]:
    m, f = monitor(), Feed()
    m.release(VIN_B, ms(12))
    readings = [
        f.gps(at(9)),
        f.gps(at(9), vin=VIN_B, device=TRACKER_B),
        f.safe(at(12.5), [CERT[VIN_B], KEY[VIN_B]], "out"),
        f.gps(at(13), vin=VIN_B, where=FAR, device=TRACKER_B),
        f.gps(at(23.9), power="battery"),
        f.gps(at(0.1, day=1)),  # the next day: the day's last A position stays 23:54
    ]
    return m, readings


def test_close_day_statuses_counts_and_custody() -> None:
    m, readings = _day_feed()
    feed_all(m, readings)
    day, alarms = m.close_day(DAY0)
    assert day.financed == 3 and day.released == (VIN_B,)
    assert day.vehicles[VIN_A] == VehicleDay(
        "tracker_unplugged", ms(23.9), ON_LOT[0], ON_LOT[1], None, "in", "in"
    )
    assert day.vehicles[VIN_B].status == "off_lot_released"
    assert day.vehicles[VIN_B].released_ms == ms(12)
    assert (day.vehicles[VIN_B].certificate, day.vehicles[VIN_B].keys) == ("out", "out")
    assert day.vehicles[VIN_C] == VehicleDay("unseen", certificate="in", keys=None)
    assert (day.on_lot, day.off_lot_released, day.off_lot_unreleased) == (0, 1, 0)
    assert (day.unseen, day.tracker_unplugged) == (1, 1)
    assert (day.certificates_in_safe, day.keys_in_safe) == (2, 1)
    wanted = [readings[2], readings[3], readings[4]]  # last positions, reads at the safe
    assert day.evidence == tuple(eid(r) for r in wanted)
    assert day.evidence_omitted == 2  # the 09:00 positions
    assert [(a.rule, a.key) for a in alarms if a.rule == "unseen"] == [
        ("unseen", f"unseen:{VIN_C}:{DAY0}")
    ]
    with pytest.raises(InvalidInput) as error:
        m.close_day(DAY0)
    assert error.value.code == "day_closed"
    nxt, _ = m.close_day(DAY1)
    assert nxt.financed == 2 and nxt.released == ()
    assert nxt.vehicles[VIN_A].status == "on_lot" and nxt.vehicles[VIN_B].status == "unseen"


def test_unseen_is_raised_for_financed_vehicles_only() -> None:
    m, f = monitor(), Feed()
    m.observe(f.gps(at(10)))
    m.release(VIN_B, ms(10))
    _, alarms = m.close_day(DAY0)
    assert [a.subject for a in alarms] == [VIN_C]
    assert alarms[0].severity == "warning" and alarms[0].fact is None


def test_local_days_split_at_local_midnight() -> None:
    m, f = monitor(), Feed()
    feed_all(m, [f.gps(at(23.99), where=NEAR), f.gps(at(0, day=1))])
    day0, _ = m.close_day(DAY0)
    day1, _ = m.close_day(DAY1)
    assert day0.vehicles[VIN_A].status == "off_lot_unreleased"
    assert day1.vehicles[VIN_A].status == "on_lot"
    assert day1.vehicles[VIN_A].last_seen_ms == ms(0, day=1)


def test_evidence_cap() -> None:
    m, readings = _day_feed()
    m = DealerMonitor(rules(evidence_cap=2), DEVICES)
    m.release(VIN_B, ms(12))
    feed_all(m, readings)
    day, _ = m.close_day(DAY0)
    assert len(day.evidence) == 2 and day.evidence_omitted == 3


def test_payload_round_trip() -> None:
    m, readings = _day_feed()
    feed_all(m, readings)
    day, _ = m.close_day(DAY0)
    payload = json.loads(json.dumps(day.to_payload()))
    assert DealerDay.from_payload(payload) == day
    assert DealerDay.from_payload(payload).to_payload() == payload


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.pop("financed"),
        lambda p: p.update(financed="3"),
        lambda p: p.update(on_lot=7),  # the counts disagree with the vehicles
        lambda p: p.update(day="2026-13-01"),
        lambda p: p["vehicles"][VIN_A].update(status="stolen"),
        lambda p: p["vehicles"][VIN_A].update(keys="lost"),
        lambda p: p.update(vehicles=[]),
    ],
)
def test_bad_payload_is_refused(damage: Any) -> None:
    m, readings = _day_feed()
    feed_all(m, readings)
    payload = json.loads(json.dumps(m.close_day(DAY0)[0].to_payload()))
    damage(payload)
    with pytest.raises(InvalidInput):
        DealerDay.from_payload(payload)


# --- order and replay ---------------------------------------------------------------------


def test_redelivered_and_late_readings_move_nothing() -> None:
    m, f = monitor(), Feed()
    first = f.gps(at(10), where=NEAR)
    m.observe(first)
    assert m.observe(first) == []  # redelivered
    m.observe(f.gps(at(10.2), where=NEAR))
    old = f.gps(at(10.1), where=NEAR)  # late: does not extend the run
    assert m.observe(old) == []
    assert [a.rule for a in m.observe(f.gps(at(10.3), where=NEAR))] == ["unauthorized_movement"]


def test_a_closed_day_takes_no_more_readings() -> None:
    m, f = monitor(), Feed()
    m.close_day(DAY0)
    m.observe(f.gps(at(10)))
    day, _ = m.close_day(DAY1)
    assert day.vehicles[VIN_A].status == "unseen"


def test_replay_gives_the_same_alarms_and_keys() -> None:
    f = Feed()
    readings = [
        f.safe(at(9), [KEY[VIN_A]], "out"),
        f.gps(at(9.5), where=FAR),
        f.gps(at(10), vin=VIN_C, where=NEAR),
        f.gps(at(10.1), vin=VIN_C, where=NEAR),
        f.gps(at(10.2), vin=VIN_C, where=NEAR),
        f.safe(at(22), [CERT[VIN_B]], "out"),
        f.gps(at(23), power="battery"),
    ]

    def replay() -> list[Alarm]:
        m = monitor()
        out: list[Alarm] = []
        for r in readings:
            out += m.check(r.time_ms)
            out += m.observe(r)
        out += m.close_day(DAY0)[1]
        return out

    first, second = replay(), replay()
    assert first == second
    assert len({a.key for a in first}) == len(first)
    assert Counter(a.rule for a in first) == Counter(
        {
            "unauthorized_movement": 1,
            "certificate_out": 1,
            "keys_out": 1,
            "tracker_unplugged": 1,
            "tracker_silent": 2,
            "reader_silent": 1,
            "unseen": 1,
        }
    )


# --- the simulated dealer -----------------------------------------------------------------

N, D = 12, 2  # vehicles, days
SIM: dict[str, Any] = {"days": D, "seed": 7, "vehicles": N}


@pytest.fixture(scope="module")
def lot() -> Scenario:
    return dealer(**SIM)


@pytest.fixture(scope="module")
def clean_lot() -> Scenario:
    return dealer(**SIM, incidents=())


SHORT: dict[str, Any] = {"days": 1, "seed": 3, "vehicles": 10}


@pytest.fixture(scope="module")
def short() -> Scenario:
    return dealer(**SHORT)


def run(s: Scenario) -> tuple[list[Alarm], list[DealerDay]]:
    """Readings, releases and a check every 10 min in time order; each day closed at its end."""
    m = DealerMonitor(DealerRules(**rules_config(s)), {d.device.id: d.device for d in s.devices})
    releases = sorted((t, vin) for t, vins in s.releases for vin in vins)
    alarms: list[Alarm] = []
    days: list[DealerDay] = []
    next_check, day_end = s.start_ms + 10 * MIN, s.start_ms + 24 * HOUR

    def until(t: int) -> None:
        nonlocal next_check, day_end
        while releases and releases[0][0] <= t:
            released_ms, vin = releases.pop(0)
            m.release(vin, released_ms)
        while min(next_check, day_end) <= t:
            if next_check <= day_end:
                alarms.extend(m.check(next_check))
                next_check += 10 * MIN
            else:
                day, found = m.close_day(
                    datetime.fromtimestamp((day_end - 1) / 1000, LOCAL).date().isoformat()
                )
                days.append(day)
                alarms.extend(found)
                day_end += 24 * HOUR

    for r in s.readings:
        until(r.time_ms)
        alarms.extend(m.observe(r))
    until(s.end_ms)
    return alarms, days


def test_same_seed_same_bytes_another_seed_differs(short: Scenario) -> None:
    def dump(s: Scenario) -> str:
        return json.dumps([r.model_dump(mode="json") for r in s.readings])

    assert dump(dealer(**SHORT)) == dump(short)
    assert dump(dealer(**{**SHORT, "seed": 4})) != dump(short)


def test_readings_are_signed_in_order_and_realistic(lot: Scenario) -> None:
    devices = {d.device.id: d.device for d in lot.devices}
    for r in lot.readings[:: max(1, len(lot.readings) // 40)]:
        devices[r.device].check(r)  # signature, kind
    times = [r.time_ms for r in lot.readings]
    assert times == sorted(times)
    last: dict[str, int] = {}
    for r in lot.readings:
        assert r.seq > last.get(r.device, -1)
        last[r.device] = r.seq
    vins = lot.subject["vehicles"]
    assert len(vins) == N and all(is_valid_vin(v) for v in vins)
    assert {v[:3] for v in vins} <= {"LSV", "LFV", "LGB", "LGX", "LVS"}
    speeds = [r.data["speed_kmh"] for r in lot.readings if r.kind == "vehicle_gps"]
    assert max(speeds) < 120 and min(speeds) == 0
    per_day = Counter(r.kind for r in lot.readings)
    assert N * 144 * D * 0.9 < per_day["vehicle_gps"] < N * 144 * D * 1.5


def test_bad_arguments_are_refused() -> None:
    for bad in ({"days": 0}, {"vehicles": 5}, {"incidents": ["meteor"]}):
        with pytest.raises(InvalidInput):
            dealer(**{**SIM, **bad})


def test_clean_run_raises_nothing(clean_lot: Scenario) -> None:
    alarms, days = run(clean_lot)
    assert alarms == []
    assert len(days) == D
    sold = [vin for _, vins in clean_lot.releases for vin in vins]
    assert sold and len(sold) == len(set(sold))
    for day in days:
        assert day.on_lot + day.off_lot_released == N
        assert day.off_lot_unreleased == day.unseen == day.tracker_unplugged == 0
        assert day.keys_in_safe == day.certificates_in_safe
    assert days[-1].off_lot_released == len(sold)
    assert days[-1].financed == N - sum(len(d.released) for d in days[:-1])
    drives = [
        r
        for r in clean_lot.readings
        if r.kind == "tag_read"
        and r.data["tags"][0] in set(clean_lot.subject["keys"].values())
        and len(r.data["tags"]) == 1
    ]
    assert len(drives) >= 2 * 3 * D  # out and in, at least 3 a day


def test_incidents_change_nothing_else(lot: Scenario, clean_lot: Scenario) -> None:
    touched = {item for i in lot.incidents for item in i.items}
    vins = set(lot.subject["vehicles"])
    touched_trackers = {
        r.device for r in lot.readings if r.kind == "vehicle_gps" and r.data["vin"] in touched
    } | (touched - vins)

    def others(s: Scenario) -> list[tuple[str, str, Any]]:
        return [
            (r.device, r.time, r.data)
            for r in s.readings
            if r.kind == "vehicle_gps" and r.device not in touched_trackers
        ]

    assert others(lot) == others(clean_lot)
    assert [i.start_ms for i in lot.incidents] == sorted(i.start_ms for i in lot.incidents)


def test_each_incident_raises_its_rule(lot: Scenario) -> None:
    alarms, _ = run(lot)
    assert sorted(i.kind for i in lot.incidents) == sorted(DEALER_INCIDENTS)
    for incident in lot.incidents:
        items = set(incident.items)
        found = {a.rule for a in alarms if a.subject in items}
        assert incident.expected_rule in found, incident
        extra = {"certificate_out", "keys_out"} if incident.kind == "sold_unpaid" else set()
        assert found == {incident.expected_rule} | extra, incident
        first = min(
            a.time_ms for a in alarms if a.rule == incident.expected_rule and a.subject in items
        )
        assert incident.start_ms <= first <= incident.start_ms + 5 * HOUR
    touched = {item for i in lot.incidents for item in i.items}
    assert [a for a in alarms if a.subject not in touched] == []


def test_a_one_day_run_shows_every_incident(short: Scenario) -> None:
    alarms, days = run(short)
    assert sorted(i.kind for i in short.incidents) == sorted(DEALER_INCIDENTS)
    for incident in short.incidents:
        assert incident.expected_rule in {a.rule for a in alarms if a.subject in incident.items}
    assert {a.subject for a in alarms} <= {item for i in short.incidents for item in i.items}
    (day,) = days
    unpaid = next(i.subject for i in short.incidents if i.kind == "sold_unpaid")
    assert day.vehicles[unpaid].status == "off_lot_unreleased"
    assert day.off_lot_unreleased == 1 and day.certificates_in_safe == 10 - len(day.released) - 2


def test_a_read_at_midnight_belongs_to_the_next_day() -> None:
    m, f = monitor(), Feed()
    feed_all(m, [f.gps(at(10)), f.safe(at(0, day=1), [CERT[VIN_A]], "out")])
    day0, _ = m.close_day(DAY0)
    day1, _ = m.close_day(DAY1)
    assert day0.vehicles[VIN_A].certificate == "in" and day0.certificates_in_safe == 3
    assert day1.vehicles[VIN_A].certificate == "out" and day1.certificates_in_safe == 2
