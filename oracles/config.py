"""The oracle's configuration: its tenant, registered devices, and the herds and lots it
watches for which pledges. One JSON file, read by `fourflow serve --oracle-config` and
`fourflow oracle run --config` (or $FOURFLOW_ORACLE_CONFIG):

    {
      "tenant": "acme",
      "devices": [
        {"id": "urn:fourflow:device:ranch-7:collar-0042", "address": "0x…",
         "kinds": ["collar"], "site": "ranch-7", "subject": "urn:fourflow:herd:CN-NM-0007",
         "heartbeat_s": 3600}
      ],
      "herds": [{"receipt_id": 1, "pledge_id": 1,
                 "rules": {"herd": "urn:fourflow:herd:CN-NM-0007", "animals": […],
                           "minimum": 110, "max_daily_drop_pct": 5, …}}],
      "lots":  [{"receipt_id": 2, "pledge_id": 2,
                 "rules": {"lot": "…", "zone": "…", "items": […], "minimum": 36, …}}],
      "plants":  [{"receipt_id": 3, "rules": {"plant": "…", "running_a": {…}, …},
                   "revenue": {"capacity_per_day": 4000, "unit_price": 12.8},
                   "declarants": ["0x…"]}],
      "dealers": [{"rules": {"dealer": "…", "vehicles": […], "lot": [[lat, lon], …], …},
                   "vehicles": {"<VIN>": {"receipt_id": 4, "pledge_id": 4}, …}}],
      "schemas": [{"name": "pump", "version": 1, "fields": {…}}],
      "telemetry": [{"rules": {"subject": "…", "rules": […]}}],
      "crosscheck": {"tolerance_pct": {"revenue": 5}, "grace_days": 3}
    }

``rules`` take the fields of oracles.livestock.HerdRules, oracles.warehouse.LotRules,
oracles.machines.PlantRules, oracles.vehicles.DealerRules and
oracles.telemetry.TelemetryRules (docs/oracles.md and docs/industries/ list them);
``schemas`` are oracles.telemetry schemas, ``crosscheck`` oracles.crosscheck's
CrossCheckRules. A plant's ``revenue`` is what its utilization is worth
(oracles.crosscheck.revenue_from_utilization), for checking declared revenue. A watch
without ``receipt_id`` is watched and alarmed on, but nothing is reported on-chain for
it. Every watch takes ``declarants``, the submitter addresses (EIP-55 checksummed or
all lower-case) that may declare figures about its subject: the rules worker judges a
``document.declaration`` only from one of them (an overstated one freezes the pledge),
anyone else's is a ``declaration_invalid`` warning and no more; a watch without
``declarants`` has no declaration judged. A dealer's ``vehicles`` give each financed
VIN its own receipt and pledge: alarms about a vehicle are reported against its VIN's.
Every problem in the file is an ``InvalidInput`` naming where it is
(``herds[0].rules.minimum: …``, ``plants[0].declarants[1]: …``).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Annotated, Any

from eth_utils.address import is_checksum_address, to_checksum_address
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from ledger.errors import InvalidInput
from oracles.crosscheck import CrossCheckRules, revenue_from_utilization
from oracles.energy import SolarMonitor, SolarRules, StationMonitor, StationRules
from oracles.livestock import HerdRules
from oracles.machines import PlantMonitor, PlantRules
from oracles.pipeline import HerdWatch, LotWatch, Measure, SiteWatch
from oracles.readings import Device, Kind
from oracles.telemetry import SchemaRegistry, TelemetryMonitor, TelemetryRules
from oracles.vehicles import DealerMonitor, DealerRules
from oracles.warehouse import LotRules

__all__ = ["OracleConfig"]

_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
Name = Annotated[str, StringConstraints(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DeviceSpec(_Strict):
    id: Annotated[str, StringConstraints(pattern=r"^[a-z][a-z0-9+.-]*:[!-~]{1,150}$")]
    address: Annotated[str, StringConstraints(pattern=r"^0x[0-9a-fA-F]{40}$")]
    kinds: list[Kind] = Field(min_length=1)
    site: Name
    subject: str = Field(min_length=1, max_length=200)
    heartbeat_s: int = Field(default=3_600, ge=1, le=30 * 86_400)


class WatchSpec(_Strict):
    receipt_id: int | None = Field(default=None, ge=1)
    pledge_id: int | None = Field(default=None, ge=1)
    rules: dict[str, Any]
    # the submitters who may declare figures about the watched subject (checked in
    # declarant_set(): EIP-55 checksummed or all lower-case)
    declarants: list[str] = Field(default_factory=list, max_length=100)

    def declarant_set(self, where: str) -> frozenset[str]:
        """``declarants`` as checksummed addresses; ``where``: the watch's place in the
        file (``plants[0]``), for the error."""
        found: set[str] = set()
        for index, address in enumerate(self.declarants):
            field = f"{where}.declarants[{index}]"
            if not _ADDRESS.fullmatch(address) or not (
                address[2:] == address[2:].lower() or is_checksum_address(address)
            ):
                raise InvalidInput(
                    f"{field}: {address!r} is not an address (0x and 40 hex digits, "
                    "EIP-55 checksummed or all lower-case)",
                    field=field,
                    code="bad_config",
                )
            found.add(to_checksum_address(address))
        return frozenset(found)


class RevenueSpec(_Strict):
    capacity_per_day: float = Field(ge=0, allow_inf_nan=False)  # units in all scheduled hours
    unit_price: float = Field(ge=0, allow_inf_nan=False)  # CNY a unit


class PlantSpec(WatchSpec):
    revenue: RevenueSpec | None = None


class PledgedItem(_Strict):
    receipt_id: int = Field(ge=1)
    pledge_id: int | None = Field(default=None, ge=1)


class DealerSpec(WatchSpec):
    # a financed vehicle's own receipt and pledge, by VIN (each VIN is a receipt)
    vehicles: dict[str, PledgedItem] = Field(default_factory=dict)


class CrossCheckSpec(_Strict):
    tolerance_pct: dict[str, float] = Field(default_factory=dict)
    default_tolerance_pct: float = 5.0
    grace_days: int = 3
    utc_offset: str = "+08:00"


class OracleConfig(_Strict):
    tenant: Name
    devices: list[DeviceSpec] = Field(default_factory=list)
    herds: list[WatchSpec] = Field(default_factory=list)
    lots: list[WatchSpec] = Field(default_factory=list)
    plants: list[PlantSpec] = Field(default_factory=list)
    dealers: list[DealerSpec] = Field(default_factory=list)
    solar: list[WatchSpec] = Field(default_factory=list)
    charging: list[WatchSpec] = Field(default_factory=list)
    schemas: list[Any] = Field(default_factory=list)
    telemetry: list[WatchSpec] = Field(default_factory=list)
    crosscheck: CrossCheckSpec | None = None

    @classmethod
    def load(cls, path: Path) -> OracleConfig:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidInput(
                f"cannot read the oracle config {path}: {exc}", code="bad_config"
            ) from exc
        return cls.parse(raw, source=str(path))

    @classmethod
    def parse(cls, raw: Any, *, source: str = "config") -> OracleConfig:
        try:
            config = cls.model_validate(raw)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InvalidInput(
                f"{source}: {where}: {first['msg']}", field=where, code="bad_config"
            ) from exc
        config.devices_by_id()  # checks addresses and duplicates
        config.herd_watches()
        config.lot_watches()
        config.site_watches()
        config.crosscheck_rules()
        return config

    def devices_by_id(self) -> dict[str, Device]:
        devices: dict[str, Device] = {}
        for index, spec in enumerate(self.devices):
            if not is_checksum_address(spec.address):
                raise InvalidInput(
                    f"devices[{index}].address: {spec.address} is not an EIP-55 checksummed address",
                    field=f"devices[{index}].address",
                    code="bad_config",
                )
            if spec.id in devices:
                raise InvalidInput(
                    f"devices[{index}].id: {spec.id} is registered twice", code="bad_config"
                )
            devices[spec.id] = Device(
                id=spec.id,
                address=spec.address,
                kinds=frozenset(spec.kinds),
                site=spec.site,
                subject=spec.subject,
                heartbeat_s=spec.heartbeat_s,
            )
        return devices

    def herd_watches(self) -> list[HerdWatch]:
        return [
            HerdWatch(
                rules=_build(HerdRules, spec.rules, f"herds[{i}].rules", _HERD_SETS),
                receipt_id=spec.receipt_id,
                pledge_id=spec.pledge_id,
                declarants=spec.declarant_set(f"herds[{i}]"),
            )
            for i, spec in enumerate(self.herds)
        ]

    def lot_watches(self) -> list[LotWatch]:
        return [
            LotWatch(
                rules=_build(LotRules, spec.rules, f"lots[{i}].rules", _LOT_SETS),
                receipt_id=spec.receipt_id,
                pledge_id=spec.pledge_id,
                declarants=spec.declarant_set(f"lots[{i}]"),
            )
            for i, spec in enumerate(self.lots)
        ]

    def site_watches(self) -> list[SiteWatch]:
        """The plants, dealers and telemetry assets watched day by day."""
        watches: list[SiteWatch] = []
        for i, plant in enumerate(self.plants):
            plant_rules: PlantRules = _build(PlantRules, plant.rules, f"plants[{i}].rules", {})
            measures: list[Measure] = [("output", "pieces", _field("output"))]
            if plant.revenue is not None:
                measures.append(("revenue", "CNY", _utilization_worth(plant.revenue)))
            watches.append(
                SiteWatch(
                    kind="manufacturing",
                    subject=plant_rules.plant,
                    utc_offset=plant_rules.utc_offset,
                    monitor=partial(PlantMonitor, plant_rules),
                    receipt_id=plant.receipt_id,
                    pledge_id=plant.pledge_id,
                    measures=tuple(measures),
                    declarants=plant.declarant_set(f"plants[{i}]"),
                )
            )
        for i, lot in enumerate(self.dealers):
            dealer: DealerRules = _build(
                DealerRules, lot.rules, f"dealers[{i}].rules", _DEALER_SETS
            )
            strangers = sorted(set(lot.vehicles) - dealer.vehicles)
            if strangers:
                where = f"dealers[{i}].vehicles"
                raise InvalidInput(
                    f"{where}: not financed vehicles of the dealer: {', '.join(strangers[:5])}",
                    field=where,
                    code="bad_config",
                )
            watches.append(
                SiteWatch(
                    kind="vehicles",
                    subject=dealer.dealer,
                    utc_offset=dealer.utc_offset,
                    monitor=partial(DealerMonitor, dealer),
                    receipt_id=lot.receipt_id,
                    pledge_id=lot.pledge_id,
                    measures=(("stock", "vehicles", _tracked(_field("on_lot"))),),
                    items={v: (p.receipt_id, p.pledge_id) for v, p in lot.vehicles.items()},
                    declarants=lot.declarant_set(f"dealers[{i}]"),
                )
            )
        for i, spec in enumerate(self.solar):
            pv: SolarRules = _build(SolarRules, spec.rules, f"solar[{i}].rules", {})
            watches.append(
                SiteWatch(
                    kind="energy",
                    subject=pv.plant,
                    utc_offset=pv.utc_offset,
                    monitor=partial(SolarMonitor, pv),
                    receipt_id=spec.receipt_id,
                    pledge_id=spec.pledge_id,
                    measures=(
                        ("generation", "kWh", _metered(_field("export_kwh"))),
                        ("revenue", "CNY", _metered(_fen("revenue_fen"))),
                    ),
                    declarants=spec.declarant_set(f"solar[{i}]"),
                )
            )
        for i, spec in enumerate(self.charging):
            station: StationRules = _build(StationRules, spec.rules, f"charging[{i}].rules", {})
            watches.append(
                SiteWatch(
                    kind="energy",
                    subject=station.station,
                    utc_offset=station.utc_offset,
                    monitor=partial(StationMonitor, station),
                    receipt_id=spec.receipt_id,
                    pledge_id=spec.pledge_id,
                    measures=(("revenue", "CNY", _when_reporting("piles", _fen("revenue_fen"))),),
                    grace_ms=_UPLOAD_GRACE_MS,
                    declarants=spec.declarant_set(f"charging[{i}]"),
                )
            )
        schemas = SchemaRegistry.from_config(self.schemas, "schemas")
        for i, spec in enumerate(self.telemetry):
            where = f"telemetry[{i}].rules"
            asset = TelemetryRules.from_config(spec.rules, where)
            try:
                asset.check_against(schemas)
            except InvalidInput as exc:
                raise InvalidInput(
                    f"{where}: {exc.message}", field=where, code="bad_config"
                ) from exc
            watches.append(
                SiteWatch(
                    kind="telemetry",
                    subject=asset.subject,
                    utc_offset=asset.utc_offset,
                    monitor=partial(TelemetryMonitor, asset, schemas),
                    receipt_id=spec.receipt_id,
                    pledge_id=spec.pledge_id,
                    declarants=spec.declarant_set(f"telemetry[{i}]"),
                )
            )
        subjects = [w.subject for w in watches]
        subjects += [w.rules.herd for w in self.herd_watches()]
        subjects += [w.rules.lot for w in self.lot_watches()]
        twice = sorted({s for s in subjects if subjects.count(s) > 1})
        if twice:
            raise InvalidInput(
                f"watched twice: {', '.join(twice)}", field="subject", code="bad_config"
            )
        return watches

    def crosscheck_rules(self) -> CrossCheckRules:
        spec = self.crosscheck or CrossCheckSpec()
        try:
            return CrossCheckRules(**spec.model_dump())
        except InvalidInput as exc:
            raise InvalidInput(
                f"crosscheck.{exc.field or ''}: {exc.message}",
                field="crosscheck",
                code="bad_config",
            ) from exc


# A closed day's figure for the cross-checks, or None when the day has none: a day the
# devices were dark is not a day of zero (oracles.crosscheck then says "unverifiable").
MeasureOf = Callable[[Mapping[str, Any]], float | None]


def _field(name: str) -> MeasureOf:
    def measure(payload: Mapping[str, Any]) -> float | None:
        value = payload.get(name)
        if isinstance(value, bool) or not isinstance(value, int | float):
            return None
        return float(value)

    return measure


def _fen(name: str) -> MeasureOf:
    def measure(payload: Mapping[str, Any]) -> float | None:
        value = payload.get(name)
        return value / 100 if isinstance(value, int) and not isinstance(value, bool) else None

    return measure


def _metered(inner: MeasureOf) -> MeasureOf:
    """A solar plant's export or revenue: none on a day its export meter said nothing
    (no evidence at all, or the inverters generated and the meter added nothing)."""

    def measure(payload: Mapping[str, Any]) -> float | None:
        dark = not payload.get("evidence") or (
            not payload.get("export_kwh") and (payload.get("generation_kwh") or 0) > 0
        )
        return None if dark else inner(payload)

    return measure


def _when_reporting(what: str, inner: MeasureOf) -> MeasureOf:
    def measure(payload: Mapping[str, Any]) -> float | None:
        return inner(payload) if payload.get(f"{what}_reporting") else None

    return measure


def _tracked(inner: MeasureOf) -> MeasureOf:
    """A dealer's vehicles on the lot: none on a day no tracker was heard from."""

    def measure(payload: Mapping[str, Any]) -> float | None:
        financed, unseen = payload.get("financed"), payload.get("unseen")
        return None if not financed or unseen == financed else inner(payload)

    return measure


