"""Performance covenants as on-chain facts: a plant's low utilization, a solar plant's low
performance, a site's low revenue and a borrower's overstated books are ``covenant_breach``
facts that freeze the pledge (FROZEN_COVENANT_BREACH), each citing the signed alarm event
it rests on, so no single party can bend them.

Unit part: the rule tables and the fact the pipeline queues. End to end: a simulated plant
whose machines are pledged runs through the oracle service on the four contracts
(eth-tester), its low_utilization alarm becomes a fact that freezes the pledge, the lender
clears it, an overstated declaration of the plant's output freezes it again, and the
auditor replays it all from the chain and the store and finds no discrepancy. Real parts:
device signatures, the intake, a SQLite store, the compiled contracts.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from sqlmodel import select

from ledger.audit import Auditor, AuditReport
from ledger.canonical import loads_canonical
from ledger.chain import SUBMITTER_ROLE, new_account
from ledger.collateral import (
    Fact,
    FactKind,
    Freeze,
    PledgeStatus,
    evidence_from_bundle,
    identifier_key,
)
from ledger.errors import ContractReverted, InvalidInput
from ledger.history import freeze_reasons
from ledger.models import EventBody, event_time_ms, utc_text
from ledger.oracle_state import FactRow
from ledger.runtime import Runtime
from ledger.signing import sign_submission
from ledger.store import EventRow, Store
from oracles import crosscheck, energy, machines, telemetry
from oracles.config import OracleConfig
from oracles.crosscheck import CrossCheckRules, Declaration, Observation, ObservationBook
from oracles.drive import feed_in_process
from oracles.facts import FACT_KINDS, Settled
from oracles.pipeline import _fact_for_alarm, alarm_event_id
from oracles.readings import Alarm
from oracles.service import OracleService
from oracles.sim_machines import factory
from oracles.simulate import Scenario, oracle_config
from tests.collateral_world import DAY, PRICE_SCALE, World, build_world, ref

DAY_MS = 86_400_000
EQUIPMENT = "equipment.cnc"
MACHINE_PRICE = 45_000_000 * PRICE_SCALE  # 450,000 CNY a machine, in micro-fen


# --- the rule tables ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("rules", "rule"),
    [
        (machines.RULES, "low_utilization"),
        (energy.RULES, "low_performance"),
        (energy.RULES, "low_revenue"),
        (crosscheck.RULES, "declaration_overstated"),
    ],
)
def test_each_performance_covenant_is_a_covenant_breach_fact(rules: Any, rule: str) -> None:
    assert rules[rule] == ("breach", "covenant_breach")


def test_warnings_stay_alarms_only() -> None:
    assert crosscheck.RULES["declaration_understated"] == ("warning", None)
    assert crosscheck.RULES["declaration_unverifiable"] == ("warning", None)
    assert machines.RULES["no_data"] == ("warning", None)


def test_every_alarm_fact_but_stale_data_has_an_on_chain_kind() -> None:
    named = {fact for module in (machines, energy, crosscheck) for _, fact in module.RULES.values()}
    assert "covenant_breach" in named and "covenant_breach" in telemetry.FACTS
    # every on-chain kind but a count's quantity (goods, never a telemetry series)
    assert set(telemetry.FACTS) - {"stale_data"} == set(FACT_KINDS) - {"quantity"}
    assert set(telemetry.FREEZING_FACTS) == set(FACT_KINDS) - {"quantity"}
    assert FACT_KINDS["covenant_breach"] == FactKind.COVENANT_BREACH == 3


def _book_with_output(pieces: float) -> ObservationBook:
    book = ObservationBook(CrossCheckRules(tolerance_pct={"output": 2.0}))
    day = datetime(2026, 11, 23, 4, tzinfo=UTC)  # local noon (UTC+08:00)
    book.add(Observation("plant-1", "output", int(day.timestamp() * 1000), pieces, "pieces", "d-1"))
    return book


@pytest.mark.parametrize(
    ("declared", "rule", "fact"),
    [
        (1_300.0, "declaration_overstated", "covenant_breach"),
        (700.0, "declaration_understated", None),
    ],
)
def test_an_overstated_declaration_calls_for_a_covenant_fact_an_understated_one_does_not(
    declared: float, rule: str, fact: str | None
) -> None:
    book = _book_with_output(1_000.0)
    declaration = Declaration.from_payload(
        {
            "metric": "output",
            "subject": "plant-1",
            "period": {"from": "2026-11-23", "to": "2026-11-23"},
            "value": declared,
            "unit": "pieces",
        }
    )
    now = int(datetime(2026, 11, 25, tzinfo=UTC).timestamp() * 1000)
    alarm = book.check(declaration, "decl-1", now_ms=now).alarm()
    assert alarm is not None and (alarm.rule, alarm.fact) == (rule, fact)


def _telemetry_rules(fact: str) -> telemetry.TelemetryRules:
    return telemetry.TelemetryRules.from_config(
        {
            "subject": "urn:fourflow:asset:pump-7",
            "rules": [
                {"name": "short_hours", "type": "daily", "schema": "pump@1", "field": "hours",
                 "aggregate": "sum", "below": 8, "days": 3, "severity": "breach", "fact": fact},
            ],
        }
    )  # fmt: skip


def test_a_telemetry_rule_may_be_a_covenant_breach_and_nothing_unknown() -> None:
    [rule] = _telemetry_rules("covenant_breach").rules
    assert rule.fact == "covenant_breach"
    with pytest.raises(InvalidInput) as caught:
        _telemetry_rules("breach_of_covenant")
    assert caught.value.code == "bad_config" and "covenant_breach" in caught.value.message


def _alarm(fact: str | None) -> Alarm:
    return Alarm(
        key="low_utilization:plant-1:2026-11-24",
        rule="low_utilization",
        subject="plant-1",
        severity="breach",
        time_ms=1_795_536_000_000 - 1,
        message="plant-1 ran at 41.2 %",
        evidence=("reading-1",),
        details={},
        fact=fact,
    )


def test_a_covenant_breach_alarm_queues_a_fact_citing_its_own_event() -> None:
    alarm = _alarm("covenant_breach")
    row = _fact_for_alarm(alarm, 7, 3)
    assert row is not None
    assert (row.key, row.kind, row.receipt_id, row.pledge_id, row.quantity) == (
        f"covenant_breach:{alarm.key}", "covenant_breach", 7, 3, 0,
    )  # fmt: skip
    assert row.observed_at == alarm.time_ms // 1000 and row.created_ms == alarm.time_ms
    assert row.event_id == alarm_event_id(alarm.key)
    # a site with no receipt has nothing on chain to freeze; an alarm-only rule asks nothing
    assert _fact_for_alarm(alarm, None, None) is None
    assert _fact_for_alarm(_alarm(None), 7, 3) is None


# --- end to end: a pledged plant ------------------------------------------------------------


@dataclass
class Plant:
    world: World
    scenario: Scenario
    service: OracleService
    receipt_id: int
    pledge_id: int
    settled: list[Settled]  # what the first facts pass settled


def _monday_after(moment: int) -> datetime:
    day = datetime.fromtimestamp(moment, tz=UTC).date() + timedelta(days=1)
    day += timedelta(days=-day.weekday() % 7)
    return datetime(day.year, day.month, day.day, 12, tzinfo=UTC)  # 20:00 in Suzhou


def _anchor_all(service: OracleService) -> None:
    anchorer = service.anchorer(max_batch=5_000, max_age_s=0)
    while service.runtime.store.counts()["pending"]:
        anchorer.run_once(force=True)


def _facts(plant: Plant, kind: str) -> list[FactRow]:
    return [f for f in plant.service.state.facts() if f.kind == kind]


def _stored(plant: Plant, kind: str) -> list[dict[str, Any]]:
    """The stored signed envelopes of ``kind``, in arrival order."""
    with plant.service.runtime.store.session() as session:
        rows = session.exec(
            select(EventRow.envelope).where(EventRow.kind == kind).order_by(EventRow.position)
        ).all()
    return [loads_canonical(e) for e in rows]


def _events(plant: Plant, tx_hash: str, name: str) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = plant.world.pledges.events(bytes.fromhex(tx_hash[2:]), name)
    return events


@pytest.fixture(scope="module")
def plant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Plant]:
    world = build_world()
    world.pledges.set_pledge_rate(EQUIPMENT, 5_000, lender=world.lender)
    world.report_price(MACHINE_PRICE, asset_class=EQUIPMENT)
    # Monday clean, Tuesday the night shift is cancelled: one low day is the run (floor 1)
    scenario = factory(
        days=2,
        seed=1,
        machines=4,
        interval_min=15,
        incidents=["slowdown"],
        start=_monday_after(world.now()),
    )
    assert scenario.subject["floor_days"] == 1
    machines_ = list(scenario.subject["machines"])
    receipt_id, _ = world.receipts.issue(
        owner=world.borrower.address,
        asset_class=EQUIPMENT,
        unit="machine",
        quantity=len(machines_),
        keys=[identifier_key(m) for m in machines_],
        location="urn:epc:id:sgln:6901234.00017.0",
        ref=ref("SIP-017 machines"),
        custodian=world.custodian,
    )
    terms = world.terms(
        receipt_id,
        principal=60_000_000,  # 600,000 CNY against 1.8 M CNY of machines
        pledge_rate_bps=5_000,
        warning_ltv_bps=6_000,
        liquidation_ltv_bps=7_500,
        min_quantity=len(machines_),
        max_data_age=30 * DAY,
    )
    pledge_id = world.open_pledge(terms)
    world.pledges.disburse(
        pledge_id, 30_000_000, payee=world.payee.address, ref=ref("loan"), lender=world.lender
    )

    assert world.deployment is not None
    path = tmp_path_factory.mktemp("covenant") / "oracle.sqlite"
    runtime = Runtime.attach(
        store=Store.open(f"sqlite:///{path}"), chain=world.chain, deployment=world.deployment
    )
    gateway = new_account()
    world.chain.fund(gateway.address)
    for submitter in (gateway, world.borrower):  # the borrower signs its declarations
        world.anchors.grant(SUBMITTER_ROLE, submitter.address, admin=world.admin)
    config = oracle_config(scenario, tenant="sip", receipt_id=receipt_id, pledge_id=pledge_id)
    config["plants"][0]["declarants"] = [world.borrower.address]  # no one else declares
    service = OracleService.build(
        runtime, OracleConfig.parse(config), gateway=gateway, oracle=world.oracle
    )
    world.tester.time_travel(scenario.end_ms // 1000 + 3_600)  # the readings are in the past
    drive = feed_in_process(scenario, service)
    assert drive.quarantined == 0
    service.rules.run_once(now_ms=scenario.end_ms + 600_000)
    _anchor_all(service)
    settled = service.facts().run_once()
    yield Plant(world, scenario, service, receipt_id, pledge_id, settled)
    runtime.close()


def test_the_low_utilization_alarm_freezes_the_pledge_on_chain(plant: Plant) -> None:
    [alarm] = [a for a in plant.service.state.alarms() if a.rule == "low_utilization"]
    [slow_day] = plant.scenario.incidents[0].items
    assert alarm.key.endswith(f":{slow_day}") and alarm.fact == "covenant_breach"
    assert alarm.pledge_id == plant.pledge_id

    [fact] = _facts(plant, "covenant_breach")
    assert fact.key == f"covenant_breach:{alarm.key}"
    assert (fact.receipt_id, fact.pledge_id, fact.state) == (
        plant.receipt_id, plant.pledge_id, "reported",
    )  # fmt: skip
    assert fact.event_id == alarm.record_event_id
    assert [s.state for s in plant.settled if s.key == fact.key] == ["reported"]

    # the fact cites the alarm's own signed event, anchored: its leaf is the freeze's reference
    body = json.loads(plant.service.runtime.store.event(fact.event_id).envelope)["event"]
    assert (body["kind"], body["payload"]["fact"]) == ("oracle.alarm", "covenant_breach")
    leaf = evidence_from_bundle(plant.service.runtime.bundles.bundle(fact.event_id)).leaf
    assert fact.tx_hash is not None
    [reported] = _events(plant, fact.tx_hash, "FactReported")
    assert (reported["kind"], reported["pledgeId"], reported["leaf"]) == (
        FactKind.COVENANT_BREACH, plant.pledge_id, leaf,
    )  # fmt: skip
    assert reported["observedAt"] == fact.observed_at == alarm.opened_ms // 1000
    [frozen] = _events(plant, fact.tx_hash, "PledgeFrozen")
    assert (frozen["reasons"], frozen["ref"]) == (Freeze.COVENANT_BREACH, leaf)

    pledge = plant.world.pledges.pledge_of(plant.pledge_id)
    assert pledge.status == PledgeStatus.ACTIVE and Freeze.COVENANT_BREACH in pledge.frozen
    assert "covenant_breach" in freeze_reasons(int(pledge.frozen))
    assert plant.world.pledges.is_evidence_used(leaf)
    # no money goes out while frozen, and the oracle cannot report the same evidence twice
    with pytest.raises(ContractReverted) as refused:
        plant.world.pledges.disburse(
            plant.pledge_id, 1, payee=plant.world.payee.address, ref=ref("more"),
            lender=plant.world.lender,
        )  # fmt: skip
    assert refused.value.error == "PledgeRegistryFrozen"
    again = Fact(plant.receipt_id, FactKind.COVENANT_BREACH, 0, fact.observed_at)
    evidence = evidence_from_bundle(plant.service.runtime.bundles.bundle(fact.event_id))
    with pytest.raises(ContractReverted) as replayed:
        plant.world.pledges.report_fact(again, evidence, oracle=plant.world.oracle)
    assert replayed.value.error == "PledgeRegistryEvidenceReplayed"
    assert plant.service.facts().run_once() == []  # nothing left, nothing twice


def _declare(
    plant: Plant,
    event_id: str,
    payload: dict[str, Any],
    time_ms: int,
    *,
    by: LocalAccount | None = None,
) -> None:
    borrower, intake = by or plant.world.borrower, plant.service.runtime.intake
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
    intake.submit(sign_submission([body], private_key=borrower.key, domain=intake.domain))


def _inflated_output(plant: Plant) -> dict[str, Any]:
    """A declaration of 30 % more output than the machines' counters saw."""
    days = [e["event"]["payload"] for e in _stored(plant, "manufacturing.daily")]
    made = sum(d["output"] or 0 for d in days)
    assert made > 0
    return {
        "metric": "output",
        "subject": days[0]["plant"],
        "period": {"from": days[0]["day"], "to": days[-1]["day"]},
        "unit": "pieces",
        "value": round(made * 1.3),
    }


