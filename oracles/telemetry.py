"""Any device type from a schema and a few rules (通用遥测): daily aggregates and alarms.

A new device type needs a schema and a rule, not new plumbing. Devices send
``telemetry`` readings (oracles.readings.Telemetry): ``schema`` "name@version",
``subject`` (what was measured: a pump, a bridge span, a cold room) and ``values``
{field: number}. The oracle's config declares the schemas (``TelemetrySchema``: each
field's unit, plausible range, whether it is required, which daily aggregates to keep)
and, per watched asset, the rules (``TelemetryRule``: thresholds and daily rules). See
docs/industries/telemetry.md for how to add a device type.

Pure: readings in (already signature-checked, see oracles.readings), ``DailyTelemetry``
and ``Alarm`` out; no store, no chain, no I/O, no clock.

    schemas  = SchemaRegistry.from_config(config["schemas"])
    rules    = TelemetryRules.from_config(watch["rules"])  # subject, rules, utc_offset
    monitor  = TelemetryMonitor(rules, schemas, devices)
    alarms   = monitor.observe(reading)                # each reading, in time order
    alarms   = monitor.check(now_ms)                   # every few minutes: the silence rule
    daily, alarms = monitor.close_day("2026-11-23")    # once the local day is over

Rules (``RULES`` holds the default severity and fact; a configured rule may set its
own; an alarm's ``rule`` is the configured rule's ``name``, or ``stale_device``)

| rule         | condition                                                                 | severity | fact       | key                                                  |
|--------------|---------------------------------------------------------------------------|----------|------------|------------------------------------------------------|
| threshold    | ``streak`` consecutive readings of one subject and schema with ``field``  | warning  | —          | <name>:<watch>:<subject>:<episode start ms>          |
|              | > ``above`` (or < ``below``; with both: outside [below, above])           |          |            |                                                      |
| daily        | close_day: the day's ``aggregate`` of ``field`` > ``above`` (or <         | warning  | —          | <name>:<watch>:<subject>:<first day of the streak>   |
|              | ``below``) on ``days`` consecutive local days                             |          |            |                                                      |
| stale_device | check: a device of the watch silent for more than its ``heartbeat_s``     | warning  | stale_data | stale_device:<device>:<last ms>                      |
|              | (any reading of the device counts)                                        |          |            |                                                      |

``severity`` is one of info, warning, breach; ``fact`` one of FACTS or none
(oracles.pipeline reports unauthorized_movement, tag_removal, covenant_breach and
stale_data on-chain: a daily rule that is a performance covenant, such as a pump's
running hours under a floor, may be a breach with fact covenant_breach).

Thresholds are strict: a value exactly on ``above`` or ``below``, a daily aggregate
exactly on its bound and a device silent exactly ``heartbeat_s`` raise nothing. A
schema's plausible range is inclusive: a value exactly on ``min`` or ``max`` is a valid
reading, one outside it is not a reading at all (``observe`` raises InvalidInput code
"out_of_range" and nothing changes: a broken sensor is not an alarm, its silence is).

Validation (``SchemaRegistry.validate``, run by ``observe`` before anything moves): the
schema must be registered (code "unknown_schema"), every required field present
("missing_field"), no field the schema lacks ("unknown_field"), every value finite and
inside its range ("out_of_range"). Bad configuration raises InvalidInput code
"bad_config" naming the path (``fields.flow_m3h.unit``, ``rules[2].streak``).

Episodes. A threshold episode opens at the reading that starts a run beyond the
threshold (the key carries its time), raises when the run reaches ``streak`` readings,
and closes at a reading of that subject back in range; a reading without the field (an
optional one) neither extends nor ends it. A daily episode opens on the first day of a
streak and closes on a day back within bound, or a day with no such aggregate (no
readings: silence is stale_device's business); a day closed out of order starts a new
streak. The silence rule's episode is the device's last reading before the silence; its
clock starts at the first reading this monitor observed. A monitor never returns a key
twice; a fresh monitor replaying the same readings and checks returns the same alarms
with the same keys, for the store to deduplicate. Keys longer than 300 characters keep
their head and get a sha256 digest of the whole.

Evidence (``reading_event_id``, in time order): a threshold alarm carries the first
``streak`` readings of its run (the last fired it); a daily alarm the subject's readings
of the streak's last day (at most ``evidence_cap``); stale_device the device's last
reading (none if never heard); ``DailyTelemetry`` the day's telemetry readings, at most
``evidence_cap`` of them: first those that gave some field its first, min, max or last
value, then the earliest others (``evidence_omitted`` counts the rest).

Order. Readings are expected in time order. A redelivered reading (same device and seq)
is ignored. A reading not newer than its subject and schema's latest moves no rule
state (a late reading fires nothing); it still counts toward its day, in its place, if
that day is open. A reading of a closed day counts for no day. Readings of other kinds
only count as the device's sign of life.

Daily aggregates, per local day [00:00, 24:00) of ``utc_offset``, per (subject, schema)
and field, over the day's readings of that field v_1..v_n at t_1..t_n sorted by time;
each field keeps the ones its schema names (``readings``, n, is always kept):

- min, max, last: min v, max v, v_n (as read, not rounded)
- mean = Σ v_i / n
- twa (time-weighted mean, linear between readings) =
  Σ_{i<n} (v_i + v_{i+1}) / 2 × (t_{i+1} − t_i) / (t_n − t_1); v_1 when t_n = t_1
- sum = Σ v_i (for per-interval counts: door openings, pulses)
- delta (for running totals: meters) = Σ inc_i over consecutive pairs, starting from
  the last value of the previous closed day when it is older than v_1, where
  inc_i = v_i − v_{i−1} if v_i ≥ v_{i−1}, else v_i (the meter was reset to 0 and has
  counted v_i since); the increment across midnight counts on the day of the reading
  that shows it
- mean, twa, sum and delta are summed with math.fsum and rounded to 4 decimal places
  (Python ``round``, half to even).
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any, Final, Literal, cast

from ledger.errors import InvalidInput
from oracles.readings import Alarm, Device, Reading, Telemetry, reading_event_id
from oracles.rules import check_day, day_bounds, first_time, local_day, offset_ms, require

__all__ = [
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

Severity = Literal["info", "warning", "breach"]
Aggregate = Literal["min", "max", "mean", "twa", "last", "sum", "delta"]

AGGREGATES: Final[tuple[Aggregate, ...]] = ("min", "max", "mean", "twa", "last", "sum", "delta")
# the on-chain facts a configured rule may call for (a quantity fact comes only from a
# count of goods, never from a telemetry series); the first three freeze the pledge, so
# only a rule of severity "breach" may call for them
FREEZING_FACTS: Final = ("unauthorized_movement", "tag_removal", "covenant_breach")
FACTS: Final = (
    "unauthorized_movement",
    "tag_removal",
    "covenant_breach",
    "stale_data",
)
RULES: Final[Mapping[str, tuple[Severity, str | None]]] = {
    "threshold": ("warning", None),
    "daily": ("warning", None),
    "stale_device": ("warning", "stale_data"),
}

# A unit is one of the plain ones, or a term or a quotient of two terms; a term is a
# decimal prefix (G M k c m u), a base unit and an optional exponent 2 or 3:
#   plain:  1  %  %RH  degC  ppm  dB  rpm
#   bases:  m g t L s min h d Pa bar W Wh VA var V A Hz K N J lx
#   e.g.    m3/h  kPa  mm/s  kWh  m/s2  L/min  kW  MPa  1/h
_TERM: Final = r"(?:[GMkcmu]?(?:m|g|t|L|s|min|h|d|Pa|bar|Wh|W|VA|var|V|A|Hz|K|N|J|lx)[23]?)"
UNIT_PATTERN: Final = re.compile(rf"^(?:1|%|%RH|degC|ppm|dB|rpm|{_TERM}(?:/{_TERM})?|1/{_TERM})$")
_NAME: Final = re.compile(r"^[a-z][a-z0-9_]{0,62}$")  # a field or rule name
_SCHEMA_NAME: Final = re.compile(r"^[a-z][a-z0-9_.-]{0,62}$")
_SCHEMA_KEY: Final = re.compile(r"^([a-z][a-z0-9_.-]{0,62})@([1-9][0-9]{0,5})$")
_DEFAULT_AGGREGATES: Final = ("min", "max", "mean", "last")
_SEQ_WINDOW: Final = 10_000  # redelivery is remembered this many seqs back, per device
_KEY_MAX: Final = 300  # the alarms table's key column (ledger.oracle_state.AlarmRow)
_SEVERITIES: Final = ("info", "warning", "breach")


# --- configuration ------------------------------------------------------------------------


def _bad(path: str, message: str) -> InvalidInput:
    return InvalidInput(f"{path}: {message}", field=path, code="bad_config")


def _config(
    raw: Any, path: str, required: Iterable[str], optional: Iterable[str]
) -> dict[str, Any]:
    """``raw`` as a dict with exactly these keys (the optional ones may be absent)."""
    if not isinstance(raw, Mapping):
        raise _bad(path or "config", f"expected an object, got {type(raw).__name__}")
    required, optional = tuple(required), tuple(optional)
    for key in raw:
        if key not in required and key not in optional:
            known = ", ".join(sorted((*required, *optional)))
            raise _bad(_join(path, str(key)), f"unknown key (expected some of {known})")
    for key in required:
        if key not in raw:
            raise _bad(_join(path, key), "is required")
    return dict(raw)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _number(value: Any, path: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(path, f"expected a finite number, got {value!r}")
    return float(value)


def _integer(value: Any, path: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(path, f"expected an integer, got {value!r}")
    return value


def _text(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise _bad(path, f"expected a string, got {value!r}")
    return value


def _at(path: str, build: Any, *args: Any, **kwargs: Any) -> Any:
    """``build(...)``, its InvalidInput (from ``require``) re-raised with ``path`` in front."""
    try:
        return build(*args, **kwargs)
    except InvalidInput as exc:
        if exc.code == "bad_config":
            raise
        raise _bad(_join(path, exc.field or ""), exc.message) from exc


@dataclass(frozen=True)
class FieldSpec:
    """One field of a schema: its unit (see UNIT_PATTERN), plausible range [min, max]
    (inclusive; None: unbounded), whether every reading must carry it, and the daily
    aggregates to keep (AGGREGATES)."""

    unit: str
    min: float | None = None
    max: float | None = None
    required: bool = True
    aggregates: tuple[Aggregate, ...] = _DEFAULT_AGGREGATES

    def __post_init__(self) -> None:
        require(
            isinstance(self.unit, str) and UNIT_PATTERN.fullmatch(self.unit) is not None,
            "unit",
            f"unit {self.unit!r} is not one of the documented units (e.g. m3/h, degC, kPa, "
            "mm/s, kWh, %, 1)",
        )
        if self.min is not None and self.max is not None:
            require(self.min < self.max, "max", f"max {self.max} must be above min {self.min}")
        for name in ("min", "max"):
            value = getattr(self, name)
            require(value is None or math.isfinite(value), name, f"{name} must be a finite number")
        aggregates = tuple(self.aggregates)
        require(len(aggregates) >= 1, "aggregates", "keep at least one aggregate")
        for name in aggregates:
            require(
                name in AGGREGATES,
                "aggregates",
                f"unknown aggregate {name!r}; expected some of {list(AGGREGATES)}",
            )
        require(
            len(set(aggregates)) == len(aggregates), "aggregates", "an aggregate is listed twice"
        )
        object.__setattr__(self, "aggregates", tuple(a for a in AGGREGATES if a in aggregates))

    def in_range(self, value: float) -> bool:
        return (self.min is None or value >= self.min) and (self.max is None or value <= self.max)

    @classmethod
    def from_config(cls, raw: Any, path: str = "") -> FieldSpec:
        """``{"unit": "m3/h", "min": 0, "max": 3000, "required": true,
        "aggregates": ["min", "max", "mean"]}`` (only unit is required)."""
        values = _config(raw, path, ["unit"], ["min", "max", "required", "aggregates"])
        unit = _text(values["unit"], _join(path, "unit"))
        low = values.get("min")
        high = values.get("max")
        required = values.get("required", True)
        if not isinstance(required, bool):
            raise _bad(_join(path, "required"), f"expected true or false, got {required!r}")
        aggregates = values.get("aggregates", list(_DEFAULT_AGGREGATES))
        if not isinstance(aggregates, list) or not all(isinstance(a, str) for a in aggregates):
            raise _bad(_join(path, "aggregates"), "expected a list of aggregate names")
        return cast(
            FieldSpec,
            _at(
                path,
                cls,
                unit=unit,
                min=None if low is None else _number(low, _join(path, "min")),
                max=None if high is None else _number(high, _join(path, "max")),
                required=required,
                aggregates=tuple(aggregates),
            ),
        )

    def to_config(self) -> dict[str, Any]:
        out: dict[str, Any] = {"unit": self.unit}
        if self.min is not None:
            out["min"] = self.min
        if self.max is not None:
            out["max"] = self.max
        return {**out, "required": self.required, "aggregates": list(self.aggregates)}


@dataclass(frozen=True)
class TelemetrySchema:
    """A device type's readings: ``name@version`` and its fields (names are the keys of
    a reading's ``values``; put the unit in the name: ``flow_m3h``)."""

    name: str
    version: int
    fields: Mapping[str, FieldSpec]

    def __post_init__(self) -> None:
        require(
            isinstance(self.name, str) and _SCHEMA_NAME.fullmatch(self.name) is not None,
            "name",
            f"schema name must match {_SCHEMA_NAME.pattern}, got {self.name!r}",
        )
        require(
            not isinstance(self.version, bool)
            and isinstance(self.version, int)
            and 1 <= self.version <= 999_999,
            "version",
            f"version must be an integer in 1..999999, got {self.version!r}",
        )
        require(len(self.fields) >= 1, "fields", "a schema needs at least one field")
        require(len(self.fields) <= 64, "fields", "a schema has at most 64 fields")
        for name, spec in self.fields.items():
            require(
                isinstance(name, str) and _NAME.fullmatch(name) is not None,
                f"fields.{name}",
                f"field name must match {_NAME.pattern}, got {name!r}",
            )
            require(isinstance(spec, FieldSpec), f"fields.{name}", "expected a FieldSpec")
        object.__setattr__(self, "fields", dict(self.fields))

    @property
    def key(self) -> str:
        return f"{self.name}@{self.version}"

    @classmethod
    def from_config(cls, raw: Any, path: str = "") -> TelemetrySchema:
        """``{"name": "pump_station", "version": 1, "fields": {"flow_m3h": {...}, ...}}``."""
        values = _config(raw, path, ["name", "version", "fields"], [])
        name = _text(values["name"], _join(path, "name"))
        version = _integer(values["version"], _join(path, "version"))
        fields_path = _join(path, "fields")
        raw_fields = values["fields"]
        if not isinstance(raw_fields, Mapping):
            raise _bad(fields_path, "expected an object of field name to field spec")
        fields = {
            str(key): FieldSpec.from_config(spec, _join(fields_path, str(key)))
            for key, spec in raw_fields.items()
        }
        return cast(TelemetrySchema, _at(path, cls, name=name, version=version, fields=fields))

    def to_config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "version": self.version,
            "fields": {name: spec.to_config() for name, spec in self.fields.items()},
        }


