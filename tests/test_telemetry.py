"""oracles.telemetry and oracles.sim_telemetry: a device type is a schema and a few
rules. Schemas and rules validate their configuration naming the field path; readings
are checked against their schema before anything moves; each rule fires on its
condition and not exactly on its bound, once per episode, with the readings behind it;
daily aggregates follow their formulas; a replay gives the same alarms and keys; the
simulated pumping station and cold room are quiet when clean and raise exactly each
incident's rule.

Readings are really signed (sign_reading with fixed device keys, cached per content).
"""

from __future__ import annotations

import json
import math
from collections import Counter
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from typing import Any

import pytest
from eth_account import Account
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.errors import InvalidInput
from oracles import telemetry
from oracles.readings import Alarm, Device, Reading, reading_event_id, sign_reading
from oracles.sim_telemetry import (
    COLD_ROOM,
    PUMP_STATION,
    TELEMETRY_INCIDENTS,
    telemetry_config,
)
from oracles.sim_telemetry import telemetry as simulate
from oracles.telemetry import (
    RULES,
    UNIT_PATTERN,
    DailyTelemetry,
    FieldDay,
    FieldSpec,
    SchemaRegistry,
    SeriesDay,
    TelemetryMonitor,
    TelemetryRule,
    TelemetryRules,
    TelemetrySchema,
    aggregate,
)

WATCH = "urn:fourflow:asset:test:station"
PUMP = "urn:fourflow:asset:test:station:pump-1"
PUMP2 = "urn:fourflow:asset:test:station:pump-2"
DAY0, DAY1, DAY2, DAY3 = "2026-11-23", "2026-11-24", "2026-11-25", "2026-11-26"
LOCAL = timezone(timedelta(hours=8))
MIDNIGHT = datetime(2026, 11, 23, tzinfo=LOCAL)
HOUR = 3_600_000
RTU, LOGGER, OTHER = (f"urn:fourflow:device:test:{name}" for name in ("rtu", "logger", "elsewhere"))
KEYS = {device: bytes([i + 1]) * 32 for i, device in enumerate((RTU, LOGGER, OTHER))}
DEVICES = {
    device: Device(
        id=device,
        address=Account.from_key(KEYS[device]).address,
        kinds=frozenset({"telemetry"}),
        site="test",
        subject=OTHER if device == OTHER else WATCH,
        heartbeat_s=900,
    )
    for device in KEYS
}

SCHEMA: dict[str, Any] = {
    "name": "pump",
    "version": 1,
    "fields": {
        "flow_m3h": {"unit": "m3/h", "min": 0, "max": 5000, "aggregates": ["min", "max", "mean", "twa"]},
        "vib_mms": {"unit": "mm/s", "min": 0, "max": 100, "aggregates": ["max", "mean", "last"]},
        "energy_kwh": {"unit": "kWh", "min": 0, "aggregates": ["delta", "last"]},
        "load_pct": {"unit": "%", "min": 0, "max": 100, "required": False, "aggregates": ["sum"]},
    },
}  # fmt: skip
VIB = {"name": "vib_alert", "type": "threshold", "schema": "pump@1", "field": "vib_mms",
       "above": 4.5, "streak": 3, "severity": "warning"}  # fmt: skip
LOAD = {"name": "load_band", "type": "threshold", "schema": "pump@1", "field": "load_pct",
        "above": 90, "below": 10, "streak": 2, "severity": "info"}  # fmt: skip
LOW = {"name": "low_flow", "type": "daily", "schema": "pump@1", "field": "flow_m3h",
       "aggregate": "mean", "below": 300, "days": 2, "severity": "breach", "fact": "covenant_breach"}  # fmt: skip


def registry() -> SchemaRegistry:
    return SchemaRegistry.from_config([SCHEMA])


def rules(*items: dict[str, Any], **changes: Any) -> TelemetryRules:
    return TelemetryRules.from_config({"subject": WATCH, "rules": list(items), **changes})


def monitor(*items: dict[str, Any], **changes: Any) -> TelemetryMonitor:
    chosen = items or (VIB, LOAD, LOW)
    return TelemetryMonitor(rules(*chosen, **changes), registry(), DEVICES)


def at(hours: float, day: int = 0) -> str:
    return (MIDNIGHT + timedelta(days=day, hours=hours)).isoformat(timespec="milliseconds")


def ms(hours: float, day: int = 0) -> int:
    moment = MIDNIGHT + timedelta(days=day, hours=hours)
    return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(milliseconds=1)


@cache
def _signed(device: str, seq: int, time: str, kind: str, data: str) -> Reading:
    unsigned = {"device": device, "seq": seq, "time": time, "kind": kind, "data": json.loads(data)}
    return sign_reading(unsigned, private_key=KEYS[device])