@pytest.fixture(scope="module")
def impostor(plant: Plant) -> LocalAccount:
    """The lender clears the freeze; another tenant's capture client, which holds
    SUBMITTER_ROLE too but is not the plant's declarant, then declares 30 % more output
    than the counters saw about the borrower's plant, and every pass runs to the chain."""
    world = plant.world
    world.pledges.clear_freeze(plant.pledge_id, lender=world.lender)
    outsider = new_account()
    world.anchors.grant(SUBMITTER_ROLE, outsider.address, admin=world.admin)
    at = plant.scenario.end_ms + 1_800_000
    _declare(plant, "decl-by-outsider", _inflated_output(plant), at, by=outsider)
    plant.service.rules.run_once(now_ms=at + 60_000)
    _anchor_all(plant.service)
    world.tester.time_travel(world.now() + 3_600)
    plant.settled = plant.service.facts().run_once()
    return outsider


def test_a_declaration_by_anyone_but_the_declarant_leaves_the_pledge_alone(
    plant: Plant, impostor: LocalAccount
) -> None:
    alarms = {a.key: a for a in plant.service.state.alarms()}
    refused = alarms["declaration_invalid:decl-by-outsider"]
    assert (refused.severity, refused.fact) == ("warning", None)
    assert f"{impostor.address} is not a declarant of " in refused.message
    assert json.loads(refused.evidence) == ["decl-by-outsider"]
    assert not [k for k in alarms if k.startswith("declaration_overstated")]
    assert not [e for e in _stored(plant, "crosscheck.result")]  # not judged
    assert len(_facts(plant, "covenant_breach")) == 1  # the low utilization's only
    assert not [s for s in plant.settled if s.key.startswith("covenant_breach")]
    pledge = plant.world.pledges.pledge_of(plant.pledge_id)
    assert pledge.status == PledgeStatus.ACTIVE and pledge.frozen == 0


