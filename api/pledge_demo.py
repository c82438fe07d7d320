"""The demo's second act: the steel coils just anchored become pledged collateral.

A bonded warehouse issues a receipt for the pallet it received, a bank lends against it
with the trader's EIP-712 consent and pays the mill directly, the oracle reports the
stock the warehouse counted at its RFID dock door and weighbridge (a signed, anchored
stock-level event), citing it, and the contract checks that citation against the
anchor registry. Then the price falls, a
margin call opens and is cured, the trader repays part, and the bank and the warehouse
release two coils: exactly what the rules allow. Every refusal shown is a real revert.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from ledger.chain import ORACLE_ROLE, SUBMITTER_ROLE, new_account
from ledger.collateral import (
    CUSTODIAN_ROLE,
    LENDER_ROLE,
    PRICE_SCALE,
    Contracts,
    Fact,
    FactKind,
    Mode,
    Terms,
    deploy_collateral,
    evidence_from_bundle,
    identifier_key,
)
from ledger.errors import ContractReverted, LedgerError
from ledger.models import EventBody, utc_text
from ledger.runtime import DevKeys, Runtime
from ledger.signing import sign_submission

COIL_KG = 24_600
STEEL = "steel.hrc"
DAY = 86_400
Say = Callable[..., None]


def _fen(amount: int) -> str:
    return f"{amount / 100:,.2f} CNY"


def _refused(action: Callable[[], Any]) -> str:
    try:
        action()
    except ContractReverted as exc:
        return exc.error
    raise LedgerError("demo: the contract accepted what it must refuse")


def run_pledge_scene(
    runtime: Runtime, keys: DevKeys, receiving: dict[str, Any], *, say: Say
) -> tuple[dict[str, Any], Contracts]:
    """Runs the scene on the runtime's chain; returns what happened (for --json) and the
    collateral contracts it deployed."""
    chain = runtime.chain
    contracts, deployment = deploy_collateral(
        runtime.registry, runtime.deployment, admin=keys.admin
    )
    warehouse, rival, bank, trader, mill = (new_account() for _ in range(5))
    for account in (warehouse, rival, bank, trader):
        chain.fund(account.address)
    admin, oracle = keys.admin, keys.oracle
    contracts.receipts.grant(CUSTODIAN_ROLE, warehouse.address, admin=admin)
    contracts.receipts.grant(CUSTODIAN_ROLE, rival.address, admin=admin)
    contracts.pledges.grant(LENDER_ROLE, bank.address, admin=admin)
    contracts.pledges.grant(ORACLE_ROLE, oracle.address, admin=admin)
    contracts.prices.grant(ORACLE_ROLE, oracle.address, admin=admin)
    say(
        f" 7. deployed ReceiptRegistry {deployment.receipt_registry}, PriceFeed "
        f"{deployment.price_feed}, PledgeRegistry {deployment.pledge_registry}"
    )

    event = receiving["envelope"]["event"]
    coils = [epc for epc in event["asset_ids"] if ":sgtin:" in epc]
    pallet = [epc for epc in event["asset_ids"] if ":sscc:" in epc]
    keys_of = {epc: identifier_key(epc) for epc in coils + pallet}
    booked = len(coils) * COIL_KG
    receipt_id, issued = contracts.receipts.issue(
        owner=trader.address, asset_class=STEEL, unit="kg", quantity=booked,
        keys=list(keys_of.values()), location=event["payload"]["bizLocation"]["id"],
        registration="ZD2026112000417", warehouse_receipt_code="WR-SH-2026-000417",
        custodian=warehouse,
    )  # fmt: skip
    say(
        f" 8. the warehouse issued receipt #{receipt_id} to the trader: {booked:,} kg of hot-rolled "
        f"coil, {len(keys_of)} RFID identifiers in the lien index ({issued.gas_used:,} gas)"
    )
    double = _refused(
        lambda: contracts.receipts.issue(
            owner=trader.address,
            asset_class=STEEL,
            unit="kg",
            quantity=COIL_KG,
            keys=[keys_of[coils[2]]],
            location="urn:epc:id:sgln:0614141.00999.0",
            custodian=rival,
        )
    )
    say(f"    another warehouse issuing a receipt on coil {coils[2]} → refused: {double}")

    now = int(chain.w3.eth.get_block("latest")["timestamp"])
    # price observations a few seconds apart, all in the past: on a real node several
    # blocks may share one second, and a report must be newer than the last
    quoted_at = iter(range(now - 10, now))
    contracts.prices.report(
        asset_class=STEEL, currency="CNY", price=405 * PRICE_SCALE, observed_at=next(quoted_at),
        oracle=oracle,
    )  # fmt: skip
    contracts.pledges.set_pledge_rate(STEEL, 6000, lender=bank)
    terms = Terms(
        receipt_id=receipt_id, lender=bank.address, payee=mill.address, currency="CNY",
        principal=450_000_00, pledge_rate_bps=6000, warning_ltv_bps=7000,
        liquidation_ltv_bps=8500, min_quantity=100_000, min_value=0, max_data_age=30 * DAY,
        cure_period=3 * DAY, maturity=now + 180 * DAY, mode=Mode.STATIC,
    )  # fmt: skip
    signature, nonce = contracts.pledges.sign_consent(terms, borrower=trader, deadline=now + DAY)
    pledge_id, opened = contracts.pledges.open(
        terms, nonce=nonce, deadline=now + DAY, signature=signature, lender=bank
    )
    paid = contracts.pledges.disburse(
        pledge_id, 450_000_00, payee=mill.address, ref=b"loan 1".ljust(32, b"\0"), lender=bank
    )
    ltv = contracts.pledges.valuation_of(pledge_id).ltv_bps
    say(
        f" 9. the bank opened pledge #{pledge_id} with the trader's EIP-712 consent (60% pledge rate, "
        f"warning 70%, liquidation 85%, static) and paid {_fen(450_000_00)} to the mill: "
        f"LTV {ltv / 100:.2f}% ({opened.gas_used:,} + {paid.gas_used:,} gas)"
    )
    wrong = _refused(
        lambda: contracts.pledges.disburse(
            pledge_id, 1_00, payee=trader.address, ref=b"\0" * 32, lender=bank
        )
    )
    say(f"    paying the trader instead of the designated payee → refused: {wrong}")

    # the warehouse's count: RFID at the dock door, the weighbridge for the kilograms
    runtime.registry.grant(SUBMITTER_ROLE, warehouse.address, admin=admin)
    counted_ms = int(datetime.fromisoformat(event["event_time"]).timestamp() * 1000) + 60_000
    count = EventBody(
        kind="warehouse.stock_level",
        schema_version=1,
        stream="bonded-warehouse.stock",
        event_id=f"urn:fourflow:stock:receipt-{receipt_id}:{counted_ms}",
        asset_ids=coils + pallet,
        event_time=utc_text(counted_ms),
        payload={
            "lot": f"receipt-{receipt_id}",
            "quantity": booked,
            "unit": "kg",
            "method": "rfid_dock+weighbridge",
            "confidence": 1.0,
            "present": coils,
        },
        submitter=warehouse.address,
    )
    runtime.intake.submit(
        sign_submission([count], private_key=warehouse.key, domain=runtime.intake.domain)
    )
    runtime.anchorer(oracle).run_once(force=True)
    bundle = runtime.bundles.bundle(count.event_id)
    evidence = evidence_from_bundle(bundle)
    fact = Fact(receipt_id, FactKind.QUANTITY, booked, counted_ms // 1000)
    reported = contracts.pledges.report_fact(fact, evidence, oracle=oracle)
    say(
        f"10. the warehouse counted the pallet (RFID dock door and weighbridge: {booked:,} kg) "
        f"as a signed, anchored event ({bundle.batch.stream}/{bundle.batch.seq}); the oracle "
        f"reported it citing that event, and the contract checked the Merkle proof against "
        f"the anchor registry ({reported.gas_used:,} gas)"
    )
    replay = _refused(lambda: contracts.pledges.report_fact(fact, evidence, oracle=oracle))
    say(f"    the same evidence again → refused: {replay}")

    for price in (330, 300):
        contracts.prices.report(
            asset_class=STEEL, currency="CNY", price=price * PRICE_SCALE,
            observed_at=next(quoted_at), oracle=oracle,
        )  # fmt: skip
    quote = contracts.prices.quote_of(asset_class=STEEL, currency="CNY")
    check = contracts.pledges.check_lines(pledge_id, caller=oracle)
    (call,) = contracts.pledges.events(check.tx_hash, "MarginCallOpened")
    say(
        f"11. steel fell to {quote.spot / PRICE_SCALE:.0f} fen/kg (average "
        f"{quote.average / PRICE_SCALE:.0f}, valued at the lower): LTV {call['ltvBps'] / 100:.2f}% "
        f"≥ 70% → margin call, cure by {datetime.fromtimestamp(call['deadline'], UTC):%Y-%m-%d %H:%M} UTC"
    )
    topped = contracts.pledges.top_up_margin(
        pledge_id, 60_000_00, ref=b"margin 1".ljust(32, b"\0"), lender=bank
    )
    (cured,) = contracts.pledges.events(topped.tx_hash, "MarginCallCured")
    say(f"    the trader paid {_fen(60_000_00)} margin → cured at LTV {cured['ltvBps'] / 100:.2f}%")

    contracts.pledges.repay(pledge_id, 150_000_00, ref=b"repay 1".ljust(32, b"\0"), lender=bank)
    allowed = contracts.pledges.releasable_of(pledge_id)
    beyond = _refused(
        lambda: contracts.pledges.instruct_release(pledge_id, allowed + 1, lender=bank)
    )
    two_coils = 2 * COIL_KG
    contracts.pledges.instruct_release(pledge_id, two_coils, lender=bank)
    released = contracts.pledges.execute_release(
        pledge_id, keys_out=[keys_of[coils[0]], keys_of[coils[1]]],
        ref=b"outbound 1".ljust(32, b"\0"), custodian=warehouse,
    )  # fmt: skip
    left = contracts.receipts.receipt_of(receipt_id).quantity
    say(
        f"12. the trader repaid {_fen(150_000_00)}: the rules allow releasing {allowed:,} kg "
        f"(asking {allowed + 1:,} → {beyond}); the bank instructed two coils, the warehouse "
        f"released {two_coils:,} kg, {left:,} kg stay pledged ({released.gas_used:,} gas)"
    )
    locked = _refused(lambda: contracts.receipts.transfer(receipt_id, bank.address, owner=trader))
    say(f"    the trader moving the pledged receipt → refused: {locked}")

    pledge = contracts.pledges.pledge_of(pledge_id)
    return {
        "deployment": deployment.__dict__,
        "receipt_id": receipt_id,
        "pledge_id": pledge_id,
        "outstanding": pledge.outstanding,
        "released_kg": two_coils,
        "remaining_kg": left,
        "refusals": {
            "double_issuance": double,
            "wrong_payee": wrong,
            "replayed_evidence": replay,
            "release_beyond_allowance": beyond,
            "transfer_while_pledged": locked,
        },
    }, contracts