class SchemaRegistry:
    """The schemas the oracle knows, by ``name@version``; checks telemetry against them."""

    def __init__(self, schemas: Iterable[TelemetrySchema]) -> None:
        self._schemas: dict[str, TelemetrySchema] = {}
        for index, schema in enumerate(schemas):
            if schema.key in self._schemas:
                raise _bad(f"schemas[{index}]", f"{schema.key} is declared twice")
            self._schemas[schema.key] = schema

    @classmethod
    def from_config(cls, raw: Any, path: str = "schemas") -> SchemaRegistry:
        """A list of schema objects (``TelemetrySchema.from_config``)."""
        if not isinstance(raw, list):
            raise _bad(path, "expected a list of schemas")
        return cls(TelemetrySchema.from_config(item, f"{path}[{i}]") for i, item in enumerate(raw))

    def __contains__(self, key: object) -> bool:
        return key in self._schemas

    def keys(self) -> list[str]:
        return sorted(self._schemas)

    def get(self, key: str) -> TelemetrySchema:
        schema = self._schemas.get(key)
        if schema is None:
            raise InvalidInput(
                f"schema {key!r} is not registered (known: {self.keys()})",
                field="data.schema",
                code="unknown_schema",
            )
        return schema

    def validate(self, reading: Reading | Telemetry) -> dict[str, float]:
        """The values of a telemetry reading, checked against its schema, in the schema's
        field order; InvalidInput (unknown_schema, missing_field, unknown_field,
        out_of_range) otherwise."""
        data = _telemetry(reading)
        schema = self.get(data.schema_)
        for name in data.values:
            if name not in schema.fields:
                raise InvalidInput(
                    f"{schema.key} has no field {name!r} (fields: {sorted(schema.fields)})",
                    field=f"data.values.{name}",
                    code="unknown_field",
                )
        values: dict[str, float] = {}
        for name, spec in schema.fields.items():
            if name not in data.values:
                if spec.required:
                    raise InvalidInput(
                        f"{schema.key} requires {name!r}",
                        field=f"data.values.{name}",
                        code="missing_field",
                    )
                continue
            value = float(data.values[name])
            if not math.isfinite(value) or not spec.in_range(value):
                raise InvalidInput(
                    f"{name} = {data.values[name]} {spec.unit} is outside the plausible range "
                    f"[{spec.min}, {spec.max}] of {schema.key}",
                    field=f"data.values.{name}",
                    code="out_of_range",
                )
            values[name] = value
        return values