class Feed:
    """Signed readings with per-device sequence numbers."""

    def __init__(self) -> None:
        self.seq: Counter[str] = Counter()

    def reading(self, device: str, kind: str, time: str, data: dict[str, Any]) -> Reading:
        seq = self.seq[device]
        self.seq[device] += 1
        return _signed(device, seq, time, kind, json.dumps(data, sort_keys=True))

    def pump(
        self,
        time: str,
        *,
        flow: float = 600,
        vib: float = 2.0,
        energy: float = 1000,
        subject: str = PUMP,
        device: str = RTU,
        **extra: float,
    ) -> Reading:
        values = {"flow_m3h": flow, "vib_mms": vib, "energy_kwh": energy, **extra}
        data = {"schema": "pump@1", "subject": subject, "values": values}
        return self.reading(device, "telemetry", time, data)

    def raw(self, time: str, values: dict[str, Any], schema: str = "pump@1") -> Reading:
        return self.reading(
            RTU, "telemetry", time, {"schema": schema, "subject": PUMP, "values": values}
        )


def eid(reading: Reading) -> str:
    return reading_event_id(reading.device, reading.seq)


def feed(m: TelemetryMonitor, readings: Iterable[Reading]) -> list[Alarm]:
    return [alarm for reading in readings for alarm in m.observe(reading)]


def only(alarms: Iterable[Alarm], rule: str) -> list[Alarm]:
    return [a for a in alarms if a.rule == rule]


# --- module surface ----------------------------------------------------------------------


def test_public_names_are_pinned() -> None:
    assert telemetry.__all__ == [
        "AGGREGATES",
        "FACTS",
        "RULES",
        "UNIT_PATTERN",
        "DailyTelemetry",
        "FieldDay",
        "FieldSpec",
        "SchemaRegistry",
        "SeriesDay",
        "TelemetryMonitor",
        "TelemetryRule",
        "TelemetryRules",
        "TelemetrySchema",
        "aggregate",
    ]


def test_docstring_table_states_every_rule_with_its_severity_and_fact() -> None:
    doc = telemetry.__doc__ or ""
    rows = {line.split("|")[1].strip(): line for line in doc.splitlines() if line.startswith("| ")}
    for rule, (severity, fact) in RULES.items():
        cells = [c.strip() for c in rows[rule].split("|")]
        assert cells[3] == severity
        assert cells[4].startswith(fact or "—")


# --- configuration -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "unit",
    ["m3/h", "degC", "kPa", "mm/s", "kWh", "%", "1", "%RH", "m/s2", "L/min", "MPa", "1/h", "rpm"],
)
def test_documented_units_are_accepted(unit: str) -> None:
    assert UNIT_PATTERN.fullmatch(unit)
    assert FieldSpec(unit=unit).unit == unit