@pytest.fixture(scope="module")
def declared(plant: Plant, impostor: LocalAccount) -> Plant:
    """After the impostor's declaration (the freeze was cleared), the borrower, the
    plant's declarant, declares 30 % more output than the machines' counters saw, which
    freezes the pledge again."""
    at = plant.scenario.end_ms + 3_600_000
    _declare(plant, "decl-inflated", _inflated_output(plant), at)
    plant.service.rules.run_once(now_ms=at + 60_000)
    _anchor_all(plant.service)
    plant.world.tester.time_travel(plant.world.now() + 3_600)
    plant.settled = plant.service.facts().run_once()
    return plant


def test_overstated_books_freeze_the_pledge_again(declared: Plant) -> None:
    alarms = {a.rule: a for a in declared.service.state.alarms()}
    overstated = alarms["declaration_overstated"]
    assert overstated.fact == "covenant_breach" and overstated.pledge_id == declared.pledge_id
    facts = _facts(declared, "covenant_breach")
    assert len(facts) == 2 and {f.state for f in facts} == {"reported"}
    [fact] = [f for f in facts if f.key == f"covenant_breach:{overstated.key}"]
    assert fact.tx_hash is not None
    [frozen] = _events(declared, fact.tx_hash, "PledgeFrozen")
    assert (frozen["reasons"], frozen["frozen"]) == (Freeze.COVENANT_BREACH,) * 2
    pledge = declared.world.pledges.pledge_of(declared.pledge_id)
    assert pledge.frozen == Freeze.COVENANT_BREACH