def _telemetry(reading: Reading | Telemetry) -> Telemetry:
    if isinstance(reading, Telemetry):
        return reading
    if reading.kind != "telemetry":
        raise InvalidInput(
            f"expected a telemetry reading, got {reading.kind!r}", field="kind", code="wrong_kind"
        )
    return cast(Telemetry, reading.parsed())


@dataclass(frozen=True)
class TelemetryRule:
    """A declared rule: ``type`` "threshold" (``streak`` consecutive readings beyond the
    bound) or "daily" (the day's ``aggregate`` beyond it on ``days`` consecutive days).
    ``above`` and/or ``below``: beyond means > above or < below (strict)."""

    name: str
    type: Literal["threshold", "daily"]
    schema: str
    field: str
    above: float | None = None
    below: float | None = None
    streak: int = 1  # threshold only
    aggregate: Aggregate | None = None  # daily only
    days: int = 1  # daily only
    severity: Severity = "warning"
    fact: str | None = None

    def __post_init__(self) -> None:
        require(
            isinstance(self.name, str) and _NAME.fullmatch(self.name) is not None,
            "name",
            f"rule name must match {_NAME.pattern}, got {self.name!r}",
        )
        require(self.name not in RULES, "name", f"{self.name!r} is reserved")
        require(
            self.type in ("threshold", "daily"),
            "type",
            f"type must be threshold or daily, got {self.type!r}",
        )
        require(
            isinstance(self.schema, str) and _SCHEMA_KEY.fullmatch(self.schema) is not None,
            "schema",
            f"schema must be name@version, got {self.schema!r}",
        )
        require(
            isinstance(self.field, str) and _NAME.fullmatch(self.field) is not None,
            "field",
            f"field name must match {_NAME.pattern}, got {self.field!r}",
        )
        require(
            self.above is not None or self.below is not None,
            "above",
            "a rule needs above, below or both",
        )
        for name in ("above", "below"):
            value = getattr(self, name)
            require(value is None or math.isfinite(value), name, f"{name} must be finite")
        if self.above is not None and self.below is not None:
            require(
                self.below < self.above,
                "below",
                f"with both bounds, below ({self.below}) must be under above ({self.above})",
            )
        require(self.streak >= 1, "streak", f"streak must be >= 1, got {self.streak}")
        require(self.days >= 1, "days", f"days must be >= 1, got {self.days}")
        if self.type == "threshold":
            require(self.aggregate is None, "aggregate", "a threshold rule takes no aggregate")
            require(self.days == 1, "days", "a threshold rule takes streak, not days")
        else:
            require(
                self.aggregate in AGGREGATES,
                "aggregate",
                f"a daily rule needs an aggregate, one of {list(AGGREGATES)}",
            )
            require(self.streak == 1, "streak", "a daily rule takes days, not streak")
        require(
            self.severity in _SEVERITIES,
            "severity",
            f"severity must be one of {list(_SEVERITIES)}, got {self.severity!r}",
        )
        require(
            self.fact is None or self.fact in FACTS,
            "fact",
            f"fact must be null or one of {list(FACTS)}, got {self.fact!r}",
        )
        require(
            self.fact not in FREEZING_FACTS or self.severity == "breach",
            "fact",
            f"fact {self.fact!r} freezes the pledge: the rule's severity must be breach, "
            f"got {self.severity!r}",
        )

    def beyond(self, value: float) -> bool:
        """Whether ``value`` breaks the bound (strictly)."""
        return (self.above is not None and value > self.above) or (
            self.below is not None and value < self.below
        )

    def bound_text(self) -> str:
        if self.above is not None and self.below is not None:
            return f"outside [{self.below}, {self.above}]"
        return f"above {self.above}" if self.above is not None else f"below {self.below}"

    @classmethod
    def from_config(cls, raw: Any, path: str = "") -> TelemetryRule:
        """``{"name": "vibration_alert", "type": "threshold", "schema": "pump_station@1",
        "field": "vibration_mms", "above": 4.5, "streak": 3, "severity": "warning"}`` or
        ``{"name": ..., "type": "daily", ..., "aggregate": "mean", "below": 300, "days": 2}``."""
        values = _config(
            raw,
            path,
            ["name", "type", "schema", "field"],
            ["above", "below", "streak", "aggregate", "days", "severity", "fact"],
        )
        kwargs: dict[str, Any] = {
            key: _text(values[key], _join(path, key)) for key in ("name", "type", "schema", "field")
        }
        for key in ("above", "below"):
            if values.get(key) is not None:
                kwargs[key] = _number(values[key], _join(path, key))
        for key in ("streak", "days"):
            if key in values:
                kwargs[key] = _integer(values[key], _join(path, key))
        for key in ("aggregate", "severity", "fact"):
            if values.get(key) is not None:
                kwargs[key] = _text(values[key], _join(path, key))
        return cast(TelemetryRule, _at(path, cls, **kwargs))

    def to_config(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "type": self.type,
            "schema": self.schema,
            "field": self.field,
        }
        for key in ("above", "below", "aggregate", "fact"):
            if getattr(self, key) is not None:
                out[key] = getattr(self, key)
        if self.type == "threshold":
            out["streak"] = self.streak
        else:
            out["days"] = self.days
        return {**out, "severity": self.severity}