@pytest.mark.parametrize("unit", ["", "°C", "m3/h/h", "furlongs", "kwh", "m^3/h", "degF", " kPa"])
def test_other_units_are_refused(unit: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        FieldSpec(unit=unit)
    assert caught.value.field == "unit"


def edit(config: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    """A deep copy of ``config`` with ``path`` set to ``value`` (deleted when it is ...)."""
    copy = json.loads(json.dumps(config))
    target = copy
    for key in path[:-1]:
        target = target[key]
    if value is ...:
        del target[path[-1]]
    else:
        target[path[-1]] = value
    return copy


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        (("name",), "Pump", "name"),
        (("version",), 0, "version"),
        (("version",), "1", "version"),
        (("fields",), {}, "fields"),
        (("fields", "flow_m3h", "unit"), "m³/h", "fields.flow_m3h.unit"),
        (("fields", "flow_m3h", "min"), 6000, "fields.flow_m3h.max"),
        (("fields", "flow_m3h", "min"), "low", "fields.flow_m3h.min"),
        (("fields", "flow_m3h", "aggregates"), ["median"], "fields.flow_m3h.aggregates"),
        (("fields", "flow_m3h", "aggregates"), [], "fields.flow_m3h.aggregates"),
        (("fields", "flow_m3h", "aggregates"), ["min", "min"], "fields.flow_m3h.aggregates"),
        (("fields", "flow_m3h", "required"), "yes", "fields.flow_m3h.required"),
        (("fields", "flow_m3h", "colour"), "blue", "fields.flow_m3h.colour"),
        (("fields", "flow_m3h", "unit"), ..., "fields.flow_m3h.unit"),
        (("fields", "Flow"), {"unit": "1"}, "fields.Flow"),
        (("extra",), 1, "extra"),
    ],
)
def test_schema_config_errors_name_the_field_path(
    path: tuple[Any, ...], value: Any, field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        TelemetrySchema.from_config(edit(SCHEMA, path, value))
    assert caught.value.field == field
    assert caught.value.code == "bad_config"
    assert str(caught.value).startswith(field)


def test_schema_config_round_trips_and_keeps_aggregates_in_canonical_order() -> None:
    schema = TelemetrySchema.from_config(
        edit(SCHEMA, ("fields", "vib_mms", "aggregates"), ["last", "max"])
    )
    assert schema.key == "pump@1"
    assert schema.fields["vib_mms"].aggregates == ("max", "last")
    assert TelemetrySchema.from_config(schema.to_config()) == schema
    assert FieldSpec.from_config({"unit": "1"}) == FieldSpec(
        unit="1", required=True, aggregates=("min", "max", "mean", "last")
    )


def test_a_schema_declared_twice_is_refused() -> None:
    with pytest.raises(InvalidInput) as caught:
        SchemaRegistry.from_config([SCHEMA, SCHEMA])
    assert caught.value.field == "schemas[1]"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"name": "Vib"}, "name"),
        ({"name": "stale_device"}, "name"),
        ({"type": "sometimes"}, "type"),
        ({"schema": "pump"}, "schema"),
        ({"field": "vib-mms"}, "field"),
        ({"above": None}, "above"),
        ({"below": 5.0}, "below"),  # with above 4.5: below must be under above
        ({"streak": 0}, "streak"),
        ({"streak": 2.5}, "streak"),
        ({"days": 2}, "days"),  # a threshold takes a streak
        ({"aggregate": "mean"}, "aggregate"),
        ({"severity": "critical"}, "severity"),
        ({"fact": "overheating"}, "fact"),
        ({"above": "4.5"}, "above"),
        ({"when": "always"}, "when"),
    ],
)
def test_rule_config_errors_name_the_field_path(change: dict[str, Any], field: str) -> None:
    config = {**VIB, **change}
    with pytest.raises(InvalidInput) as caught:
        TelemetryRules.from_config({"subject": WATCH, "rules": [LOW, config]})
    assert caught.value.field == f"rules[1].{field}"
    assert caught.value.code == "bad_config"


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"aggregate": None}, "aggregate"),
        ({"streak": 3}, "streak"),
        ({"days": 0}, "days"),
        ({"fact": "quantity"}, "fact"),  # counts of goods only
        ({"severity": "warning"}, "fact"),  # covenant_breach freezes: a breach rule only
    ],
)
def test_daily_rule_config_errors(change: dict[str, Any], field: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        TelemetryRule.from_config({**LOW, **change}, "rules[0]")
    assert caught.value.field == f"rules[0].{field}"


def test_rules_config_errors() -> None:
    for raw, field in [
        ({"rules": []}, "subject"),
        ({"subject": WATCH, "rules": [VIB, VIB]}, "rules[1].name"),
        ({"subject": WATCH, "utc_offset": "+8"}, "utc_offset"),
        ({"subject": WATCH, "evidence_cap": 0}, "evidence_cap"),
        ({"subject": WATCH, "rules": {}}, "rules"),
    ]:
        with pytest.raises(InvalidInput) as caught:
            TelemetryRules.from_config(raw)
        assert caught.value.field == field, raw


def test_rule_config_round_trips() -> None:
    for config in (VIB, LOAD, LOW):
        rule = TelemetryRule.from_config(config)
        assert TelemetryRule.from_config(rule.to_config()) == rule


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"schema": "pump@2"}, "rules[0].schema"),
        ({"field": "rpm"}, "rules[0].field"),
        ({"aggregate": "sum"}, "rules[0].aggregate"),  # flow keeps min, max, mean, twa
    ],
)
def test_a_monitor_refuses_rules_its_schemas_cannot_serve(
    change: dict[str, Any], field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        TelemetryMonitor(rules({**LOW, **change}), registry(), DEVICES)
    assert caught.value.field == field


# --- validation --------------------------------------------------------------------------


def test_validate_returns_the_values_in_schema_order() -> None:
    reading = Feed().raw(at(1), {"energy_kwh": 7, "vib_mms": 0, "flow_m3h": 5000})
    assert list(registry().validate(reading).items()) == [
        ("flow_m3h", 5000.0),
        ("vib_mms", 0.0),
        ("energy_kwh", 7.0),
    ]
    assert registry().validate(reading.parsed()) == registry().validate(reading)


@pytest.mark.parametrize(
    ("values", "schema", "code", "field"),
    [
        ({"flow_m3h": 1, "vib_mms": 1, "energy_kwh": 1}, "pump@2", "unknown_schema", "data.schema"),
        ({"flow_m3h": 1, "vib_mms": 1}, "pump@1", "missing_field", "data.values.energy_kwh"),
        ({"flow_m3h": 1, "vib_mms": 1, "energy_kwh": 1, "rpm": 1}, "pump@1", "unknown_field", "data.values.rpm"),
        ({"flow_m3h": 5000.01, "vib_mms": 1, "energy_kwh": 1}, "pump@1", "out_of_range", "data.values.flow_m3h"),
        ({"flow_m3h": -0.1, "vib_mms": 1, "energy_kwh": 1}, "pump@1", "out_of_range", "data.values.flow_m3h"),
        ({"flow_m3h": 1, "vib_mms": 1, "energy_kwh": -1}, "pump@1", "out_of_range", "data.values.energy_kwh"),
    ],
)  # fmt: skip
def test_validate_refuses_readings_outside_their_schema(
    values: dict[str, Any], schema: str, code: str, field: str
) -> None:
    with pytest.raises(InvalidInput) as caught:
        registry().validate(Feed().raw(at(1), values, schema))
    assert (caught.value.code, caught.value.field) == (code, field)


def test_a_reading_of_another_kind_is_not_telemetry() -> None:
    reading = Feed().reading(RTU, "heartbeat", at(1), {"battery": 90})
    with pytest.raises(InvalidInput) as caught:
        registry().validate(reading)
    assert caught.value.code == "wrong_kind"


# --- the monitor: devices, bad readings, order -------------------------------------------


def test_a_device_of_another_asset_is_unknown() -> None:
    with pytest.raises(InvalidInput) as caught:
        monitor().observe(Feed().pump(at(1), device=OTHER))
    assert caught.value.code == "unknown_device"


def test_an_invalid_reading_changes_nothing() -> None:
    f, m = Feed(), monitor()
    feed(m, [f.pump(at(1), vib=5), f.pump(at(1.1), vib=5)])
    bad = f.raw(at(1.2), {"flow_m3h": 600, "vib_mms": 101, "energy_kwh": 1000})
    with pytest.raises(InvalidInput) as caught:
        m.observe(bad)
    assert caught.value.code == "out_of_range"
    with pytest.raises(InvalidInput):
        m.observe(bad)  # still refused: it was never recorded as delivered
    third = f.pump(at(1.3), vib=5)
    assert [a.rule for a in m.observe(third)] == ["vib_alert"]  # the streak did not break
    daily, _ = m.close_day(DAY0)
    assert daily.series[0].readings == 3
    assert eid(bad) not in daily.evidence


def test_a_redelivered_reading_is_ignored() -> None:
    f, m = Feed(), monitor()
    first = f.pump(at(1), vib=5)
    assert feed(m, [first, first, first, f.pump(at(1.1), vib=5)]) == []
    daily, _ = m.close_day(DAY0)
    assert daily.series[0].readings == 2


def test_a_late_reading_moves_no_rule_but_counts_in_its_day() -> None:
    f, m = Feed(), monitor()
    feed(m, [f.pump(at(2), vib=5), f.pump(at(3), vib=5)])
    assert m.observe(f.pump(at(2.5), vib=5, flow=900)) == []  # late: not the third of a run
    assert [a.rule for a in m.observe(f.pump(at(4), vib=5))] == ["vib_alert"]
    daily, _ = m.close_day(DAY0)
    flow = daily.series[0].fields["flow_m3h"]
    assert (flow.readings, flow.aggregates["max"]) == (4, 900.0)


def test_other_kinds_only_count_as_a_sign_of_life() -> None:
    f, m = Feed(), monitor()
    m.observe(f.pump(at(1)))
    assert m.observe(f.reading(LOGGER, "heartbeat", at(1.2), {"battery": 80})) == []
    assert [a.subject for a in m.check(ms(1.2) + 900_000)] == [RTU]  # the logger is alive
    daily, _ = m.close_day(DAY0)
    assert len(daily.series) == 1 and daily.series[0].readings == 1


# --- threshold rules ---------------------------------------------------------------------


def test_threshold_fires_on_the_streakth_reading_strictly_above_and_once() -> None:
    f, m = Feed(), monitor()
    on = [f.pump(at(1 + i / 10), vib=4.5) for i in range(5)]
    assert feed(m, on) == []  # exactly on the threshold: nothing
    above = [f.pump(at(2 + i / 10), vib=4.51) for i in range(6)]
    assert feed(m, above[:2]) == []
    alarms = m.observe(above[2])
    assert len(alarms) == 1
    alarm = alarms[0]
    assert alarm.key == f"vib_alert:{WATCH}:{PUMP}:{ms(2)}"
    assert (alarm.rule, alarm.subject, alarm.severity, alarm.fact) == (
        "vib_alert",
        PUMP,
        "warning",
        None,
    )
    assert alarm.evidence == tuple(eid(r) for r in above[:3])
    assert alarm.time_ms == ms(2.2)
    assert alarm.details["value"] == 4.51 and alarm.details["unit"] == "mm/s"
    assert feed(m, above[3:]) == []  # the same episode


def test_a_reading_back_in_range_ends_the_episode() -> None:
    f, m = Feed(), monitor()
    feed(m, [f.pump(at(1 + i / 10), vib=6) for i in range(3)])
    assert feed(m, [f.pump(at(2), vib=4.5)]) == []  # exactly on it is in range
    again = [f.pump(at(3 + i / 10), vib=6) for i in range(3)]
    alarms = feed(m, again)
    assert [a.key for a in alarms] == [f"vib_alert:{WATCH}:{PUMP}:{ms(3)}"]


def test_runs_are_per_measured_subject() -> None:
    f, m = Feed(), monitor()
    readings = [f.pump(at(1 + i / 10), vib=6, subject=(PUMP, PUMP2)[i % 2]) for i in range(4)]
    assert feed(m, readings) == []  # two for each pump: not yet
    assert [a.subject for a in feed(m, [f.pump(at(2), vib=6)])] == [PUMP]
    assert [a.subject for a in feed(m, [f.pump(at(2.1), vib=6, subject=PUMP2)])] == [PUMP2]


def test_a_band_rule_fires_below_and_above_not_on_its_edges() -> None:
    f, m = Feed(), monitor()
    edges = [f.pump(at(1 + i / 10), load_pct=v) for i, v in enumerate([10, 90, 10, 90])]
    assert feed(m, edges) == []
    low = feed(m, [f.pump(at(2), load_pct=9.99), f.pump(at(2.1), load_pct=0)])
    assert [(a.rule, a.severity) for a in low] == [("load_band", "info")]
    assert feed(m, [f.pump(at(3), load_pct=50)]) == []
    high = feed(m, [f.pump(at(4), load_pct=90.01), f.pump(at(4.1), load_pct=100)])
    assert [a.key for a in high] == [f"load_band:{WATCH}:{PUMP}:{ms(4)}"]


def test_a_reading_without_an_optional_field_neither_extends_nor_ends_its_run() -> None:
    f, m = Feed(), monitor()
    alarms = feed(
        m,
        [
            f.pump(at(1), load_pct=95),
            f.pump(at(1.1)),
            f.pump(at(1.2)),
            f.pump(at(1.3), load_pct=96),
        ],
    )
    assert [a.key for a in alarms] == [f"load_band:{WATCH}:{PUMP}:{ms(1)}"]
    assert alarms[0].details["readings"] == 2


def test_configured_severity_and_fact_reach_the_alarm() -> None:
    rule = {**VIB, "severity": "breach", "fact": "tag_removal", "streak": 1}
    f, m = Feed(), monitor(rule)
    [alarm] = m.observe(f.pump(at(1), vib=9))
    assert (alarm.severity, alarm.fact) == ("breach", "tag_removal")


def test_very_long_keys_are_bounded() -> None:
    watch = "urn:fourflow:asset:" + "w" * 150
    subject = "urn:fourflow:asset:" + "x" * 180
    devices = {RTU: Device(RTU, DEVICES[RTU].address, frozenset({"telemetry"}), "test", watch)}
    m = TelemetryMonitor(
        TelemetryRules.from_config({"subject": watch, "rules": [{**VIB, "streak": 1}]}),
        registry(),
        devices,
    )
    f = Feed()
    [alarm] = m.observe(f.pump(at(1), vib=9, subject=subject))
    assert len(alarm.key) == 300
    assert alarm.key.startswith(f"vib_alert:{watch}:{subject}"[:267])
    [other] = m.observe(f.pump(at(1), vib=9, subject=subject[:-1] + "y"))  # same head
    assert other.key[:267] == alarm.key[:267] and other.key != alarm.key


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.sampled_from([4.0, 4.5, 4.51, 7.0]), min_size=1, max_size=14),
    st.integers(min_value=1, max_value=4),
)
def test_threshold_episodes_match_a_reference(values: list[float], streak: int) -> None:
    """One alarm per maximal run of readings > 4.5 at least ``streak`` long, keyed by its
    first reading; a replay on a fresh monitor gives the same alarms."""
    expected, start, length = [], None, 0
    for i, v in enumerate(values):
        if v > 4.5:
            start, length = (i if length == 0 else start), length + 1
            if length == streak:
                expected.append(f"vib_alert:{WATCH}:{PUMP}:{ms(1 + start / 10)}")
        else:
            length = 0
    f = Feed()
    readings = [f.pump(at(1 + i / 10), vib=v) for i, v in enumerate(values)]
    rule = {**VIB, "streak": streak}
    first = feed(monitor(rule), readings)
    assert [a.key for a in first] == expected
    assert feed(monitor(rule), readings) == first