@pytest.fixture(scope="module")
def audited(declared: Plant) -> AuditReport:
    chain, deployment = declared.world.chain, declared.world.deployment
    assert deployment is not None
    return Auditor(chain, deployment, source=declared.service.runtime.store, bytecode=False).run()


def test_the_auditor_replays_the_covenant_facts_and_finds_no_discrepancy(
    declared: Plant, audited: AuditReport
) -> None:
    assert audited.ok, [f.to_json() for f in audited.findings]
    assert audited.findings == []
    assert audited.counts.facts == 2  # both covenant facts checked against their alarm events
    assert audited.counts.pledges >= 1 and audited.counts.events_pending == 0


def test_a_covenant_fact_citing_an_event_that_says_otherwise_is_named(
    declared: Plant, audited: AuditReport
) -> None:
    """The oracle key alone cannot bend a covenant: a breach that cites a closed day (not
    an alarm naming covenant_breach) passes the contract but not the audit."""
    world, runtime = declared.world, declared.service.runtime
    snapshot = world.tester.take_snapshot()
    try:
        body = _stored(declared, "manufacturing.daily")[0]["event"]
        bundle = runtime.bundles.bundle(body["event_id"])
        seconds = event_time_ms(body["event_time"]) // 1000
        world.pledges.report_fact(
            Fact(declared.receipt_id, FactKind.COVENANT_BREACH, 0, seconds),
            evidence_from_bundle(bundle),
            oracle=world.oracle,
        )
        assert world.deployment is not None
        report = Auditor(world.chain, world.deployment, source=runtime.store, bytecode=False).run()
        [finding] = report.findings
        assert finding.code == "fact_content_mismatch"
        assert finding.details["fields"]["kind"] == {
            "fact": "oracle.alarm (covenant_breach)",
            "event": "manufacturing.daily (None)",
        }
    finally:
        world.tester.revert_to_snapshot(snapshot)