@dataclass(frozen=True)
class TelemetryRules:
    """One watched asset (the ``subject`` its devices are registered to) and its rules."""

    subject: str
    rules: tuple[TelemetryRule, ...] = ()
    utc_offset: str = "+08:00"
    evidence_cap: int = 5_000
    _offset_ms: int = field(init=False, repr=False, compare=False, default=0)

    def __post_init__(self) -> None:
        require(
            isinstance(self.subject, str) and 1 <= len(self.subject) <= 200,
            "subject",
            "a subject (1..200 characters) is required",
        )
        object.__setattr__(self, "rules", tuple(self.rules))
        names = [rule.name for rule in self.rules]
        for index, name in enumerate(names):
            require(
                name not in names[:index], f"rules[{index}].name", f"{name!r} is declared twice"
            )
        require(self.evidence_cap >= 1, "evidence_cap", "evidence_cap must be >= 1")
        object.__setattr__(self, "_offset_ms", offset_ms(self.utc_offset))

    @classmethod
    def from_config(cls, raw: Any, path: str = "") -> TelemetryRules:
        """``{"subject": "...", "rules": [rule, ...], "utc_offset": "+08:00",
        "evidence_cap": 5000}`` (rules, utc_offset and evidence_cap are optional)."""
        values = _config(raw, path, ["subject"], ["rules", "utc_offset", "evidence_cap"])
        rules_path = _join(path, "rules")
        raw_rules = values.get("rules", [])
        if not isinstance(raw_rules, list):
            raise _bad(rules_path, "expected a list of rules")
        rules = tuple(
            TelemetryRule.from_config(item, f"{rules_path}[{i}]")
            for i, item in enumerate(raw_rules)
        )
        kwargs: dict[str, Any] = {"subject": _text(values["subject"], _join(path, "subject"))}
        if "utc_offset" in values:
            kwargs["utc_offset"] = _text(values["utc_offset"], _join(path, "utc_offset"))
        if "evidence_cap" in values:
            kwargs["evidence_cap"] = _integer(values["evidence_cap"], _join(path, "evidence_cap"))
        return cast(TelemetryRules, _at(path, cls, rules=rules, **kwargs))

    def check_against(self, schemas: SchemaRegistry) -> None:
        """Raise InvalidInput unless every rule names a registered schema, one of its
        fields and (daily rules) an aggregate that field keeps."""
        for index, rule in enumerate(self.rules):
            path = f"rules[{index}]"
            if rule.schema not in schemas:
                raise _bad(f"{path}.schema", f"{rule.schema} is not a registered schema")
            spec = schemas.get(rule.schema).fields.get(rule.field)
            if spec is None:
                raise _bad(f"{path}.field", f"{rule.schema} has no field {rule.field!r}")
            if rule.aggregate is not None and rule.aggregate not in spec.aggregates:
                raise _bad(
                    f"{path}.aggregate",
                    f"{rule.schema} keeps {list(spec.aggregates)} of {rule.field}, "
                    f"not {rule.aggregate!r}",
                )

    def day_of(self, time_ms: int) -> str:
        """The local date (ISO) of a moment."""
        return local_day(time_ms, self._offset_ms)

    def day_bounds(self, day: str) -> tuple[int, int]:
        """[start, end) of a local day, in unix milliseconds."""
        return day_bounds(day, self._offset_ms)