# --- silence -----------------------------------------------------------------------------


def test_stale_device_fires_after_heartbeat_strictly_and_once_per_silence() -> None:
    f, m = Feed(), monitor()
    assert m.check(ms(5)) == []  # nothing observed yet: no clock
    last = f.pump(at(1))
    m.observe(last)
    assert only(m.check(ms(1) + 900_000), "stale_device") == []
    stale = [a for a in m.check(ms(1) + 900_001) if a.subject == RTU]
    assert [a.key for a in stale] == [f"stale_device:{RTU}:{ms(1)}"]
    assert (stale[0].fact, stale[0].severity, stale[0].evidence) == (
        "stale_data",
        "warning",
        (eid(last),),
    )
    assert only(m.check(ms(3)), "stale_device") == []  # same silence
    m.observe(f.pump(at(4)))
    assert [a.key for a in only(m.check(ms(5)), "stale_device")] == [f"stale_device:{RTU}:{ms(4)}"]


def test_a_device_never_heard_is_stale_from_the_first_reading_observed() -> None:
    f, m = Feed(), monitor()
    m.observe(f.pump(at(1)))
    alarms = {a.subject: a for a in m.check(ms(1) + 900_001)}
    assert alarms[LOGGER].evidence == ()
    assert alarms[LOGGER].details["last_ms"] is None
    assert OTHER not in alarms  # not a device of this asset


