"""The gas table in docs/contracts.md is produced here, by running every operation.

A seeded world (fixed keys, fixed clock) makes every transaction's calldata, and so its
gas, the same on every run. The test measures each operation once, writes the figures to
``test-artifacts/gas-collateral.json`` and fails if the table between the
``gas-table`` markers of docs/contracts.md differs from what it measured. After a
contract change, ``make gas-table`` (``FOURFLOW_UPDATE_GAS_TABLE=1``) rewrites it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from ledger.chain import TxReceipt
from ledger.collateral import (
    AnchorRegistry,
    Change,
    Fact,
    FactKind,
    Mode,
    PledgeRegistry,
    PriceFeed,
    ReceiptRegistry,
)
from tests.collateral_world import DAY, STEEL, STEEL_PRICE, World, build_world, ref, steel_keys

REPO = Path(__file__).resolve().parent.parent
DOC = REPO / "docs" / "contracts.md"
OUT = REPO / "test-artifacts" / "gas-collateral.json"
BEGIN, END = "<!-- gas-table:begin -->", "<!-- gas-table:end -->"
Row = tuple[str, str, int]


def _deploy_gas(world: World) -> list[Row]:
    """Deployment gas, measured on a second deployment from the same admin."""
    rows = []
    anchors, _ = AnchorRegistry._deploy(world.chain, world.admin.address, deployer=world.admin)
    rows.append(("AnchorRegistry", "deploy", _gas_of_last(world)))
    receipts, _ = ReceiptRegistry._deploy(world.chain, world.admin.address, deployer=world.admin)
    rows.append(("ReceiptRegistry", "deploy", _gas_of_last(world)))
    prices, _ = PriceFeed._deploy(world.chain, world.admin.address, deployer=world.admin)
    rows.append(("PriceFeed", "deploy", _gas_of_last(world)))
    PledgeRegistry._deploy(
        world.chain, world.admin.address, anchors, receipts, prices, deployer=world.admin
    )
    rows.append(("PledgeRegistry", "deploy", _gas_of_last(world)))
    return rows


def _gas_of_last(world: World) -> int:
    block = world.chain.w3.eth.get_block("latest")
    return int(block["gasUsed"])


def measure() -> list[Row]:
    """Runs one of each operation on a fresh seeded world; returns (contract, operation, gas)."""
    w = build_world(seed="gas-table")
    rows: list[Row] = _deploy_gas(w)

    clients = {"ReceiptRegistry": w.receipts, "PriceFeed": w.prices, "PledgeRegistry": w.pledges}

    def row(contract: str, operation: str, receipt: TxReceipt, *, emits: str = "") -> None:
        """Records one figure; ``emits`` names an event the operation must have emitted,
        so each row costs what its name says."""
        if emits:
            assert clients[contract].events(receipt.tx_hash, emits), f"{operation}: no {emits}"
        rows.append((contract, operation, receipt.gas_used))

    # anchoring: the evidence facts cite
    before = len(rows)
    w.evidence(4, stream="gas.first")
    rows.append(("AnchorRegistry", "anchor, first batch of a stream", _gas_of_last(w)))
    w.evidence(4, stream="gas.first")
    rows.append(("AnchorRegistry", "anchor, later batch", _gas_of_last(w)))
    assert len(rows) == before + 2

    # receipts
    receipt_id, issued = w.receipts.issue(
        owner=w.borrower.address, asset_class=STEEL, unit="kg", quantity=100_000,
        keys=steel_keys(10, lot="G1"), location="urn:epc:id:sgln:6901234.00001.0",
        registration="ZD2030031700001", warehouse_receipt_code="WR-SH-2030-0001",
        ref=ref("inbound G1"), custodian=w.custodian,
    )  # fmt: skip
    row("ReceiptRegistry", "issue, 10 identifier keys", issued)
    other, issued_one = w.receipts.issue(
        owner=w.borrower.address, asset_class=STEEL, unit="kg", quantity=25_000,
        keys=steel_keys(1, lot="G2"), location="urn:epc:id:sgln:6901234.00001.0",
        ref=ref("inbound G2"), custodian=w.custodian,
    )  # fmt: skip
    row("ReceiptRegistry", "issue, 1 identifier key", issued_one)
    row(
        "ReceiptRegistry",
        "bindKeys, 10 keys",
        w.receipts.bind_keys(other, steel_keys(10, lot="G3"), custodian=w.custodian),
    )
    row(
        "ReceiptRegistry",
        "addGoods, 1 key",
        w.receipts.add_goods(
            other, 5_000, keys=steel_keys(1, lot="G4"), ref=ref("inbound G4"), custodian=w.custodian
        ),
    )
    row(
        "ReceiptRegistry",
        "removeGoods (delivered), 1 key",
        w.receipts.remove_goods(
            other,
            5_000,
            change=Change.DELIVERED,
            keys=steel_keys(1, lot="G4"),
            ref=ref("outbound G4"),
            custodian=w.custodian,
        ),
    )
    row(
        "ReceiptRegistry",
        "transferFrom (free receipt)",
        w.receipts.transfer(other, w.borrower2.address, owner=w.borrower),
    )
    row(
        "ReceiptRegistry",
        "removeGoods to zero (retire, burn)",
        w.receipts.remove_goods(
            other, 25_000, change=Change.SOLD, ref=ref("sold G2"), custodian=w.custodian
        ),
        emits="ReceiptRetired",
    )

    # prices and policy
    w.travel(60)
    row("PriceFeed", "report", w.report_price(STEEL_PRICE - 5 * 10**6))
    row(
        "PledgeRegistry",
        "setPledgeRate",
        w.pledges.set_pledge_rate("steel.wire", 5500, lender=w.lender),
    )

    # a static pledge, consent by signature
    terms = w.terms(receipt_id, maturity=w.now() + 365 * DAY)
    deadline = w.now() + DAY
    signature, nonce = w.pledges.sign_consent(terms, borrower=w.borrower, deadline=deadline)
    pledge_id, opened = w.pledges.open(
        terms, nonce=nonce, deadline=deadline, signature=signature, lender=w.lender
    )
    row("PledgeRegistry", "open, EIP-712 consent", opened)
    payee = w.payee.address
    row(
        "PledgeRegistry",
        "disburse, first",
        w.pledges.disburse(pledge_id, 100_000_00, payee=payee, ref=ref("loan 1"), lender=w.lender),
    )
    row(
        "PledgeRegistry",
        "disburse, later",
        w.pledges.disburse(pledge_id, 100_000_00, payee=payee, ref=ref("loan 2"), lender=w.lender),
    )
    [evidence] = w.evidence(1, stream="gas.counts")
    row(
        "PledgeRegistry",
        "reportFact, quantity (no freeze)",
        w.pledges.report_fact(
            Fact(receipt_id, FactKind.QUANTITY, 100_000, w.now() - 1), evidence, oracle=w.oracle
        ),
        emits="FactReported",
    )
    w.travel(30)
    row("PriceFeed", "report, price falls", w.report_price(STEEL_PRICE * 6 // 10))
    row(
        "PledgeRegistry",
        "checkLines, opens a margin call",
        w.pledges.check_lines(pledge_id, caller=w.outsider),
        emits="MarginCallOpened",
    )
    row(
        "PledgeRegistry",
        "topUpMargin, cures the call",
        w.pledges.top_up_margin(pledge_id, 60_000_00, ref=ref("margin 1"), lender=w.lender),
        emits="MarginCallCured",
    )
    row(
        "PledgeRegistry",
        "repay (static: adds release credit)",
        w.pledges.repay(pledge_id, 50_000_00, ref=ref("repay 1"), lender=w.lender),
    )
    allowed = w.pledges.releasable_of(pledge_id)
    assert allowed > 0
    row(
        "PledgeRegistry",
        "instructRelease",
        w.pledges.instruct_release(pledge_id, allowed, lender=w.lender),
    )
    row(
        "PledgeRegistry",
        "executeRelease, partial, 1 key out",
        w.pledges.execute_release(
            pledge_id,
            keys_out=steel_keys(1, lot="G1"),
            ref=ref("outbound G1-0"),
            custodian=w.custodian,
        ),
        emits="GoodsReleased",
    )
    row(
        "PledgeRegistry",
        "addGoods, 1 key",
        w.pledges.add_goods(
            pledge_id,
            1_000,
            keys=steel_keys(1, lot="G5"),
            ref=ref("inbound G5"),
            custodian=w.custodian,
        ),
    )
    [moved] = w.evidence(1, stream="gas.alarms")
    row(
        "PledgeRegistry",
        "reportFact, unauthorized movement (freezes)",
        w.pledges.report_fact(
            Fact(receipt_id, FactKind.UNAUTHORIZED_MOVEMENT, 0, w.now() - 1), moved, oracle=w.oracle
        ),
        emits="PledgeFrozen",
    )
    row(
        "PledgeRegistry",
        "freezeOnFinding",
        w.pledges.freeze_on_finding(pledge_id, ref("finding 1"), auditor=w.auditor),
    )
    row("PledgeRegistry", "clearFreeze", w.pledges.clear_freeze(pledge_id, lender=w.lender))
    [breach] = w.evidence(1, stream="gas.alarms")
    row(
        "PledgeRegistry",
        "reportFact, covenant breach (freezes)",
        w.pledges.report_fact(
            Fact(receipt_id, FactKind.COVENANT_BREACH, 0, w.now() - 1), breach, oracle=w.oracle
        ),
        emits="PledgeFrozen",
    )
    w.pledges.clear_freeze(pledge_id, lender=w.lender)
    w.travel(3 * DAY)
    row(
        "PledgeRegistry",
        "flagStale",
        w.pledges.flag_stale(pledge_id, caller=w.outsider),
        emits="PledgeFrozen",
    )
    w.pledges.clear_freeze(pledge_id, lender=w.lender)
    outstanding = w.pledges.pledge_of(pledge_id).outstanding
    w.report_price(STEEL_PRICE)
    row(
        "PledgeRegistry",
        "repay, in full",
        w.pledges.repay(pledge_id, outstanding, ref=ref("repay 2"), lender=w.lender),
    )
    row(
        "PledgeRegistry",
        "instructFullRelease",
        w.pledges.instruct_full_release(pledge_id, lender=w.lender),
    )
    row(
        "PledgeRegistry",
        "executeRelease, full (pledge released)",
        w.pledges.execute_release(pledge_id, ref=ref("released"), custodian=w.custodian),
        emits="PledgeReleased",
    )

    # a dynamic pledge, consent by transaction, ending in liquidation
    terms = w.terms(receipt_id, mode=Mode.DYNAMIC, maturity=w.now() + 365 * DAY)
    deadline = w.now() + DAY
    nonce = w.pledges.nonce_of(w.borrower.address)
    digest = w.pledges.consent_digest(terms, nonce=nonce, deadline=deadline)
    row(
        "PledgeRegistry", "consent (by transaction)", w.pledges.consent(digest, borrower=w.borrower)
    )
    pledge_id, opened = w.pledges.open(terms, nonce=nonce, deadline=deadline, lender=w.lender)
    row("PledgeRegistry", "open, consent by transaction", opened)
    w.pledges.disburse(pledge_id, 150_000_00, payee=payee, ref=ref("loan 3"), lender=w.lender)
    row(
        "PledgeRegistry",
        "swap (dynamic), 1 key out, 1 in",
        w.pledges.swap(
            pledge_id,
            quantity_out=1_000,
            keys_out=steel_keys(1, lot="G5"),
            quantity_in=1_200,
            keys_in=steel_keys(1, lot="G6"),
            ref=ref("swap 1"),
            custodian=w.custodian,
        ),
        emits="GoodsSwapped",
    )
    w.travel(60)
    w.report_price(STEEL_PRICE // 4)
    row(
        "PledgeRegistry",
        "liquidate (past the liquidation line)",
        w.pledges.liquidate(
            pledge_id,
            buyer=w.buyer.address,
            proceeds=120_000_00,
            ref=ref("auction 1"),
            lender=w.lender,
        ),
        emits="PledgeLiquidated",
    )
    return rows


def render(rows: list[Row]) -> str:
    lines = ["| contract | operation | gas |", "|---|---|---:|"]
    lines += [f"| {contract} | {operation} | {gas:,} |" for contract, operation, gas in rows]
    return "\n".join(lines)


def test_gas_table_in_the_docs_is_what_the_contracts_cost() -> None:
    rows = measure()
    assert all(gas > 21_000 for _, _, gas in rows)
    OUT.parent.mkdir(parents=True, exist_ok=True)
    OUT.write_text(
        json.dumps([{"contract": c, "operation": o, "gas": g} for c, o, g in rows], indent=2)
        + "\n",
        encoding="utf-8",
    )
    table = render(rows) + "\n"
    doc = DOC.read_text(encoding="utf-8")
    pattern = re.compile(re.escape(BEGIN) + r"\n(.*?)" + re.escape(END), re.S)
    match = pattern.search(doc)
    assert match, f"{DOC} has no {BEGIN} … {END} block"
    if os.environ.get("FOURFLOW_UPDATE_GAS_TABLE") == "1":
        DOC.write_text(doc[: match.start(1)] + table + doc[match.end(1) :], encoding="utf-8")
        return
    assert match.group(1) == table, (
        "docs/contracts.md's gas table is stale; run `make gas-table` and commit it\n" + table
    )
