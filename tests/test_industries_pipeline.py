"""The other industries on the same rails: a plant, a car dealer's floor plan and
telemetry assets, simulated, through the oracle service (signed readings in, rules,
alarms and closed days out as signed events), and borrowers' declarations checked
against what the devices saw. Real parts: device signatures, the intake, a SQLite store
and the in-process chain."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlmodel import select

from ledger.canonical import loads_canonical
from ledger.errors import InvalidInput
from ledger.models import EventBody, utc_text
from ledger.runtime import DevKeys, Runtime
from ledger.signing import sign_submission
from ledger.store import EventRow
from oracles.config import OracleConfig
from oracles.drive import feed_in_process
from oracles.energy import SolarDay, StationDay
from oracles.machines import PlantDay
from oracles.readings import sign_reading
from oracles.service import OracleService
from oracles.sim_energy import charging, solar
from oracles.sim_machines import factory
from oracles.sim_telemetry import telemetry
from oracles.sim_vehicles import dealer
from oracles.simulate import Scenario, oracle_config
from oracles.telemetry import DailyTelemetry
from oracles.vehicles import DealerDay

DAY_MS = 86_400_000


@dataclass
class Site:
    runtime: Runtime
    keys: DevKeys
    scenario: Scenario
    service: OracleService

    def events(self, kind: str) -> list[dict[str, Any]]:
        with self.runtime.store.session() as session:
            rows = session.exec(
                select(EventRow.envelope).where(EventRow.kind == kind).order_by(EventRow.position)
            ).all()
        return [loads_canonical(e)["event"] for e in rows]

    def rules_raised(self) -> Counter[str]:
        return Counter(a.rule for a in self.service.state.alarms())


START = datetime(2026, 10, 5, tzinfo=UTC)  # a Monday, in the past: no reading from the future
SCENARIOS: dict[str, tuple[str, Callable[..., Scenario], Callable[[dict[str, Any]], Any]]] = {
    "plant": (
        "manufacturing",
        lambda incidents=None: factory(
            days=3, seed=1, machines=6, incidents=incidents, start=START
        ),
        PlantDay.from_payload,
    ),
    "dealer": (
        "vehicles",
        lambda incidents=None: dealer(
            days=2, seed=1, vehicles=12, incidents=incidents, start=START
        ),
        DealerDay.from_payload,
    ),
    "telemetry": (
        "telemetry",
        lambda incidents=None: telemetry(days=2, seed=1, incidents=incidents, start=START),
        DailyTelemetry.from_payload,
    ),
    # the energy rules judge runs of days and revenue windows: the shortest runs that show them
    "solar": (
        "energy",
        lambda incidents=None: solar(days=6, seed=1, inverters=4, incidents=incidents, start=START),
        SolarDay.from_payload,
    ),
    "charging": (
        "energy",
        lambda incidents=None: charging(days=10, seed=1, piles=6, incidents=incidents, start=START),
        StationDay.from_payload,
    ),
}


def _run(
    name: str,
    tmp: Path,
    *,
    incidents: list[str] | None = None,
    revenue: dict[str, float] | None = None,
) -> Site:
    scenario = SCENARIOS[name][1](incidents=incidents)
    runtime, keys = Runtime.dev(db_url=f"sqlite:///{tmp}/{name}.sqlite", submitters=2)
    raw = oracle_config(scenario, tenant=name)
    for section in ("plants", "dealers", "solar", "charging", "telemetry"):
        for watch in raw.get(section, []):
            watch["declarants"] = [keys.submitters[1].address]  # the borrower declares
    if revenue is not None:  # what a plant's utilization is worth, for declared revenue
        raw["plants"][0]["revenue"] = revenue
    config = OracleConfig.parse(raw)
    service = OracleService.build(runtime, config, gateway=keys.submitters[0])
    drive = feed_in_process(scenario, service)
    assert drive.quarantined == 0
    service.rules.run_once(now_ms=scenario.end_ms + 600_000)  # past the piles' upload grace
    return Site(runtime, keys, scenario, service)


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    site = _run("plant", tmp_path_factory.mktemp("plant"))
    yield site
    site.runtime.close()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_each_industry_closes_its_days_and_raises_each_incidents_rule(
    name: str, tmp_path: Path, plant: Site
) -> None:
    site = plant if name == "plant" else _run(name, tmp_path)
    kind, _, from_payload = SCENARIOS[name]
    days = site.events(f"{kind}.daily")
    watched = {w.subject for w in site.service.config.site_watches()}
    assert {d["asset_ids"][0] for d in days} == watched
    per_subject = Counter(d["asset_ids"][0] for d in days)
    span = (site.scenario.end_ms - site.scenario.start_ms) // DAY_MS
    assert set(per_subject.values()) == {span}  # every closed local day, once
    for day in days:
        assert from_payload(day["payload"]).to_payload() == day["payload"]
    expected = {i.expected_rule for i in site.scenario.incidents}
    assert expected and expected <= set(site.rules_raised())
    alarm_events = site.events("oracle.alarm")
    assert {e["payload"]["rule"] for e in alarm_events} == set(site.rules_raised())
    if name != "plant":
        site.runtime.close()


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_a_clean_run_through_the_oracle_raises_nothing(name: str, tmp_path: Path) -> None:
    site = _run(name, tmp_path, incidents=[])
    try:
        assert site.rules_raised() == Counter()
        assert site.events("oracle.alarm") == []
    finally:
        site.runtime.close()


def test_a_reading_its_site_cannot_take_is_an_alarm_not_a_stuck_worker(tmp_path: Path) -> None:
    site = _run("telemetry", tmp_path, incidents=[])
    try:
        sim = site.scenario.devices[0]
        unsigned = {
            "device": sim.device.id,
            "seq": 10**9,
            "time": utc_text(site.scenario.end_ms + 60_000),
            "kind": "telemetry",
            "data": {"schema": "nothing@9", "subject": "x", "values": {"v": 1}},
        }
        reading = sign_reading(unsigned, private_key=sim.private_key)
        stored = site.service.ingest.ingest([reading.model_dump(mode="json")], source="test")
        assert len(stored.accepted) == 1  # signed by a registered device: evidence
        site.service.rules.run_once(now_ms=site.scenario.end_ms + 120_000)
        refused = [a for a in site.service.state.alarms() if a.rule == "reading_refused"]
        assert len(refused) == 1 and "nothing@9" in refused[0].message
        assert site.service.rules.run_once(now_ms=site.scenario.end_ms + 180_000).alarms == []
    finally:
        site.runtime.close()


def test_a_restarted_worker_replays_the_sites_and_writes_nothing_twice(plant: Site) -> None:
    again = OracleService.build(
        plant.runtime, plant.service.config, gateway=plant.keys.submitters[0]
    )
    found = again.rules.run_once(limit=1_000_000, now_ms=plant.scenario.end_ms)
    assert found.events > 0 and found.alarms == [] and found.counts == []


def _declare(site: Site, event_id: str, payload: dict[str, Any], time_ms: int) -> None:
    borrower = site.keys.submitters[1]  # the plant's declarant (_run)
    body = EventBody(
        kind="document.declaration",
        schema_version=1,
        stream="borrower.documents",
        event_id=event_id,
        asset_ids=[str(payload.get("subject") or "urn:fourflow:unassigned")],
        event_time=utc_text(time_ms),
        payload=payload,
        submitter=borrower.address,
    )
    site.runtime.intake.submit(
        sign_submission([body], private_key=borrower.key, domain=site.runtime.intake.domain)
    )


def test_declared_output_is_checked_against_the_plants_counters(plant: Site) -> None:
    days = [d["payload"] for d in plant.events("manufacturing.daily")]
    subject = days[0]["plant"]
    made = sum(d["output"] or 0 for d in days)
    assert made > 0
    period = {"from": days[0]["day"], "to": days[-1]["day"]}
    base = {"metric": "output", "subject": subject, "period": period, "unit": "pieces"}
    at = plant.scenario.end_ms
    _declare(plant, "decl-honest", base | {"value": made}, at)
    _declare(plant, "decl-inflated", base | {"value": round(made * 1.3)}, at + 1)
    _declare(plant, "decl-broken", base | {"metric": "profit", "value": 1}, at + 2)
    plant.service.rules.run_once(now_ms=at + DAY_MS)
    results = {e["payload"]["declaration"]: e for e in plant.events("crosscheck.result")}
    assert set(results) == {"decl-honest", "decl-inflated"}
    honest, inflated = results["decl-honest"]["payload"], results["decl-inflated"]["payload"]
    assert (honest["status"], honest["observed"], honest["difference"]) == ("agrees", made, 0)
    assert inflated["status"] == "overstated" and inflated["difference_pct"] == pytest.approx(
        30, abs=0.1
    )
    assert results["decl-inflated"]["asset_ids"] == [subject]  # in the plant's history
    assert inflated["evidence"][0] == "decl-inflated" and len(inflated["evidence"]) == 1 + len(days)
    alarms = {a.key: a for a in plant.service.state.alarms()}
    assert "declaration_overstated:decl-inflated" in alarms
    assert "declaration_overstated:decl-honest" not in alarms
    broken = alarms["declaration_invalid:decl-broken"]
    assert "metric must be one of" in broken.message
    # checked once: a later pass (which closes the next, empty day) judges nothing again
    again = plant.service.rules.run_once(now_ms=at + 2 * DAY_MS)
    assert len(plant.events("crosscheck.result")) == 2
    assert not [key for key in again.alarms if key.startswith("declaration")]
    # nor does a restarted worker replaying the store: the recorded verdicts stand
    restarted = OracleService.build(
        plant.runtime, plant.service.config, gateway=plant.keys.submitters[0]
    )
    replayed = restarted.rules.run_once(limit=1_000_000, now_ms=at + 2 * DAY_MS)
    assert replayed.alarms == [] and len(plant.events("crosscheck.result")) == 2


def test_declared_revenue_is_checked_against_what_the_utilization_is_worth(
    tmp_path: Path,
) -> None:
    """A plant's revenue, declared by the borrower, against utilization × capacity ×
    price of the days the devices saw (the plant's ``revenue`` config)."""
    site = _run("plant", tmp_path, revenue={"capacity_per_day": 4_000, "unit_price": 12.8})
    try:
        days = [d["payload"] for d in site.events("manufacturing.daily")]
        worth = [
            round(d["utilization_pct"] / 100 * 4_000 * 12.8, 2)
            for d in days
            if d["utilization_pct"] is not None
        ]
        assert worth and sum(worth) > 0
        period = {"from": days[0]["day"], "to": days[-1]["day"]}
        base = {"metric": "revenue", "subject": days[0]["plant"], "period": period, "unit": "CNY"}
        at = site.scenario.end_ms
        _declare(site, "rev-honest", base | {"value": round(sum(worth), 2)}, at)
        _declare(site, "rev-inflated", base | {"value": round(sum(worth) * 1.3, 2)}, at + 1)
        site.service.rules.run_once(now_ms=at + DAY_MS)
        results = {
            e["payload"]["declaration"]: e["payload"] for e in site.events("crosscheck.result")
        }
        assert set(results) == {"rev-honest", "rev-inflated"}
        honest, inflated = results["rev-honest"], results["rev-inflated"]
        assert honest["status"] == "agrees" and honest["observed"] == pytest.approx(sum(worth))
        assert inflated["status"] == "overstated"
        assert inflated["difference_pct"] == pytest.approx(30, abs=0.1)
        alarms = {a.key for a in site.service.state.alarms()}
        assert "declaration_overstated:rev-inflated" in alarms
        assert "declaration_overstated:rev-honest" not in alarms
    finally:
        site.runtime.close()


def test_a_document_dated_in_the_future_does_not_move_the_verdicts_clock(
    plant: Site,
) -> None:
    days = [d["payload"] for d in plant.events("manufacturing.daily")]
    subject, last = days[0]["plant"], date.fromisoformat(days[-1]["day"])
    later = (last + timedelta(days=5)).isoformat()  # days no device has reported yet
    waiting = {
        "metric": "output",
        "subject": subject,
        "period": {"from": days[0]["day"], "to": later},
        "unit": "pieces",
        "value": 1,
    }
    at = plant.scenario.end_ms
    _declare(plant, "decl-waiting", waiting, at + 3)
    in_2030 = 1_900_000_000_000
    _declare(plant, "decl-from-2030", waiting | {"value": 2}, in_2030)
    plant.service.rules.run_once(now_ms=at + 3)
    declared = {e["event_id"] for e in plant.events("document.declaration")}
    assert {"decl-waiting", "decl-from-2030"} <= declared
    judged = {e["payload"]["declaration"] for e in plant.events("crosscheck.result")}
    assert not judged & {"decl-waiting", "decl-from-2030"}  # both wait for their days


def _plant_config() -> dict[str, Any]:
    return oracle_config(factory(days=1, seed=2, machines=4, incidents=[], start=START))


@pytest.mark.parametrize(
    ("change", "where"),
    [
        (lambda c: c["plants"][0]["rules"].update(min_utilization_pct=-5), "plants[0].rules"),
        (lambda c: c["plants"][0]["rules"].update(site=[[1, 2], 3]), "plants[0].rules"),
        (lambda c: c["plants"][0].update(revenue={"capacity_per_day": float("inf"), "unit_price": 1}),
         "plants.0.revenue.capacity_per_day"),
        (lambda c: c.update(dealers=[{"rules": {"dealer": "d", "vehicles": [["x"]], "lot": []}}]),
         "dealers[0].rules"),
        (lambda c: c.update(telemetry=[{"rules": {"subject": "s", "rules": [{"name": "hot",
         "type": "threshold", "schema": "none@1", "field": "t", "above": 1}]}}]),
         "telemetry[0].rules"),
        (lambda c: c.update(herds=[{"rules": {"herd": c["plants"][0]["rules"]["plant"],
         "animals": [], "minimum": 0}}]), "subject"),
        (lambda c: c.update(crosscheck={"tolerance_pct": {"profit": 1}}), "crosscheck"),
        (lambda c: c["plants"][0].update(declarants=["0x12"]), "plants[0].declarants[0]"),
    ],
)  # fmt: skip
def test_a_bad_site_config_is_refused_saying_where(
    change: Callable[[dict[str, Any]], None], where: str
) -> None:
    config = _plant_config()
    change(config)
    with pytest.raises(InvalidInput) as caught:
        OracleConfig.parse(config)
    assert caught.value.code == "bad_config" and caught.value.field == where
