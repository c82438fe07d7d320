"""A simulated farm or warehouse, watched by the oracle, against a live pledge.

Used by the demo's third act and by `fourflow simulate … ` (in-process): a custodian
issues a receipt for the herd or the coils, a bank lends against it, the simulated
devices report for some days (with incidents injected), the oracle turns their signed
readings into alarms and counts, anchors them and reports the covenant facts, and the
pledge registry freezes the pledge. Returns what happened, and draws the counts as a
chart (terminal bars, and an SVG file on request).
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from pathlib import Path
from typing import Any

from eth_account.signers.local import LocalAccount

from ledger.chain import ORACLE_ROLE, SUBMITTER_ROLE, new_account
from ledger.collateral import (
    CUSTODIAN_ROLE,
    LENDER_ROLE,
    PRICE_SCALE,
    Contracts,
    Freeze,
    Mode,
    Terms,
    identifier_key,
)
from ledger.models import offset_zone
from ledger.runtime import DevKeys, Runtime
from oracles.config import OracleConfig
from oracles.drive import feed_in_process
from oracles.service import OracleService
from oracles.simulate import Scenario, dairy, oracle_config, warehouse

__all__ = ["SceneResult", "build_scenario", "run_oracle_scene", "svg_chart"]

Say = Callable[..., None]
Progress = Callable[[int, int], None]
DAY = 86_400
# (asset class, unit, price in micro-fen per unit, the bank's pledge rate)
_GOODS = {
    "dairy": ("cattle.dairy", "head", 1_800_000 * PRICE_SCALE, 5000),
    "warehouse": ("steel.coil", "coil", 10_125_000 * PRICE_SCALE, 6000),
}


@dataclass
class SceneResult:
    scenario: Scenario
    receipt_id: int
    pledge_id: int
    readings: int
    alarms: dict[str, int]  # rule -> count
    # the headline figure: (label, value, note) per count or per closed day
    series: list[tuple[str, float, str]]
    facts: dict[str, int]  # "<kind> <state>" -> count
    frozen: list[str]
    detected: dict[str, bool]  # incident kind -> its alarm was raised
    # the scene's accounts: custodian, bank (lender), owner (borrower, payee), gateway
    parties: dict[str, LocalAccount] = field(default_factory=dict, repr=False)
    headline: str = ""  # what ``series`` measures, with its unit ("" for a count)
    minimum: float | None = None  # the covenant's line for the headline, if it has one
    days: list[dict[str, Any]] = field(default_factory=list)  # each closed day's figures
    # the other industries: each pledge by what it covers, and the dealer's releases
    pledges: list[dict[str, Any]] = field(default_factory=list)
    releases: list[dict[str, Any]] = field(default_factory=list)
    alarmed: dict[str, list[str]] = field(default_factory=dict)  # subject -> its rules
    config: OracleConfig | None = field(default=None, repr=False)  # the oracle's, as run

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "scenario": self.scenario.summary(),
            "receipt_id": self.receipt_id,
            "pledge_id": self.pledge_id,
            "readings": self.readings,
            "alarms": self.alarms,
            "facts": self.facts,
            "frozen": self.frozen,
            "incidents_detected": self.detected,
        }
        if not self.days:
            data["counts"] = [{"label": a, "quantity": q, "method": m} for a, q, m in self.series]
            return data
        return data | {
            "headline": {
                "figure": self.headline,
                "minimum": self.minimum,
                "series": [{"label": a, "value": v, "note": n} for a, v, n in self.series],
            },
            "incidents": [
                {
                    "kind": i.kind,
                    "subject": i.subject,
                    "rule": i.expected_rule,
                    "items": list(i.items),
                    "detected": self.detected[i.kind],
                }
                for i in self.scenario.incidents
            ],
            "days_recorded": len({d["day"] for d in self.days}),
            "days": self.days,
            "pledges": self.pledges,
            "releases": self.releases,
            "alarms_by_subject": self.alarmed,
        }


def build_scenario(
    kind: str, *, days: int, seed: int, start: datetime | None, size: int | None
) -> Scenario:
    if kind == "dairy":
        herd = dairy(days=days, seed=seed, start=start, animals=size) if size else None
        return herd or dairy(days=days, seed=seed, start=start)
    lot = warehouse(days=days, seed=seed, start=start, coils=size) if size else None
    return lot or warehouse(days=days, seed=seed, start=start)


def run_oracle_scene(
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
    step: int = 13,
) -> SceneResult:
    """Run the scene on the runtime's chain, whose clock must be the wall clock's (the
    scenario ends before now, so every fact is in the past)."""
    chain, admin, oracle = runtime.chain, keys.admin, keys.oracle
    now = int(chain.w3.eth.get_block("latest")["timestamp"])
    start = datetime.fromtimestamp(now - (days + 1) * DAY, tz=UTC)
    scenario = build_scenario(kind, days=days, seed=seed, start=start, size=size)
    asset_class, unit, price, rate = _GOODS[kind]
    custodian, bank, owner, gateway = (new_account() for _ in range(4))
    for account in (custodian, bank, owner, gateway):
        chain.fund(account.address)
    contracts.receipts.grant(CUSTODIAN_ROLE, custodian.address, admin=admin)
    contracts.pledges.grant(LENDER_ROLE, bank.address, admin=admin)
    for registry in (contracts.pledges, contracts.prices):
        if not registry.has_role(ORACLE_ROLE, oracle.address):
            registry.grant(ORACLE_ROLE, oracle.address, admin=admin)
    runtime.registry.grant(SUBMITTER_ROLE, gateway.address, admin=admin)

    goods = list(scenario.subject["animals" if kind == "dairy" else "items"])
    what = f"a herd of {len(goods)} dairy cows" if kind == "dairy" else f"{len(goods)} steel coils"
    receipt_id, _ = contracts.receipts.issue(
        owner=owner.address, asset_class=asset_class, unit=unit, quantity=len(goods),
        keys=[identifier_key(g) for g in goods], location=scenario.subject.get("zone", scenario.subject.get("herd", "")),
        custodian=custodian,
    )  # fmt: skip
    contracts.prices.report(
        asset_class=asset_class, currency="CNY", price=price, observed_at=now - 1, oracle=oracle
    )
    contracts.pledges.set_pledge_rate(asset_class, rate, lender=bank)
    minimum = int(scenario.subject["minimum"])
    terms = Terms(
        receipt_id=receipt_id, lender=bank.address, payee=owner.address, currency="CNY",
        principal=len(goods) * price // PRICE_SCALE // 5, pledge_rate_bps=rate,
        warning_ltv_bps=7000, liquidation_ltv_bps=8500, min_quantity=minimum, min_value=0,
        max_data_age=30 * DAY, cure_period=3 * DAY, maturity=now + 365 * DAY, mode=Mode.STATIC,
    )  # fmt: skip
    signature, nonce = contracts.pledges.sign_consent(terms, borrower=owner, deadline=now + DAY)
    pledge_id, _ = contracts.pledges.open(
        terms, nonce=nonce, deadline=now + DAY, signature=signature, lender=bank
    )
    contracts.pledges.disburse(
        pledge_id, terms.principal // 2, payee=owner.address,
        ref=hashlib.sha256(f"{kind} loan {pledge_id}".encode()).digest(), lender=bank,
    )  # fmt: skip
    say(
        f"{step:2d}. receipt #{receipt_id} for {what}; the bank opened pledge #{pledge_id} "
        f"against it (covenant minimum {minimum} {unit}) and paid out half the principal"
    )

    config = OracleConfig.parse(
        oracle_config(scenario, tenant=kind, receipt_id=receipt_id, pledge_id=pledge_id)
    )
    service = OracleService.build(
        runtime,
        config,
        gateway=gateway,
        oracle=oracle,
        epcis_stream=f"{kind}.epcis",
        pledges=contracts.pledges,
    )
    summary = scenario.summary()
    say(
        f"    {days} days of {summary['devices']} devices ({', '.join(f'{n} {k}' for k, n in sorted(summary['kinds'].items()))})"
    )
    drive = feed_in_process(scenario, service, progress=progress)
    anchorer = service.anchorer(max_batch=10_000, max_age_s=0)
    while runtime.store.counts()["pending"]:
        anchorer.run_once(force=True)
    settled = service.facts().run_once()

    alarms = Counter(a.rule for a in service.state.alarms())
    raised = set(alarms)
    series: list[tuple[str, float, str]] = []
    for count_id in drive.counts:
        payload = json.loads(runtime.store.event(count_id).envelope)["event"]["payload"]
        label = payload.get("day") or _local(payload["time_ms"], scenario.utc_offset)
        quantity = payload.get("head_count", payload.get("quantity"))
        series.append((str(label), int(quantity), str(payload["method"])))
    facts = Counter(
        f"{s.key.split(':')[0]} {s.state}"
        + (f" ({s.outcome.split('(')[0]})" if s.state == "refused" else "")
        for s in settled
    )
    pledge = contracts.pledges.pledge_of(pledge_id)
    frozen = [flag.name or "" for flag in Freeze if flag in pledge.frozen]
    result = SceneResult(
        scenario=scenario,
        receipt_id=receipt_id,
        pledge_id=pledge_id,
        readings=drive.readings,
        alarms=dict(sorted(alarms.items())),
        series=series,
        facts=dict(sorted(facts.items())),
        frozen=frozen,
        detected={i.kind: i.expected_rule in raised for i in scenario.incidents},
        parties={"custodian": custodian, "bank": bank, "owner": owner, "gateway": gateway},
        headline="head count" if kind == "dairy" else "coils in stock",
        minimum=minimum,
    )
    say(
        f"{step + 1:2d}. the oracle checked {drive.readings:,} device-signed readings"
        f"{f' and {drive.documents} EPCIS documents' if drive.documents else ''}: "
        f"{sum(alarms.values())} alarms ({', '.join(f'{n} {r}' for r, n in result.alarms.items())})"
    )
    for incident in scenario.incidents:
        mark = "✓" if result.detected[incident.kind] else "✗"
        say(f"    {mark} {incident.kind}: {incident.description[:90]}")
    say(
        f"    {'count' if kind == 'dairy' else 'stock'} per {'day' if kind == 'dairy' else 'cycle count'} (minimum {minimum}):"
    )
    for line in bar_chart(series, minimum=minimum):
        say(f"      {line}")
    say(
        f"{step + 2:2d}. anchored; covenant facts to the pledge registry: "
        + ", ".join(f"{n} {k}" for k, n in result.facts.items())
    )
    say(
        f"    pledge #{pledge_id} is {'FROZEN: ' + ', '.join(frozen) if frozen else 'not frozen'}"
        " — no release or disbursement until the bank clears it"
    )
    return result


def _local(ms: int, offset: str) -> str:
    return datetime.fromtimestamp(ms / 1000, tz=offset_zone(offset)).strftime("%m-%d %H:%M")


def _number(value: float) -> str:
    return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.1f}"


def bar_chart(
    series: list[tuple[str, float, str]],
    *,
    minimum: float | None,
    width: int = 40,
    label_width: int = 11,
) -> list[str]:
    """One line per value: label, value, a bar scaled to the largest, ▌ at the minimum."""
    if not series:
        return ["(no figures)"]
    line = minimum if minimum is not None else 0
    top = max(max(v for _, v, _ in series), line, 1)
    lines = []
    for label, value, note in series:
        filled = round(value / top * width)
        mark = round(line / top * width) if minimum is not None else -1
        bar = "".join("█" if i < filled else ("▌" if i == mark else " ") for i in range(width + 1))
        flag = "  below minimum" if minimum is not None and value < minimum else ""
        lines.append(f"{label:>{label_width}}  {_number(value):>7}  {bar}  {note}{flag}".rstrip())
    return lines


def svg_chart(result: SceneResult, path: Path) -> None:
    """The headline figure over time (the counts, or each closed day's figure) as a line,
    with the covenant minimum if it has one, and the alarms named underneath."""
    series = result.series
    width, height, pad = 720, 280, 48
    minimum = result.minimum
    top = max([v for _, v, _ in series] + [minimum or 0, 1]) * 1.1
    step = (width - 2 * pad) / max(len(series) - 1, 1)

    def y(value: float) -> float:
        return height - pad - value / top * (height - 2 * pad)

    points = " ".join(f"{pad + i * step:.1f},{y(q):.1f}" for i, (_, q, _) in enumerate(series))
    labels = "".join(
        f'<text x="{pad + i * step:.1f}" y="{height - pad + 16}" font-size="10" text-anchor="middle">{escape(label)}</text>'
        for i, (label, _, _) in enumerate(series)
    )
    dots = "".join(
        f'<circle cx="{pad + i * step:.1f}" cy="{y(q):.1f}" r="3" fill="{"#c0392b" if minimum is not None and q < minimum else "#2c3e50"}"/>'
        for i, (_, q, _) in enumerate(series)
    )
    title = f"{result.scenario.name}: {escape(result.headline)} (seed {result.scenario.seed})"
    line = (
        f'<line x1="{pad}" y1="{y(minimum):.1f}" x2="{width - pad}" y2="{y(minimum):.1f}" stroke="#c0392b" stroke-dasharray="6 4"/>'
        f'<text x="{width - pad}" y="{y(minimum) - 4:.1f}" font-size="10" text-anchor="end" fill="#c0392b">covenant minimum {_number(minimum)}</text>'
        if minimum is not None
        else ""
    )
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif">'
        f'<rect width="100%" height="100%" fill="white"/>'
        f'<text x="{pad}" y="24" font-size="14">{title}</text>{line}'
        f'<polyline points="{points}" fill="none" stroke="#2c3e50" stroke-width="2"/>{dots}{labels}'
        f'<text x="{pad}" y="{height - 8}" font-size="10">alarms: '
        + ", ".join(f"{n} {rule}" for rule, n in result.alarms.items())
        + "</text></svg>\n"
    )
    path.write_text(svg, encoding="utf-8")