def _utilization_worth(revenue: RevenueSpec) -> MeasureOf:
    def measure(payload: Mapping[str, Any]) -> float | None:
        utilization = payload.get("utilization_pct")
        if not isinstance(utilization, int | float):
            return None
        return revenue_from_utilization(
            utilization, capacity_per_day=revenue.capacity_per_day, unit_price=revenue.unit_price
        )

    return measure


_UPLOAD_GRACE_MS = 10 * 60_000  # charging piles upload a session after it ends
_HERD_SETS = {"animals": frozenset}
_LOT_SETS = {"items": frozenset, "outbound_doors": frozenset}
_DEALER_SETS = {"vehicles": frozenset}
_TUPLES = ("night_hours", "temperature_c", "activity", "business_hours")


def _build(kind: Any, rules: Mapping[str, Any], where: str, sets: Mapping[str, Any]) -> Any:
    try:
        values = dict(rules)
        for name, convert in sets.items():
            if isinstance(values.get(name), list):
                values[name] = convert(values[name])
        for name in _TUPLES:
            if isinstance(values.get(name), list):
                values[name] = tuple(values[name])
        for name in ("geofence", "barn", "lot"):
            if (
                isinstance(values.get(name), list)
                and values[name]
                and isinstance(values[name][0], list)
            ):
                values[name] = tuple(tuple(point) for point in values[name])
        return kind(**values)
    except InvalidInput as exc:
        raise InvalidInput(
            f"{where}.{exc.field or ''}: {exc.message}", field=where, code="bad_config"
        ) from exc
    except TypeError as exc:
        raise InvalidInput(f"{where}: {exc}", field=where, code="bad_config") from exc
