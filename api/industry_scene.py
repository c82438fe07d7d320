"""A simulated plant, solar plant, charging station, car dealer or telemetry asset,
watched by the oracle day by day, against live pledges.

`fourflow simulate factory|solar|charging|dealer|telemetry` and the demo's last act run
it in-process: a custodian issues receipts for what is financed (the plant's machines,
the solar plant, the charging station, each of the dealer's vehicles by VIN, each
telemetry asset), the bank opens a pledge against each with the borrower's EIP-712
consent and pays out, the simulated devices report for some days (with incidents
injected), the oracle closes each local day into a ``<kind>.daily`` event and raises
alarms, anchors them and reports the covenant facts, and the pledge registry freezes
what they concern. At the dealer every paid-off sale is released on-chain first (the
dealer repays, the bank instructs the release, the custodian executes it) and the
oracle's ``oracle.release`` record cites those transactions; a vehicle that leaves
unreleased freezes its own VIN's pledge. Returns an ``api.oracle_scene.SceneResult``
whose series is each closed day's headline figure.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

from eth_account.signers.local import LocalAccount
from pydantic import JsonValue
from sqlmodel import col, select

from api.oracle_scene import DAY, Progress, Say, SceneResult, bar_chart, run_oracle_scene
from api.oracle_scene import build_scenario as build_farm_or_warehouse
from ledger.chain import ORACLE_ROLE, SUBMITTER_ROLE, new_account
from ledger.collateral import (
    CUSTODIAN_ROLE,
    LENDER_ROLE,
    PRICE_SCALE,
    Contracts,
    Freeze,
    Mode,
    PledgeStatus,
    Terms,
    identifier_key,
)
from ledger.runtime import DevKeys, Runtime
from ledger.store import EventRow
from oracles.config import OracleConfig
from oracles.drive import feed_in_process
from oracles.service import OracleService
from oracles.sim_energy import charging, solar
from oracles.sim_machines import factory
from oracles.sim_telemetry import telemetry
from oracles.sim_vehicles import dealer
from oracles.simulate import Scenario, oracle_config

__all__ = [
    "DEFAULT_DAYS",
    "INDUSTRIES",
    "KINDS",
    "build_scenario",
    "check_options",
    "run_industry_scene",
    "run_scene",
]

INDUSTRIES: Final = ("factory", "solar", "charging", "dealer", "telemetry")
KINDS: Final = ("dairy", "warehouse", *INDUSTRIES)
# the shortest run that shows each kind's incidents (energy judges runs of days)
DEFAULT_DAYS: Final = {"solar": 6, "charging": 10, "telemetry": 2}
MIN_DAYS: Final = {"solar": 6, "charging": 10}
# what --size counts, and its range (the simulators' own)
SIZES: Final = {
    "dairy": ("animals", 20, 2_000),
    "warehouse": ("coils", 8, 500),
    "factory": ("machines", 4, 60),
    "solar": ("inverters", 2, 100),
    "charging": ("piles", 2, 200),
    "dealer": ("vehicles", 10, 200),
}
_DAILY: Final = {
    "factory": "manufacturing.daily",
    "solar": "energy.daily",
    "charging": "energy.daily",
    "dealer": "vehicles.daily",
    "telemetry": "telemetry.daily",
}


def check_options(kind: str, *, days: int, size: int | None) -> None:
    """Refuse a kind or an option the scene cannot run, saying which (ValueError)."""
    if kind not in KINDS:
        raise ValueError(f"unknown scenario {kind!r}: choose one of {', '.join(KINDS)}")
    least = MIN_DAYS.get(kind, 1)
    if days < least:
        raise ValueError(f"--days {days}: {kind} needs at least {least} days to show its incidents")
    if size is not None:
        if kind not in SIZES:
            raise ValueError(f"--size: {kind} has no size to choose")
        what, low, high = SIZES[kind]
        if not low <= size <= high:
            raise ValueError(f"--size {size}: {kind} takes {low} to {high} {what}")


def build_scenario(
    kind: str,
    *,
    days: int,
    seed: int,
    start: datetime | None,
    size: int | None,
    incidents: Sequence[str] | None = None,
) -> Scenario:
    """The scenario of any kind (``check_options`` first); ``incidents`` (the other
    industries): these only, instead of all of them."""
    if kind in ("dairy", "warehouse"):
        return build_farm_or_warehouse(kind, days=days, seed=seed, start=start, size=size)
    given: dict[str, Any] = {SIZES[kind][0]: size} if size is not None and kind in SIZES else {}
    given |= {"days": days, "seed": seed, "start": start, "incidents": incidents}
    if kind == "factory":
        return factory(**given)
    if kind == "solar":
        return solar(**given)
    if kind == "charging":
        return charging(**given)
    if kind == "dealer":
        return dealer(**given)
    return telemetry(**given)


def run_scene(
    runtime: Runtime,
    keys: DevKeys,
    contracts: Contracts,
    *,
    kind: str,
    days: int,
    seed: int,
    size: int | None = None,
    say: Say,
    progress: Progress | None = None,
    step: int = 1,
) -> SceneResult:
    """The scene of any kind: a farm or a warehouse (api.oracle_scene), or an industry."""
    run = run_oracle_scene if kind in ("dairy", "warehouse") else run_industry_scene
    return run(
        runtime, keys, contracts, kind=kind, days=days, seed=seed, size=size, say=say,
        progress=progress, step=step,
    )  # fmt: skip


@dataclass(frozen=True)
class _Item:
    """What one receipt covers."""

    subject: str  # the alarm subject it answers for: a VIN, an asset; the site otherwise
    what: str  # said in the story
    asset_class: str
    unit: str
    identifiers: tuple[str, ...]  # one per unit
    location: str
    registration: str = ""
    price_cny: int = 0  # a unit


def _items(kind: str, scenario: Scenario) -> list[_Item]:
    subject = scenario.subject
    if kind == "factory":
        plant = subject["plant"]
        machines = tuple(f"{plant}:{m}" for m in sorted(subject["machines"]))
        what = f"{len(machines)} machines of plant {plant}"
        return [_Item(plant, what, "equipment.machine", "machine", machines, plant, "", 1_200_000)]
    if kind == "solar":
        plant = subject["plant"]
        what = f"the {subject['dc_kwp'] / 1000:g} MWp solar plant {plant}"
        return [_Item(plant, what, "energy.pv_plant", "plant", (plant,), plant, "", 24_000_000)]
    if kind == "charging":
        station = subject["station"]
        what = f"the charging station {station} ({len(subject['piles'])} piles)"
        return [
            _Item(
                station, what, "energy.ev_charging", "station", (station,), station, "", 3_000_000
            )
        ]
    if kind == "dealer":
        return [
            _Item(vin, vin, "vehicle.new", "vehicle", (vin,), subject["dealer"], vin, 150_000)
            for vin in subject["vehicles"]
        ]
    return [
        _Item(w["subject"], w["subject"], "equipment.monitored", "asset", (w["subject"],),
              w["subject"], "", 2_000_000)
        for w in subject["watches"]
    ]  # fmt: skip


@dataclass
class _Pledged:
    item: _Item
    receipt_id: int
    pledge_id: int
    principal: int  # fen


def run_industry_scene(
    runtime: Runtime,
    keys: DevKeys,
    contracts: Contracts,
    *,
    kind: str,
    days: int,
    seed: int,
    size: int | None = None,
    say: Say,
    progress: Progress | None = None,
    step: int = 1,
    incidents: Sequence[str] | None = None,
    parties: dict[str, LocalAccount] | None = None,
    chain_releases: bool = False,
) -> SceneResult:
    """Run the scene on the runtime's chain, whose clock must be the wall clock's (the
    scenario ends before now, so every fact is in the past). ``parties``: the custodian,
    bank, owner and gateway of an earlier scene on this chain (funded, with their
    roles), instead of new ones. ``chain_releases``: a dealer's sales are released on
    chain and nobody tells the oracle; it finds them there, as a live oracle would."""
    chain, admin, oracle = runtime.chain, keys.admin, keys.oracle
    now = int(chain.w3.eth.get_block("latest")["timestamp"])
    start = datetime.fromtimestamp(now - (days + 1) * DAY, tz=UTC)
    scenario = build_scenario(
        kind, days=days, seed=seed, start=start, size=size, incidents=incidents
    )
    if parties is None:
        parties = {name: new_account() for name in ("custodian", "bank", "owner", "gateway")}
        for name in ("custodian", "bank"):  # the owner consents by signature: no gas
            chain.fund(parties[name].address)
        contracts.receipts.grant(CUSTODIAN_ROLE, parties["custodian"].address, admin=admin)
        contracts.pledges.grant(LENDER_ROLE, parties["bank"].address, admin=admin)
        runtime.registry.grant(SUBMITTER_ROLE, parties["gateway"].address, admin=admin)
    custodian, bank, owner, gateway = (
        parties[name] for name in ("custodian", "bank", "owner", "gateway")
    )
    for registry in (contracts.pledges, contracts.prices):
        if not registry.has_role(ORACLE_ROLE, oracle.address):
            registry.grant(ORACLE_ROLE, oracle.address, admin=admin)

    items = _items(kind, scenario)
    rate = 7000
    for asset_class, price in sorted({(i.asset_class, i.price_cny) for i in items}):
        contracts.prices.report(
            asset_class=asset_class, currency="CNY", price=price * 100 * PRICE_SCALE,
            observed_at=now - 1, oracle=oracle,
        )  # fmt: skip
        contracts.pledges.set_pledge_rate(asset_class, rate, lender=bank)
    pledged: list[_Pledged] = []
    for item in items:
        receipt_id, _ = contracts.receipts.issue(
            owner=owner.address, asset_class=item.asset_class, unit=item.unit,
            quantity=len(item.identifiers), keys=[identifier_key(i) for i in item.identifiers],
            location=item.location, registration=item.registration, custodian=custodian,
        )  # fmt: skip
        principal = len(item.identifiers) * item.price_cny * 100 * 6 // 10  # 60% of its value
        terms = Terms(
            receipt_id=receipt_id, lender=bank.address, payee=owner.address, currency="CNY",
            principal=principal, pledge_rate_bps=rate, warning_ltv_bps=8000,
            liquidation_ltv_bps=9000, min_quantity=len(item.identifiers), min_value=0,
            max_data_age=30 * DAY, cure_period=3 * DAY, maturity=now + 365 * DAY,
            mode=Mode.STATIC,
        )  # fmt: skip
        signature, nonce = contracts.pledges.sign_consent(terms, borrower=owner, deadline=now + DAY)
        pledge_id, _ = contracts.pledges.open(
            terms, nonce=nonce, deadline=now + DAY, signature=signature, lender=bank
        )
        contracts.pledges.disburse(
            pledge_id, principal, payee=owner.address,
            ref=hashlib.sha256(f"{kind} loan {pledge_id}".encode()).digest(), lender=bank,
        )  # fmt: skip
        pledged.append(_Pledged(item, receipt_id, pledge_id, principal))
    lent = sum(p.principal for p in pledged)
    first, last = pledged[0], pledged[-1]
    if kind == "dealer":
        say(
            f"{step:2d}. floor plan: one receipt per financed vehicle, registered by its VIN "
            f"(receipts #{first.receipt_id}–#{last.receipt_id}, {len(pledged)} vehicles); the bank "
            f"opened a pledge on each with the dealer's EIP-712 consent "
            f"(#{first.pledge_id}–#{last.pledge_id}) and paid {lent / 100:,.2f} CNY"
        )
    else:
        made = ", ".join(f"#{p.receipt_id} for {p.item.what}" for p in pledged)
        opened = ", ".join(f"#{p.pledge_id}" for p in pledged)
        say(
            f"{step:2d}. receipt {made}; the bank opened pledge {opened} with the owner's "
            f"EIP-712 consent and paid {lent / 100:,.2f} CNY"
        )

    raw = oracle_config(scenario, tenant=kind)
    _attach(kind, raw, pledged)
    service = OracleService.build(
        runtime,
        OracleConfig.parse(raw),
        gateway=gateway,
        oracle=oracle,
        pledges=contracts.pledges,
        receipts=contracts.receipts,  # the rules see releases on chain
    )
    summary = scenario.summary()
    say(
        f"    {_plural(days, 'day')} of {summary['devices']} devices ("
        + ", ".join(f"{n:,} {k}" for k, n in sorted(summary["kinds"].items()))
        + ")"
    )
    by_vin = {p.item.subject: p for p in pledged}
    releases: list[dict[str, Any]] = []

    def release(vins: list[str], time_ms: int) -> dict[str, JsonValue]:
        """The dealer repays each sold vehicle's loan, the bank instructs the full
        release, the custodian executes it: what the oracle's record cites."""
        txs: list[JsonValue] = []
        for vin in vins:
            p = by_vin[vin]
            ref = hashlib.sha256(f"sale {vin}".encode()).digest()
            contracts.pledges.repay(p.pledge_id, p.principal, ref=ref, lender=bank)
            contracts.pledges.instruct_full_release(p.pledge_id, lender=bank)
            done = contracts.pledges.execute_release(p.pledge_id, ref=ref, custodian=custodian)
            tx = "0x" + done.tx_hash.hex()
            txs.append(tx)
            releases.append({
                "vin": vin, "receipt_id": p.receipt_id, "pledge_id": p.pledge_id,
                "repaid_fen": p.principal, "tx_hash": tx, "sold_ms": time_ms,
            })  # fmt: skip
        return {
            "receipt_ids": [by_vin[v].receipt_id for v in vins],
            "pledge_ids": [by_vin[v].pledge_id for v in vins],
            "tx_hashes": txs,
        }

    earlier = {a.key for a in service.state.alarms()}  # other scenes' on this store
    drive = feed_in_process(
        scenario,
        service,
        progress=progress,
        release=release if kind == "dealer" else None,
        record_releases=not chain_releases,
    )
    # the piles upload their sessions late: close the last day once its grace is over
    service.rules.run_once(now_ms=scenario.end_ms + 600_000)
    anchorer = service.anchorer(max_batch=10_000, max_age_s=0)
    while runtime.store.counts()["pending"]:
        anchorer.run_once(force=True)
    settled = service.facts().run_once()

    found = [a for a in service.state.alarms() if a.key not in earlier]
    alarms = Counter(a.rule for a in found)
    alarmed: dict[str, list[str]] = {}
    for a in sorted(found, key=lambda a: (a.subject, a.rule)):
        alarmed.setdefault(a.subject, []).append(a.rule)
    cited = {r["vin"]: r for r in releases}
    for record in _recorded(runtime, "oracle.release", stream=service.rules.stream):
        for vin in record["items"]:
            if vin in cited:
                cited[vin]["record"] = record
    raised = set(alarms)
    daily = _recorded(runtime, _DAILY[kind], stream=service.rules.stream)
    days_out, series, headline, minimum = _figures(kind, scenario, daily)
    facts = Counter(
        f"{s.key.split(':')[0]} {s.state}"
        + (f" ({s.outcome.split('(')[0]})" if s.state == "refused" else "")
        for s in settled
    )
    pledges_out: list[dict[str, Any]] = []
    frozen_all: set[str] = set()
    for p in pledged:
        on_chain = contracts.pledges.pledge_of(p.pledge_id)
        frozen = [flag.name or "" for flag in Freeze if flag in on_chain.frozen]
        frozen_all.update(frozen)
        pledges_out.append({
            "subject": p.item.subject, "receipt_id": p.receipt_id, "pledge_id": p.pledge_id,
            "asset_class": p.item.asset_class, "unit": p.item.unit,
            "quantity": len(p.item.identifiers), "status": PledgeStatus(on_chain.status).name,
            "frozen": frozen,
        })  # fmt: skip
    result = SceneResult(
        scenario=scenario,
        receipt_id=first.receipt_id,
        pledge_id=first.pledge_id,
        readings=drive.readings,
        alarms=dict(sorted(alarms.items())),
        series=series,
        facts=dict(sorted(facts.items())),
        frozen=sorted(frozen_all),
        detected={i.kind: i.expected_rule in raised for i in scenario.incidents},
        parties=parties,
        headline=headline,
        minimum=minimum,
        days=days_out,
        pledges=pledges_out,
        releases=releases,
        alarmed=alarmed,
        config=service.config,
    )
    recorded = len({d["day"] for d in days_out})
    say(
        f"{step + 1:2d}. the oracle checked {drive.readings:,} device-signed readings and "
        f"recorded {_plural(recorded, 'closed day')} ({_DAILY[kind]}): {_plural(sum(alarms.values()), 'alarm')}"
        + (f" ({', '.join(f'{n} {r}' for r, n in result.alarms.items())})" if alarms else "")
    )
    for incident in scenario.incidents:
        mark = "✓" if result.detected[incident.kind] else "✗"
        say(f"    {mark} {incident.kind}: {incident.description[:90]}")
    say(f"    {headline} per day" + (f" (minimum {minimum:g}):" if minimum is not None else ":"))
    width = max(len(label) for label, _, _ in series) if series else 11
    for line in bar_chart(series, minimum=minimum, label_width=width):
        say(f"      {line}")
    for entry in releases:
        say(
            f"    sold {entry['vin']}: the dealer repaid {entry['repaid_fen'] / 100:,.2f} CNY, the "
            f"bank released pledge #{entry['pledge_id']} on-chain ({entry['tx_hash'][:12]}…); "
            + (
                "the oracle's release record cites it"
                if entry.get("record", {}).get("onchain", {}).get("tx_hashes")
                else "NO release record of the oracle cites it"
            )
        )
    say(
        f"{step + 2:2d}. anchored; covenant facts to the pledge registry: "
        + (", ".join(f"{n} {k}" for k, n in result.facts.items()) or "none")
    )
    frozen_pledges = [p for p in pledges_out if p["frozen"]]
    for entry in frozen_pledges:
        say(
            f"    pledge #{entry['pledge_id']} ({entry['subject']}) is FROZEN: "
            f"{', '.join(entry['frozen'])}"
            " — no release or disbursement until the bank clears it"
        )
    if not frozen_pledges:
        say("    no pledge is frozen")
    return result