# --- daily aggregates --------------------------------------------------------------------


def test_aggregates_follow_their_formulas() -> None:
    points = [(0, 10.0), (1_000, 20.0), (3_000, 5.0)]
    assert aggregate("min", points) == 5.0
    assert aggregate("max", points) == 20.0
    assert aggregate("last", points) == 5.0
    assert aggregate("mean", points) == round(35 / 3, 4)
    assert aggregate("sum", points) == 35.0
    # (10+20)/2 × 1 s + (20+5)/2 × 2 s over 3 s
    assert aggregate("twa", points) == round((15 + 25) / 3, 4)
    assert aggregate("twa", [(5, 7.0)]) == 7.0
    assert aggregate("twa", [(5, 7.0), (5, 9.0)]) == 7.0


def test_delta_counts_increments_and_restarts_after_a_meter_reset() -> None:
    meter = [(0, 100.0), (1, 130.0), (2, 131.5), (3, 2.0), (4, 10.0)]
    assert aggregate("delta", meter) == 30 + 1.5 + 2 + 8
    assert aggregate("delta", meter, before=90.0) == 10 + 30 + 1.5 + 2 + 8
    assert aggregate("delta", [(0, 5.0)]) == 0.0


def test_close_day_aggregates_per_subject_and_schema_with_units() -> None:
    f, m = Feed(), monitor()
    feed(m, [
        f.pump(at(0), flow=400, vib=1.0, energy=1000),
        f.pump(at(6), flow=800, vib=2.0, energy=1050, load_pct=40),
        f.pump(at(12), flow=600, vib=3.0, energy=1100, load_pct=60),
        f.pump(at(12), flow=100, subject=PUMP2),
        f.pump(at(23.99), flow=500, vib=1.5, energy=1120),
        f.pump(at(24), flow=999, energy=1200),  # the next local day
    ])  # fmt: skip
    daily, alarms = m.close_day(DAY0)
    assert alarms == []
    assert (daily.subject, daily.day, daily.utc_offset) == (WATCH, DAY0, "+08:00")
    assert [(s.subject, s.readings) for s in daily.series] == [(PUMP, 4), (PUMP2, 1)]
    series = daily.series[0]
    assert (series.first_ms, series.last_ms) == (ms(0), ms(23.99))
    flow = series.fields["flow_m3h"]
    assert flow.unit == "m3/h" and flow.readings == 4
    span = ms(23.99) - ms(0)
    twa = (600 * 6 * HOUR + 700 * 6 * HOUR + 550 * (ms(23.99) - ms(12))) / span
    assert flow.aggregates == {"min": 400, "max": 800, "mean": 575, "twa": round(twa, 4)}
    assert series.fields["vib_mms"].aggregates == {"max": 3.0, "mean": 1.875, "last": 1.5}
    assert series.fields["energy_kwh"].aggregates == {"delta": 120, "last": 1120}
    assert series.fields["load_pct"] == FieldDay("%", 2, {"sum": 100})
    next_day, _ = m.close_day(DAY1)
    # the increment across midnight counts on the day of the reading that shows it
    assert next_day.series[0].fields["energy_kwh"].aggregates == {"delta": 80, "last": 1200}


