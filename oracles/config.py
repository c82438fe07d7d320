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
                 "rules": {"lot": "…", "zone": "…", "items": […], "minimum": 36, …}}]
    }

``rules`` take the fields of oracles.livestock.HerdRules and oracles.warehouse.LotRules
(docs/oracles.md lists them). A herd or lot without ``receipt_id`` is watched and
alarmed on, but nothing is reported on-chain for it. Every problem in the file is an
``InvalidInput`` naming where it is (``herds[0].rules.minimum: …``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from eth_utils.address import is_checksum_address
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from ledger.errors import InvalidInput
from oracles.livestock import HerdRules
from oracles.pipeline import HerdWatch, LotWatch
from oracles.readings import Device, Kind
from oracles.warehouse import LotRules

__all__ = ["OracleConfig"]

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


class OracleConfig(_Strict):
    tenant: Name
    devices: list[DeviceSpec] = Field(default_factory=list)
    herds: list[WatchSpec] = Field(default_factory=list)
    lots: list[WatchSpec] = Field(default_factory=list)

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
            )
            for i, spec in enumerate(self.herds)
        ]

    def lot_watches(self) -> list[LotWatch]:
        return [
            LotWatch(
                rules=_build(LotRules, spec.rules, f"lots[{i}].rules", _LOT_SETS),
                receipt_id=spec.receipt_id,
                pledge_id=spec.pledge_id,
            )
            for i, spec in enumerate(self.lots)
        ]


_HERD_SETS = {"animals": frozenset}
_LOT_SETS = {"items": frozenset, "outbound_doors": frozenset}
_TUPLES = ("night_hours", "temperature_c", "activity", "business_hours")


def _build(kind: Any, rules: Mapping[str, Any], where: str, sets: Mapping[str, Any]) -> Any:
    values = dict(rules)
    for name, convert in sets.items():
        if isinstance(values.get(name), list):
            values[name] = convert(values[name])
    for name in _TUPLES:
        if isinstance(values.get(name), list):
            values[name] = tuple(values[name])
    for name in ("geofence", "barn"):
        if isinstance(values.get(name), list):
            values[name] = tuple(tuple(point) for point in values[name])
    try:
        return kind(**values)
    except InvalidInput as exc:
        raise InvalidInput(
            f"{where}.{exc.field or ''}: {exc.message}", field=where, code="bad_config"
        ) from exc
    except TypeError as exc:
        raise InvalidInput(f"{where}: {exc}", field=where, code="bad_config") from exc