def _attach(kind: str, raw: dict[str, Any], pledged: list[_Pledged]) -> None:
    """Put the receipts and pledges into the oracle config, so its facts go on-chain."""
    if kind == "dealer":
        raw["dealers"][0]["vehicles"] = {
            p.item.subject: {"receipt_id": p.receipt_id, "pledge_id": p.pledge_id} for p in pledged
        }
        return
    if kind == "telemetry":
        ids = {p.item.subject: p for p in pledged}
        for watch in raw["telemetry"]:
            p = ids[watch["rules"]["subject"]]
            watch |= {"receipt_id": p.receipt_id, "pledge_id": p.pledge_id}
        return
    section = {"factory": "plants"}.get(kind, kind)
    raw[section][0] |= {"receipt_id": pledged[0].receipt_id, "pledge_id": pledged[0].pledge_id}


def _recorded(runtime: Runtime, kind: str, *, stream: str) -> list[dict[str, Any]]:
    """The payloads of the events of ``kind`` the oracle recorded in ``stream``."""
    with runtime.store.session() as session:
        rows = session.exec(
            select(EventRow.envelope)
            .where(EventRow.kind == kind, EventRow.stream == stream)
            .order_by(col(EventRow.position))
        ).all()
    return [json.loads(e)["event"]["payload"] for e in rows]