# --- daily aggregates ---------------------------------------------------------------------


def aggregate(
    name: Aggregate,
    points: Sequence[tuple[int, float]],
    *,
    before: float | None = None,
) -> float:
    """One aggregate over ``points`` [(time_ms, value)] in time order (at least one; see
    the module docstring). ``before`` is a running total's last value before them (delta)."""
    values = [v for _, v in points]
    if name == "min":
        return min(values)
    if name == "max":
        return max(values)
    if name == "last":
        return values[-1]
    if name == "mean":
        return round(math.fsum(values) / len(values), 4)
    if name == "sum":
        return round(math.fsum(values), 4)
    if name == "twa":
        span = points[-1][0] - points[0][0]
        if span == 0:
            return round(values[0], 4)
        area = math.fsum((a + b) / 2 * (tb - ta) for (ta, a), (tb, b) in itertools.pairwise(points))
        return round(area / span, 4)
    chain = values if before is None else [before, *values]
    return round(math.fsum(b - a if b >= a else b for a, b in itertools.pairwise(chain)), 4)


@dataclass(frozen=True)
class FieldDay:
    """One field's day: its unit, how many readings carried it, and its aggregates."""

    unit: str
    readings: int
    aggregates: Mapping[str, float]

    def to_payload(self) -> dict[str, Any]:
        return {"unit": self.unit, "readings": self.readings, **dict(self.aggregates)}