def test_days_are_local_to_the_utc_offset() -> None:
    f, m = Feed(), monitor(VIB, utc_offset="+00:00")
    m.observe(f.pump(at(7.99)))  # 23:59:24 UTC of the day before
    m.observe(f.pump(at(8)))
    before, _ = m.close_day("2026-11-22")
    day, _ = m.close_day(DAY0)
    assert before.series[0].readings == 1 and day.series[0].readings == 1


def test_a_day_closes_once_and_its_late_readings_count_nowhere() -> None:
    f, m = Feed(), monitor()
    m.observe(f.pump(at(1)))
    m.close_day(DAY0)
    with pytest.raises(InvalidInput) as caught:
        m.close_day(DAY0)
    assert caught.value.code == "day_closed"
    m.observe(f.pump(at(2), vib=9))
    with pytest.raises(InvalidInput) as bad_day:
        m.close_day("2026-11-31")
    assert bad_day.value.field == "day"


def test_day_evidence_keeps_the_essential_readings_under_the_cap() -> None:
    f, m = Feed(), monitor(VIB, evidence_cap=4)
    readings = [
        f.pump(at(i), flow=600 + (300 if i == 5 else 0), vib=2, energy=1000 + i) for i in range(10)
    ]
    feed(m, readings)
    daily, _ = m.close_day(DAY0)
    # first and last of every field, the flow maximum (hour 5), and the earliest others
    assert daily.evidence == tuple(eid(readings[i]) for i in (0, 1, 5, 9))
    assert daily.evidence_omitted == 6


def test_daily_payload_round_trips() -> None:
    f, m = Feed(), monitor()
    feed(m, [f.pump(at(1), load_pct=5), f.pump(at(2), flow=700.25), f.pump(at(3), subject=PUMP2)])
    daily, _ = m.close_day(DAY0)
    payload = daily.to_payload()
    assert json.loads(json.dumps(payload)) == payload
    assert DailyTelemetry.from_payload(payload) == daily
    assert DailyTelemetry.from_payload(payload).to_payload() == payload
    empty = DailyTelemetry(WATCH, DAY1, "+08:00", (), ())
    assert DailyTelemetry.from_payload(empty.to_payload()) == empty


