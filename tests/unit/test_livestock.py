"""oracles.livestock: each rule fires on its condition and not just short of it, once per
episode, with the readings behind it as evidence; daily counts reconcile tags and camera
per local (+08:00) day; a replay gives the same alarms and keys.

Readings are really signed (sign_reading with fixed device keys); signing is cached per
(device, seq, time, data) because it costs about 3 ms.
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
from oracles import livestock
from oracles.livestock import (
    RULES,
    AnimalDay,
    DailyCount,
    HerdMonitor,
    HerdRules,
    WeightSummary,
    point_in_polygon,
    reconcile,
)
from oracles.readings import Alarm, Device, Reading, reading_event_id, sign_reading

HERD = "urn:fourflow:herd:ranch-17:H1"
TAGS = tuple(f"urn:fourflow:eartag:CN:ranch-17:{i:06d}" for i in range(30))
STRAY = "urn:fourflow:eartag:CN:ranch-99:000001"
DAY0, DAY1, DAY2 = "2026-11-20", "2026-11-21", "2026-11-22"
LOCAL = timezone(timedelta(hours=8))
MIDNIGHT = datetime(2026, 11, 20, tzinfo=LOCAL)  # the herd's local start of DAY0
HOUR = 3_600_000

GATE, COLLARS, CAMERA, SCALE, TAMPER = (
    f"urn:fourflow:device:ranch-17:{name}"
    for name in ("gate", "collars", "camera", "scale", "tamper")
)
KINDS = {
    GATE: "tag_read",
    COLLARS: "collar",
    CAMERA: "head_count",
    SCALE: "weight",
    TAMPER: "tamper",
}
KEYS = {device: bytes([i + 1]) * 32 for i, device in enumerate(KINDS)}
DEVICES = {
    device: Device(
        id=device,
        address=Account.from_key(KEYS[device]).address,
        kinds=frozenset({kind}),
        site="ranch-17",
        subject=HERD,
        heartbeat_s=3_600,
    )
    for device, kind in KINDS.items()
}

FENCE = ((43.00, 116.00), (43.00, 116.02), (43.02, 116.02), (43.02, 116.00))
BARN = ((43.005, 116.005), (43.005, 116.008), (43.008, 116.008), (43.008, 116.005))
PASTURE = (43.015, 116.015)
IN_BARN = (43.0065, 116.0065)
OUTSIDE = (43.05, 116.05)


def rules(**changes: Any) -> HerdRules:
    settings_: dict[str, Any] = {
        "herd": HERD,
        "animals": frozenset(TAGS),
        "minimum": 25,
        "max_daily_drop_pct": 10.0,
        "geofence": FENCE,
        "barn": BARN,
    }
    return HerdRules(**{**settings_, **changes})


def monitor(**changes: Any) -> HerdMonitor:
    return HerdMonitor(rules(**changes), DEVICES)


def at(hours: float, day: int = 0) -> str:
    """A local (+08:00) time, ``hours`` after midnight of DAY0 + ``day``."""
    return (MIDNIGHT + timedelta(days=day, hours=hours)).isoformat(timespec="milliseconds")


def ms(hours: float, day: int = 0) -> int:
    moment = MIDNIGHT + timedelta(days=day, hours=hours)
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


@cache
def _signed(device: str, seq: int, time: str, kind: str, data: str) -> Reading:
    unsigned = {"device": device, "seq": seq, "time": time, "kind": kind, "data": json.loads(data)}
    return sign_reading(unsigned, private_key=KEYS[device])


class Feed:
    """Signed readings with per-device sequence numbers, as the devices send them."""

    def __init__(self) -> None:
        self.seq: Counter[str] = Counter()

    def reading(self, device: str, kind: str, time: str, **data: Any) -> Reading:
        seq = self.seq[device]
        self.seq[device] += 1
        return _signed(device, seq, time, kind, json.dumps(data, sort_keys=True))

    def gate(self, time: str, tags: Iterable[str] = TAGS) -> Reading:
        return self.reading(GATE, "tag_read", time, tags=list(tags), zone="parlour")

    def collar(
        self,
        time: str,
        tag: str,
        where: tuple[float, float] = PASTURE,
        temperature: float = 38.6,
        activity: float = 120,
    ) -> Reading:
        lat, lon = where
        return self.reading(
            COLLARS,
            "collar",
            time,
            tag=tag,
            lat=lat,
            lon=lon,
            activity=activity,
            temperature=temperature,
        )

    def camera(self, time: str, pen: str, count: int) -> Reading:
        return self.reading(CAMERA, "head_count", time, pen=pen, count=count, confidence=0.95)

    def tamper(self, time: str, tag: str, event: str) -> Reading:
        return self.reading(TAMPER, "tamper", time, tag=tag, event=event)

    def weigh(self, time: str, kg: float, tag: str | None = None) -> Reading:
        data: dict[str, Any] = {"kg": kg} if tag is None else {"kg": kg, "tag": tag}
        return self.reading(SCALE, "weight", time, **data)

    def heartbeat(self, device: str, time: str) -> Reading:
        return self.reading(device, "heartbeat", time, battery=80)


def eid(reading: Reading) -> str:
    return reading_event_id(reading.device, reading.seq)


def feed(m: HerdMonitor, readings: Iterable[Reading]) -> list[Alarm]:
    return [alarm for reading in readings for alarm in m.observe(reading)]


def only(alarms: Iterable[Alarm], rule: str) -> list[Alarm]:
    return [a for a in alarms if a.rule == rule]


# --- module surface -------------------------------------------------------------------------


def test_public_names_are_pinned() -> None:
    assert livestock.__all__ == [
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


def test_docstring_table_states_every_rule_with_its_severity_and_fact() -> None:
    doc = livestock.__doc__ or ""
    rows = {line.split("|")[1].strip(): line for line in doc.splitlines() if line.startswith("| ")}
    for rule, (severity, fact) in RULES.items():
        assert rule in rows, rule
        cells = [c.strip() for c in rows[rule].split("|")]
        assert cells[3] == severity
        assert cells[4].startswith(fact or "—")


# --- geometry -------------------------------------------------------------------------------


U_SHAPE = (
    (0.0, 0.0),
    (0.0, 3.0),
    (3.0, 3.0),
    (3.0, 2.0),
    (1.0, 2.0),
    (1.0, 1.0),
    (3.0, 1.0),
    (3.0, 0.0),
)


@pytest.mark.parametrize(
    ("point", "inside"),
    [
        ((0.5, 0.5), True),  # the U's base
        ((2.0, 0.5), True),  # its lower arm
        ((2.0, 1.5), False),  # the notch between the arms
        ((2.0, 2.5), True),  # its upper arm
        ((0.0, 1.5), True),  # on an edge
        ((3.0, 3.0), True),  # a vertex
        ((1.0, 1.5), True),  # on the notch's inner edge
        ((-0.1, 1.5), False),
        ((3.5, 0.5), False),
    ],
)
def test_point_in_polygon_on_a_concave_shape(point: tuple[float, float], inside: bool) -> None:
    assert point_in_polygon(point, U_SHAPE) is inside


@settings(derandomize=True, max_examples=200, deadline=None)
@given(
    box=st.tuples(*(st.floats(-80, 80, allow_nan=False) for _ in range(4))),
    point=st.tuples(st.floats(-90, 90, allow_nan=False), st.floats(-90, 90, allow_nan=False)),
)
def test_point_in_polygon_agrees_with_a_box_test(
    box: tuple[float, float, float, float], point: tuple[float, float]
) -> None:
    lat0, lat1 = sorted(box[:2])
    lon0, lon1 = sorted(box[2:])
    if lat1 - lat0 < 1e-3 or lon1 - lon0 < 1e-3:
        return
    rectangle = ((lat0, lon0), (lat0, lon1), (lat1, lon1), (lat1, lon0))
    expected = lat0 <= point[0] <= lat1 and lon0 <= point[1] <= lon1
    assert point_in_polygon(point, rectangle) is expected


# --- rules and days -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"herd": ""}, "herd"),
        ({"minimum": -1}, "minimum"),
        ({"max_daily_drop_pct": 0}, "max_daily_drop_pct"),
        ({"unseen_hours": 0}, "unseen_hours"),
        ({"geofence": ((43.0, 116.0), (43.1, 116.1))}, "geofence"),
        ({"barn": ()}, "barn"),
        ({"night_hours": (6, 6)}, "night_hours"),
        ({"night_hours": (20, 24)}, "night_hours"),
        ({"temperature_c": (39.0, 38.0)}, "temperature_c"),
        ({"activity": (600.0, 600.0)}, "activity"),
        ({"streak": 0}, "streak"),
        ({"utc_offset": "+8"}, "utc_offset"),
        ({"utc_offset": "+08:60"}, "utc_offset"),
        ({"camera_tolerance": -1}, "camera_tolerance"),
        ({"evidence_cap": 0}, "evidence_cap"),
    ],
)
def test_rules_refuse_bad_settings(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        rules(**change)
    assert caught.value.field == field


def test_rules_take_polygons_as_lists() -> None:
    r = rules(geofence=[[43.0, 116.0], [43.0, 116.02], [43.02, 116.02]], barn=None)
    assert r.geofence == ((43.0, 116.0), (43.0, 116.02), (43.02, 116.02))
    assert r.barn is None


def test_days_are_local_to_the_herd_offset() -> None:
    r = rules()
    assert r.day_of(ms(0)) == DAY0
    assert r.day_of(ms(0) - 1) == "2026-11-19"
    assert r.day_of(ms(24) - 1) == DAY0
    assert r.day_of(ms(24)) == DAY1
    assert r.day_bounds(DAY0) == (ms(0), ms(24))
    # 2026-11-20T16:00Z is midnight of the 21st in +08:00 but 11:00 on the 20th in -05:00
    assert rules(utc_offset="-05:00").day_of(ms(24)) == DAY0
    assert r.is_night(ms(20)) and r.is_night(ms(5.99)) and not r.is_night(ms(6))
    assert not r.is_night(ms(19.99))


def test_readings_count_toward_their_local_day() -> None:
    f, m = Feed(), monitor(minimum=0)
    before = f.gate("2026-11-20T15:59:59.999Z", TAGS[:10])  # 23:59:59.999 on DAY0 at +08:00
    after = f.gate("2026-11-20T16:00:00.000Z", TAGS[10:20])  # 00:00 on DAY1 at +08:00
    feed(m, [before, after])
    day0, _ = m.close_day(DAY0)
    day1, _ = m.close_day(DAY1)
    assert (day0.tags_seen, day0.evidence) == (10, (eid(before),))
    assert (day1.tags_seen, day1.evidence) == (10, (eid(after),))
    assert day0.animals[TAGS[0]].last_seen_ms == ms(24) - 1


# --- reconciliation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "camera", "expected"),
    [
        (30, None, (30, "tags", 0.90)),
        (None, 29, (29, "camera", 0.80)),
        (30, 28, (30, "tags+camera", 0.99)),  # apart by exactly the tolerance: agree
        (28, 30, (28, "tags+camera", 0.99)),
        (30, 27, (27, "tags+camera", 0.891)),  # one head further: the lower count, less sure
        (25, 30, (25, "tags+camera", 0.825)),
        (None, None, (0, "none", 0.0)),
    ],
)
def test_reconcile(tags: int | None, camera: int | None, expected: tuple[int, str, float]) -> None:
    assert reconcile(tags, camera, tolerance=2) == expected


def day_of(readings: Iterable[Reading], **changes: Any) -> tuple[DailyCount, list[Alarm]]:
    m = monitor(**changes)
    feed(m, readings)
    return m.close_day(DAY0)


def test_count_from_tags_only() -> None:
    f = Feed()
    count, _ = day_of([f.gate(at(7))])
    assert (count.head_count, count.method, count.confidence) == (30, "tags", 0.90)
    assert (count.tags_seen, count.camera_count) == (30, None)


def test_count_from_camera_only() -> None:
    f = Feed()
    count, _ = day_of([f.camera(at(6), "A", 15), f.camera(at(6.1), "B", 14)])
    assert (count.head_count, count.method, count.confidence) == (29, "camera", 0.80)
    assert (count.tags_seen, count.camera_count) == (0, 29)
    assert all(a.status == "missing" for a in count.animals.values())


def test_count_when_tags_and_camera_agree() -> None:
    f = Feed()
    count, _ = day_of([f.camera(at(6), "A", 15), f.camera(at(6.1), "B", 14), f.gate(at(7))])
    assert (count.head_count, count.method, count.confidence) == (30, "tags+camera", 0.99)


def test_count_when_tags_and_camera_disagree() -> None:
    f = Feed()
    count, _ = day_of([f.camera(at(6), "A", 12), f.camera(at(6.1), "B", 15), f.gate(at(7))])
    assert (count.head_count, count.method) == (27, "tags+camera")
    assert count.confidence == round(0.99 * 27 / 30, 4) < 0.99
    assert (count.tags_seen, count.camera_count) == (30, 27)


def test_camera_count_is_the_largest_sweep_of_latest_pen_counts() -> None:
    f = Feed()
    six = [f.camera(at(6), "A", 15), f.camera(at(6.2), "B", 14)]  # 29
    seven = [
        f.camera(at(7.1), "A", 16),
        f.camera(at(7.5), "A", 13),
        f.camera(at(7.6), "B", 14),
    ]  # 27
    eight = [f.camera(at(8), "A", 16)]  # 16
    count, _ = day_of([*six, *seven, *eight])
    assert count.camera_count == 29  # not 30: a pen's later count in the hour replaces its earlier
    assert set(map(eid, six)) <= set(count.evidence)


def test_weight_is_the_mean_of_the_herds_weighings() -> None:
    f = Feed()
    weighings = [
        f.weigh(at(9), 612.5, TAGS[0]),
        f.weigh(at(9.1), 598.0, TAGS[1]),
        f.weigh(at(9.2), 605),
        f.weigh(at(9.3), 900.0, STRAY),  # not the herd's animal
    ]
    count, _ = day_of(weighings, minimum=0)
    assert count.weight == WeightSummary(mean_kg=605.2, n=3)
    assert count.animals[STRAY].status == "unregistered"
    assert count.tags_seen == 2


def test_animal_statuses_and_the_head_count_they_give() -> None:
    f = Feed()
    readings = [
        f.gate(at(8), [*TAGS[:23], STRAY]),
        f.collar(at(10), TAGS[20], where=OUTSIDE),
        *(f.collar(at(h), TAGS[21], temperature=40.5) for h in (11, 12, 13)),
        f.tamper(at(14), TAGS[22], "removed"),
        f.tamper(at(15), TAGS[0], "cut"),
        f.tamper(at(16), TAGS[0], "reattached"),
    ]
    count, alarms = day_of(readings)
    status = {tag: a.status for tag, a in count.animals.items()}
    assert status[TAGS[20]] == "outside_fence"
    assert status[TAGS[21]] == "sick"
    assert status[TAGS[22]] == "tag_removed"
    assert status[TAGS[0]] == "present"  # reattached before the day ended
    assert status[STRAY] == "unregistered"
    assert [t for t in TAGS if status[t] == "missing"] == list(TAGS[23:])
    assert count.tags_seen == count.head_count == 22
    assert count.animals[TAGS[21]] == AnimalDay("sick", ms(13), 40.5)
    assert count.animals[TAGS[1]] == AnimalDay("present", ms(8), None)
    assert count.animals[TAGS[29]] == AnimalDay("missing", None, None)
    assert [a.rule for a in alarms] == ["below_minimum"]


def test_a_removal_still_open_at_midnight_marks_the_tag_removed_that_day() -> None:
    f, m = Feed(), monitor(minimum=0)
    feed(
        m,
        [
            f.gate(at(8)),
            f.tamper(at(23), TAGS[3], "removed"),
            f.tamper(at(1, day=1), TAGS[3], "reattached"),
        ],
    )
    feed(m, [f.gate(at(8, day=1))])
    day0, _ = m.close_day(DAY0)
    day1, _ = m.close_day(DAY1)
    assert day0.animals[TAGS[3]].status == "tag_removed"
    assert day1.animals[TAGS[3]].status == "present"
    assert (day0.head_count, day1.head_count) == (29, 30)


# --- count rules ----------------------------------------------------------------------------


def test_below_minimum_fires_one_head_under_and_not_at_the_minimum() -> None:
    f = Feed()
    at_minimum, quiet = day_of([f.gate(at(7), TAGS[:25])])
    assert at_minimum.head_count == 25 and quiet == []

    f = Feed()
    reading = f.gate(at(7), TAGS[:24])
    count, alarms = day_of([reading])
    [alarm] = alarms
    assert alarm.key == f"below_minimum:{HERD}:{DAY0}"
    assert (alarm.rule, alarm.subject, alarm.severity, alarm.fact) == (
        "below_minimum",
        HERD,
        "breach",
        "quantity",
    )
    assert alarm.time_ms == ms(24)
    assert alarm.evidence == count.evidence == (eid(reading),)
    assert alarm.details["quantity"] == 24 and alarm.details["minimum"] == 25


def two_days(previous: int, current: int, pct: float = 10.0) -> list[Alarm]:
    f, m = Feed(), monitor(minimum=0, max_daily_drop_pct=pct)
    feed(m, [f.camera(at(6), "A", previous), f.camera(at(6, day=1), "A", current)])
    m.close_day(DAY0)
    return m.close_day(DAY1)[1]


def test_a_drop_of_exactly_the_limit_is_quiet_and_one_head_more_fires() -> None:
    assert two_days(30, 27) == []  # exactly 10 %
    [alarm] = two_days(30, 26)
    assert alarm.key == f"daily_drop:{HERD}:{DAY1}"
    assert (alarm.severity, alarm.fact) == ("breach", None)
    assert alarm.details["previous_head_count"] == 30 and alarm.details["drop_pct"] == 13.33
    assert alarm.details["fact"].startswith("none")
    assert two_days(40, 38, pct=5.0) == []  # exactly 5 %
    assert only(two_days(40, 37, pct=5.0), "daily_drop")


@settings(derandomize=True, max_examples=40, deadline=None)
@given(previous=st.integers(1, 60), pct=st.integers(1, 50), data=st.data())
def test_drop_fires_exactly_above_the_limit(previous: int, pct: int, data: st.DataObject) -> None:
    current = data.draw(st.integers(0, previous))
    fired = bool(only(two_days(previous, current, float(pct)), "daily_drop"))
    assert fired is ((previous - current) * 100 > pct * previous)


def test_a_day_nobody_counted_is_no_count_not_zero_head() -> None:
    f, m = Feed(), monitor(minimum=25)
    feed(m, [f.gate(at(7)), f.heartbeat(GATE, at(7, day=1)), f.gate(at(7, day=2), TAGS[:26])])
    assert m.close_day(DAY0)[1] == []
    count, alarms = m.close_day(DAY1)
    assert (count.method, count.head_count, count.confidence) == ("none", 0, 0.0)
    assert [(a.rule, a.key, a.fact) for a in alarms] == [
        ("no_count", f"no_count:{HERD}:{DAY1}", None)
    ]
    _, alarms = m.close_day(DAY2)  # 30 → 26 against the last counted day: a drop above 10 %
    assert [a.rule for a in alarms] == ["daily_drop"]
    assert alarms[0].details["previous_day"] == DAY0


def test_a_closed_day_is_final() -> None:
    f, m = Feed(), monitor(minimum=0)
    feed(m, [f.gate(at(7), TAGS[:10])])
    m.close_day(DAY0)
    assert m.observe(f.gate(at(8), TAGS)) == []  # late for a closed day: counts nowhere
    with pytest.raises(InvalidInput) as caught:
        m.close_day(DAY0)
    assert caught.value.code == "day_closed"
    assert m.close_day(DAY1)[0].tags_seen == 0
    with pytest.raises(InvalidInput):
        m.close_day("2026/11/20")


# --- silence rules --------------------------------------------------------------------------


def test_unseen_fires_after_the_limit_and_not_at_it() -> None:
    f, m = Feed(), monitor(unseen_hours=24)
    gate = f.gate(at(6))
    collar = f.collar(at(12), TAGS[0])
    feed(m, [gate, collar])
    assert only(m.check(ms(6) + 24 * HOUR), "unseen") == []
    late = only(m.check(ms(6) + 24 * HOUR + 1), "unseen")
    assert [a.subject for a in late] == sorted(TAGS[1:])
    first = late[0]
    assert first.key == f"unseen:{first.subject}:{ms(6)}"
    assert (first.severity, first.fact, first.evidence) == ("warning", None, (eid(gate),))
    assert only(m.check(ms(11, day=1)), "unseen") == []  # the same episodes: raised once
    [again] = only(m.check(ms(12) + 24 * HOUR + 1), "unseen")
    assert (again.subject, again.evidence) == (TAGS[0], (eid(collar),))
    feed(m, [f.gate(at(13, day=1), TAGS[1:2])])  # seen again; silent again later: a new episode
    [new] = only(m.check(ms(13, day=2) + 1), "unseen")
    assert new.key == f"unseen:{TAGS[1]}:{ms(13, day=1)}"


def test_unseen_counts_from_the_first_reading_for_an_animal_never_seen() -> None:
    f, m = Feed(), monitor()
    assert m.check(ms(100)) == []  # no reading yet: no clock
    feed(m, [f.heartbeat(GATE, at(6))])
    assert only(m.check(ms(6, day=1)), "unseen") == []
    alarms = only(m.check(ms(6, day=1) + 1), "unseen")
    assert len(alarms) == 30
    assert alarms[0].evidence == () and alarms[0].key.endswith(f":{ms(6)}")


def test_a_device_silent_past_its_heartbeat_is_stale_data() -> None:
    f, m = Feed(), monitor()
    first = f.gate(at(6))
    feed(m, [first, *(f.heartbeat(d, at(6)) for d in (COLLARS, CAMERA, SCALE, TAMPER))])
    assert only(m.check(ms(7)), "stale_device") == []  # exactly heartbeat_s
    alarms = only(m.check(ms(7) + 1), "stale_device")
    assert sorted(a.subject for a in alarms) == sorted(DEVICES)
    gate_alarm = next(a for a in alarms if a.subject == GATE)
    assert (gate_alarm.severity, gate_alarm.fact) == ("warning", "stale_data")
    assert gate_alarm.key == f"stale_device:{GATE}:{ms(6)}"
    assert gate_alarm.evidence == (eid(first),)
    assert only(m.check(ms(9)), "stale_device") == []  # once per silence
    beat = f.heartbeat(GATE, at(10))
    feed(m, [beat])
    [again] = [a for a in m.check(ms(11) + 1) if a.subject == GATE]
    assert (again.key, again.evidence) == (f"stale_device:{GATE}:{ms(10)}", (eid(beat),))


# --- animal rules ---------------------------------------------------------------------------


def test_a_tamper_removal_is_a_breach_once_per_episode() -> None:
    f, m = Feed(), monitor()
    removed = f.tamper(at(10), TAGS[0], "removed")
    [alarm] = m.observe(removed)
    assert alarm.key == f"tag_removal:{TAGS[0]}:{ms(10)}"
    assert (alarm.severity, alarm.fact, alarm.evidence) == (
        "breach",
        "tag_removal",
        (eid(removed),),
    )
    assert m.observe(f.tamper(at(10.1), TAGS[0], "cut")) == []
    assert m.observe(f.collar(at(10.2), TAGS[0])) == []  # a warm collar does not undo a tamper
    assert m.observe(f.tamper(at(10.3), TAGS[0], "removed")) == []
    assert m.observe(f.tamper(at(11), TAGS[0], "reattached")) == []
    cut = f.tamper(at(12), TAGS[0], "cut")
    [second] = m.observe(cut)
    assert second.key == f"tag_removal:{TAGS[0]}:{ms(12)}" and second.details["event"] == "cut"
    assert m.observe(f.tamper(at(12), STRAY, "removed")) == []  # not the herd's animal


def test_a_collar_at_ambient_for_three_readings_is_a_tag_removal() -> None:
    f, m = Feed(), monitor()
    cold = [f.collar(at(10 + i / 10), TAGS[0], temperature=29.9, activity=0) for i in range(4)]
    assert feed(m, cold[:2]) == []
    [alarm] = m.observe(cold[2])
    assert alarm.rule == "tag_removal" and alarm.key == f"tag_removal:{TAGS[0]}:{ms(10)}"
    assert alarm.evidence == tuple(map(eid, cold[:3]))
    assert alarm.details["source"] == "collar"
    assert m.observe(cold[3]) == []  # the same episode
    assert m.observe(f.collar(at(11), TAGS[0])) == []  # back on an animal: the episode ends
    again = [f.collar(at(12 + i / 10), TAGS[0], temperature=25, activity=0) for i in range(3)]
    assert [a.key for a in feed(m, again)] == [f"tag_removal:{TAGS[0]}:{ms(12)}"]


def test_a_collar_just_off_ambient_is_no_tag_removal() -> None:
    f, m = Feed(), monitor()
    at_30 = [f.collar(at(10 + i / 10), TAGS[1], temperature=30.0, activity=0) for i in range(3)]
    moving = [f.collar(at(10 + i / 10), TAGS[2], temperature=25, activity=1) for i in range(3)]
    assert only(feed(m, [*at_30, *moving]), "tag_removal") == []


def test_a_removal_seen_by_tamper_and_collar_is_one_alarm() -> None:
    f, m = Feed(), monitor()
    alarms = feed(
        m,
        [
            f.tamper(at(10), TAGS[0], "removed"),
            *(f.collar(at(10.1 + i / 10), TAGS[0], temperature=22, activity=0) for i in range(4)),
        ],
    )
    assert [a.key for a in alarms] == [f"tag_removal:{TAGS[0]}:{ms(10)}"]


def test_outside_the_geofence_once_per_episode() -> None:
    f, m = Feed(), monitor()
    assert m.observe(f.collar(at(10), TAGS[0])) == []
    assert m.observe(f.collar(at(10), TAGS[1], where=(43.00, 116.01))) == []  # on the fence line
    out = f.collar(at(10.1), TAGS[0], where=OUTSIDE)
    [alarm] = m.observe(out)
    assert alarm.key == f"outside_fence:{TAGS[0]}:{ms(10.1)}"
    assert (alarm.severity, alarm.fact, alarm.evidence) == ("warning", None, (eid(out),))
    assert m.observe(f.collar(at(10.2), TAGS[0], where=OUTSIDE)) == []
    assert m.observe(f.collar(at(10.3), TAGS[0])) == []
    [second] = m.observe(f.collar(at(10.4), TAGS[0], where=OUTSIDE))
    assert second.key == f"outside_fence:{TAGS[0]}:{ms(10.4)}"


def test_outside_the_barn_only_during_night_hours() -> None:
    f, m = Feed(), monitor()
    assert m.observe(f.collar(at(19.99), TAGS[0])) == []  # 19:59:24, before night
    [alarm] = m.observe(f.collar(at(20), TAGS[1]))
    assert (alarm.rule, alarm.key, alarm.severity) == (
        "outside_barn",
        f"outside_barn:{TAGS[1]}:{ms(20)}",
        "warning",
    )
    assert m.observe(f.collar(at(21), TAGS[1])) == []  # the same night out
    assert m.observe(f.collar(at(22), TAGS[1], where=IN_BARN)) == []
    assert [a.key for a in m.observe(f.collar(at(23), TAGS[1]))] == [
        f"outside_barn:{TAGS[1]}:{ms(23)}"
    ]
    assert m.observe(f.collar(at(23), TAGS[2], where=IN_BARN)) == []
    assert [a.rule for a in m.observe(f.collar(at(23), TAGS[3], where=OUTSIDE))] == [
        "outside_fence"
    ]
    assert [a.rule for a in m.observe(f.collar(at(5.99, day=1), TAGS[4]))] == ["outside_barn"]
    assert m.observe(f.collar(at(6, day=1), TAGS[5])) == []  # night is over at 06:00


@pytest.mark.parametrize(
    ("rule", "reading", "fires"),
    [
        ("abnormal_temperature", {"temperature": 39.9}, True),
        ("abnormal_temperature", {"temperature": 39.8}, False),  # the range's edge is in range
        ("abnormal_temperature", {"temperature": 37.4}, True),
        ("abnormal_temperature", {"temperature": 37.5}, False),
        ("abnormal_activity", {"activity": 601}, True),
        ("abnormal_activity", {"activity": 600}, False),
        ("abnormal_activity", {"activity": 19}, True),
        ("abnormal_activity", {"activity": 20}, False),
    ],
)
def test_abnormal_health_after_three_readings(
    rule: str, reading: dict[str, float], fires: bool
) -> None:
    f, m = Feed(), monitor()
    temperature, activity = reading.get("temperature", 38.6), reading.get("activity", 120)
    readings = [
        f.collar(at(10 + i / 10), TAGS[0], temperature=temperature, activity=activity)
        for i in range(4)
    ]
    assert feed(m, readings[:2]) == []
    alarms = m.observe(readings[2])
    if fires:
        assert [(a.rule, a.key, a.severity) for a in alarms] == [
            (rule, f"{rule}:{TAGS[0]}:{ms(10)}", "warning")
        ]
        assert alarms[0].evidence == tuple(map(eid, readings[:3]))
    else:
        assert alarms == []
    assert m.observe(readings[3]) == []


def test_a_normal_reading_breaks_the_streak() -> None:
    f, m = Feed(), monitor()
    temps = [39.9, 39.9, 38.5, 39.9, 39.9, 39.9, 40.0]
    readings = [f.collar(at(10 + i / 10), TAGS[0], temperature=t) for i, t in enumerate(temps)]
    alarms = [(i, a) for i, r in enumerate(readings) for a in m.observe(r)]
    assert [(i, a.key) for i, a in alarms] == [(5, f"abnormal_temperature:{TAGS[0]}:{ms(10.3)}")]
    assert alarms[0][1].evidence == tuple(map(eid, readings[3:6]))


# --- order, evidence, replay ----------------------------------------------------------------


def test_a_late_reading_counts_for_its_day_but_moves_no_state() -> None:
    f, m = Feed(), monitor(minimum=0)
    feed(m, [f.collar(at(10), TAGS[0]), f.gate(at(10), TAGS[1:2])])
    assert (
        m.observe(f.collar(at(9), TAGS[0], where=OUTSIDE)) == []
    )  # older than its last: no episode
    feed(m, [f.gate(at(5), TAGS[1:3])])  # late for TAGS[1], new for TAGS[2]
    unseen = {a.subject: a for a in only(m.check(ms(5) + 24 * HOUR + 1), "unseen")}
    assert TAGS[1] not in unseen and TAGS[2] in unseen  # TAGS[1] is still last seen at 10:00
    count, _ = m.close_day(DAY0)
    assert count.tags_seen == 3
    assert count.animals[TAGS[0]].status == "present"  # the late outside position is not its last
    assert count.animals[TAGS[1]].last_seen_ms == ms(10)


def test_evidence_is_deduplicated_and_in_time_order() -> None:
    f, m = Feed(), monitor(minimum=0)
    gate = f.gate(at(7))
    camera = f.camera(at(6), "A", 30)  # arrives after the gate read but was taken before
    beat = f.heartbeat(GATE, at(8))
    assert feed(m, [gate, camera, beat, gate]) == []
    weigh = f.weigh(at(9), 600.0, TAGS[0])
    feed(m, [weigh, weigh])
    count, _ = m.close_day(DAY0)
    assert count.evidence == (eid(camera), eid(gate), eid(weigh))  # no heartbeat, no repeats
    assert count.weight == WeightSummary(600.0, 1)
    assert count.evidence_omitted == 0


def test_evidence_over_the_cap_keeps_what_the_count_rests_on() -> None:
    f, m = Feed(), monitor(minimum=0, evidence_cap=5)
    collars = [f.collar(at(8 + i / 6), TAGS[0]) for i in range(4)]  # 08:00 … 08:30
    gate = f.gate(at(9), TAGS[1:3])
    camera = f.camera(at(10), "A", 3)
    feed(m, [*collars, gate, camera])
    count, _ = m.close_day(DAY0)
    # kept: each counted tag's last sighting and the camera sweep, then the earliest others
    assert count.evidence == (
        eid(collars[0]),
        eid(collars[1]),
        eid(collars[3]),
        eid(gate),
        eid(camera),
    )
    assert count.evidence_omitted == 1


def script(f: Feed) -> list[Reading | int | str]:
    """Two days of a herd in trouble: readings, check times (int) and days to close (str)."""
    return [
        f.gate(at(6)),
        f.camera(at(6.5), "A", 15),
        f.camera(at(6.6), "B", 15),
        f.collar(at(9), TAGS[0], where=OUTSIDE),
        *(f.collar(at(10 + i / 10), TAGS[1], temperature=24, activity=0) for i in range(3)),
        *(f.collar(at(11 + i / 10), TAGS[2], temperature=40.6) for i in range(3)),
        f.tamper(at(12), TAGS[3], "cut"),
        f.collar(at(21), TAGS[4]),
        ms(13),
        f.heartbeat(GATE, at(23)),
        DAY0,
        f.gate(at(6, day=1), TAGS[:20]),
        f.camera(at(6.5, day=1), "A", 10),
        f.camera(at(6.6, day=1), "B", 11),
        ms(7, day=1) + 1,
        DAY1,
        ms(12, day=2),
    ]


def run(m: HerdMonitor, steps: list[Reading | int | str]) -> list[Any]:
    out: list[Any] = []
    for step in steps:
        if isinstance(step, Reading):
            out.extend(m.observe(step))
        elif isinstance(step, int):
            out.extend(m.check(step))
        else:
            count, alarms = m.close_day(step)
            out.extend([count, *alarms])
    return out


def test_a_replay_gives_the_same_alarms_and_keys() -> None:
    first = run(monitor(), script(Feed()))
    second = run(monitor(), script(Feed()))
    assert first == second
    alarms = [a for a in first if isinstance(a, Alarm)]
    assert {a.rule for a in alarms} >= {
        "outside_fence",
        "tag_removal",
        "abnormal_temperature",
        "outside_barn",
        "stale_device",
        "below_minimum",
        "daily_drop",
        "unseen",
    }
    keys = [a.key for a in alarms]
    assert len(keys) == len(set(keys))  # one alarm per condition


def test_redelivering_everything_raises_nothing_new() -> None:
    m = monitor()
    steps = script(Feed())
    run(m, steps)
    readings = [s for s in steps if isinstance(s, Reading)]
    assert feed(m, readings) == []
    assert m.check(ms(12, day=2)) == []


def test_a_reading_from_a_device_of_another_herd_is_refused() -> None:
    other = {
        **DEVICES,
        GATE: Device(
            GATE,
            DEVICES[GATE].address,
            frozenset({"tag_read"}),
            "ranch-17",
            "urn:fourflow:herd:ranch-17:H2",
        ),
    }
    m = HerdMonitor(rules(), other)
    with pytest.raises(InvalidInput) as caught:
        m.observe(Feed().gate(at(6)))
    assert caught.value.code == "unknown_device"


# --- payload --------------------------------------------------------------------------------


def test_the_payload_is_json_safe_and_round_trips() -> None:
    f = Feed()
    readings = [
        f.gate(at(7), [*TAGS[:28], STRAY]),
        f.camera(at(6), "A", 27),
        f.collar(at(8), TAGS[0], temperature=38),
        f.weigh(at(9), 600, TAGS[1]),
    ]
    count, _ = day_of(readings)
    payload = count.to_payload()
    assert json.loads(json.dumps(payload, allow_nan=False)) == payload
    canonical_json(payload)
    for name in ("head_count", "tags_seen", "camera_count", "evidence_omitted"):
        assert type(payload[name]) is int
    assert payload["weight"] == {"mean_kg": 600.0, "n": 1}
    assert payload["animals"][TAGS[0]] == {
        "status": "present",
        "last_seen_ms": ms(8),
        "last_temperature": 38.0,
    }
    assert list(payload["animals"]) == sorted(payload["animals"])
    assert DailyCount.from_payload(payload) == count
    assert DailyCount.from_payload(json.loads(json.dumps(payload))) == count


@pytest.mark.parametrize(
    "broken",
    [{}, {"method": "guess"}, {"day": "20-11-2026"}, {"animals": {TAGS[0]: {"status": "lost"}}}],
)
def test_a_broken_payload_is_refused(broken: dict[str, Any]) -> None:
    count, _ = day_of([Feed().gate(at(7))])
    payload = {**count.to_payload(), **broken} if broken else broken
    with pytest.raises(InvalidInput):
        DailyCount.from_payload(payload)


def test_a_count_window_counts_who_is_there_at_the_end_of_the_day() -> None:
    """Animals stolen at 14:00 were seen in the morning; with a 6-hour window the day's
    count is of the evening's reads and camera sweeps only."""
    f = Feed()
    readings = [
        f.gate(at(7), TAGS[:30]),
        f.camera(at(7), "A", 30),
        f.gate(at(19), TAGS[:26]),
        f.camera(at(19), "A", 26),
    ]
    whole_day = monitor(minimum=0)
    feed(whole_day, readings)
    assert whole_day.close_day(DAY0)[0].head_count == 30
    evening = monitor(minimum=0, count_window_hours=6)
    feed(evening, readings)
    count = evening.close_day(DAY0)[0]
    assert (count.head_count, count.tags_seen, count.camera_count) == (26, 26, 26)
    with pytest.raises(InvalidInput, match="count_window_hours"):
        monitor(count_window_hours=0)
