"""Borrowers' declarations against the devices, end to end: a dairy herd's head count, a
warehouse lot's stock and a solar plant's metered revenue, simulated side by side and
fed through the oracle service (signed readings in, daily counts, stock levels and
closed days out as signed events), then declared by the borrower as signed
``document.declaration`` events and judged by the rules worker into
``crosscheck.result`` events and alarms. Real parts: device signatures, the intake, a
SQLite store and the in-process chain.

The clock of the passes: the scenarios cover two local days from Monday 2026-10-05
(UTC+08:00); the declarations come in just after, are judged on the next pass, and the
ones about a day no device reported wait (pending) until the period's end plus the
grace days, when they become unverifiable. Only the borrower, each watch's declarant,
may declare: another submitter's declaration is never judged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

import pytest
from eth_utils.address import to_checksum_address
from sqlmodel import col, select

from ledger.canonical import loads_canonical
from ledger.errors import InvalidInput
from ledger.models import EventBody, offset_zone, utc_text
from ledger.oracle_state import AlarmRow
from ledger.runtime import DevKeys, Runtime
from ledger.signing import sign_submission
from ledger.store import EventRow
from oracles.config import OracleConfig
from oracles.drive import feed_in_process
from oracles.service import OracleService
from oracles.sim_energy import solar
from oracles.simulate import Scenario, dairy, oracle_config, warehouse

DAY_MS = 86_400_000
START = datetime(2026, 10, 5, tzinfo=UTC)  # a Monday, in the past: no reading from the future
GRACE_DAYS = 3
TOLERANCE = {"head_count": 2.0, "stock": 1.0, "revenue": 5.0, "generation": 5.0}


@dataclass
class World:
    runtime: Runtime
    keys: DevKeys
    service: OracleService
    herd: Scenario
    lot: Scenario
    plant: Scenario
    end_ms: int

    def events(self, kind: str) -> list[dict[str, Any]]:
        with self.runtime.store.session() as session:
            rows = session.exec(
                select(EventRow.envelope)
                .where(EventRow.kind == kind)
                .order_by(col(EventRow.position))
            ).all()
        return [loads_canonical(e)["event"] for e in rows]

    def results(self) -> dict[str, dict[str, Any]]:
        """The recorded verdicts, by declaration event id (each must be recorded once)."""
        events = self.events("crosscheck.result")
        found = {e["payload"]["declaration"]: e for e in events}
        assert len(found) == len(events)
        return found

    def alarms(self) -> dict[str, AlarmRow]:
        return {a.key: a for a in self.service.state.alarms()}

    def declare(self, event_id: str, payload: dict[str, Any], time_ms: int, *, by: int = 1) -> None:
        """A signed declaration, in the subject's history: the borrower's (submitter 1,
        every watch's declarant), or another submitter's (``by``)."""
        borrower = self.keys.submitters[by]
        body = EventBody(
            kind="document.declaration",
            schema_version=1,
            stream="borrower.documents",
            event_id=event_id,
            asset_ids=[payload["subject"]],
            event_time=utc_text(time_ms),
            payload=payload,
            submitter=borrower.address,
        )
        domain = self.runtime.intake.domain
        self.runtime.intake.submit(sign_submission([body], private_key=borrower.key, domain=domain))


def _day(days_after_start: int) -> str:
    return (date(2026, 10, 5) + timedelta(days=days_after_start)).isoformat()


FIRST, LAST, DARK = _day(0), _day(1), _day(2)  # DARK: after the devices stopped


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    tmp: Path = tmp_path_factory.mktemp("crosscheck")
    herd = dairy(days=2, seed=1, animals=20, incidents=[], start=START)
    lot = warehouse(days=2, seed=1, coils=8, incidents=[], start=START)
    plant = solar(days=2, seed=1, inverters=2, incidents=[], start=START)
    # submitters: the oracle's gateway, the borrower, another tenant's capture client
    runtime, keys = Runtime.dev(db_url=f"sqlite:///{tmp}/crosscheck.sqlite", submitters=3)
    try:
        config: dict[str, Any] = {"tenant": "xc", "devices": [], "herds": [], "lots": []}
        for scenario in (herd, lot, plant):
            for key, value in oracle_config(scenario, tenant="xc").items():
                if isinstance(value, list):
                    config[key] = [*config.get(key, []), *value]
        config["crosscheck"] = {"tolerance_pct": TOLERANCE, "grace_days": GRACE_DAYS}
        for section in ("herds", "lots", "solar"):  # the borrower declares for each
            for watch in config[section]:
                watch["declarants"] = [keys.submitters[1].address]
        service = OracleService.build(
            runtime, OracleConfig.parse(config), gateway=keys.submitters[0]
        )
        # one site's feed, all three sites' readings in time order; the lot's EPCIS
        # documents and releases stay (its subject names the lot that releases)
        together = replace(
            lot,
            name="crosscheck",
            devices=[d for s in (herd, lot, plant) for d in s.devices],
            readings=sorted(
                (r for s in (herd, lot, plant) for r in s.readings),
                key=lambda r: (r.time_ms, r.device),
            ),
        )
        assert feed_in_process(together, service).quarantined == 0
        end_ms = together.end_ms
        service.rules.run_once(now_ms=end_ms + 600_000)  # closes the last day
        world = World(runtime, keys, service, herd, lot, plant, end_ms)
        _declare_all(world)
        service.rules.run_once(now_ms=end_ms + 700_000)  # the verdicts it can give now
        yield world
    finally:
        runtime.close()


def _herd_subject(w: World) -> str:
    return str(w.herd.subject["herd"])


def _lot_subject(w: World) -> str:
    return str(w.lot.subject["lot"])


def _plant_subject(w: World) -> str:
    return str(w.plant.subject["plant"])


def _counts(w: World) -> dict[str, dict[str, Any]]:
    return {e["payload"]["day"]: e for e in w.events("livestock.daily_count")}


def _last_level(w: World, day: str) -> dict[str, Any]:
    """The lot's last stock level event of local ``day``."""
    zone = offset_zone(str(w.lot.subject["utc_offset"]))
    levels = [
        e
        for e in w.events("warehouse.stock_level")
        if datetime.fromtimestamp(e["payload"]["time_ms"] / 1000, zone).date().isoformat() == day
    ]
    assert levels, f"no stock level on {day}"
    return max(levels, key=lambda e: e["payload"]["time_ms"])


def _plant_days(w: World) -> list[dict[str, Any]]:
    return [e["payload"] for e in w.events("energy.daily")]


def _declare_all(w: World) -> None:
    at = w.end_ms + 60_000
    head = {"metric": "head_count", "subject": _herd_subject(w), "unit": "head"}
    counted = _counts(w)[LAST]["payload"]["head_count"]
    w.declare("herd-honest", head | {"period": {"from": FIRST, "to": LAST}, "value": counted}, at)
    inflated_head = round(counted * 1.3)
    w.declare(
        "herd-inflated",
        head | {"period": {"from": LAST, "to": LAST}, "value": inflated_head},
        at + 1,
    )
    w.declare("herd-dark", head | {"period": {"from": DARK, "to": DARK}, "value": counted}, at + 2)

    stock = {"metric": "stock", "subject": _lot_subject(w), "unit": "items"}
    level = _last_level(w, LAST)["payload"]["quantity"]
    w.declare("lot-honest", stock | {"period": {"from": LAST, "to": LAST}, "value": level}, at + 3)
    # the coils sold on the last day, declared as if they were still in the warehouse
    sold = len(w.lot.subject["items"]) - level
    assert sold > 0
    w.declare(
        "lot-inflated",
        stock | {"period": {"from": LAST, "to": LAST}, "value": level + sold},
        at + 4,
    )
    w.declare(
        "lot-tonnes",
        stock | {"period": {"from": LAST, "to": LAST}, "value": 9.0} | {"unit": "t"},
        at + 5,
    )
    w.declare("lot-dark", stock | {"period": {"from": DARK, "to": DARK}, "value": level}, at + 6)

    revenue = {"metric": "revenue", "subject": _plant_subject(w), "unit": "CNY"}
    earned = float(_tariff_revenue(w))
    both_days = {"from": FIRST, "to": LAST}
    # books kept in whole yuan: a rounding, well within the tolerance
    w.declare("pv-honest", revenue | {"period": both_days, "value": round(earned)}, at + 7)
    w.declare(
        "pv-inflated", revenue | {"period": both_days, "value": round(earned * 1.25, 2)}, at + 8
    )
    w.declare("pv-dark", revenue | {"period": {"from": FIRST, "to": DARK}, "value": earned}, at + 9)
    exported = sum(d["export_kwh"] for d in _plant_days(w))
    w.declare(
        "pv-generation",
        {"metric": "generation", "subject": _plant_subject(w), "unit": "kWh"}
        | {"period": both_days, "value": exported},
        at + 10,
    )


def _tariff_revenue(w: World) -> Decimal:
    """The plant's revenue over the scenario, worked out here from the metered export
    and the contracted tariff: each day's export × tariff, to the fen (half up)."""
    tariff = Decimal(str(w.plant.subject["rules"]["tariff_cny_per_kwh"]))
    days = [d for d in _plant_days(w) if d["day"] in (FIRST, LAST)]
    assert len(days) == 2 and all(d["export_kwh"] > 0 for d in days)
    fen = sum(
        (Decimal(str(d["export_kwh"])) * tariff * 100).quantize(Decimal(1), ROUND_HALF_UP)
        for d in days
    )
    return Decimal(fen) / 100


# --- head count --------------------------------------------------------------------------


def test_a_declared_head_count_is_checked_against_the_reconciled_count(world: World) -> None:
    counts = _counts(world)
    assert {FIRST, LAST} <= set(counts)
    last = counts[LAST]
    assert last["payload"]["method"] == "tags+camera" and last["payload"]["head_count"] == 20
    results = world.results()
    honest = results["herd-honest"]["payload"]
    assert (honest["status"], honest["observed"], honest["observed_unit"]) == (
        "agrees",
        20,
        "head",
    )
    # a point figure: only the period's last day counts, its count is the evidence
    assert honest["evidence"] == ["herd-honest", last["event_id"]]
    assert (honest["days_observed"], honest["days_missing"]) == (1, [])
    assert results["herd-honest"]["asset_ids"] == [_herd_subject(world)]  # the herd's history
    inflated = results["herd-inflated"]["payload"]
    assert (inflated["status"], inflated["declared"], inflated["observed"]) == (
        "overstated",
        26,
        20,
    )
    assert inflated["difference_pct"] == 30.0
    alarms = world.alarms()
    alarm = alarms["declaration_overstated:herd-inflated"]
    assert (alarm.severity, alarm.fact, alarm.subject) == (
        "breach",
        "covenant_breach",
        _herd_subject(world),
    )
    assert json.loads(alarm.evidence) == ["herd-inflated", last["event_id"]]
    assert not [k for k in alarms if k.endswith(":herd-honest")]


# --- stock -------------------------------------------------------------------------------


def test_declared_stock_is_checked_against_the_last_rfid_stock_level_of_the_day(
    world: World,
) -> None:
    level = _last_level(world, LAST)
    released = sum(len(items) for _, items in world.lot.releases)
    assert released > 0 and level["payload"]["method"] != "none"
    assert level["payload"]["quantity"] == len(world.lot.subject["items"]) - released
    results = world.results()
    honest = results["lot-honest"]["payload"]
    assert (honest["status"], honest["observed"], honest["observed_unit"]) == (
        "agrees",
        level["payload"]["quantity"],
        "items",
    )
    # the day's last level, not an earlier one of that day
    assert honest["evidence"] == ["lot-honest", level["event_id"]]
    inflated = results["lot-inflated"]["payload"]
    assert inflated["status"] == "overstated"
    assert inflated["difference"] == len(world.lot.subject["items"]) - level["payload"]["quantity"]
    alarms = world.alarms()
    assert alarms["declaration_overstated:lot-inflated"].fact == "covenant_breach"
    assert "declaration_overstated:lot-honest" not in alarms
    # another unit is not compared: tonnes against counted items
    tonnes = results["lot-tonnes"]["payload"]
    assert (tonnes["status"], tonnes["observed_unit"]) == ("incomparable", "items")
    assert alarms["declaration_unverifiable:lot-tonnes"].severity == "warning"


# --- revenue: metered generation × tariff ---------------------------------------------------


def test_declared_revenue_is_checked_against_metered_export_at_the_tariff(world: World) -> None:
    earned = _tariff_revenue(world)
    days = [d for d in _plant_days(world) if d["day"] in (FIRST, LAST)]
    assert earned == Decimal(sum(d["revenue_fen"] for d in days)) / 100
    results = world.results()
    honest = results["pv-honest"]["payload"]
    assert honest["status"] == "agrees" and honest["observed"] == float(earned)
    assert honest["difference"] == pytest.approx(round(float(earned)) - float(earned), abs=1e-6)
    assert (honest["days_observed"], len(honest["evidence"])) == (2, 3)  # a sum over the days
    inflated = results["pv-inflated"]["payload"]
    assert inflated["status"] == "overstated"
    assert inflated["difference_pct"] == pytest.approx(25.0, abs=0.01)
    assert "declaration_overstated:pv-inflated" in world.alarms()
    generation = results["pv-generation"]["payload"]
    assert (generation["status"], generation["observed_unit"]) == ("agrees", "kWh")
    assert generation["observed"] == pytest.approx(sum(d["export_kwh"] for d in days), abs=1e-6)


# --- no device data ----------------------------------------------------------------------


def test_a_period_no_device_reported_is_pending_then_unverifiable(world: World) -> None:
    dark = ("herd-dark", "lot-dark", "pv-dark")
    assert not set(dark) & set(world.results())  # pending: no verdict recorded yet
    # still pending on the last day of grace
    deadline = world.end_ms + (1 + GRACE_DAYS) * DAY_MS  # the end of DARK + the grace days
    world.service.rules.run_once(now_ms=deadline - 60_000)
    assert not set(dark) & set(world.results())
    # the herd's dark day was closed, and it is no count rather than a count of 0 head
    dark_count = _counts(world)[DARK]["payload"]
    assert (dark_count["method"], dark_count["head_count"]) == ("none", 0)
    world.service.rules.run_once(now_ms=deadline + 60_000)
    results = world.results()
    alarms = world.alarms()
    for declaration in dark:
        payload = results[declaration]["payload"]
        assert (payload["status"], payload["days_missing"]) == ("unverifiable", [DARK])
        assert alarms[f"declaration_unverifiable:{declaration}"].severity == "warning"
    assert results["pv-dark"]["payload"]["days_observed"] == 2  # the days it had
    # every verdict recorded once over all these passes (``results`` checks it)
    assert len(results) == 11


# --- who may declare ------------------------------------------------------------------------


def test_a_declaration_by_anyone_but_the_sites_declarant_is_not_judged(world: World) -> None:
    """Another tenant's capture client (or the oracle's own gateway) holds SUBMITTER_ROLE
    too: its inflated figures about the borrower's sites are refused, not judged, so
    they call for no fact; so is the borrower's figure about a subject nobody watches."""
    now = world.end_ms + (2 + GRACE_DAYS) * DAY_MS  # past every grace: all judged if judged
    at = world.end_ms + 120_000
    revenue = {"metric": "revenue", "subject": _plant_subject(world), "unit": "CNY"}
    both_days = {"period": {"from": FIRST, "to": LAST}}
    world.declare("pv-impostor", revenue | both_days | {"value": 1e9}, at, by=2)
    head = {"metric": "head_count", "subject": _herd_subject(world), "unit": "head"}
    world.declare("herd-by-gateway", head | both_days | {"value": 10_000}, at + 1, by=0)
    nowhere = revenue | {"subject": "urn:fourflow:plant:nowhere"}
    world.declare("pv-unwatched", nowhere | both_days | {"value": 1.0}, at + 2)
    found = world.service.rules.run_once(now_ms=now)
    refused = {"pv-impostor", "herd-by-gateway", "pv-unwatched"}
    assert {f"declaration_invalid:{d}" for d in refused} <= set(found.alarms)
    assert not refused & set(world.results())
    alarms = world.alarms()
    assert not [k for k in alarms if k.split(":", 1)[1] in refused and "invalid" not in k]
    outsider, gateway = world.keys.submitters[2].address, world.keys.submitters[0].address
    expected = {
        "pv-impostor": f"{outsider} is not a declarant of {_plant_subject(world)}",
        "herd-by-gateway": f"{gateway} is not a declarant of {_herd_subject(world)}",
        "pv-unwatched": "urn:fourflow:plant:nowhere is not watched by this oracle",
    }
    for declaration, reason in expected.items():
        alarm = alarms[f"declaration_invalid:{declaration}"]
        assert (alarm.severity, alarm.fact, alarm.pledge_id) == ("warning", None, None)
        assert reason in alarm.message and json.loads(alarm.evidence) == [declaration]
    # said once: a later pass, and a restarted worker replaying the store, say nothing
    assert not [k for k in world.service.rules.run_once(now_ms=now + 1).alarms if "decl" in k]
    restarted = OracleService.build(
        world.runtime, world.service.config, gateway=world.keys.submitters[0]
    )
    replayed = restarted.rules.run_once(limit=1_000_000, now_ms=now + 2)
    assert replayed.alarms == [] and replayed.counts == []
    assert not refused & set(world.results())
    alarm_events = [e for e in world.events("oracle.alarm") if "invalid" in e["payload"]["key"]]
    assert sorted(e["payload"]["key"] for e in alarm_events) == sorted(
        f"declaration_invalid:{d}" for d in refused
    )


def test_a_watch_without_declarants_judges_no_declaration(world: World) -> None:
    config = world.service.config.model_dump(mode="json")
    for section in ("herds", "lots", "solar"):
        for watch in config[section]:
            watch["declarants"] = []
    parsed = OracleConfig.parse(config)
    assert not any(w.declarants for w in parsed.site_watches() + parsed.herd_watches())


@pytest.mark.parametrize(
    ("declarants", "where"),
    [
        (["0x" + "ab" * 19], "solar[0].declarants[0]"),  # 19 bytes
        (["ab" * 20], "solar[0].declarants[0]"),  # no 0x
        (["0x" + "zz" * 20], "solar[0].declarants[0]"),
        # mixed case that is not the EIP-55 checksum
        (["0x" + "ab" * 20, "0x" + "aB" * 20], "solar[0].declarants[1]"),
    ],
)
def test_a_declarant_that_is_not_an_address_is_refused_saying_where(
    world: World, declarants: list[str], where: str
) -> None:
    config = world.service.config.model_dump(mode="json")
    config["solar"][0]["declarants"] = declarants
    with pytest.raises(InvalidInput) as caught:
        OracleConfig.parse(config)
    assert (caught.value.code, caught.value.field) == ("bad_config", where)
    assert caught.value.message.startswith(f"{where}: ")


def test_a_declarant_in_lower_case_is_the_same_submitter(world: World) -> None:
    borrower = world.keys.submitters[1].address
    config = world.service.config.model_dump(mode="json")
    config["solar"][0]["declarants"] = [borrower.lower()]
    [site] = OracleConfig.parse(config).site_watches()
    assert site.declarants == frozenset({to_checksum_address(borrower.lower())})
    assert site.declarants == {borrower}