Series = list[tuple[str, float, str]]


def _figures(
    kind: str, scenario: Scenario, payloads: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], Series, str, float | None]:
    """Each closed day's figures (with units in their names), the headline series, its
    name and its covenant line."""
    days: list[dict[str, Any]] = []
    series: Series = []
    if kind == "factory":
        for p in payloads:
            days.append({
                "day": p["day"], "utilization_pct": p["utilization_pct"],
                "running_h": p["running_h"], "scheduled_h": p["scheduled_h"],
                "output_pieces": p["output"], "energy_kwh": p["energy_kwh"],
                "machines_reported": p["machines_reported"],
            })  # fmt: skip
            util = p["utilization_pct"]
            note = (
                f"{p['running_h']:,.1f} machine-hours run ({p['scheduled_h']:g} h scheduled), "
                f"{p['output'] or 0:,} pieces, {p['energy_kwh']:,.0f} kWh"
                if util is not None
                else "rest day"
            )
            series.append((p["day"], float(util or 0), note))
        return days, series, "utilization %", float(scenario.subject["min_utilization_pct"])
    if kind == "solar":
        for p in payloads:
            days.append({
                "day": p["day"], "generation_kwh": p["generation_kwh"],
                "export_kwh": p["export_kwh"], "pr_pct": p["pr_pct"],
                "insolation_kwh_m2": p["insolation_kwh_m2"],
                "availability_pct": p["availability_pct"], "revenue_fen": p["revenue_fen"],
                "revenue_cny": p["revenue_fen"] / 100,
            })  # fmt: skip
            pr = "PR —" if p["pr_pct"] is None else f"PR {p['pr_pct']:.1f} %"
            note = f"{pr}, {p['revenue_fen'] / 100:,.2f} CNY, availability {p['availability_pct']:.0f} %"
            series.append((p["day"], float(p["export_kwh"]), note))
        return days, series, "kWh exported", None
    if kind == "charging":
        for p in payloads:
            days.append({
                "day": p["day"], "sessions": p["sessions"], "energy_kwh": p["energy_kwh"],
                "utilization_pct": p["utilization_pct"], "revenue_fen": p["revenue_fen"],
                "revenue_cny": p["revenue_fen"] / 100, "piles_reporting": p["piles_reporting"],
            })  # fmt: skip
            note = (
                f"{p['sessions']} sessions, {p['energy_kwh']:,.0f} kWh, "
                f"utilization {p['utilization_pct']:.1f} %"
            )
            series.append((p["day"], p["revenue_fen"] / 100, note))
        return days, series, "revenue CNY", None
    if kind == "dealer":
        for p in payloads:
            days.append({
                "day": p["day"], "financed": p["financed"], "on_lot": p["on_lot"],
                "released": p["released"], "off_lot_released": p["off_lot_released"],
                "off_lot_unreleased": p["off_lot_unreleased"], "unseen": p["unseen"],
                "tracker_unplugged": p["tracker_unplugged"],
                "certificates_in_safe": p["certificates_in_safe"],
                "keys_in_safe": p["keys_in_safe"],
            })  # fmt: skip
            note = (
                f"{p['financed']} financed, {len(p['released'])} released, "
                f"{p['off_lot_unreleased']} off the lot unreleased, "
                f"{p['certificates_in_safe']} certificates in the safe"
            )
            series.append((p["day"], float(p["on_lot"]), note))
        return days, series, "vehicles on the lot", None
    for p in payloads:
        asset = p["subject"].removeprefix("urn:fourflow:asset:")
        readings = sum(s["readings"] for s in p["series"])
        fields = {
            name: {
                "unit": f["unit"],
                **{k: v for k, v in f.items() if k not in ("unit", "readings")},
            }
            for s in p["series"]
            for name, f in s["fields"].items()
        }
        days.append(
            {"day": p["day"], "subject": p["subject"], "readings": readings, "fields": fields}
        )
        shown = [
            f"{name} max {f['max']:g}{'' if f['unit'] == '1' else ' ' + f['unit']}"
            for name, f in fields.items()
            if "max" in f
        ][:2]
        series.append((f"{p['day']} {asset}", float(readings), ", ".join(shown)))
    return days, series, "readings", None


def _plural(n: int, what: str) -> str:
    return f"{n} {what}" if n == 1 else f"{n} {what}s"
