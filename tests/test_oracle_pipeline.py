"""Simulated farms and warehouses through the whole oracle: signed readings and EPCIS
documents in, rules, alarms and counts out, anchored, and covenant facts reported to the
pledge registry, which freezes the pledge. Real parts: the four contracts on eth-tester,
a SQLite store, device signatures; the simulator drives it (oracles.simulate).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlmodel import select

from ledger.chain import SUBMITTER_ROLE, new_account
from ledger.collateral import Freeze, identifier_key
from ledger.errors import UnregisteredSigner
from ledger.intake import Intake
from ledger.oracle_state import OracleState
from ledger.runtime import DevKeys, Runtime
from ledger.store import EventRow, Store
from oracles.config import OracleConfig
from oracles.drive import DriveSummary, feed_in_process
from oracles.pipeline import RulesWorker
from oracles.service import OracleService
from oracles.simulate import Scenario, dairy, oracle_config, warehouse
from tests.collateral_world import CATTLE, DAY, PRICE_SCALE, World, build_world, ref

COIL = "steel.coil"
COIL_PRICE = 10_125_000 * PRICE_SCALE  # 101,250 CNY a coil, in micro-fen
COW_PRICE = 1_800_000 * PRICE_SCALE


@dataclass
class Run:
    world: World
    scenario: Scenario
    service: OracleService
    drive: DriveSummary
    receipt_id: int
    pledge_id: int


@pytest.fixture(scope="module")
def world() -> World:
    world = build_world()
    world.report_price(COIL_PRICE, asset_class=COIL)
    world.pledges.set_pledge_rate(COIL, 6000, lender=world.lender)
    return world


def _service(
    world: World, path: Path, scenario: Scenario, receipt_id: int, pledge_id: int
) -> OracleService:
    assert world.deployment is not None
    runtime = Runtime.attach(
        store=Store.open(f"sqlite:///{path}"), chain=world.chain, deployment=world.deployment
    )
    gateway = new_account()
    world.chain.fund(gateway.address)
    world.anchors.grant(SUBMITTER_ROLE, gateway.address, admin=world.admin)
    tenant = scenario.name  # each run has its own streams on the shared chain
    config = oracle_config(scenario, tenant=tenant, receipt_id=receipt_id, pledge_id=pledge_id)
    return OracleService.build(
        runtime,
        OracleConfig.parse(config),
        gateway=gateway,
        oracle=world.oracle,
        epcis_stream=f"{tenant}.epcis",
    )


def _run(
    world: World,
    tmp: Path,
    scenario: Scenario,
    *,
    asset_class: str,
    unit: str,
    keys: list[str],
    price: int,
    rate_bps: int,
) -> Run:
    receipt_id, _ = world.receipts.issue(
        owner=world.borrower.address,
        asset_class=asset_class,
        unit=unit,
        quantity=len(keys),
        keys=[identifier_key(k) for k in keys],
        location="urn:epc:id:sgln:0614141.00777.0",
        ref=ref(scenario.name),
        custodian=world.custodian,
    )
    terms = world.terms(
        receipt_id,
        principal=len(keys) * price // PRICE_SCALE // 10,  # a 10% loan-to-value
        min_quantity=scenario.subject["minimum"],
        max_data_age=30 * DAY,
        pledge_rate_bps=rate_bps,
    )
    pledge_id = world.open_pledge(terms)
    service = _service(world, tmp / "oracle.db", scenario, receipt_id, pledge_id)
    world.tester.time_travel(scenario.end_ms // 1000 + 3_600)  # the readings are in the past
    drive = feed_in_process(scenario, service)
    anchorer = service.anchorer(max_batch=5_000, max_age_s=0)
    while service.runtime.store.counts()["pending"]:
        anchorer.run_once(force=True)
    return Run(world, scenario, service, drive, receipt_id, pledge_id)


def _start_after(world: World) -> datetime:
    return datetime.fromtimestamp(world.now() + DAY, tz=UTC)


@pytest.fixture(scope="module")
def store_run(world: World, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Run]:
    scenario = warehouse(days=3, seed=1, start=_start_after(world))
    yield _run(
        world,
        tmp_path_factory.mktemp("warehouse"),
        scenario,
        asset_class=COIL,
        unit="coil",
        keys=list(scenario.subject["items"]),
        price=COIL_PRICE,
        rate_bps=6000,
    )


@pytest.fixture(scope="module")
def farm_run(
    world: World, tmp_path_factory: pytest.TempPathFactory, store_run: Run
) -> Iterator[Run]:
    scenario = dairy(days=3, seed=1, animals=40, start=_start_after(world))
    yield _run(
        world,
        tmp_path_factory.mktemp("dairy"),
        scenario,
        asset_class=CATTLE,
        unit="head",
        keys=list(scenario.subject["animals"]),
        price=COW_PRICE,
        rate_bps=5000,
    )


def _rules_raised(run: Run) -> dict[str, set[str]]:
    raised: dict[str, set[str]] = {}
    for alarm in run.service.state.alarms():
        raised.setdefault(alarm.rule, set()).add(alarm.subject)
    return raised


@pytest.mark.parametrize("name", ["store_run", "farm_run"])
def test_every_injected_incident_raises_its_alarm(
    name: str, request: pytest.FixtureRequest
) -> None:
    run: Run = request.getfixturevalue(name)
    assert run.drive.quarantined == 0
    raised = _rules_raised(run)
    for incident in run.scenario.incidents:
        assert incident.expected_rule in raised, (incident.kind, sorted(raised))


@pytest.mark.parametrize("name", ["store_run", "farm_run"])
def test_alarms_and_counts_are_signed_anchored_events_citing_their_readings(
    name: str, request: pytest.FixtureRequest
) -> None:
    run: Run = request.getfixturevalue(name)
    store = run.service.runtime.store
    assert store.counts()["pending"] == 0
    for alarm in run.service.state.alarms():
        assert alarm.record_event_id is not None
        body = json.loads(store.event(alarm.record_event_id).envelope)["event"]
        assert body["kind"] == "oracle.alarm" and body["payload"]["key"] == alarm.key
        assert body["payload"]["evidence"] == json.loads(alarm.evidence)
        assert all(store.stored_ids([e]) for e in body["payload"]["evidence"])
        run.service.runtime.bundles.bundle(alarm.record_event_id)  # anchored: a proof exists
    kinds = {store.event(c).kind for c in run.drive.counts}
    assert kinds == {
        ("dairy" in run.scenario.name and "livestock.daily_count") or "warehouse.stock_level"
    }


def test_released_coils_leave_quietly_and_only_the_theft_is_unauthorized(store_run: Run) -> None:
    [theft] = [i for i in store_run.scenario.incidents if i.kind == "unauthorized_outbound"]
    moved = [a for a in store_run.service.state.alarms() if a.rule == "unauthorized_movement"]
    assert moved and all(
        theft.start_ms <= a.opened_ms <= (theft.end_ms or a.opened_ms) for a in moved
    )
    [(released_at, released)] = store_run.scenario.releases
    flagged = " ".join(a.details for a in moved)
    assert not any(item in flagged for item in released)
    assert released_at < theft.start_ms


def test_the_warehouse_theft_freezes_the_pledge_on_chain(store_run: Run) -> None:
    settled = store_run.service.facts().run_once()
    outcomes = {s.key.split(":")[0]: s.state for s in settled}
    assert outcomes["unauthorized_movement"] == "reported"
    assert outcomes["tag_removal"] == "reported"
    assert outcomes["quantity"] == "reported"
    # the silent reader was silent for hours, not past the pledge's 30-day data age:
    # the contract decides staleness itself, and the refusal is recorded as final
    [stale] = [s for s in settled if s.key.startswith("stale_data:")]
    assert stale.state == "refused" and stale.outcome.startswith("PledgeRegistryNotStale(")
    assert {s.state for s in settled if s is not stale} == {"reported"}
    pledge = store_run.world.pledges.pledge_of(store_run.pledge_id)
    assert Freeze.UNAUTHORIZED_MOVEMENT in pledge.frozen
    assert Freeze.TAG_REMOVED in pledge.frozen
    last = store_run.service.state.facts()[-1]
    observation = store_run.world.pledges.observation_of(store_run.receipt_id)
    quantity_facts = [f for f in store_run.service.state.facts() if f.kind == "quantity"]
    assert observation.quantity == quantity_facts[-1].quantity
    assert observation.observed_at == quantity_facts[-1].observed_at
    assert last.state == "reported"
    assert store_run.service.facts().run_once() == []  # nothing left, nothing twice


def test_the_herd_theft_and_tag_removal_freeze_the_herd_pledge(farm_run: Run) -> None:
    settled = farm_run.service.facts().run_once()
    refused = [s for s in settled if s.state == "refused"]
    assert all(s.key.startswith("stale_data:") for s in refused), refused  # hours, not 30 days
    assert {s.state for s in settled if s not in refused} == {"reported"}
    pledge = farm_run.world.pledges.pledge_of(farm_run.pledge_id)
    assert Freeze.BELOW_MINIMUM in pledge.frozen
    assert Freeze.TAG_REMOVED in pledge.frozen
    counts = [f for f in farm_run.service.state.facts() if f.kind == "quantity"]
    assert [f.quantity for f in counts][-1] < farm_run.scenario.subject["minimum"]


@pytest.mark.parametrize("name", ["store_run", "farm_run"])
def test_a_restarted_rules_worker_replays_and_writes_nothing_twice(
    name: str, request: pytest.FixtureRequest
) -> None:
    run: Run = request.getfixturevalue(name)
    before = run.service.runtime.store.counts()
    alarms = len(run.service.state.alarms(states=("open", "acknowledged", "cleared")))
    again = OracleService.build(
        run.service.runtime,
        run.service.config,
        gateway=run.service.gateway,
        oracle=run.service.oracle,
        epcis_stream=run.service.capture.stream,
    )
    found = again.rules.run_once(limit=100_000, now_ms=run.scenario.end_ms)
    assert found.events > 0
    assert (found.alarms, found.counts, found.facts) == ([], [], [])
    assert run.service.runtime.store.counts()["events"] == before["events"]
    assert (
        len(
            OracleState(run.service.runtime.store).alarms(
                states=("open", "acknowledged", "cleared")
            )
        )
        == alarms
    )


def test_a_pass_whose_findings_cannot_be_written_is_replayed_not_lost(
    dev: tuple[Runtime, DevKeys],
) -> None:
    """The gateway loses its role mid-run (a real on-chain revocation): the pass fails
    and writes nothing; once the role is back, the next pass finds it all again."""
    runtime, keys = dev
    scenario = warehouse(days=1, seed=2)
    config = OracleConfig.parse(oracle_config(scenario))
    gateway = keys.submitters[0]
    service = OracleService.build(runtime, config, gateway=gateway)
    for document in scenario.documents:
        service.capture.capture(
            document, document_sha256="0" * 64, now_ms=scenario.start_ms, captured_by="test"
        )
    readings = [r.model_dump(mode="json") for r in scenario.readings]
    for start in range(0, len(readings), 1_000):
        service.ingest.ingest(readings[start : start + 1_000], source="test")
    worker = RulesWorker(
        store=runtime.store,
        intake=Intake(runtime.store, runtime.registry, role_ttl_s=0),
        gateway=gateway,
        devices=config.devices_by_id(),
        tenant=config.tenant,
        lots=config.lot_watches(),
    )
    runtime.registry.revoke(SUBMITTER_ROLE, gateway.address, admin=keys.admin)
    with pytest.raises(UnregisteredSigner):
        worker.run_once(limit=100_000, now_ms=scenario.end_ms)
    assert OracleState(runtime.store).alarms() == []
    runtime.registry.grant(SUBMITTER_ROLE, gateway.address, admin=keys.admin)
    found = worker.run_once(limit=100_000, now_ms=scenario.end_ms)
    assert "unauthorized_movement" in {key.split(":")[0] for key in found.alarms}
    assert len(found.alarms) == len(OracleState(runtime.store).alarms())


def test_goods_released_on_chain_may_leave_and_a_replay_agrees(
    world: World, tmp_path: Path
) -> None:
    """No one tells the oracle of the release: the bank and the warehouse execute it
    on-chain, the receipt's booked quantity falls by ten coils, and the ten coils that
    then leave through the dock are released at that moment, recorded for replays."""
    scenario = warehouse(days=2, seed=5, start=_start_after(world))
    coils = list(scenario.subject["items"])
    receipt_id, _ = world.receipts.issue(
        owner=world.borrower.address, asset_class=COIL, unit="coil", quantity=len(coils),
        keys=[identifier_key(c) for c in coils], location="urn:epc:id:sgln:0614141.00777.0",
        custodian=world.custodian,
    )  # fmt: skip
    principal = len(coils) * COIL_PRICE // PRICE_SCALE // 2
    terms = world.terms(
        receipt_id,
        principal=principal,
        min_quantity=scenario.subject["minimum"],
        max_data_age=30 * DAY,
    )
    pledge_id = world.open_pledge(terms)
    world.pledges.disburse(
        pledge_id, principal, payee=world.payee.address, ref=ref("loan"), lender=world.lender
    )
    world.pledges.repay(pledge_id, principal, ref=ref("repaid"), lender=world.lender)
    [(_, released)] = scenario.releases
    world.pledges.instruct_release(pledge_id, len(released), lender=world.lender)
    world.pledges.execute_release(pledge_id, custodian=world.custodian)
    assert world.receipts.receipt_of(receipt_id).quantity == len(coils) - len(released)

    service = _service(world, tmp_path / "oracle.db", scenario, receipt_id, pledge_id)
    world.tester.time_travel(scenario.end_ms // 1000 + 3_600)  # the readings are in the past
    feed_in_process(scenario, service, record_releases=False)
    [theft] = [i for i in scenario.incidents if i.kind == "unauthorized_outbound"]
    moved = [a for a in service.state.alarms() if a.rule == "unauthorized_movement"]
    assert moved and all(a.opened_ms >= theft.start_ms for a in moved)
    store = service.runtime.store
    with store.session() as session:
        records = session.exec(select(EventRow).where(EventRow.kind == "oracle.release")).all()
    payloads = [json.loads(r.envelope)["event"]["payload"] for r in records]
    assert sorted(i for p in payloads for i in p["items"]) == sorted(released)
    assert all("trigger" in p for p in payloads)

    # a restarted worker sees the recorded releases, not today's chain: same findings
    again = OracleService.build(
        service.runtime,
        service.config,
        gateway=service.gateway,
        epcis_stream=service.capture.stream,
    )
    found = again.rules.run_once(limit=100_000, now_ms=scenario.end_ms)
    assert (found.alarms, found.counts, found.facts) == ([], [], [])