@dataclass(frozen=True)
class SeriesDay:
    """One measured subject under one schema, for one day."""

    subject: str
    schema: str
    readings: int
    first_ms: int
    last_ms: int
    fields: Mapping[str, FieldDay]

    def to_payload(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "schema": self.schema,
            "readings": self.readings,
            "first_ms": self.first_ms,
            "last_ms": self.last_ms,
            "fields": {name: spec.to_payload() for name, spec in self.fields.items()},
        }


@dataclass(frozen=True)
class DailyTelemetry:
    """A watched asset's telemetry for one local day: one ``SeriesDay`` per (measured
    subject, schema), sorted by subject then schema."""

    subject: str
    day: str
    utc_offset: str
    series: tuple[SeriesDay, ...]
    evidence: tuple[str, ...]  # reading event ids, in time order
    evidence_omitted: int = 0

    def find(self, subject: str, schema: str) -> SeriesDay | None:
        return next((s for s in self.series if s.subject == subject and s.schema == schema), None)

    def to_payload(self) -> dict[str, Any]:
        """A JSON-safe dict: the payload of the fourflow event that records this day."""
        return {
            "subject": self.subject,
            "day": self.day,
            "utc_offset": self.utc_offset,
            "series": [s.to_payload() for s in self.series],
            "evidence": list(self.evidence),
            "evidence_omitted": self.evidence_omitted,
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> DailyTelemetry:
        """The inverse of ``to_payload``; InvalidInput when a field is missing or mistyped."""
        try:
            return _daily(payload)
        except (KeyError, TypeError, ValueError, AttributeError, InvalidInput) as exc:
            raise InvalidInput(f"not a daily telemetry payload: {exc!r}", field="payload") from exc


def _daily(p: Mapping[str, Any]) -> DailyTelemetry:
    offset_ms(p["utc_offset"])
    return DailyTelemetry(
        subject=_str(p["subject"]),
        day=check_day(p["day"]),
        utc_offset=p["utc_offset"],
        series=tuple(_series(s) for s in p["series"]),
        evidence=tuple(_str(e) for e in p["evidence"]),
        evidence_omitted=_int(p["evidence_omitted"]),
    )


def _series(s: Mapping[str, Any]) -> SeriesDay:
    if not _SCHEMA_KEY.fullmatch(s["schema"]):
        raise ValueError(f"schema {s['schema']!r}")
    return SeriesDay(
        subject=_str(s["subject"]),
        schema=s["schema"],
        readings=_int(s["readings"]),
        first_ms=_int(s["first_ms"]),
        last_ms=_int(s["last_ms"]),
        fields={_str(name): _field_day(f) for name, f in s["fields"].items()},
    )


def _field_day(f: Mapping[str, Any]) -> FieldDay:
    unknown = set(f) - {"unit", "readings", *AGGREGATES}
    if unknown:
        raise ValueError(f"unknown keys {sorted(unknown)}")
    if not UNIT_PATTERN.fullmatch(f["unit"]):
        raise ValueError(f"unit {f['unit']!r}")
    return FieldDay(
        unit=f["unit"],
        readings=_int(f["readings"]),
        aggregates={a: _float(f[a]) for a in AGGREGATES if a in f},
    )


def _str(value: Any) -> str:
    if not isinstance(value, str):
        raise TypeError(f"expected a string, got {value!r}")
    return value


def _int(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"expected an integer, got {value!r}")
    return value


def _float(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(f"expected a number, got {value!r}")
    return float(value)


# --- monitor state ------------------------------------------------------------------------

Series = tuple[str, str]  # (measured subject, schema)


@dataclass
class _Run:
    """Consecutive readings beyond a threshold; ``ids`` keeps the first ``streak``."""

    start_ms: int
    ids: list[str]
    length: int = 1


@dataclass
class _Streak:
    """Consecutive days beyond a daily rule's bound."""

    start_day: str
    last_day: str
    length: int = 1


@dataclass
class _Bucket:
    """One local day's readings of one series: (time, event id, values)."""

    readings: list[tuple[int, str, dict[str, float]]] = field(default_factory=list)


@dataclass
class _Day:
    series: dict[Series, _Bucket] = field(default_factory=dict)


# --- the monitor --------------------------------------------------------------------------


class TelemetryMonitor:
    """Turns one watched asset's telemetry into alarms and daily aggregates."""

    def __init__(
        self, rules: TelemetryRules, schemas: SchemaRegistry, devices: Mapping[str, Device]
    ) -> None:
        rules.check_against(schemas)
        self.rules = rules
        self.schemas = schemas
        self._devices = {d.id: d for d in devices.values() if d.subject == rules.subject}
        self._seqs: dict[str, set[int]] = {}
        self._device_last: dict[str, tuple[int, str]] = {}
        self._origin_ms: int | None = None
        self._series_ms: dict[Series, int] = {}  # latest reading time per series
        self._runs: dict[tuple[str, str], _Run] = {}  # (rule, subject) -> open run
        self._streaks: dict[tuple[str, str], _Streak] = {}  # (rule, subject) -> daily streak
        self._totals: dict[tuple[str, str, str], tuple[int, float]] = {}  # last closed value
        self._days: dict[str, _Day] = {}
        self._closed: set[str] = set()
        self._raised: set[str] = set()

    # public API

    def observe(self, reading: Reading) -> list[Alarm]:
        """Take one reading of the asset's devices; returns the alarms it raised."""
        if reading.device not in self._devices:
            raise InvalidInput(
                f"{reading.device} is not a device of {self.rules.subject}",
                field="device",
                code="unknown_device",
            )
        values: dict[str, float] | None = None
        data: Telemetry | None = None
        if reading.kind == "telemetry":
            data = cast(Telemetry, reading.parsed())
            values = self.schemas.validate(data)  # raises before anything moves
        if not self._first_delivery(reading):
            return []
        event_id, time_ms = reading_event_id(reading.device, reading.seq), reading.time_ms
        if self._origin_ms is None:
            self._origin_ms = time_ms
        last = self._device_last.get(reading.device)
        if last is None or time_ms > last[0]:
            self._device_last[reading.device] = (time_ms, event_id)
        if data is None or values is None:
            return []
        series = (data.subject, data.schema_)
        day = self.rules.day_of(time_ms)
        if day not in self._closed:
            bucket = self._days.setdefault(day, _Day()).series.setdefault(series, _Bucket())
            bucket.readings.append((time_ms, event_id, values))
        if time_ms <= self._series_ms.get(series, -(2**63)):
            return []  # late: counted in its day, moves no rule
        self._series_ms[series] = time_ms
        return self._fresh(self._threshold_rules(series, values, time_ms, event_id))

    def check(self, now_ms: int) -> list[Alarm]:
        """The silence rule at ``now_ms``: devices silent longer than their heartbeat."""
        if self._origin_ms is None:
            return []
        return self._fresh(self._stale(now_ms, self._origin_ms))

    def close_day(self, day: str) -> tuple[DailyTelemetry, list[Alarm]]:
        """Aggregate a local day (final: its later readings count nowhere) and run the
        daily rules."""
        day = check_day(day)
        if day in self._closed:
            raise InvalidInput(
                f"day {day} of {self.rules.subject} is already closed",
                field="day",
                code="day_closed",
            )
        self._closed.add(day)
        bucket = self._days.pop(day, _Day())
        daily = self._aggregate_day(day, bucket)
        return daily, self._fresh(self._daily_rules(day, daily, bucket))

    # readings

    def _first_delivery(self, reading: Reading) -> bool:
        seqs = self._seqs.setdefault(reading.device, set())
        if reading.seq in seqs:
            return False
        seqs.add(reading.seq)
        if len(seqs) > 2 * _SEQ_WINDOW:
            floor = max(seqs) - _SEQ_WINDOW
            self._seqs[reading.device] = {s for s in seqs if s > floor}
        return True

    def _threshold_rules(
        self, series: Series, values: Mapping[str, float], time_ms: int, event_id: str
    ) -> list[Alarm]:
        subject, schema = series
        alarms = []
        for rule in self.rules.rules:
            if rule.type != "threshold" or rule.schema != schema or rule.field not in values:
                continue
            value = values[rule.field]
            state = (rule.name, subject)
            if not rule.beyond(value):
                self._runs.pop(state, None)
                continue
            run = self._runs.get(state)
            if run is None:
                run = self._runs[state] = _Run(time_ms, [event_id])
            else:
                run.length += 1
                if len(run.ids) < rule.streak:
                    run.ids.append(event_id)
            if run.length != rule.streak:
                continue
            unit = self.schemas.get(schema).fields[rule.field].unit
            message = (
                f"{subject}: {rule.field} {value} {unit}, {rule.bound_text()} for "
                f"{run.length} readings"
            )
            details = {
                "type": "threshold",
                "schema": schema,
                "field": rule.field,
                "value": value,
                "unit": unit,
                "above": rule.above,
                "below": rule.below,
                "readings": run.length,
            }
            alarms.append(
                self._alarm(rule, subject, run.start_ms, time_ms, message, run.ids, details)
            )
        return alarms

    # silence

    def _stale(self, now_ms: int, origin_ms: int) -> list[Alarm]:
        alarms = []
        for device_id in sorted(self._devices):
            last_ms, last_id = self._device_last.get(device_id, (origin_ms, None))
            heartbeat_s = self._devices[device_id].heartbeat_s
            if now_ms - last_ms <= heartbeat_s * 1000:
                continue
            severity, fact = RULES["stale_device"]
            alarms.append(
                Alarm(
                    key=_bounded(f"stale_device:{device_id}:{last_ms}"),
                    rule="stale_device",
                    subject=device_id,
                    severity=severity,
                    time_ms=now_ms,
                    message=(
                        f"{device_id} silent for {(now_ms - last_ms) // 1000} s "
                        f"(heartbeat {heartbeat_s} s)"
                    ),
                    evidence=() if last_id is None else (last_id,),
                    details={
                        "watch": self.rules.subject,
                        "last_ms": last_ms if last_id else None,
                        "heartbeat_s": heartbeat_s,
                    },
                    fact=fact,
                )
            )
        return alarms

    # the day

    def _aggregate_day(self, day: str, bucket: _Day) -> DailyTelemetry:
        series_days = []
        evidence: list[tuple[int, str]] = []
        essential: set[str] = set()
        for subject, schema in sorted(bucket.series):
            readings = sorted(bucket.series[(subject, schema)].readings, key=lambda r: r[:2])
            evidence += [(t, event_id) for t, event_id, _ in readings]
            spec = self.schemas.get(schema)
            fields = {}
            for name, field_spec in spec.fields.items():
                points = [(t, values[name], e) for t, e, values in readings if name in values]
                if not points:
                    continue
                essential |= {points[0][2], points[-1][2]}
                essential.add(min(points, key=lambda p: p[1])[2])
                essential.add(max(points, key=lambda p: p[1])[2])
                timed = [(t, v) for t, v, _ in points]
                total_key = (subject, schema, name)
                carry = self._totals.get(total_key)
                before = carry[1] if carry is not None and carry[0] < timed[0][0] else None
                fields[name] = FieldDay(
                    unit=field_spec.unit,
                    readings=len(points),
                    aggregates={
                        a: aggregate(a, timed, before=before) for a in field_spec.aggregates
                    },
                )
                if carry is None or timed[-1][0] > carry[0]:
                    self._totals[total_key] = timed[-1]
            series_days.append(
                SeriesDay(
                    subject=subject,
                    schema=schema,
                    readings=len(readings),
                    first_ms=readings[0][0],
                    last_ms=readings[-1][0],
                    fields=fields,
                )
            )
        kept, omitted = _select(evidence, essential, self.rules.evidence_cap)
        return DailyTelemetry(
            subject=self.rules.subject,
            day=day,
            utc_offset=self.rules.utc_offset,
            series=tuple(series_days),
            evidence=kept,
            evidence_omitted=omitted,
        )

    def _daily_rules(self, day: str, daily: DailyTelemetry, bucket: _Day) -> list[Alarm]:
        _, end_ms = self.rules.day_bounds(day)
        previous = (date.fromisoformat(day) - timedelta(days=1)).isoformat()
        alarms = []
        for rule in self.rules.rules:
            if rule.type != "daily" or rule.aggregate is None:
                continue
            subjects = {s.subject for s in daily.series if s.schema == rule.schema}
            subjects |= {subject for name, subject in self._streaks if name == rule.name}
            for subject in sorted(subjects):
                state = (rule.name, subject)
                series = daily.find(subject, rule.schema)
                field_day = None if series is None else series.fields.get(rule.field)
                value = None if field_day is None else field_day.aggregates.get(rule.aggregate)
                if value is None or not rule.beyond(value):
                    self._streaks.pop(state, None)
                    continue
                streak = self._streaks.get(state)
                if streak is not None and streak.last_day == previous:
                    streak.last_day, streak.length = day, streak.length + 1
                else:
                    streak = self._streaks[state] = _Streak(day, day)
                if streak.length != rule.days:
                    continue
                unit = "" if field_day is None else field_day.unit
                ids = sorted((t, e) for t, e, _ in bucket.series[(subject, rule.schema)].readings)[
                    : self.rules.evidence_cap
                ]
                message = (
                    f"{subject}: daily {rule.aggregate} of {rule.field} {value} "
                    f"{unit}, {rule.bound_text()} for {streak.length} day(s) "
                    f"({streak.start_day}..{day})"
                )
                details = {
                    "type": "daily",
                    "schema": rule.schema,
                    "field": rule.field,
                    "aggregate": rule.aggregate,
                    "value": value,
                    "unit": unit,
                    "above": rule.above,
                    "below": rule.below,
                    "days": streak.length,
                    "first_day": streak.start_day,
                    "day": day,
                }
                alarms.append(
                    self._alarm(
                        rule,
                        subject,
                        streak.start_day,
                        end_ms,
                        message,
                        [e for _, e in ids],
                        details,
                    )
                )
        return alarms

    # alarms

    def _alarm(
        self,
        rule: TelemetryRule,
        subject: str,
        start: int | str,
        time_ms: int,
        message: str,
        evidence: Iterable[str],
        details: Mapping[str, Any],
    ) -> Alarm:
        return Alarm(
            key=_bounded(f"{rule.name}:{self.rules.subject}:{subject}:{start}"),
            rule=rule.name,
            subject=subject,
            severity=rule.severity,
            time_ms=time_ms,
            message=message,
            evidence=tuple(evidence),
            details={"watch": self.rules.subject, **details},
            fact=rule.fact,
        )

    def _fresh(self, alarms: list[Alarm]) -> list[Alarm]:
        """The alarms whose key this monitor has not returned before."""
        return first_time(alarms, self._raised)


def _bounded(key: str) -> str:
    """``key``, or if longer than the store allows, its head and a digest of all of it."""
    if len(key) <= _KEY_MAX:
        return key
    return f"{key[: _KEY_MAX - 33]}~{hashlib.sha256(key.encode()).hexdigest()[:32]}"


def _select(
    evidence: list[tuple[int, str]], essential: set[str], cap: int
) -> tuple[tuple[str, ...], int]:
    """At most ``cap`` ids in time order: the essential ones first, then the earliest others."""
    ordered = sorted(evidence)
    keep = [e for e in ordered if e[1] in essential][:cap]
    keep += [e for e in ordered if e[1] not in essential][: cap - len(keep)]
    keep.sort()
    return tuple(event_id for _, event_id in keep), len(ordered) - len(keep)
