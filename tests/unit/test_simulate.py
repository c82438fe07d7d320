"""oracles.simulate: deterministic, correctly signed scenarios whose injected incidents
show up in the readings, and whose clean runs show no anomaly at all.

Signatures are checked two ways: every reading with ``Device.check``, and one reading of
each kind against eth-account's own ``sign_reading`` (the same bytes).
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest

from ledger.errors import InvalidInput
from oracles.custody import steel_coil_document
from oracles.readings import Reading, sign_reading
from oracles.simulate import (
    DAIRY_INCIDENTS,
    WAREHOUSE_INCIDENTS,
    Incident,
    Scenario,
    dairy,
    warehouse,
)

HOUR = 3_600_000
DAY = 24 * HOUR
DAIRY_ARGS: dict[str, Any] = {"days": 3, "seed": 1, "animals": 90, "collar_interval_min": 120}
WAREHOUSE_ARGS: dict[str, Any] = {"days": 3, "seed": 1, "coils": 12}


@pytest.fixture(scope="module")
def farm() -> Scenario:
    return dairy(**DAIRY_ARGS)


@pytest.fixture(scope="module")
def clean_farm() -> Scenario:
    return dairy(**DAIRY_ARGS, incidents=())


@pytest.fixture(scope="module")
def store() -> Scenario:
    return warehouse(**WAREHOUSE_ARGS)


@pytest.fixture(scope="module")
def clean_store() -> Scenario:
    return warehouse(**WAREHOUSE_ARGS, incidents=())


# --- helpers -----------------------------------------------------------------------------


def as_json(s: Scenario) -> str:
    readings = [r.model_dump(mode="json") for r in s.readings]
    return json.dumps({"readings": readings, "documents": s.documents}, ensure_ascii=False)


def incident(s: Scenario, kind: str) -> Incident:
    (found,) = [i for i in s.incidents if i.kind == kind]
    return found


def of(s: Scenario, kind: str, **data: Any) -> list[Reading]:
    return [
        r for r in s.readings if r.kind == kind and all(r.data.get(k) == v for k, v in data.items())
    ]


def from_device(s: Scenario, device: str) -> list[Reading]:
    return [r for r in s.readings if r.device == device]


def hour(s: Scenario, ms: int) -> int:
    return (ms - s.start_ms) % DAY // HOUR


def day(s: Scenario, ms: int) -> int:
    return (ms - s.start_ms) // DAY


def inside(ring: list[list[float]], lon: float, lat: float) -> bool:
    """Ray casting over a closed [lon, lat] ring."""
    result = False
    for (x1, y1), (x2, y2) in itertools.pairwise(ring):
        if (y1 > lat) != (y2 > lat) and lon < x1 + (lat - y1) * (x2 - x1) / (y2 - y1):
            result = not result
    return result


def end_of(s: Scenario, i: Incident) -> int:
    return s.end_ms if i.end_ms is None else i.end_ms


def device_id(s: Scenario, name: str) -> str:
    (found,) = [d.device.id for d in s.devices if d.device.id.endswith(":" + name)]
    return found


def collar_of(s: Scenario, tag: str) -> list[Reading]:
    return [r for r in s.readings if r.kind == "collar" and r.data["tag"] == tag]


# --- determinism, signatures, order ------------------------------------------------------


def test_same_seed_gives_the_same_bytes_another_seed_differs() -> None:
    small: dict[str, Any] = {"days": 2, "animals": 20, "collar_interval_min": 480}
    first, again, other = (as_json(dairy(seed=n, **small)) for n in (5, 5, 6))
    assert first == again != other
    first, again, other = (as_json(warehouse(days=1, seed=n, coils=8)) for n in (5, 5, 6))
    assert first == again != other


@pytest.mark.parametrize("name", ["farm", "store"])
def test_every_device_signs_its_readings(name: str, request: pytest.FixtureRequest) -> None:
    s: Scenario = request.getfixturevalue(name)
    devices = {d.device.id: d for d in s.devices}
    for reading in s.readings:
        devices[reading.device].device.check(reading)
    one_per_kind = {r.kind: r for r in s.readings}
    for reading in one_per_kind.values():
        key = devices[reading.device].private_key
        assert sign_reading(reading.unsigned(), private_key=key) == reading


@pytest.mark.parametrize("name", ["farm", "store"])
def test_readings_are_in_time_order_with_increasing_seq(
    name: str, request: pytest.FixtureRequest
) -> None:
    s: Scenario = request.getfixturevalue(name)
    devices = {d.device.id: d.device for d in s.devices}
    times = [r.time_ms for r in s.readings]
    assert times == sorted(times)
    assert s.start_ms <= times[0] and times[-1] < s.end_ms
    last: dict[str, int] = {}
    for r in s.readings:
        assert r.seq > last.get(r.device, -1)
        assert r.seq >= s.start_ms // 1000
        last[r.device] = r.seq
        assert r.kind in devices[r.device].kinds | {"heartbeat"}
        assert r.time.endswith("+08:00")
    assert set(last) == set(devices)


def summary_ok(s: Scenario) -> None:
    summary = s.summary()
    assert summary["readings"] == len(s.readings) == sum(summary["kinds"].values())
    assert summary["incidents"] == {i.kind: 1 for i in s.incidents}


def test_a_default_day_stays_within_its_size() -> None:
    farm_day, store_day = dairy(days=1, seed=1), warehouse(days=1, seed=1)
    assert 2_500 < len(farm_day.readings) < 4_000
    assert 500 < len(store_day.readings) < 1_000
    summary_ok(farm_day)
    summary_ok(store_day)


def test_bad_arguments_are_refused() -> None:
    with pytest.raises(InvalidInput, match="unknown incident"):
        dairy(days=1, seed=1, incidents=["stampede"])
    with pytest.raises(InvalidInput, match="days must be"):
        warehouse(days=0, seed=1)
    with pytest.raises(InvalidInput, match="divide a day"):
        dairy(days=1, seed=1, collar_interval_min=7)


def test_incidents_keep_their_times_whichever_are_enabled(farm: Scenario, store: Scenario) -> None:
    assert sorted(i.kind for i in farm.incidents) == sorted(DAIRY_INCIDENTS)
    assert sorted(i.kind for i in store.incidents) == sorted(WAREHOUSE_INCIDENTS)
    small: dict[str, Any] = {"days": 3, "seed": 1, "animals": 20, "collar_interval_min": 480}
    every, theft_only = dairy(**small), dairy(**small, incidents=["theft"])
    assert theft_only.incidents == [incident(every, "theft")]
    # day 0 is clean when there are several days, and every incident fits in the run
    short = [
        dairy(days=2, seed=1, animals=20, collar_interval_min=480),
        warehouse(days=2, seed=1, coils=8),
    ]
    for s in [farm, store, *short]:
        for i in s.incidents:
            assert s.start_ms + DAY <= i.start_ms < end_of(s, i) <= s.end_ms, i
    assert {i.kind: i.expected_rule for i in farm.incidents} == {
        "theft": "below_minimum",
        "tag_removal": "tag_removal",
        "sensor_drift": "abnormal_temperature",
        "silent_gateway": "stale_device",
        "outside_geofence": "outside_fence",
        "night_outside_barn": "outside_barn",
        "fever": "abnormal_temperature",
    }
    assert {i.kind: i.expected_rule for i in store.incidents} == {
        "unauthorized_outbound": "unauthorized_movement",
        "tag_removal": "tag_removal",
        "sensor_drift": "climate",
        "silent_gateway": "stale_device",
        "door_after_hours": "door_after_hours",
        "intrusion": "intrusion",
    }


# --- dairy: clean run --------------------------------------------------------------------


def test_clean_dairy_shows_no_anomaly(clean_farm: Scenario) -> None:
    s, subject = clean_farm, clean_farm.subject
    assert s.incidents == []
    seen: dict[int, set[str]] = defaultdict(set)
    for r in of(s, "tag_read"):
        seen[day(s, r.time_ms)].update(r.data["tags"])
    for d in range(s.days):
        assert seen[d] == set(subject["animals"]), f"day {d}: an animal unseen"
    passes: dict[int, int] = defaultdict(int)
    for r in of(s, "tag_read"):
        passes[(r.time_ms - s.start_ms) // (HOUR * 6)] += len(r.data["tags"])
    assert len(passes) == 2 * s.days
    herd = len(subject["animals"])
    assert all(herd - round(0.03 * herd) <= n <= herd - round(0.01 * herd) for n in passes.values())
    for r in of(s, "collar"):
        temperature, lon, lat = r.data["temperature"], r.data["lon"], r.data["lat"]
        assert 38.0 <= temperature <= 39.2
        assert inside(subject["geofence"], lon, lat)
        h = hour(s, r.time_ms)
        if h >= 20 or h < 5:
            assert inside(subject["barn"], lon, lat)
    pens = {pen: len(tags) for pen, tags in subject["pens"].items()}
    for r in of(s, "head_count"):
        assert abs(r.data["count"] - pens[r.data["pen"]]) <= 1
        assert 0.9 <= r.data["confidence"] <= 0.99
    assert {r.data["tag"] for r in of(s, "weight")} == set(subject["animals"])
    assert not of(s, "tamper")
    assert len(subject["animals"]) >= subject["minimum"]
    no_silent_device(s)


def no_silent_device(s: Scenario) -> None:
    for sim in s.devices:
        times = [r.time_ms for r in from_device(s, sim.device.id)]
        gaps = [b - a for a, b in zip([s.start_ms, *times], [*times, s.end_ms], strict=True)]
        assert max(gaps) <= sim.device.heartbeat_s * 1000, sim.device.id


def test_incidents_change_nothing_else(farm: Scenario, clean_farm: Scenario) -> None:
    involved = {tag for i in farm.incidents for tag in i.items}
    for tag in clean_farm.subject["animals"]:
        if tag not in involved:
            assert collar_of(farm, tag) == collar_of(clean_farm, tag)


# --- dairy: incidents --------------------------------------------------------------------


def test_theft_removes_the_animals_and_the_count_drops(farm: Scenario) -> None:
    theft, s = incident(farm, "theft"), farm
    stolen = set(theft.items)
    assert len(stolen) >= 3 and len(s.subject["animals"]) - len(stolen) < s.subject["minimum"]
    for r in s.readings:
        if r.time_ms >= theft.start_ms:
            assert not stolen & set(r.data.get("tags", [])), r
            assert r.data.get("tag") not in stolen, r
    before = [r for r in of(s, "tag_read") if r.time_ms < theft.start_ms]
    assert stolen <= {t for r in before for t in r.data["tags"]}
    (pen,) = [p for p, tags in s.subject["pens"].items() if stolen <= set(tags)]
    size = len(s.subject["pens"][pen])
    counts = of(s, "head_count", pen=pen)
    after = [r.data["count"] for r in counts if r.time_ms > theft.start_ms]
    earlier = [r.data["count"] for r in counts if r.time_ms < theft.start_ms]
    assert after and all(n <= size - len(stolen) + 1 for n in after)  # ±1: camera noise
    assert all(n >= size - 2 for n in earlier)  # and one animal may stay out at night


def test_tag_removal_tamper_then_a_still_collar(farm: Scenario) -> None:
    removal, s = incident(farm, "tag_removal"), farm
    tag, collar = removal.items
    (tamper,) = of(s, "tamper")
    assert (tamper.device, tamper.time_ms) == (collar, removal.start_ms)
    assert tamper.data == {"tag": tag, "event": "removed"}
    after = [r for r in collar_of(s, tag) if r.time_ms > removal.start_ms]
    assert len(after) >= 6
    assert {(r.data["lat"], r.data["lon"]) for r in after} == {
        (after[0].data["lat"], after[0].data["lon"])
    }
    assert all(r.data["activity"] == 0 and 20 <= r.data["temperature"] <= 30 for r in after)
    later_reads = [r for r in of(s, "tag_read") if r.time_ms > removal.start_ms]
    assert any(tag in r.data["tags"] for r in later_reads)


def test_sensor_drift_rises_while_the_animal_is_active(farm: Scenario) -> None:
    drift, s = incident(farm, "sensor_drift"), farm
    readings = collar_of(s, drift.subject)
    before = [r.data["temperature"] for r in readings if r.time_ms < drift.start_ms]
    after = [r for r in readings if r.time_ms >= drift.start_ms]
    assert max(before) <= 39.2
    assert after[-1].data["temperature"] > 39.7
    assert all(r.data["activity"] > 0 for r in after)


def test_silent_gateway_sends_nothing_in_its_window(farm: Scenario) -> None:
    silent, s = incident(farm, "silent_gateway"), farm
    gate = from_device(s, silent.subject)
    assert silent.end_ms is not None and silent.end_ms - silent.start_ms == 12 * HOUR
    assert not [r for r in gate if silent.start_ms <= r.time_ms < silent.end_ms]
    assert [r for r in gate if r.time_ms < silent.start_ms]
    assert [r for r in gate if r.time_ms >= silent.end_ms]


def test_outside_geofence(farm: Scenario) -> None:
    out, s = incident(farm, "outside_geofence"), farm
    readings = collar_of(s, out.subject)
    during = [r for r in readings if out.start_ms <= r.time_ms < end_of(s, out)]
    assert during
    for r in readings:
        is_in = inside(s.subject["geofence"], r.data["lon"], r.data["lat"])
        assert is_in != (r in during)


def test_night_outside_barn(farm: Scenario) -> None:
    night, s = incident(farm, "night_outside_barn"), farm
    during = [
        r for r in collar_of(s, night.subject) if night.start_ms <= r.time_ms < end_of(s, night)
    ]
    assert during
    for r in during:
        assert hour(s, r.time_ms) >= 20 or hour(s, r.time_ms) < 5
        assert inside(s.subject["geofence"], r.data["lon"], r.data["lat"])
        assert not inside(s.subject["barn"], r.data["lon"], r.data["lat"])


def test_fever(farm: Scenario) -> None:
    fever, s = incident(farm, "fever"), farm
    readings = collar_of(s, fever.subject)
    during = [
        r.data["temperature"] for r in readings if fever.start_ms <= r.time_ms < end_of(s, fever)
    ]
    before = [r.data["temperature"] for r in readings if r.time_ms < fever.start_ms]
    assert max(during) >= 40.0 and max(before) <= 39.2


# --- warehouse: clean run ----------------------------------------------------------------


def in_hours(s: Scenario, ms: int) -> bool:
    return 7 <= hour(s, ms) < 19


def test_clean_warehouse_shows_no_anomaly(clean_store: Scenario) -> None:
    s, subject = clean_store, clean_store.subject
    assert s.incidents == []
    items = set(subject["items"])
    ((released_at, released),) = s.releases
    held = items - set(released)
    counts = of(s, "cycle_count")
    assert len(counts) == 2 * s.days - 1  # the 06:30 count of day 0 precedes the arrival
    for a, b in itertools.pairwise(counts):
        expected = held if a.time_ms > released_at else items
        seen = set(a.data["tags"]) | set(b.data["tags"])
        assert seen >= (held if b.time_ms > released_at else expected)
        assert set(a.data["tags"]) <= items
    for r in of(s, "door", state="open"):
        assert in_hours(s, r.time_ms), r
    for r in of(s, "climate"):
        assert 40 <= r.data["humidity"] <= 70 and 8 <= r.data["temperature"] <= 20
    assert not of(s, "intrusion") and not of(s, "tamper")
    last_cover = {r.data["bay"]: r for r in of(s, "cover")}
    for bay, item in subject["bays"].items():
        assert last_cover[bay].data["occupied"] == (item not in released)
    assert len(held) >= subject["minimum"]
    for sim in s.devices:
        if ":cover-" not in sim.device.id:  # covers are fitted when their coil arrives
            times = [r.time_ms for r in from_device(s, sim.device.id)]
            gaps = [b - a for a, b in zip([s.start_ms, *times], [*times, s.end_ms], strict=True)]
            assert max(gaps) <= sim.device.heartbeat_s * 1000, sim.device.id


def test_legitimate_outbound_follows_its_release(clean_store: Scenario) -> None:
    s = clean_store
    ((released_at, released),) = s.releases
    out = of(s, "tag_read", direction="out")
    assert {t for r in out for t in r.data["tags"]} == set(released)
    assert all(r.time_ms > released_at and in_hours(s, r.time_ms) for r in out)
    weighed_out = [r for r in of(s, "weighbridge", direction="out") if r.time_ms > released_at]
    assert weighed_out and weighed_out[0].data["lot"] == s.subject["lot"]
    inbound, shipping = s.documents
    coils = len(s.subject["items"])
    assert inbound == steel_coil_document(coils=coils, seed=s.seed, start=inbound_start(s))
    assert inbound["epcisBody"]["eventList"][-1]["epcList"] == s.subject["items"]
    (event,) = shipping["epcisBody"]["eventList"]
    assert event["bizStep"] == "shipping" and event["epcList"] == released


def inbound_start(s: Scenario) -> datetime:
    """The journey starts 22 h before day 0, so the coils are stored at 10:00 on day 0."""
    return datetime.fromtimestamp(s.start_ms / 1000 - 22 * 3600, timezone(timedelta(hours=8)))


def test_documents_are_valid_epcis(store: Scenario) -> None:
    document = pytest.importorskip("oracles.epcis.document")
    for body in store.documents:
        assert document.parse_capture(body)


# --- warehouse: incidents ----------------------------------------------------------------


def test_unauthorized_outbound(store: Scenario) -> None:
    theft, s = incident(store, "unauthorized_outbound"), store
    stolen = set(theft.items)
    released = {t for _, items in s.releases for t in items}
    assert stolen and not stolen & released
    out = [r for r in of(s, "tag_read", direction="out") if set(r.data["tags"]) & stolen]
    assert {t for r in out for t in r.data["tags"]} == stolen
    assert all(
        theft.start_ms <= r.time_ms <= end_of(s, theft) and not in_hours(s, r.time_ms) for r in out
    )
    (truck_out,) = [
        r
        for r in of(s, "weighbridge", direction="out")
        if theft.start_ms <= r.time_ms <= end_of(s, theft)
    ]
    (truck_in,) = [
        r
        for r in of(s, "weighbridge", direction="in")
        if r.data["vehicle"] == truck_out.data["vehicle"]
    ]
    assert "lot" not in truck_out.data and truck_out.data["kg"] > truck_in.data["kg"]
    later = [r for r in of(s, "cycle_count") if r.time_ms > theft.start_ms]
    assert all(not stolen & set(r.data["tags"]) for r in later)
    bays = {bay for bay, item in s.subject["bays"].items() if item in stolen}
    for r in of(s, "cover"):
        if r.data["bay"] in bays and r.time_ms > theft.start_ms:
            assert r.data["occupied"] is False
    assert len(s.subject["items"]) - len(released) - len(stolen) < s.subject["minimum"]


def test_warehouse_tag_removal(store: Scenario) -> None:
    removal, s = incident(store, "tag_removal"), store
    (coil,) = removal.items
    (tamper,) = of(s, "tamper")
    assert tamper.data == {"tag": coil, "event": "removed"} and tamper.time_ms == removal.start_ms
    (bay,) = [b for b, item in s.subject["bays"].items() if item == coil]
    assert tamper.device == device_id(s, f"cover-{bay}")
    counts = of(s, "cycle_count")
    assert any(coil in r.data["tags"] for r in counts if r.time_ms < removal.start_ms)
    later = [r for r in counts if r.time_ms > removal.start_ms]
    assert later and all(coil not in r.data["tags"] for r in later)
    covers = [r for r in of(s, "cover", bay=bay) if r.time_ms > removal.start_ms]
    assert covers and all(r.data["occupied"] is True for r in covers)


def test_warehouse_sensor_drift(store: Scenario) -> None:
    drift, s = incident(store, "sensor_drift"), store
    drifting = from_device(s, drift.subject)
    assert max(r.data["humidity"] for r in drifting if r.time_ms < drift.start_ms) <= 70
    assert drifting[-1].data["humidity"] > 75
    other = of(s, "climate", zone="urn:fourflow:zone:wh-shanghai-3:A")
    assert max(r.data["humidity"] for r in other) <= 70


def test_warehouse_silent_gateway(store: Scenario) -> None:
    silent, s = incident(store, "silent_gateway"), store
    assert silent.end_ms is not None
    reader = from_device(s, silent.subject)
    assert not [r for r in reader if silent.start_ms <= r.time_ms < silent.end_ms]
    count_times = [s.start_ms + d * DAY + int(h * HOUR) for d in range(s.days) for h in (6.5, 18.5)]
    assert any(silent.start_ms <= t < silent.end_ms for t in count_times)
    assert [r for r in reader if r.time_ms >= silent.end_ms]


def test_door_after_hours_and_intrusion(store: Scenario) -> None:
    door, s = incident(store, "door_after_hours"), store
    (opened,) = [
        r for r in of(s, "door", door="staff-1", state="open") if r.time_ms == door.start_ms
    ]
    assert not in_hours(s, opened.time_ms)
    intrusion = incident(store, "intrusion")
    seen = [
        r for r in of(s, "intrusion") if intrusion.start_ms <= r.time_ms <= end_of(s, intrusion)
    ]
    assert sorted(r.data["source"] for r in seen) == ["camera"] * 3 + ["infrared"] * 3
    assert len(of(s, "intrusion")) == 6