@pytest.mark.parametrize(
    "damage",
    [
        lambda p: p.pop("day"),
        lambda p: p.update(day="23/11/2026"),
        lambda p: p.update(utc_offset="CST"),
        lambda p: p["series"][0].update(schema="pump"),
        lambda p: p["series"][0].update(readings="3"),
        lambda p: p["series"][0]["fields"]["flow_m3h"].update(median=3),
        lambda p: p["series"][0]["fields"]["flow_m3h"].update(unit="furlongs"),
        lambda p: p["series"][0]["fields"]["flow_m3h"].update(max="high"),
        lambda p: p.update(evidence_omitted=None),
    ],
)
def test_a_damaged_payload_is_refused(damage: Any) -> None:
    series = SeriesDay(PUMP, "pump@1", 3, 1, 2, {"flow_m3h": FieldDay("m3/h", 3, {"max": 2.0})})
    payload = DailyTelemetry(WATCH, DAY0, "+08:00", (series,), ("a",)).to_payload()
    damage(payload)
    with pytest.raises(InvalidInput) as caught:
        DailyTelemetry.from_payload(payload)
    assert caught.value.field == "payload"


# --- daily rules -------------------------------------------------------------------------


def day_of_flow(f: Feed, m: TelemetryMonitor, day: int, flow: float) -> list[Alarm]:
    feed(m, [f.pump(at(h, day), flow=flow) for h in (1, 13)])
    _, alarms = m.close_day((MIDNIGHT + timedelta(days=day)).date().isoformat())
    return alarms


def test_daily_rule_fires_after_days_consecutive_days_strictly_below() -> None:
    f, m = Feed(), monitor(LOW)
    assert day_of_flow(f, m, 0, 299.99) == []
    assert day_of_flow(f, m, 1, 300) == []  # exactly on the bound: the streak ends
    assert day_of_flow(f, m, 2, 299.99) == []
    alarms = day_of_flow(f, m, 3, 100)
    assert [a.key for a in alarms] == [f"low_flow:{WATCH}:{PUMP}:{DAY2}"]
    alarm = alarms[0]
    assert (alarm.severity, alarm.fact, alarm.time_ms) == ("breach", "covenant_breach", ms(0, 4))
    assert alarm.details["value"] == 100 and alarm.details["days"] == 2
    assert len(alarm.evidence) == 2
    assert day_of_flow(f, m, 4, 100) == []  # the same episode


def test_a_day_without_readings_breaks_a_daily_streak() -> None:
    f, m = Feed(), monitor(LOW)
    assert day_of_flow(f, m, 0, 100) == []
    m.observe(f.pump(at(1, 1), subject=PUMP2))
    m.close_day(DAY1)  # pump-1 silent that day
    assert day_of_flow(f, m, 2, 100) == []
    assert [a.key for a in day_of_flow(f, m, 3, 100)] == [f"low_flow:{WATCH}:{PUMP}:{DAY2}"]


def test_days_closed_out_of_order_start_a_new_streak() -> None:
    f, m = Feed(), monitor(LOW)
    feed(m, [f.pump(at(1, d), flow=100) for d in range(3)])
    assert m.close_day(DAY1)[1] == []
    assert m.close_day(DAY0)[1] == []
    assert m.close_day(DAY2)[1] == []  # DAY0 was closed last: DAY2 does not follow it


# --- replay ------------------------------------------------------------------------------


def test_a_fresh_monitor_replaying_readings_and_checks_returns_the_same_alarms() -> None:
    f = Feed()
    readings = [f.pump(at(h / 4), vib=5 if 8 <= h < 20 else 2, flow=200) for h in range(40)]
    readings += [f.pump(at(h, 1), flow=200) for h in (3, 9)]

    def run() -> list[Alarm]:
        m = monitor()
        out = []
        for r in readings:
            out += m.check(r.time_ms)
            out += m.observe(r)
        out += m.close_day(DAY0)[1] + m.close_day(DAY1)[1]
        return out + m.check(ms(30))

    first = run()
    assert {a.rule for a in first} == {"vib_alert", "low_flow", "stale_device"}
    assert run() == first
    assert len({a.key for a in first}) == len(first)


# --- the simulator -----------------------------------------------------------------------


def monitors(scenario: Any) -> tuple[dict[str, TelemetryMonitor], dict[str, Device]]:
    config = telemetry_config(scenario)
    schemas = SchemaRegistry.from_config(config["schemas"])
    devices = {sim.device.id: sim.device for sim in scenario.devices}
    watched = {}
    for watch in config["watches"]:
        rules_ = TelemetryRules.from_config(watch)
        watched[rules_.subject] = TelemetryMonitor(rules_, schemas, devices)
    return watched, devices


def run_scenario(scenario: Any) -> tuple[list[Alarm], list[DailyTelemetry]]:
    """Readings in order, a check before each, each local day closed once it is over."""
    watched, devices = monitors(scenario)
    alarms: list[Alarm] = []
    dailies: list[DailyTelemetry] = []
    day_ms = 24 * HOUR
    next_close = scenario.start_ms + day_ms

    def close(until: int) -> int:
        nonlocal next_close
        while next_close <= until:
            for m in watched.values():
                daily, found = m.close_day(m.rules.day_of(next_close - 1))
                dailies.append(daily)
                alarms.extend(found)
            next_close += day_ms
        return next_close

    for reading in scenario.readings:
        close(reading.time_ms)
        for m in watched.values():
            alarms.extend(m.check(reading.time_ms))
        alarms.extend(watched[devices[reading.device].subject].observe(reading))
    close(scenario.end_ms)
    for m in watched.values():
        alarms.extend(m.check(scenario.end_ms))
    return alarms, dailies


@pytest.fixture(scope="module")
def clean() -> Any:
    return simulate(days=3, seed=7, incidents=())


@pytest.fixture(scope="module")
def incidents() -> Any:
    return simulate(days=3, seed=7)


def test_the_simulator_is_deterministic_and_signs_every_reading(clean: Any) -> None:
    again = simulate(days=1, seed=7, incidents=())
    assert [r.model_dump() for r in again.readings] == [
        r.model_dump() for r in clean.readings if r.time_ms < clean.start_ms + 24 * HOUR
    ]
    other = simulate(days=1, seed=8, incidents=())
    assert [r.signature for r in other.readings[:5]] != [r.signature for r in clean.readings[:5]]
    devices = {sim.device.id: sim.device for sim in clean.devices}
    for reading in clean.readings[::97]:
        devices[reading.device].check(reading)
    times = [r.time_ms for r in clean.readings]
    assert times == sorted(times)
    assert Counter(r.device for r in clean.readings) == {d: 3 * 288 for d in devices}


def test_a_clean_run_is_quiet_with_realistic_days(clean: Any) -> None:
    alarms, dailies = run_scenario(clean)
    assert alarms == []
    assert len(dailies) == 6
    for daily in dailies:
        [series] = daily.series
        fields = series.fields
        if daily.subject == PUMP_STATION:
            flow = fields["flow_m3h"].aggregates
            assert 560 <= flow["mean"] <= 680 and flow["min"] > 180 and flow["max"] < 1100
            assert abs(flow["twa"] - flow["mean"]) < 10
            assert 1_500 < fields["energy_kwh"].aggregates["delta"] < 2_600
            assert fields["vibration_mms"].aggregates["max"] < 2.8  # ISO 10816-3 zone A/B
            assert 420 < fields["pressure_kpa"].aggregates["mean"] < 450
        else:
            temperature = fields["temperature_c"].aggregates
            assert temperature["min"] > 3.2
            assert temperature["max"] <= 7.8
            assert 3.9 < temperature["mean"] < 4.6
            assert 100 < fields["door_opens"].aggregates["sum"] < 200


@pytest.mark.parametrize("incident", TELEMETRY_INCIDENTS)
def test_each_incident_raises_exactly_its_rule(incident: str) -> None:
    scenario = simulate(days=2, seed=7, incidents=[incident])
    [expected] = scenario.incidents
    alarms, _ = run_scenario(scenario)
    assert alarms and {a.rule for a in alarms} == {expected.expected_rule}
    first = alarms[0]
    assert first.time_ms >= expected.start_ms
    assert expected.end_ms is None or first.time_ms <= expected.end_ms
    assert len(alarms) == 1
    if expected.expected_rule == "stale_device":
        assert first.subject in expected.items
    else:
        assert first.subject == expected.subject
        assert {e.split(";")[0] for e in first.evidence} <= set(expected.items)


def test_all_incidents_together_raise_their_rules_and_leave_the_clean_readings(
    clean: Any, incidents: Any
) -> None:
    alarms, _ = run_scenario(incidents)
    assert Counter(a.rule for a in alarms) == {
        "vibration_alert": 1,
        "cold_room_warm": 1,
        "stale_device": 1,
    }
    assert len(incidents.incidents) == 3 and min(i.start_ms for i in incidents.incidents) >= (
        incidents.start_ms + 24 * HOUR
    )
    logger = next(s.device.id for s in clean.devices if s.device.subject == COLD_ROOM)
    before = min(i.start_ms for i in incidents.incidents)
    clean_early = [r for r in clean.readings if r.time_ms < before]
    assert [r for r in incidents.readings if r.time_ms < before] == clean_early
    assert sum(r.device == logger for r in incidents.readings) == 3 * 288


def test_a_one_day_run_still_shows_every_incident() -> None:
    scenario = simulate(days=1, seed=3)
    alarms, _ = run_scenario(scenario)
    assert {a.rule for a in alarms} == {i.expected_rule for i in scenario.incidents}


def test_the_simulator_refuses_bad_options() -> None:
    with pytest.raises(InvalidInput) as caught:
        simulate(days=1, seed=1, incidents=["flood"])
    assert caught.value.code == "unknown_incident"
    with pytest.raises(InvalidInput) as bad:
        simulate(days=0, seed=1)
    assert bad.value.field == "days"


def test_the_simulated_daily_mean_flow_follows_the_demand_curve(clean: Any) -> None:
    pump = [r for r in clean.readings if r.device.endswith("rtu-1")][:288]
    by_hour: dict[int, list[float]] = {}
    for r in pump:
        hour = (r.time_ms - clean.start_ms) // HOUR
        by_hour.setdefault(hour, []).append(r.parsed().values["flow_m3h"])
    mean = {h: math.fsum(v) / len(v) for h, v in by_hour.items()}
    assert min(mean, key=mean.__getitem__) in (2, 3, 4)
    assert max(mean, key=mean.__getitem__) in (18, 19, 20)
    assert mean[19] > 2.5 * mean[3]
