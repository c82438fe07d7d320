"""The PledgeRegistry contract on eth-tester: whole lifecycles, every rejection, invariant 7.

Each test runs on an eth-tester snapshot of one deployed world per module
(``tests.collateral_world``: the four contracts, the parties, a steel and a dairy-cattle
price). In the manner of ``test_contract_anchor_registry``: custom errors are asserted by
name and argument values, every rejection is followed by a check that nothing observable
changed (pledge, valuation, allowance, receipt, observation, head block), events are
asserted through their decoded arguments, and expected values are computed here in
Python from the rules the contract's NatSpec and docs/contracts.md state (valuation,
LTV, lines, static release credit, release allowance, liquidation waterfall), never read
back from the contract.

Times: every transaction mines one block one second after the previous one, and a
refused call is evaluated in the pending block, ``now() + 1``; ``until(w, ts)`` makes
``ts`` the next block's timestamp.
"""

# ruff: noqa: F811 - the `world` fixture, imported from tests.collateral_world, is each test's parameter

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Any

from eth_account import Account
from eth_account.messages import encode_typed_data
from eth_account.signers.local import LocalAccount

from ledger.canonical import stream_id
from ledger.chain import ORACLE_ROLE, TxReceipt
from ledger.collateral import (
    AUDITOR_ROLE,
    CUSTODIAN_ROLE,
    LENDER_ROLE,
    PRICE_SCALE,
    Change,
    Collateral,
    Evidence,
    Fact,
    FactKind,
    Freeze,
    Ground,
    Liquidation,
    Mode,
    Observation,
    Pledge,
    PledgeStatus,
    ReceiptStatus,
    Terms,
    Valuation,
    ascii32,
    consent_typed_data,
)
from tests.collateral_world import (  # noqa: F401
    CATTLE,
    CNY,
    COPPER,
    COW_PRICE,
    DAY,
    STEEL,
    STEEL_PRICE,
    World,
    ceil_div,
    ear_tags,
    lower,
    ref,
    reverts,
    sha256_chain,
    steel_keys,
    world,
    world_base,
)

BPS = 10_000
SCALE = PRICE_SCALE
U256_MAX = 2**256 - 1
ZERO32 = b"\x00" * 32
ZERO_ADDRESS = "0x" + "00" * 20
MAX_AGE = 2 * DAY  # the default terms' maxDataAge
CURE = 3 * DAY  # the default terms' curePeriod
ACTIVE, RELEASED, LIQUIDATED = PledgeStatus.ACTIVE, PledgeStatus.RELEASED, PledgeStatus.LIQUIDATED
NO_FREEZE = Freeze(0)

ACCESS = "AccessControlUnauthorizedAccount"
NOT_LENDER = "PledgeRegistryNotLender"
NOT_CUSTODIAN = "PledgeRegistryNotCustodian"
NOT_ACTIVE = "PledgeRegistryNotActive"
FROZEN = "PledgeRegistryFrozen"
BEYOND = "PledgeRegistryReleaseBeyondAllowance"
NO_CONSENT = "PledgeRegistryNoConsent"
NOT_ANCHORED = "PledgeRegistryEvidenceNotAnchored"
INVALID_TERMS = "PledgeRegistryInvalidTerms"


# --- arithmetic, independently of the contract ------------------------------------------


def goods(quantity: int, price: int) -> int:
    return quantity * price // SCALE


def ltv(outstanding: int, value: int) -> int:
    if outstanding == 0:
        return 0
    if value == 0:
        return U256_MAX
    return ceil_div(outstanding * BPS, value)


def feed_price(reports: Sequence[int]) -> int:
    """PriceFeed's valuation price: min(spot, average of the last 30 reports)."""
    window = list(reports)[-30:]
    return min(window[-1], sum(window) // len(window))


def release_keeps_the_rules(
    *,
    released: int,
    booked: int,
    price: int,
    outstanding: int,
    margin: int,
    rate: int,
    min_quantity: int,
    min_value: int = 0,
    credit: int | None = None,
) -> bool:
    """The rules a release of ``released`` units must keep, stated one by one."""
    left = booked - released
    return (
        released > 0
        and left >= max(min_quantity, 1)
        and goods(left, price) >= min_value
        and outstanding * BPS <= rate * (goods(left, price) + margin)
        and (credit is None or ceil_div(released * price, SCALE) <= credit)
    )


def allowance(**rules: Any) -> int:
    """releasableOf from the closed form of docs/contracts.md, checked to be exact
    against ``release_keeps_the_rules``: the allowance keeps every rule, one unit more
    breaks one."""
    booked, price, rate = rules["booked"], rules["price"], rules["rate"]
    outstanding, margin = rules["outstanding"], rules["margin"]
    floor = max(rules["min_quantity"], 1)
    if outstanding:
        need = ceil_div(outstanding * BPS, rate)
        if need > margin:
            floor = max(floor, ceil_div((need - margin) * SCALE, price))
    if rules.get("min_value"):
        floor = max(floor, ceil_div(rules["min_value"] * SCALE, price))
    allowed = max(booked - floor, 0)
    if rules.get("credit") is not None:
        allowed = min(allowed, rules["credit"] * SCALE // price)
    if allowed:
        assert release_keeps_the_rules(released=allowed, **rules)
    assert not release_keeps_the_rules(released=allowed + 1, **rules)
    return allowed


def waterfall(*, outstanding: int, margin: int, proceeds: int, ground: Ground) -> Liquidation:
    """Margin pays first, then the proceeds; the rest is surplus or shortfall."""
    margin_applied = min(margin, outstanding)
    proceeds_applied = min(proceeds, outstanding - margin_applied)
    return Liquidation(
        ground=ground,
        proceeds=proceeds,
        margin_applied=margin_applied,
        proceeds_applied=proceeds_applied,
        surplus=proceeds - proceeds_applied + margin - margin_applied,
        shortfall=outstanding - margin_applied - proceeds_applied,
    )


# --- calls and checks -------------------------------------------------------------------


def looker(
    w: World, pid: int | None = None, rid: int | None = None, *extra: Callable[[], object]
) -> Callable[[], tuple[object, ...]]:
    """Everything a refused call must leave as it was."""

    def look() -> tuple[object, ...]:
        parts: list[object] = [
            w.chain.head,
            w.pledges.last_pledge_id(),
            w.pledges.nonce_of(w.borrower.address),
        ]
        if pid is not None:
            parts += [w.pledges.pledge_of(pid), w.pledges.valuation_of(pid)]
            parts.append(w.pledges.releasable_of(pid))
        if rid is not None:
            parts += [w.receipts.receipt_of(rid), w.receipts.collateral_of(rid)]
            parts.append(w.pledges.observation_of(rid))
        parts += [read() for read in extra]
        return tuple(parts)

    return look


class Unchanged:
    """Refusals checked one by one against one picture of the state taken before them."""

    def __init__(self, look: Callable[[], tuple[object, ...]]) -> None:
        self.look = look
        self.before = look()

    def refuses(self, call: Callable[[], object], error: str, *args: object) -> None:
        reverts(call, error, *args)
        assert self.look() == self.before


def event(client: Any, tx: TxReceipt, name: str) -> dict[str, Any]:
    """The one ``name`` event ``client``'s contract emitted in ``tx``."""
    (only,) = client.events(tx.tx_hash, name)
    return only


def none_of(client: Any, tx: TxReceipt, *names: str) -> None:
    for name in names:
        assert client.events(tx.tx_hash, name) == [], name


def until(w: World, timestamp: int) -> None:
    """The next block (and a refused call) is at ``timestamp``."""
    assert timestamp > w.now()
    w.travel(timestamp - w.now())


def steel_price_now(w: World) -> int:
    return int(w.prices.quote_of(asset_class=STEEL, currency=CNY).price)


def price_seen_at(w: World, asset_class: str = STEEL) -> int:
    return int(w.prices.quote_of(asset_class=asset_class, currency=CNY).observed_at)


# capital flows, each recorded by the pledge's lender unless told otherwise


def give(w: World, pid: int, amount: int, tag: str = "disbursement") -> TxReceipt:
    return w.pledges.disburse(pid, amount, payee=w.payee.address, ref=ref(tag), lender=w.lender)


def repay(w: World, pid: int, amount: int, tag: str = "repayment") -> TxReceipt:
    return w.pledges.repay(pid, amount, ref=ref(tag), lender=w.lender)


def top_up(w: World, pid: int, amount: int, tag: str = "margin") -> TxReceipt:
    return w.pledges.top_up_margin(pid, amount, ref=ref(tag), lender=w.lender)


def steel_pledge(
    w: World, *, disbursed: int = 0, lot: str = "L1", **changes: Any
) -> tuple[int, int, Terms]:
    """A 100,000 kg steel lot pledged to ``w.lender`` (default terms plus ``changes``)."""
    rid = w.issue_steel(lot=lot)
    terms = w.terms(rid, **changes)
    pid = w.open_pledge(terms)
    if disbursed:
        give(w, pid, disbursed)
    return rid, pid, terms


def full_release(w: World, pid: int) -> TxReceipt:
    w.pledges.instruct_full_release(pid, lender=w.lender)
    return w.pledges.execute_release(pid, ref=ref("handed back"), custodian=w.custodian)


def cite(w: World, *, count: int = 1, stream: str = "ranch.counts") -> tuple[list[Evidence], int]:
    """Anchors ``count`` leaves of events that happened now; returns them and that time."""
    at = w.now()
    return w.evidence(count, at=at, stream=stream), at


def report(
    w: World, fact: Fact, evidence: Evidence, *, oracle: LocalAccount | None = None
) -> TxReceipt:
    return w.pledges.report_fact(fact, evidence, oracle=oracle or w.oracle)


def fact_event(
    rid: int, pid: int, fact_kind: FactKind, quantity: int, at: int, ev: Evidence
) -> dict[str, Any]:
    return {
        "receiptId": rid,
        "pledgeId": pid,
        "kind": int(fact_kind),
        "quantity": quantity,
        "observedAt": at,
        "streamId": ev.stream_id,
        "seq": ev.seq,
        "leaf": ev.leaf,
    }


def raw_open(w: World, encoded_terms: tuple[Any, ...], nonce: int, deadline: int) -> TxReceipt:
    fn = w.pledges._contract.functions.open(encoded_terms, nonce, deadline, b"")
    return w.pledges._execute("open", fn, w.lender)


def has_consented(w: World, borrower: str, digest: bytes) -> bool:
    fn = w.pledges._contract.functions.hasConsented(borrower, digest)
    return bool(fn.call())


# === A. lifecycles ==========================================================================


def test_static_steel_pledge_from_consent_to_release(world: World) -> None:
    w = world
    keys = steel_keys(10)
    rid = w.issue_steel()
    assert w.receipts.collateral_of(rid) == Collateral(
        w.borrower.address, w.custodian.address, 100_000, ReceiptStatus.LIVE, 0, STEEL
    )
    reports = [STEEL_PRICE]
    price = feed_price(reports)
    assert price == steel_price_now(w) == 405 * SCALE

    # the lender sets the terms, the borrower signs its consent over them
    terms = w.terms(rid)
    deadline = w.now() + DAY
    assert w.pledges.nonce_of(w.borrower.address) == 0
    signature, nonce = w.pledges.sign_consent(terms, borrower=w.borrower, deadline=deadline)
    assert nonce == 0
    typed = consent_typed_data(
        terms, nonce=0, deadline=deadline, chain_id=w.chain.chain_id,
        pledge_registry=w.pledges.address,
    )  # fmt: skip
    signable = encode_typed_data(full_message=typed)
    assert Account.recover_message(signable, signature=signature) == w.borrower.address
    digest = w.pledges.consent_digest(terms, nonce=0, deadline=deadline)

    # open: the receipt is locked into pledge 1
    assert w.pledges.last_pledge_id() == 0
    pid, tx = w.pledges.open(
        terms, nonce=0, deadline=deadline, signature=signature, lender=w.lender
    )
    opened_at = w.now()
    assert pid == 1 == w.pledges.last_pledge_id()
    opened = event(w.pledges, tx, "PledgeOpened")
    assert (opened["pledgeId"], opened["receiptId"], opened["borrower"]) == (
        pid, rid, w.borrower.address,
    )  # fmt: skip
    assert Terms.decode(tuple(opened["terms"].values())) == terms
    assert opened["digest"] == digest
    assert event(w.receipts, tx, "ReceiptLocked") == {"receiptId": rid, "pledgeId": pid}
    assert w.pledges.nonce_of(w.borrower.address) == 1
    pledge = w.pledges.pledge_of(pid)
    assert pledge == Pledge(
        terms=terms, borrower=w.borrower.address, status=ACTIVE, frozen=NO_FREEZE,
        opened_at=opened_at, call_deadline=0, release_quantity=0, release_all=False,
        disbursed=0, repaid=0, outstanding=0, margin=0, release_credit=0, asset_class=STEEL,
    )  # fmt: skip
    assert w.receipts.collateral_of(rid).pledge_id == pid
    value = goods(100_000, price)
    assert value == 40_500_000  # 405,000 CNY in fen
    assert w.pledges.valuation_of(pid) == Valuation(
        100_000, price, value, value, 0, 0, price_seen_at(w)
    )
    assert w.pledges.releasable_of(pid) == 0  # static: nothing repaid, no release credit

    # disbursement to the designated payee, in two tranches
    tx = give(w, pid, 12_000_000, "tranche 1")
    assert event(w.pledges, tx, "Disbursed") == {
        "pledgeId": pid, "payee": w.payee.address, "amount": 12_000_000,
        "outstanding": 12_000_000, "ref": ref("tranche 1"),
    }  # fmt: skip
    tx = give(w, pid, 8_000_000, "tranche 2")
    assert event(w.pledges, tx, "Disbursed") == {
        "pledgeId": pid, "payee": w.payee.address, "amount": 8_000_000,
        "outstanding": 20_000_000, "ref": ref("tranche 2"),
    }  # fmt: skip
    outstanding = 20_000_000
    pledge = w.pledges.pledge_of(pid)
    assert (pledge.disbursed, pledge.outstanding, pledge.repaid) == (outstanding, outstanding, 0)
    assert w.pledges.valuation_of(pid).ltv_bps == ltv(outstanding, value) == 4_939

    # the price falls: 300 then 280 fen/kg; valuation takes min(spot, average)
    for fen in (300, 280):
        tx = w.report_price(fen * SCALE)
        reports.append(fen * SCALE)
    assert event(w.prices, tx, "PriceReported")["average"] == sum(reports) // 3 == 328_333_333
    price = feed_price(reports)
    assert price == 280 * SCALE == steel_price_now(w)
    value = goods(100_000, price)
    assert value == 28_000_000
    valuation = w.pledges.valuation_of(pid)
    assert (valuation.price, valuation.goods_value, valuation.ltv_bps) == (
        price, value, ltv(outstanding, value),
    )  # fmt: skip
    assert valuation.ltv_bps == 7_143  # over the 70% warning line
    assert w.pledges.pledge_of(pid).call_deadline == 0  # a price report walks no pledge

    # anyone checks the lines: a margin call with a cure deadline
    tx = w.pledges.check_lines(pid, caller=w.outsider)
    deadline_ = w.now() + CURE
    assert event(w.pledges, tx, "MarginCallOpened") == {
        "pledgeId": pid, "ltvBps": 7_143, "deadline": deadline_,
    }  # fmt: skip
    assert w.pledges.pledge_of(pid).call_deadline == deadline_
    tx = w.pledges.check_lines(pid, caller=w.outsider)  # already open: nothing new
    none_of(w.pledges, tx, "MarginCallOpened", "MarginCallCured")
    assert w.pledges.pledge_of(pid).call_deadline == deadline_

    # the borrower pays in cash margin: cured
    margin = 1_000_000
    tx = top_up(w, pid, margin, "margin 1")
    assert event(w.pledges, tx, "MarginToppedUp") == {
        "pledgeId": pid, "amount": margin, "margin": margin, "ref": ref("margin 1"),
    }  # fmt: skip
    value = goods(100_000, price) + margin
    assert ltv(outstanding, value) == 6_897 < terms.warning_ltv_bps
    assert event(w.pledges, tx, "MarginCallCured") == {"pledgeId": pid, "ltvBps": 6_897}
    pledge = w.pledges.pledge_of(pid)
    assert (pledge.call_deadline, pledge.margin) == (0, margin)

    # partial repayment: each fen repaid frees 10000/r fen of value for release
    tx = repay(w, pid, 5_000_000, "repayment 1")
    outstanding -= 5_000_000
    credit = 5_000_000 * BPS // terms.pledge_rate_bps
    assert credit == 8_333_333
    assert event(w.pledges, tx, "Repaid") == {
        "pledgeId": pid, "amount": 5_000_000, "outstanding": outstanding,
        "releaseCredit": credit, "ref": ref("repayment 1"),
    }  # fmt: skip
    none_of(w.pledges, tx, "MarginCallOpened", "MarginCallCured")
    pledge = w.pledges.pledge_of(pid)
    assert (pledge.outstanding, pledge.repaid, pledge.release_credit) == (
        outstanding, 5_000_000, credit,
    )  # fmt: skip

    # partial release of exactly the allowance: the LTV floor binds here
    rules = dict(
        booked=100_000, price=price, outstanding=outstanding, margin=margin,
        rate=terms.pledge_rate_bps, min_quantity=terms.min_quantity, credit=credit,
    )  # fmt: skip
    allowed = allowance(**rules)
    assert allowed == 14_285  # floor ⌈(25,000,000 − 1,000,000) × 10⁶ / 280,000,000⌉ = 85,715 kg
    assert w.pledges.releasable_of(pid) == allowed
    guard = Unchanged(looker(w, pid, rid))
    guard.refuses(
        lambda: w.pledges.instruct_release(pid, allowed + 1, lender=w.lender),
        BEYOND, pid, allowed, allowed + 1,
    )  # fmt: skip
    tx = w.pledges.instruct_release(pid, allowed, lender=w.lender)
    assert event(w.pledges, tx, "ReleaseInstructed") == {
        "pledgeId": pid, "quantity": allowed, "full": False,
    }  # fmt: skip
    assert w.pledges.pledge_of(pid).release_quantity == allowed
    tx = w.pledges.execute_release(
        pid, keys_out=keys[:2], ref=ref("release 1"), custodian=w.custodian
    )
    credit_used = ceil_div(allowed * price, SCALE)
    assert credit_used == 3_999_800
    assert event(w.pledges, tx, "GoodsReleased") == {
        "pledgeId": pid, "quantity": allowed, "creditUsed": credit_used, "ref": ref("release 1"),
    }  # fmt: skip
    booked = 100_000 - allowed
    assert event(w.receipts, tx, "ReceiptQuantityChanged") == {
        "receiptId": rid, "change": int(Change.RELEASED), "delta": allowed,
        "quantity": booked, "ref": ref("release 1"),
    }  # fmt: skip
    assert event(w.receipts, tx, "ReceiptKeysFreed") == {
        "receiptId": rid, "keys": keys[:2], "keyCount": 8,
    }  # fmt: skip
    credit -= credit_used
    receipt = w.receipts.receipt_of(rid)
    assert (receipt.quantity, receipt.key_count, receipt.pledge_id) == (booked, 8, pid)
    assert [w.receipts.backing_of(k) for k in keys] == [0, 0] + [rid] * 8
    pledge = w.pledges.pledge_of(pid)
    assert (pledge.release_quantity, pledge.release_credit) == (0, credit)
    assert w.pledges.valuation_of(pid).quantity == booked == 85_715
    assert w.pledges.releasable_of(pid) == allowance(**rules | {"booked": booked}) == 0

    # full repayment, then the full release: dual control again
    tx = repay(w, pid, outstanding, "repayment 2")
    credit += outstanding * BPS // terms.pledge_rate_bps
    assert event(w.pledges, tx, "Repaid") == {
        "pledgeId": pid, "amount": outstanding, "outstanding": 0,
        "releaseCredit": credit, "ref": ref("repayment 2"),
    }  # fmt: skip
    assert credit == 29_333_533
    assert w.pledges.releasable_of(pid) == booked - terms.min_quantity
    tx = w.pledges.instruct_full_release(pid, lender=w.lender)
    assert event(w.pledges, tx, "ReleaseInstructed") == {
        "pledgeId": pid, "quantity": 0, "full": True,
    }  # fmt: skip
    assert w.pledges.pledge_of(pid).release_all
    tx = w.pledges.execute_release(pid, ref=ref("handed back"), custodian=w.custodian)
    assert event(w.pledges, tx, "PledgeReleased") == {
        "pledgeId": pid, "marginReturned": margin, "ref": ref("handed back"),
    }  # fmt: skip
    assert event(w.receipts, tx, "ReceiptUnlocked") == {"receiptId": rid, "pledgeId": pid}
    pledge = w.pledges.pledge_of(pid)
    assert pledge == Pledge(
        terms=terms, borrower=w.borrower.address, status=RELEASED, frozen=NO_FREEZE,
        opened_at=opened_at, call_deadline=0, release_quantity=0, release_all=False,
        disbursed=20_000_000, repaid=20_000_000, outstanding=0, margin=0,
        release_credit=credit, asset_class=STEEL,
    )  # fmt: skip
    assert w.pledges.releasable_of(pid) == 0
    assert w.receipts.collateral_of(rid) == Collateral(
        w.borrower.address, w.custodian.address, booked, ReceiptStatus.LIVE, 0, STEEL
    )
    assert w.receipts.backing_of(keys[2]) == rid  # the goods stay at the custodian, free

    # unlocked: the owner may transfer it again
    w.receipts.transfer(rid, w.borrower2.address, owner=w.borrower)
    assert w.receipts.owner_of(rid) == w.borrower2.address


def test_dynamic_steel_pledge_adds_swaps_and_releases_within_the_lines(world: World) -> None:
    w = world
    keys = steel_keys(10)
    rid, pid, terms = steel_pledge(w, disbursed=15_000_000, mode=Mode.DYNAMIC)
    outstanding, price, rate = 15_000_000, STEEL_PRICE, terms.pledge_rate_bps
    digest_keys = list(keys)
    assert w.pledges.valuation_of(pid).ltv_bps == ltv(outstanding, goods(100_000, price)) == 3_704
    rules = dict(
        booked=100_000, price=price, outstanding=outstanding, margin=0, rate=rate,
        min_quantity=terms.min_quantity,
    )  # fmt: skip
    # dynamic: no repayment needed, only the floor ⌈25,000,000 × 10⁶ / 405,000,000⌉ = 61,729
    assert w.pledges.releasable_of(pid) == allowance(**rules) == 38_271

    # the custodian adds goods (any mode), with their coils' keys
    new = steel_keys(2, lot="L2")
    tx = w.pledges.add_goods(pid, 20_000, keys=new, ref=ref("inbound L2"), custodian=w.custodian)
    digest_keys += new
    assert event(w.pledges, tx, "GoodsAdded") == {
        "pledgeId": pid, "quantity": 20_000, "ref": ref("inbound L2"),
    }  # fmt: skip
    assert event(w.receipts, tx, "ReceiptQuantityChanged") == {
        "receiptId": rid, "change": int(Change.ADDED), "delta": 20_000, "quantity": 120_000,
        "ref": ref("inbound L2"),
    }  # fmt: skip
    assert event(w.receipts, tx, "ReceiptKeysBound") == {
        "receiptId": rid, "keys": new, "keyCount": 12,
        "identifiersDigest": sha256_chain(digest_keys),
    }  # fmt: skip
    assert [w.receipts.backing_of(k) for k in new] == [rid, rid]
    assert w.pledges.releasable_of(pid) == allowance(**rules | {"booked": 120_000}) == 58_271

    # a like-for-like swap: one coil out, another in
    swapped_in = steel_keys(1, lot="L3")
    tx = w.pledges.swap(
        pid, quantity_out=10_000, quantity_in=10_000, keys_out=keys[:1], keys_in=swapped_in,
        ref=ref("swap 1"), custodian=w.custodian,
    )  # fmt: skip
    digest_keys += swapped_in
    assert event(w.pledges, tx, "GoodsSwapped") == {
        "pledgeId": pid, "quantityOut": 10_000, "quantityIn": 10_000, "ref": ref("swap 1"),
    }  # fmt: skip
    assert w.receipts.events(tx.tx_hash, "ReceiptQuantityChanged") == [
        {"receiptId": rid, "change": int(Change.SWAPPED_OUT), "delta": 10_000,
         "quantity": 110_000, "ref": ref("swap 1")},
        {"receiptId": rid, "change": int(Change.SWAPPED_IN), "delta": 10_000,
         "quantity": 120_000, "ref": ref("swap 1")},
    ]  # fmt: skip
    assert event(w.receipts, tx, "ReceiptKeysFreed") == {
        "receiptId": rid, "keys": keys[:1], "keyCount": 11,
    }  # fmt: skip
    assert event(w.receipts, tx, "ReceiptKeysBound")["keys"] == swapped_in
    assert (w.receipts.backing_of(keys[0]), w.receipts.backing_of(swapped_in[0])) == (0, rid)
    receipt = w.receipts.receipt_of(rid)
    assert (receipt.quantity, receipt.key_count) == (120_000, 12)
    assert receipt.identifiers_digest == sha256_chain(digest_keys)

    # a release without any repayment, exactly the allowance
    allowed = allowance(**rules | {"booked": 120_000})
    guard = Unchanged(looker(w, pid, rid))
    guard.refuses(
        lambda: w.pledges.instruct_release(pid, allowed + 1, lender=w.lender),
        BEYOND, pid, allowed, allowed + 1,
    )  # fmt: skip
    w.pledges.instruct_release(pid, allowed, lender=w.lender)
    tx = w.pledges.execute_release(
        pid, keys_out=keys[1:6], ref=ref("release"), custodian=w.custodian
    )
    assert event(w.pledges, tx, "GoodsReleased") == {
        "pledgeId": pid, "quantity": allowed, "creditUsed": 0, "ref": ref("release"),
    }  # fmt: skip
    booked = 120_000 - allowed
    assert booked == 61_729
    pledge = w.pledges.pledge_of(pid)
    assert (pledge.repaid, pledge.outstanding, pledge.release_credit) == (0, outstanding, 0)
    assert w.receipts.receipt_of(rid).quantity == booked
    assert w.pledges.valuation_of(pid).ltv_bps == ltv(outstanding, goods(booked, price)) == 6_000
    assert w.pledges.releasable_of(pid) == 0

    # the price dips to 400: LTV 6075 > 60%, so a swap must bring in enough to restore it
    w.report_price(400 * SCALE)
    price = feed_price([STEEL_PRICE, 400 * SCALE])
    assert price == 400 * SCALE
    assert w.pledges.valuation_of(pid).ltv_bps == ltv(outstanding, goods(booked, price)) == 6_075
    swap_in = steel_keys(1, lot="L4")
    guard = Unchanged(looker(w, pid, rid))
    for quantity_in in (1_000, 1_770):  # 62,499 kg are worth 24,999,600 fen: LTV 6001
        after = booked - 1_000 + quantity_in
        guard.refuses(
            lambda q=quantity_in: w.pledges.swap(
                pid, quantity_out=1_000, quantity_in=q, keys_out=keys[6:7], keys_in=swap_in,
                custodian=w.custodian,
            ),
            "PledgeRegistryLtvExceeded", pid, ltv(outstanding, goods(after, price)), rate,
        )  # fmt: skip
    assert ltv(outstanding, goods(booked - 1_000 + 1_770, price)) == 6_001
    guard.refuses(  # a net take-out is a release, not a swap
        lambda: w.pledges.swap(pid, quantity_out=1_000, quantity_in=999, custodian=w.custodian),
        "PledgeRegistrySwapReducesGoods", pid, 1_000, 999,
    )  # fmt: skip
    guard.refuses(
        lambda: w.pledges.swap(pid, quantity_out=0, quantity_in=5, custodian=w.custodian),
        "PledgeRegistrySwapReducesGoods", pid, 0, 5,
    )  # fmt: skip
    tx = w.pledges.swap(  # 62,500 kg at 400 fen: exactly 60%
        pid, quantity_out=1_000, quantity_in=1_771, keys_out=keys[6:7], keys_in=swap_in,
        ref=ref("swap 2"), custodian=w.custodian,
    )  # fmt: skip
    assert event(w.pledges, tx, "GoodsSwapped") == {
        "pledgeId": pid, "quantityOut": 1_000, "quantityIn": 1_771, "ref": ref("swap 2"),
    }  # fmt: skip
    booked = 62_500
    assert w.receipts.receipt_of(rid).quantity == booked
    assert w.pledges.valuation_of(pid).ltv_bps == ltv(outstanding, goods(booked, price)) == 6_000

    # a stock count of 45,000 kg: under the minimum, frozen (and at the warning line)
    (ev,), at = cite(w, stream="warehouse.stock")
    tx = report(w, Fact(rid, FactKind.QUANTITY, 45_000, at), ev)
    assert event(w.pledges, tx, "PledgeFrozen") == {
        "pledgeId": pid, "reasons": Freeze.BELOW_MINIMUM, "frozen": Freeze.BELOW_MINIMUM,
        "ref": ev.leaf,
    }  # fmt: skip
    assert event(w.pledges, tx, "MarginCallOpened") == {
        "pledgeId": pid, "ltvBps": ltv(outstanding, goods(45_000, price)),
        "deadline": w.now() + CURE,
    }  # fmt: skip
    tx = w.pledges.clear_freeze(pid, lender=w.lender)
    assert event(w.pledges, tx, "PledgeUnfrozen") == {"pledgeId": pid, "cleared": 1}
    # cleared, yet no swap may leave fewer goods than the minimum in sight
    guard = Unchanged(looker(w, pid, rid))
    guard.refuses(
        lambda: w.pledges.swap(
            pid, quantity_out=1_000, quantity_in=1_000, keys_out=keys[7:8],
            keys_in=steel_keys(1, lot="L5"), custodian=w.custodian,
        ),
        "PledgeRegistryBelowMinimum", pid, 45_000, goods(45_000, price),
    )  # fmt: skip
    assert w.pledges.releasable_of(pid) == 0  # the observed count is under the floor


def test_dairy_herd_head_counts_freeze_and_the_lender_clears(world: World) -> None:
    w = world
    rid = w.issue_herd()  # 100 head, one ear tag each
    terms = w.terms(
        rid, principal=80_000_000, pledge_rate_bps=5_000, warning_ltv_bps=6_000,
        liquidation_ltv_bps=7_500, min_quantity=90, max_data_age=30 * DAY,
    )  # fmt: skip
    pid = w.open_pledge(terms)
    assert w.pledges.pledge_of(pid).asset_class == CATTLE
    assert w.receipts.receipt_of(rid).key_count == 100
    assert w.receipts.backing_of(ear_tags(100)[42]) == rid
    give(w, pid, 40_000_000)
    outstanding = 40_000_000
    assert goods(100, COW_PRICE) == 180_000_000
    assert w.pledges.valuation_of(pid).ltv_bps == ltv(outstanding, 180_000_000) == 2_223

    # a camera count of 98 head, citing its anchored event
    (ev,), t1 = cite(w)
    assert not w.pledges.is_evidence_used(ev.leaf)
    tx = report(w, Fact(rid, FactKind.QUANTITY, 98, t1), ev)
    assert event(w.pledges, tx, "FactReported") == fact_event(
        rid, pid, FactKind.QUANTITY, 98, t1, ev
    )
    none_of(w.pledges, tx, "PledgeFrozen")
    assert w.pledges.is_evidence_used(ev.leaf)
    assert w.pledges.observation_of(rid) == Observation(98, t1)
    valuation = w.pledges.valuation_of(pid)
    assert (valuation.quantity, valuation.goods_value) == (98, goods(98, COW_PRICE))
    assert w.receipts.receipt_of(rid).quantity == 100  # booked: the observation caps value only

    # three cows die: the next count shows it
    w.travel(3_600)
    (ev,), t2 = cite(w)
    tx = report(w, Fact(rid, FactKind.QUANTITY, 95, t2), ev)
    none_of(w.pledges, tx, "PledgeFrozen")
    assert w.pledges.valuation_of(pid).quantity == 95
    assert w.pledges.pledge_of(pid).frozen == NO_FREEZE

    # 88 head, under the minimum of 90: frozen, the evidence leaf as the reference
    w.travel(3_600)
    (ev,), t3 = cite(w)
    tx = report(w, Fact(rid, FactKind.QUANTITY, 88, t3), ev)
    assert event(w.pledges, tx, "FactReported") == fact_event(
        rid, pid, FactKind.QUANTITY, 88, t3, ev
    )
    assert event(w.pledges, tx, "PledgeFrozen") == {
        "pledgeId": pid, "reasons": Freeze.BELOW_MINIMUM, "frozen": Freeze.BELOW_MINIMUM,
        "ref": ev.leaf,
    }  # fmt: skip
    assert w.pledges.pledge_of(pid).frozen == Freeze.BELOW_MINIMUM
    valuation = w.pledges.valuation_of(pid)
    assert (valuation.quantity, valuation.goods_value, valuation.ltv_bps) == (
        88, goods(88, COW_PRICE), ltv(outstanding, goods(88, COW_PRICE)),
    )  # fmt: skip
    assert w.pledges.releasable_of(pid) == 0

    # no money goes out while frozen
    Unchanged(looker(w, pid, rid)).refuses(
        lambda: give(w, pid, 1_000_000), FROZEN, pid, Freeze.BELOW_MINIMUM
    )

    # the lender recounts and clears; money flows again
    tx = w.pledges.clear_freeze(pid, lender=w.lender)
    assert event(w.pledges, tx, "PledgeUnfrozen") == {"pledgeId": pid, "cleared": 1}
    tx = give(w, pid, 1_000_000)
    outstanding += 1_000_000
    assert event(w.pledges, tx, "Disbursed")["outstanding"] == outstanding

    # cows leave the ranch unannounced, and a tag is cut off
    evs, t4 = cite(w, count=2, stream="ranch.gates")
    tx = report(w, Fact(rid, FactKind.UNAUTHORIZED_MOVEMENT, 0, t4), evs[0])
    assert event(w.pledges, tx, "FactReported") == fact_event(
        rid, pid, FactKind.UNAUTHORIZED_MOVEMENT, 0, t4, evs[0]
    )
    assert event(w.pledges, tx, "PledgeFrozen") == {
        "pledgeId": pid, "reasons": 2, "frozen": 2, "ref": evs[0].leaf,
    }  # fmt: skip
    tx = report(w, Fact(rid, FactKind.TAG_REMOVAL, 0, t4), evs[1])
    assert event(w.pledges, tx, "PledgeFrozen") == {
        "pledgeId": pid, "reasons": 4, "frozen": 6, "ref": evs[1].leaf,
    }  # fmt: skip
    assert w.pledges.observation_of(rid) == Observation(88, t3)  # not a count
    # and the next count is still short: a third reason
    w.travel(600)
    (ev,), t5 = cite(w)
    tx = report(w, Fact(rid, FactKind.QUANTITY, 87, t5), ev)
    assert event(w.pledges, tx, "PledgeFrozen") == {
        "pledgeId": pid, "reasons": 1, "frozen": 7, "ref": ev.leaf,
    }  # fmt: skip
    assert w.pledges.pledge_of(pid).frozen == (
        Freeze.BELOW_MINIMUM | Freeze.UNAUTHORIZED_MOVEMENT | Freeze.TAG_REMOVED
    )
    Unchanged(looker(w, pid, rid)).refuses(lambda: give(w, pid, 1), FROZEN, pid, 7)

    # the herd is found and recounted at 101: the booked 100 still cap the value
    tx = w.pledges.clear_freeze(pid, lender=w.lender)
    assert event(w.pledges, tx, "PledgeUnfrozen") == {"pledgeId": pid, "cleared": 7}
    w.travel(600)
    (ev,), t6 = cite(w)
    tx = report(w, Fact(rid, FactKind.QUANTITY, 101, t6), ev)
    none_of(w.pledges, tx, "PledgeFrozen")
    assert w.pledges.observation_of(rid) == Observation(101, t6)
    valuation = w.pledges.valuation_of(pid)
    assert (valuation.quantity, valuation.goods_value) == (100, goods(100, COW_PRICE))
    assert w.pledges.pledge_of(pid).frozen == NO_FREEZE


def test_liquidation_past_the_liquidation_line(world: World) -> None:
    w = world
    rid, pid, terms = steel_pledge(w, disbursed=20_000_000)
    margin = 1_000_000
    top_up(w, pid, margin)
    outstanding = 20_000_000
    value = goods(100_000, STEEL_PRICE) + margin
    Unchanged(looker(w, pid, rid)).refuses(
        lambda: w.pledges.liquidate(pid, buyer=w.buyer.address, proceeds=1, ref=ZERO32,
                                    lender=w.lender),
        "PledgeRegistryLiquidationNotAllowed", pid, ltv(outstanding, value), 0, terms.maturity,
    )  # fmt: skip

    # the price crashes to 200 fen/kg: min(200, (405 + 200) / 2)
    w.report_price(200 * SCALE)
    price = feed_price([STEEL_PRICE, 200 * SCALE])
    value = goods(100_000, price) + margin
    assert ltv(outstanding, value) == 9_524 >= terms.liquidation_ltv_bps
    proceeds = 15_000_000
    tx = w.pledges.liquidate(
        pid, buyer=w.buyer.address, proceeds=proceeds, ref=ref("auction"), lender=w.lender
    )
    expected = waterfall(
        outstanding=outstanding, margin=margin, proceeds=proceeds, ground=Ground.LIQUIDATION_LINE
    )
    assert expected == Liquidation(
        Ground.LIQUIDATION_LINE, proceeds, margin, proceeds, 0, 4_000_000
    )
    liquidated = event(w.pledges, tx, "PledgeLiquidated")
    assert (liquidated["pledgeId"], liquidated["buyer"], liquidated["ref"]) == (
        pid, w.buyer.address, ref("auction"),
    )  # fmt: skip
    assert dict(liquidated["outcome"]) == {
        "ground": int(Ground.LIQUIDATION_LINE), "proceeds": proceeds, "marginApplied": margin,
        "proceedsApplied": proceeds, "surplus": 0, "shortfall": 4_000_000,
    }  # fmt: skip
    assert event(w.receipts, tx, "ReceiptUnlocked") == {"receiptId": rid, "pledgeId": pid}
    assert event(w.receipts, tx, "Transfer") == {
        "from": w.borrower.address, "to": w.buyer.address, "tokenId": rid,
    }  # fmt: skip
    pledge = w.pledges.pledge_of(pid)
    assert (pledge.status, pledge.outstanding, pledge.repaid, pledge.margin) == (
        LIQUIDATED, 4_000_000, 16_000_000, 0,
    )  # fmt: skip
    assert pledge.disbursed == 20_000_000  # the shortfall stays owed, unsecured
    assert w.receipts.collateral_of(rid) == Collateral(
        w.buyer.address, w.custodian.address, 100_000, ReceiptStatus.LIVE, 0, STEEL
    )
    w.receipts.transfer(rid, w.outsider.address, owner=w.buyer)  # the buyer's, free
    assert w.receipts.owner_of(rid) == w.outsider.address
    assert w.pledges.liquidation_of(liquidated) == expected


def test_liquidation_after_an_uncured_margin_call(world: World) -> None:
    w = world
    rid, pid, terms = steel_pledge(w, disbursed=20_000_000)
    outstanding, reports = 20_000_000, [STEEL_PRICE]
    look = looker(w, pid, rid)

    def liquidate(proceeds: int = 25_000_000) -> TxReceipt:
        return w.pledges.liquidate(
            pid, buyer=w.buyer.address, proceeds=proceeds, ref=ref("sale"), lender=w.lender
        )

    w.report_price(280 * SCALE)
    reports.append(280 * SCALE)
    value = goods(100_000, feed_price(reports))
    assert ltv(outstanding, value) == 7_143
    # at the warning line, but no call was ever opened
    Unchanged(look).refuses(
        liquidate, "PledgeRegistryLiquidationNotAllowed", pid, 7_143, 0, terms.maturity
    )
    tx = w.pledges.check_lines(pid, caller=w.lender)
    deadline = w.now() + CURE
    assert event(w.pledges, tx, "MarginCallOpened") == {
        "pledgeId": pid, "ltvBps": 7_143, "deadline": deadline,
    }  # fmt: skip
    margin = 300_000  # not enough to cure
    tx = top_up(w, pid, margin)
    none_of(w.pledges, tx, "MarginCallCured", "MarginCallOpened")
    value += margin
    assert ltv(outstanding, value) == 7_068
    assert w.pledges.pledge_of(pid).call_deadline == deadline

    until(w, deadline)  # the deadline itself is still inside the cure period
    Unchanged(look).refuses(
        liquidate, "PledgeRegistryLiquidationNotAllowed", pid, 7_068, deadline, terms.maturity
    )
    until(w, deadline + 1)
    w.report_price(405 * SCALE)  # past the deadline, the price recovers: no longer at warning
    reports.append(405 * SCALE)
    value = goods(100_000, feed_price(reports)) + margin
    assert feed_price(reports) == 363_333_333
    Unchanged(look).refuses(
        liquidate, "PledgeRegistryLiquidationNotAllowed", pid, ltv(outstanding, value),
        deadline, terms.maturity,
    )  # fmt: skip
    w.report_price(250 * SCALE)  # and falls again, the old call still open and overdue
    reports.append(250 * SCALE)
    value = goods(100_000, feed_price(reports)) + margin
    assert ltv(outstanding, value) == 7_906  # ≥ warning, < liquidation line
    assert w.pledges.pledge_of(pid).call_deadline == deadline
    tx = liquidate()
    expected = waterfall(
        outstanding=outstanding, margin=margin, proceeds=25_000_000,
        ground=Ground.UNCURED_MARGIN_CALL,
    )  # fmt: skip
    assert expected == Liquidation(
        Ground.UNCURED_MARGIN_CALL, 25_000_000, margin, 19_700_000, 5_300_000, 0
    )
    liquidated = event(w.pledges, tx, "PledgeLiquidated")
    assert dict(liquidated["outcome"]) == {
        "ground": int(Ground.UNCURED_MARGIN_CALL), "proceeds": 25_000_000,
        "marginApplied": margin, "proceedsApplied": 19_700_000, "surplus": 5_300_000,
        "shortfall": 0,
    }  # fmt: skip
    pledge = w.pledges.pledge_of(pid)
    assert (pledge.status, pledge.outstanding, pledge.repaid, pledge.margin) == (
        LIQUIDATED, 0, outstanding, 0,
    )  # fmt: skip
    assert pledge.call_deadline == 0
    assert w.receipts.owner_of(rid) == w.buyer.address
    assert w.receipts.collateral_of(rid).pledge_id == 0
    assert w.pledges.liquidation_of(liquidated) == expected


def test_liquidation_on_default_even_while_frozen(world: World) -> None:
    w = world
    rid, pid, terms = steel_pledge(w, disbursed=10_000_000, maturity=w.now() + 30 * DAY)
    margin = 12_000_000  # more than the loan: the lines are far away
    top_up(w, pid, margin)
    w.pledges.freeze_on_finding(pid, ref("finding 7"), auditor=w.auditor)
    outstanding = 10_000_000
    value = goods(100_000, STEEL_PRICE) + margin

    def liquidate() -> TxReceipt:
        return w.pledges.liquidate(
            pid, buyer=w.buyer.address, proceeds=5_000_000, ref=ref("sale"), lender=w.lender
        )

    until(w, terms.maturity)  # at maturity the loan is not yet in default
    Unchanged(looker(w, pid, rid)).refuses(
        liquidate, "PledgeRegistryLiquidationNotAllowed", pid, ltv(outstanding, value), 0,
        terms.maturity,
    )  # fmt: skip
    until(w, terms.maturity + 1)
    tx = liquidate()
    expected = waterfall(
        outstanding=outstanding, margin=margin, proceeds=5_000_000, ground=Ground.DEFAULT
    )
    assert expected == Liquidation(Ground.DEFAULT, 5_000_000, 10_000_000, 0, 7_000_000, 0)
    liquidated = event(w.pledges, tx, "PledgeLiquidated")
    assert dict(liquidated["outcome"]) == {
        "ground": int(Ground.DEFAULT), "proceeds": 5_000_000, "marginApplied": 10_000_000,
        "proceedsApplied": 0, "surplus": 7_000_000, "shortfall": 0,
    }  # fmt: skip
    pledge = w.pledges.pledge_of(pid)
    assert (pledge.status, pledge.outstanding, pledge.repaid, pledge.margin) == (
        LIQUIDATED, 0, 10_000_000, 0,
    )  # fmt: skip
    assert w.receipts.owner_of(rid) == w.buyer.address
    assert w.pledges.liquidation_of(liquidated) == expected


# === B. rejections ============================================================================


def test_only_a_lender_opens_and_only_for_itself(world: World) -> None:
    w = world
    rid = w.issue_steel()
    terms = w.terms(rid)
    deadline = w.now() + DAY
    signature, nonce = w.pledges.sign_consent(terms, borrower=w.borrower, deadline=deadline)
    guard = Unchanged(looker(w, None, rid))
    for account in (w.outsider, w.custodian, w.borrower, w.oracle, w.auditor):
        guard.refuses(
            lambda a=account: w.pledges.open(
                terms, nonce=nonce, deadline=deadline, signature=signature, lender=a
            ),
            ACCESS, lower(account), LENDER_ROLE,
        )  # fmt: skip
    guard.refuses(  # another lender cannot open the terms naming this one
        lambda: w.pledges.open(
            terms, nonce=nonce, deadline=deadline, signature=signature, lender=w.lender2
        ),
        NOT_LENDER, 0, lower(w.lender), lower(w.lender2),
    )  # fmt: skip
    pid, _ = w.pledges.open(
        terms, nonce=nonce, deadline=deadline, signature=signature, lender=w.lender
    )
    assert w.pledges.pledge_of(pid).terms.lender == w.lender.address


def test_lender_actions_refuse_everyone_but_the_pledges_lender(world: World) -> None:
    w = world
    rid, pid, _ = steel_pledge(w, disbursed=10_000_000)
    actions: list[Callable[[LocalAccount], object]] = [
        lambda a: w.pledges.disburse(pid, 1_000, payee=w.payee.address, ref=ZERO32, lender=a),
        lambda a: w.pledges.repay(pid, 1_000, ref=ZERO32, lender=a),
        lambda a: w.pledges.top_up_margin(pid, 1_000, ref=ZERO32, lender=a),
        lambda a: w.pledges.instruct_release(pid, 1, lender=a),
        lambda a: w.pledges.instruct_full_release(pid, lender=a),
        lambda a: w.pledges.clear_freeze(pid, lender=a),
        lambda a: w.pledges.liquidate(pid, buyer=w.buyer.address, proceeds=0, ref=ZERO32,
                                      lender=a),
    ]  # fmt: skip
    guard = Unchanged(looker(w, pid, rid))
    for account in (w.outsider, w.lender2, w.custodian, w.borrower, w.auditor):
        for action in actions:
            guard.refuses(
                lambda act=action, a=account: act(a),
                NOT_LENDER, pid, lower(w.lender), lower(account),
            )  # fmt: skip
    # a lender whose role was revoked no longer acts, even on its own pledges
    w.pledges.revoke(LENDER_ROLE, w.lender.address, admin=w.admin)
    guard = Unchanged(looker(w, pid, rid))
    for action in actions:
        guard.refuses(
            lambda act=action: act(w.lender), NOT_LENDER, pid, lower(w.lender), lower(w.lender)
        )


def test_custodian_actions_refuse_everyone_but_the_goods_custodian(world: World) -> None:
    w = world
    rid, pid, _ = steel_pledge(w, disbursed=10_000_000, mode=Mode.DYNAMIC)
    w.pledges.instruct_release(pid, 1_000, lender=w.lender)
    actions: list[Callable[[LocalAccount], object]] = [
        lambda a: w.pledges.add_goods(pid, 1_000, custodian=a),
        lambda a: w.pledges.swap(pid, quantity_out=1, quantity_in=1, custodian=a),
        lambda a: w.pledges.execute_release(pid, custodian=a),
    ]
    guard = Unchanged(looker(w, pid, rid))
    # the lender acting as custodian; custodian2 holds the role but not these goods
    for account in (w.lender, w.custodian2, w.outsider, w.borrower):
        for action in actions:
            guard.refuses(
                lambda act=action, a=account: act(a),
                NOT_CUSTODIAN, pid, lower(w.custodian), lower(account),
            )  # fmt: skip
    w.receipts.revoke(CUSTODIAN_ROLE, w.custodian.address, admin=w.admin)
    guard = Unchanged(looker(w, pid, rid))
    for action in actions:
        guard.refuses(
            lambda act=action: act(w.custodian),
            NOT_CUSTODIAN, pid, lower(w.custodian), lower(w.custodian),
        )  # fmt: skip


def test_oracle_auditor_and_lender_policy_roles(world: World) -> None:
    w = world
    rid, pid, _ = steel_pledge(w)
    (ev,), at = cite(w, stream="warehouse.stock")
    fact = Fact(rid, FactKind.QUANTITY, 99_000, at)
    guard = Unchanged(looker(w, pid, rid, lambda: w.pledges.is_evidence_used(ev.leaf)))
    for account in (w.outsider, w.lender, w.custodian, w.auditor):
        guard.refuses(
            lambda a=account: report(w, fact, ev, oracle=a), ACCESS, lower(account), ORACLE_ROLE
        )
    for account in (w.outsider, w.lender, w.oracle, w.custodian):
        guard.refuses(
            lambda a=account: w.pledges.freeze_on_finding(pid, ref("finding"), auditor=a),
            ACCESS, lower(account), AUDITOR_ROLE,
        )  # fmt: skip
    rates = looker(w, None, None, lambda: w.pledges.pledge_rate_of(w.lender.address, STEEL))
    guard = Unchanged(rates)
    for account in (w.outsider, w.custodian, w.borrower):
        guard.refuses(
            lambda a=account: w.pledges.set_pledge_rate(STEEL, 9_000, lender=a),
            ACCESS, lower(account), LENDER_ROLE,
        )  # fmt: skip
    guard.refuses(
        lambda: w.pledges.set_pledge_rate(STEEL, 10_001, lender=w.lender),
        "PledgeRegistryInvalidRate", 10_001,
    )  # fmt: skip
    assert w.pledges.pledge_rate_of(w.lender.address, STEEL) == 6_000
    # the oracle's report of the same fact goes through
    tx = report(w, fact, ev)
    assert event(w.pledges, tx, "FactReported") == fact_event(
        rid, pid, FactKind.QUANTITY, 99_000, at, ev
    )


def test_an_asset_class_the_lender_does_not_accept(world: World) -> None:
    w = world
    rid = w.issue_steel()
    tx = w.pledges.set_pledge_rate(STEEL, 0, lender=w.lender)
    assert event(w.pledges, tx, "PledgeRateSet") == {
        "lender": w.lender.address, "assetClass": ascii32(STEEL), "pledgeRateBps": 0,
    }  # fmt: skip
    wheat, _ = w.receipts.issue(
        owner=w.borrower.address, asset_class="grain.wheat", unit="kg", quantity=500_000,
        keys=[], location="urn:epc:id:sgln:6901234.00009.0", custodian=w.custodian,
    )  # fmt: skip
    for receipt_id, asset_class in ((rid, STEEL), (wheat, "grain.wheat")):
        terms = w.terms(receipt_id)
        deadline = w.now() + DAY
        signature, nonce = w.pledges.sign_consent(terms, borrower=w.borrower, deadline=deadline)
        Unchanged(looker(w, None, receipt_id)).refuses(
            lambda t=terms, s=signature, n=nonce, d=deadline: w.pledges.open(
                t, nonce=n, deadline=d, signature=s, lender=w.lender
            ),
            "PledgeRegistryAssetClassNotAccepted", lower(w.lender), ascii32(asset_class),
        )  # fmt: skip
    # the policy is per lender: lender2 still takes steel at 60%
    assert w.pledges.pledge_rate_of(w.lender2.address, STEEL) == 6_000
    pid = w.open_pledge(w.terms(rid, lender=w.lender2.address), lender=w.lender2)
    assert w.pledges.pledge_of(pid).terms.lender == w.lender2.address


def test_invalid_terms_are_refused_each_for_its_reason(world: World) -> None:
    w = world
    rid = w.issue_steel()
    rate_reason = "pledge rate must be 1..the lender's rate for the asset class"
    lines_reason = "lines must rise: pledge rate < warning < liquidation"
    cases: list[tuple[dict[str, Any], str]] = [
        ({"pledge_rate_bps": 0}, rate_reason),
        ({"pledge_rate_bps": 6_001}, rate_reason),  # over the lender's 6000 for steel
        ({"warning_ltv_bps": 6_000}, lines_reason),
        ({"warning_ltv_bps": 5_999}, lines_reason),
        ({"liquidation_ltv_bps": 7_000}, lines_reason),
        ({"warning_ltv_bps": 9_000, "liquidation_ltv_bps": 8_500}, lines_reason),
        ({"liquidation_ltv_bps": 10_001}, "liquidation line above 100%"),
        ({"principal": 0}, "zero principal"),
        ({"payee": ZERO_ADDRESS}, "zero payee"),
        ({"max_data_age": 0}, "zero maximum data age"),
        ({"maturity": w.now() + 1}, "maturity in the past"),  # = the block's time
        ({"maturity": w.now() - 1}, "maturity in the past"),
    ]
    guard = Unchanged(looker(w, None, rid))
    deadline = w.now() + DAY
    for changes, reason in cases:
        terms = w.terms(rid, **changes)
        signature, nonce = w.pledges.sign_consent(terms, borrower=w.borrower, deadline=deadline)
        guard.refuses(
            lambda t=terms, s=signature, n=nonce: w.pledges.open(
                t, nonce=n, deadline=deadline, signature=s, lender=w.lender
            ),
            INVALID_TERMS, reason,
        )  # fmt: skip
    # no currency: the Python encoder refuses it, so the raw call carries bytes32(0)
    no_currency = list(w.terms(rid).encode())
    no_currency[3] = ZERO32
    guard.refuses(
        lambda: raw_open(w, tuple(no_currency), 0, deadline), INVALID_TERMS, "no currency"
    )
    # the limits themselves are allowed: r = the lender's rate, l = 100%
    edge = w.terms(rid, pledge_rate_bps=6_000, warning_ltv_bps=9_999, liquidation_ltv_bps=10_000)
    pid = w.open_pledge(edge)
    assert w.pledges.pledge_of(pid).terms == edge


def test_consent_must_be_the_owners_for_these_terms_and_in_time(world: World) -> None:
    w = world
    rid = w.issue_steel()
    terms = w.terms(rid)
    deadline = w.now() + DAY
    digest = w.pledges.consent_digest(terms, nonce=0, deadline=deadline)
    guard = Unchanged(looker(w, None, rid))

    def open_with(signature: bytes, *, nonce: int = 0, at: int = deadline) -> object:
        return w.pledges.open(terms, nonce=nonce, deadline=at, signature=signature, lender=w.lender)

    def signed(by: LocalAccount, *, t: Terms = terms, nonce: int = 0, at: int = deadline) -> bytes:
        return w.pledges.sign_consent(t, borrower=by, nonce=nonce, deadline=at)[0]

    b = lower(w.borrower)
    guard.refuses(lambda: open_with(signed(w.borrower2)), NO_CONSENT, b, digest)  # not the owner
    guard.refuses(lambda: open_with(signed(w.lender)), NO_CONSENT, b, digest)
    other = replace(terms, principal=30_000_000)
    guard.refuses(lambda: open_with(signed(w.borrower, t=other)), NO_CONSENT, b, digest)
    guard.refuses(  # signed for another deadline
        lambda: open_with(signed(w.borrower, at=deadline + 1)), NO_CONSENT, b, digest
    )
    guard.refuses(  # signed for nonce 0, presented as nonce 1: another digest
        lambda: open_with(signed(w.borrower), nonce=1),
        NO_CONSENT, b, w.pledges.consent_digest(terms, nonce=1, deadline=deadline),
    )  # fmt: skip
    guard.refuses(lambda: open_with(b"\x00" * 65), NO_CONSENT, b, digest)  # not a signature
    guard.refuses(lambda: open_with(b""), NO_CONSENT, b, digest)  # nor a consent transaction
    guard.refuses(  # properly signed, but the nonce is not the next one
        lambda: open_with(signed(w.borrower, nonce=1), nonce=1),
        "InvalidAccountNonce", b, 0,
    )  # fmt: skip
    expired = w.now()  # the call runs in the next block, one second later
    guard.refuses(
        lambda: open_with(signed(w.borrower, at=expired), at=expired),
        "PledgeRegistryConsentExpired", expired, expired + 1,
    )  # fmt: skip
    # a deadline equal to the block's time is still in time
    pid, _ = w.pledges.open(
        terms, nonce=0, deadline=w.now() + 1, signature=signed(w.borrower, at=w.now() + 1),
        lender=w.lender,
    )  # fmt: skip
    assert w.pledges.pledge_of(pid).borrower == w.borrower.address


def test_a_signed_consent_opens_one_pledge_once(world: World) -> None:
    w = world
    rid = w.issue_steel()
    terms = w.terms(rid)
    deadline = w.now() + 10 * DAY
    signature, nonce = w.pledges.sign_consent(terms, borrower=w.borrower, deadline=deadline)
    pid, _ = w.pledges.open(
        terms, nonce=nonce, deadline=deadline, signature=signature, lender=w.lender
    )
    full_release(w, pid)
    assert w.receipts.collateral_of(rid).pledge_id == 0
    # the receipt is free again, the signature still valid: only the nonce stops the replay
    Unchanged(looker(w, pid, rid)).refuses(
        lambda: w.pledges.open(
            terms, nonce=nonce, deadline=deadline, signature=signature, lender=w.lender
        ),
        "InvalidAccountNonce", lower(w.borrower), 1,
    )  # fmt: skip
    assert w.pledges.last_pledge_id() == pid


def test_consent_by_transaction_opens_once(world: World) -> None:
    w = world
    rid = w.issue_steel()
    terms = w.terms(rid)
    deadline = w.now() + 10 * DAY
    digest = w.pledges.consent_digest(terms, nonce=0, deadline=deadline)

    def open_() -> tuple[int, TxReceipt]:
        return w.pledges.open(terms, nonce=0, deadline=deadline, lender=w.lender)

    # someone else's consent to the digest is not the owner's
    tx = w.pledges.consent(digest, borrower=w.borrower2)
    assert event(w.pledges, tx, "PledgeConsented") == {
        "borrower": w.borrower2.address, "digest": digest,
    }  # fmt: skip
    Unchanged(looker(w, None, rid)).refuses(open_, NO_CONSENT, lower(w.borrower), digest)

    tx = w.pledges.consent(digest, borrower=w.borrower)
    assert event(w.pledges, tx, "PledgeConsented") == {
        "borrower": w.borrower.address, "digest": digest,
    }  # fmt: skip
    assert has_consented(w, w.borrower.address, digest)
    pid, tx = open_()
    assert event(w.pledges, tx, "PledgeOpened")["digest"] == digest
    assert w.pledges.pledge_of(pid).borrower == w.borrower.address
    assert not has_consented(w, w.borrower.address, digest)  # used up
    assert w.pledges.nonce_of(w.borrower.address) == 1

    full_release(w, pid)
    Unchanged(looker(w, pid, rid)).refuses(open_, NO_CONSENT, lower(w.borrower), digest)


def test_a_pledged_receipt_is_locked_until_released_invariant_7(world: World) -> None:
    w = world
    keys = steel_keys(10)
    rid, pid, _ = steel_pledge(w)
    guard = Unchanged(looker(w, pid, rid))
    # pledged again, by the same lender or by another
    for lender in (w.lender, w.lender2):
        terms = w.terms(rid, lender=lender.address)
        deadline = w.now() + DAY
        signature, nonce = w.pledges.sign_consent(terms, borrower=w.borrower, deadline=deadline)
        guard.refuses(
            lambda t=terms, s=signature, n=nonce, d=deadline, a=lender: w.pledges.open(
                t, nonce=n, deadline=d, signature=s, lender=a
            ),
            "PledgeRegistryAlreadyPledged", rid, pid,
        )  # fmt: skip
    # transferred, or its goods changed outside the pledge registry
    pledged = ("ReceiptRegistryPledged", rid, pid)
    guard.refuses(lambda: w.receipts.transfer(rid, w.borrower2.address, owner=w.borrower), *pledged)
    guard.refuses(
        lambda: w.receipts.remove_goods(
            rid, 10_000, change=Change.DELIVERED, keys=keys[:1], custodian=w.custodian
        ),
        *pledged,
    )  # fmt: skip
    guard.refuses(lambda: w.receipts.add_goods(rid, 1, custodian=w.custodian), *pledged)
    guard.refuses(
        lambda: w.receipts.bind_keys(rid, steel_keys(1, lot="X"), custodian=w.custodian), *pledged
    )

    # released: it moves again and can be pledged again, to another lender
    full_release(w, pid)
    w.receipts.transfer(rid, w.borrower2.address, owner=w.borrower)
    assert w.receipts.owner_of(rid) == w.borrower2.address
    terms = w.terms(rid, lender=w.lender2.address)
    deadline = w.now() + DAY
    signature, nonce = w.pledges.sign_consent(terms, borrower=w.borrower2, deadline=deadline)
    pid2, tx = w.pledges.open(
        terms, nonce=nonce, deadline=deadline, signature=signature, lender=w.lender2
    )
    assert pid2 == pid + 1
    assert event(w.receipts, tx, "ReceiptLocked") == {"receiptId": rid, "pledgeId": pid2}
    pledge = w.pledges.pledge_of(pid2)
    assert (pledge.borrower, pledge.terms.lender, pledge.status) == (
        w.borrower2.address, w.lender2.address, ACTIVE,
    )  # fmt: skip
    assert w.pledges.pledge_of(pid).status == RELEASED
    Unchanged(looker(w, pid2, rid)).refuses(
        lambda: w.receipts.transfer(rid, w.borrower.address, owner=w.borrower2),
        "ReceiptRegistryPledged", rid, pid2,
    )  # fmt: skip


def test_open_on_a_retired_or_unknown_receipt(world: World) -> None:
    w = world
    rid = w.issue_steel()
    tx = w.receipts.remove_goods(
        rid, 100_000, change=Change.DELIVERED, keys=steel_keys(10), custodian=w.custodian
    )
    assert event(w.receipts, tx, "ReceiptRetired")["receiptId"] == rid
    assert w.receipts.collateral_of(rid).status == ReceiptStatus.RETIRED
    deadline = w.now() + DAY
    guard = Unchanged(looker(w, None, rid))
    for receipt_id, error in (
        (rid, ("PledgeRegistryReceiptNotLive", rid)),
        (999, ("ReceiptRegistryUnknownReceipt", 999)),
    ):
        terms = w.terms(receipt_id)
        signature, nonce = w.pledges.sign_consent(terms, borrower=w.borrower, deadline=deadline)
        guard.refuses(
            lambda t=terms, s=signature, n=nonce: w.pledges.open(
                t, nonce=n, deadline=deadline, signature=s, lender=w.lender
            ),
            *error,
        )  # fmt: skip
    # nor does a fact about such a receipt count
    (ev,), at = cite(w, stream="warehouse.stock")
    guard = Unchanged(looker(w, None, rid, lambda: w.pledges.is_evidence_used(ev.leaf)))
    guard.refuses(
        lambda: report(w, Fact(rid, FactKind.QUANTITY, 1, at), ev),
        "PledgeRegistryReceiptNotLive", rid,
    )  # fmt: skip
    guard.refuses(
        lambda: report(w, Fact(999, FactKind.QUANTITY, 1, at), ev),
        "ReceiptRegistryUnknownReceipt", 999,
    )  # fmt: skip


def test_disbursement_rules(world: World) -> None:
    w = world
    maturity = w.now() + 30 * DAY
    rid, pid, terms = steel_pledge(w, principal=30_000_000, maturity=maturity)
    value = goods(100_000, STEEL_PRICE)
    cap = terms.pledge_rate_bps * value // BPS  # the most LTV ≤ 60% allows: 24,300,000
    assert cap == 24_300_000
    guard = Unchanged(looker(w, pid, rid))
    guard.refuses(lambda: give(w, pid, 0), "PledgeRegistryZeroAmount")
    for other in (w.outsider, w.borrower, w.lender):  # use of proceeds: the payee only
        guard.refuses(
            lambda o=other: w.pledges.disburse(
                pid, 1_000, payee=o.address, ref=ZERO32, lender=w.lender
            ),
            "PledgeRegistryWrongPayee", pid, lower(w.payee), lower(other),
        )  # fmt: skip
    guard.refuses(
        lambda: give(w, pid, 30_000_001),
        "PledgeRegistryPrincipalExceeded", pid, 30_000_000, 30_000_001,
    )  # fmt: skip
    guard.refuses(
        lambda: give(w, pid, cap + 1),
        "PledgeRegistryLtvExceeded", pid, ltv(cap + 1, value), terms.pledge_rate_bps,
    )  # fmt: skip
    assert ltv(cap + 1, value) == 6_001
    tx = give(w, pid, cap)  # exactly at the pledge rate
    assert event(w.pledges, tx, "Disbursed")["outstanding"] == cap
    assert w.pledges.valuation_of(pid).ltv_bps == 6_000
    guard = Unchanged(looker(w, pid, rid))
    guard.refuses(
        lambda: give(w, pid, 1), "PledgeRegistryLtvExceeded", pid, ltv(cap + 1, value), 6_000
    )
    guard.refuses(  # the principal is checked before the line
        lambda: give(w, pid, 5_700_001),
        "PledgeRegistryPrincipalExceeded", pid, 5_700_000, 5_700_001,
    )  # fmt: skip

    repay(w, pid, 1_000_000)
    until(w, maturity)  # the maturity day itself still lends
    tx = give(w, pid, 1_000)
    assert event(w.pledges, tx, "Disbursed")["outstanding"] == cap - 1_000_000 + 1_000
    guard = Unchanged(looker(w, pid, rid))
    guard.refuses(lambda: give(w, pid, 1_000), "PledgeRegistryMatured", pid, maturity)


def test_no_disbursement_without_a_price(world: World) -> None:
    w = world
    rid, _ = w.receipts.issue(
        owner=w.borrower.address, asset_class=COPPER, unit="kg", quantity=20_000,
        keys=[], location="urn:epc:id:sgln:6901234.00003.0", custodian=w.custodian,
    )  # fmt: skip
    terms = w.terms(
        rid, pledge_rate_bps=7_000, warning_ltv_bps=8_000, liquidation_ltv_bps=9_000,
        min_quantity=10_000,
    )  # fmt: skip
    pid = w.open_pledge(terms)  # opening needs no price
    assert w.pledges.valuation_of(pid) == Valuation(20_000, 0, 0, 0, 0, 0, 0)
    assert w.pledges.releasable_of(pid) == 0
    no_price = ("PledgeRegistryNoPrice", ascii32(COPPER), ascii32(CNY))
    guard = Unchanged(looker(w, pid, rid))
    guard.refuses(lambda: give(w, pid, 1_000), *no_price)
    guard.refuses(lambda: w.pledges.check_lines(pid, caller=w.outsider), *no_price)
    guard.refuses(
        lambda: w.pledges.liquidate(pid, buyer=w.buyer.address, proceeds=0, ref=ZERO32,
                                    lender=w.lender),
        "PledgeRegistryLiquidationNotAllowed", pid, 0, 0, terms.maturity,
    )  # fmt: skip
    guard.refuses(lambda: w.pledges.instruct_release(pid, 1, lender=w.lender), BEYOND, pid, 0, 1)
    copper = 70 * SCALE  # 70 CNY a kg
    w.report_price(copper, asset_class=COPPER)
    tx = give(w, pid, 1_000)
    assert event(w.pledges, tx, "Disbursed")["outstanding"] == 1_000
    assert w.pledges.valuation_of(pid).goods_value == goods(20_000, copper)


def test_repayment_rules(world: World) -> None:
    w = world
    rid, pid, terms = steel_pledge(w, disbursed=10_000_000)
    guard = Unchanged(looker(w, pid, rid))
    guard.refuses(lambda: repay(w, pid, 0), "PledgeRegistryZeroAmount")
    guard.refuses(lambda: top_up(w, pid, 0), "PledgeRegistryZeroAmount")
    guard.refuses(
        lambda: repay(w, pid, 10_000_001),
        "PledgeRegistryRepaymentExceedsOutstanding", pid, 10_000_000, 10_000_001,
    )  # fmt: skip
    tx = repay(w, pid, 7)  # the credit rounds down: 7 × 10000 / 6000 = 11.67
    assert event(w.pledges, tx, "Repaid") == {
        "pledgeId": pid, "amount": 7, "outstanding": 9_999_993, "releaseCredit": 11,
        "ref": ref("repayment"),
    }  # fmt: skip
    tx = repay(w, pid, 9_999_993)
    credit = 11 + 9_999_993 * BPS // terms.pledge_rate_bps
    assert event(w.pledges, tx, "Repaid")["releaseCredit"] == credit == 16_666_666
    pledge = w.pledges.pledge_of(pid)
    assert (pledge.outstanding, pledge.repaid, pledge.release_credit) == (0, 10_000_000, credit)
    Unchanged(looker(w, pid, rid)).refuses(
        lambda: repay(w, pid, 1), "PledgeRegistryRepaymentExceedsOutstanding", pid, 0, 1
    )


def test_static_release_rules(world: World) -> None:
    w = world
    rid, pid, terms = steel_pledge(w, disbursed=20_000_000)
    guard = Unchanged(looker(w, pid, rid))
    # nothing repaid: no release credit, nothing may leave
    assert w.pledges.releasable_of(pid) == 0
    guard.refuses(lambda: w.pledges.instruct_release(pid, 1, lender=w.lender), BEYOND, pid, 0, 1)
    guard.refuses(
        lambda: w.pledges.execute_release(pid, custodian=w.custodian),
        "PledgeRegistryNoInstruction", pid,
    )  # fmt: skip
    guard.refuses(
        lambda: w.pledges.instruct_full_release(pid, lender=w.lender),
        "PledgeRegistryOutstanding", pid, 20_000_000,
    )  # fmt: skip
    guard.refuses(  # static pledges take no swaps
        lambda: w.pledges.swap(pid, quantity_out=1, quantity_in=1, custodian=w.custodian),
        "PledgeRegistryNotDynamic", pid,
    )  # fmt: skip

    # the worked example of docs/contracts.md: 50,000 CNY repaid frees 20,576 kg
    repay(w, pid, 5_000_000)
    credit = 5_000_000 * BPS // terms.pledge_rate_bps
    rules = dict(
        booked=100_000, price=STEEL_PRICE, outstanding=15_000_000, margin=0,
        rate=terms.pledge_rate_bps, min_quantity=terms.min_quantity, credit=credit,
    )  # fmt: skip
    allowed = allowance(**rules)
    assert allowed == 20_576 == w.pledges.releasable_of(pid)
    guard = Unchanged(looker(w, pid, rid))
    for quantity in (allowed + 1, 0, 100_000):
        guard.refuses(
            lambda q=quantity: w.pledges.instruct_release(pid, q, lender=w.lender),
            BEYOND, pid, allowed, quantity,
        )  # fmt: skip
    w.pledges.instruct_release(pid, allowed, lender=w.lender)

    # the price falls between instruction and execution: the custodian's check sees it
    w.report_price(300 * SCALE)
    price = feed_price([STEEL_PRICE, 300 * SCALE])
    now_allowed = allowance(**rules | {"price": price})
    assert now_allowed == 16_666 == w.pledges.releasable_of(pid)  # the LTV floor binds now
    guard = Unchanged(looker(w, pid, rid))
    guard.refuses(
        lambda: w.pledges.execute_release(pid, custodian=w.custodian),
        BEYOND, pid, now_allowed, allowed,
    )  # fmt: skip
    assert w.pledges.pledge_of(pid).release_quantity == allowed  # still pending
    tx = w.pledges.instruct_release(pid, now_allowed, lender=w.lender)  # replaces it
    assert event(w.pledges, tx, "ReleaseInstructed")["quantity"] == now_allowed
    tx = w.pledges.execute_release(pid, ref=ref("release"), custodian=w.custodian)
    used = ceil_div(now_allowed * price, SCALE)
    assert event(w.pledges, tx, "GoodsReleased") == {
        "pledgeId": pid, "quantity": now_allowed, "creditUsed": used, "ref": ref("release"),
    }  # fmt: skip
    assert w.pledges.pledge_of(pid).release_credit == credit - used
    assert w.receipts.receipt_of(rid).quantity == 100_000 - now_allowed


def test_full_release_is_checked_again_at_execution(world: World) -> None:
    w = world
    rid, pid, _ = steel_pledge(w)
    w.pledges.instruct_full_release(pid, lender=w.lender)  # nothing lent yet
    give(w, pid, 1_000_000)  # but then money goes out
    Unchanged(looker(w, pid, rid)).refuses(
        lambda: w.pledges.execute_release(pid, custodian=w.custodian),
        "PledgeRegistryOutstanding", pid, 1_000_000,
    )  # fmt: skip
    repay(w, pid, 1_000_000)
    tx = w.pledges.execute_release(pid, ref=ref("out"), custodian=w.custodian)
    assert event(w.pledges, tx, "PledgeReleased") == {
        "pledgeId": pid, "marginReturned": 0, "ref": ref("out"),
    }  # fmt: skip
    assert w.pledges.pledge_of(pid).status == RELEASED


def test_evidence_must_be_anchored_where_it_says(world: World) -> None:
    w = world
    rid, pid, _ = steel_pledge(w)
    evs, at = cite(w, count=5, stream="warehouse.stock")
    ev = evs[1]
    fact = Fact(rid, FactKind.QUANTITY, 99_000, at)
    sid = stream_id("warehouse.stock")
    assert ev.stream_id == sid and len(ev.siblings) == 3
    tampered = hashlib.sha256(b"another count").digest()
    forged = [
        (replace(ev, siblings=(ZERO32, *ev.siblings[1:])), ev.seq, ev.leaf),  # wrong sibling
        (replace(ev, siblings=ev.siblings[::-1]), ev.seq, ev.leaf),
        (replace(ev, siblings=ev.siblings[:-1]), ev.seq, ev.leaf),  # a step short
        (replace(ev, siblings=(*ev.siblings, ZERO32)), ev.seq, ev.leaf),  # a step too many
        (replace(ev, leaf_index=0), ev.seq, ev.leaf),  # wrong leaf index
        (replace(ev, leaf_index=5), ev.seq, ev.leaf),  # beyond the batch
        (replace(ev, seq=ev.seq + 1), ev.seq + 1, ev.leaf),  # no such batch yet
        (replace(ev, leaf=tampered), ev.seq, tampered),
        (replace(ev, leaf=evs[0].leaf), ev.seq, evs[0].leaf),  # a real leaf, not at index 1
    ]
    guard = Unchanged(looker(w, pid, rid, lambda: w.pledges.is_evidence_used(ev.leaf)))
    for citation, seq, leaf in forged:
        guard.refuses(lambda c=citation: report(w, fact, c), NOT_ANCHORED, sid, seq, leaf)
    other = stream_id("ranch.counts")
    guard.refuses(
        lambda: report(w, fact, replace(ev, stream_id=other)), NOT_ANCHORED, other, ev.seq, ev.leaf
    )
    # the true citation goes through
    tx = report(w, fact, ev)
    assert event(w.pledges, tx, "FactReported") == fact_event(
        rid, pid, FactKind.QUANTITY, 99_000, at, ev
    )
    assert w.pledges.observation_of(rid) == Observation(99_000, at)


def test_an_evidence_leaf_backs_one_fact_only(world: World) -> None:
    w = world
    rid, pid, _ = steel_pledge(w)
    free = w.issue_steel(lot="L2")
    evs, at = cite(w, count=2, stream="warehouse.stock")
    report(w, Fact(rid, FactKind.QUANTITY, 99_000, at), evs[0])
    assert w.pledges.is_evidence_used(evs[0].leaf)
    guard = Unchanged(looker(w, pid, rid, lambda: w.pledges.observation_of(free)))
    for fact in (
        Fact(rid, FactKind.QUANTITY, 99_000, at),  # the same fact again
        Fact(free, FactKind.QUANTITY, 99_000, at),  # about other goods
        Fact(rid, FactKind.TAG_REMOVAL, 0, at),  # or of another kind
    ):
        guard.refuses(
            lambda f=fact: report(w, f, evs[0]), "PledgeRegistryEvidenceReplayed", evs[0].leaf
        )
    guard.refuses(  # the replay check comes first, whatever the proof
        lambda: report(w, Fact(rid, FactKind.QUANTITY, 1, at), replace(evs[0], siblings=())),
        "PledgeRegistryEvidenceReplayed", evs[0].leaf,
    )  # fmt: skip
    # its neighbour in the batch is another leaf, free to back a fact (about an unpledged lot)
    tx = report(w, Fact(free, FactKind.QUANTITY, 100_000, at), evs[1])
    assert event(w.pledges, tx, "FactReported") == fact_event(
        free, 0, FactKind.QUANTITY, 100_000, at, evs[1]
    )
    none_of(w.pledges, tx, "PledgeFrozen")


def test_fact_times_must_fit_the_batch_the_clock_and_the_last_observation(world: World) -> None:
    w = world
    rid, pid, _ = steel_pledge(w)
    evs, at = cite(w, count=3, stream="warehouse.stock")
    first, last = at * 1_000, at * 1_000 + 999
    guard = Unchanged(looker(w, pid, rid, lambda: w.pledges.is_evidence_used(evs[0].leaf)))
    for observed_at in (at - 1, at + 1):  # the batch covers [at, at + 0.999] seconds
        guard.refuses(
            lambda t=observed_at: report(w, Fact(rid, FactKind.QUANTITY, 99_000, t), evs[0]),
            "PledgeRegistryEvidenceOutsideBatch", observed_at, first, last,
        )  # fmt: skip
    # evidence anchored for events "100 s from now": a fact cannot come from the future
    later = w.now() + 100
    (future,) = w.evidence(1, at=later, stream="warehouse.stock")
    guard = Unchanged(looker(w, pid, rid))
    guard.refuses(
        lambda: report(w, Fact(rid, FactKind.QUANTITY, 98_000, later), future),
        "PledgeRegistryFromFuture", later, w.now() + 1,
    )  # fmt: skip

    report(w, Fact(rid, FactKind.QUANTITY, 99_000, at), evs[0])
    guard = Unchanged(looker(w, pid, rid))
    guard.refuses(  # a count must be newer than the last one
        lambda: report(w, Fact(rid, FactKind.QUANTITY, 97_000, at), evs[1]),
        "PledgeRegistryObservationNotNewer", rid, at, at,
    )  # fmt: skip
    (older,) = w.evidence(1, at=at - 10, stream="warehouse.stock")
    Unchanged(looker(w, pid, rid)).refuses(
        lambda: report(w, Fact(rid, FactKind.QUANTITY, 97_000, at - 10), older),
        "PledgeRegistryObservationNotNewer", rid, at, at - 10,
    )  # fmt: skip
    # once its time has come, the "future" count is newer and counts
    until(w, later)
    report(w, Fact(rid, FactKind.QUANTITY, 98_000, later), future)
    assert w.pledges.observation_of(rid) == Observation(98_000, later)
    assert w.pledges.valuation_of(pid).quantity == 98_000


def test_goods_worth_less_than_the_minimum_value_freeze(world: World) -> None:
    w = world
    rid, pid, _ = steel_pledge(w, min_quantity=0, min_value=30_000_000)
    (ev,), at = cite(w, stream="warehouse.stock")
    assert goods(70_000, STEEL_PRICE) == 28_350_000 < 30_000_000
    tx = report(w, Fact(rid, FactKind.QUANTITY, 70_000, at), ev)
    assert event(w.pledges, tx, "PledgeFrozen") == {
        "pledgeId": pid, "reasons": Freeze.BELOW_MINIMUM, "frozen": Freeze.BELOW_MINIMUM,
        "ref": ev.leaf,
    }  # fmt: skip
    # a better count later does not lift the freeze: only the lender does
    (ev,), at = cite(w, stream="warehouse.stock")
    assert goods(75_000, STEEL_PRICE) >= 30_000_000
    tx = report(w, Fact(rid, FactKind.QUANTITY, 75_000, at), ev)
    none_of(w.pledges, tx, "PledgeFrozen", "PledgeUnfrozen")
    assert w.pledges.pledge_of(pid).frozen == Freeze.BELOW_MINIMUM


def test_every_freeze_reason_is_the_contracts_bit() -> None:
    """ledger.collateral.Freeze names each FROZEN_* constant of the contract, bit for bit."""
    from ledger.contracts import load_artifact

    constants = {
        item["name"].removeprefix("FROZEN_")
        for item in load_artifact("PledgeRegistry").abi
        if item.get("type") == "function" and item["name"].startswith("FROZEN_")
    }
    assert constants == {flag.name for flag in Freeze}


def test_freeze_bits_on_chain(world: World) -> None:
    functions = world.pledges._contract.functions
    for flag in Freeze:
        assert getattr(functions, f"FROZEN_{flag.name}")().call() == flag
    assert Freeze.COVENANT_BREACH == 64 and FactKind.COVENANT_BREACH == 3


def test_a_covenant_breach_freezes_the_pledge_until_the_lender_clears_it(world: World) -> None:
    w = world
    rid, pid, _ = steel_pledge(w, disbursed=10_000_000)
    breach = FactKind.COVENANT_BREACH
    evs, at = cite(w, count=3, stream="plant.alarms")  # e.g. a low_utilization alarm event
    fact = Fact(rid, breach, 0, at)

    # only the oracle reports it; nothing moves on a refusal
    guard = Unchanged(looker(w, pid, rid, lambda: w.pledges.is_evidence_used(evs[0].leaf)))
    for account in (w.outsider, w.lender, w.borrower, w.custodian, w.auditor):
        guard.refuses(
            lambda a=account: report(w, fact, evs[0], oracle=a), ACCESS, lower(account), ORACLE_ROLE
        )
    # a breach observed ahead of the chain's clock is refused like any other fact
    later = w.now() + 100
    (future,) = w.evidence(1, at=later, stream="plant.alarms")
    Unchanged(looker(w, pid, rid)).refuses(
        lambda: report(w, Fact(rid, breach, 0, later), future),
        "PledgeRegistryFromFuture", later, w.now() + 1,
    )  # fmt: skip

    tx = report(w, fact, evs[0])
    assert event(w.pledges, tx, "FactReported") == fact_event(rid, pid, breach, 0, at, evs[0])
    assert event(w.pledges, tx, "PledgeFrozen") == {
        "pledgeId": pid, "reasons": 64, "frozen": 64, "ref": evs[0].leaf,
    }  # fmt: skip
    assert w.pledges.pledge_of(pid).frozen == Freeze.COVENANT_BREACH
    assert w.pledges.observation_of(rid) == Observation(0, 0)  # not a count
    assert w.pledges.valuation_of(pid).quantity == 100_000  # the goods are all there
    assert w.pledges.releasable_of(pid) == 0
    Unchanged(looker(w, pid, rid)).refuses(
        lambda: give(w, pid, 1_000_000), FROZEN, pid, Freeze.COVENANT_BREACH
    )

    # its evidence backs that fact only, whatever the kind the second time
    guard = Unchanged(looker(w, pid, rid))
    for again in (fact, Fact(rid, FactKind.QUANTITY, 99_000, at), Fact(rid, breach, 0, at)):
        guard.refuses(
            lambda f=again: report(w, f, evs[0]), "PledgeRegistryEvidenceReplayed", evs[0].leaf
        )
    # a second breach is recorded; the pledge is frozen for that reason already
    tx = report(w, fact, evs[1])
    assert event(w.pledges, tx, "FactReported") == fact_event(rid, pid, breach, 0, at, evs[1])
    none_of(w.pledges, tx, "PledgeFrozen")
    # with another reason on top, both bits stand
    tx = report(w, Fact(rid, FactKind.TAG_REMOVAL, 0, at), evs[2])
    assert event(w.pledges, tx, "PledgeFrozen") == {
        "pledgeId": pid, "reasons": 4, "frozen": 68, "ref": evs[2].leaf,
    }  # fmt: skip

    # neither the borrower nor the oracle nor the auditor lifts it: the lender does
    guard = Unchanged(looker(w, pid, rid))
    for account in (w.borrower, w.oracle, w.auditor, w.outsider):
        guard.refuses(
            lambda a=account: w.pledges.clear_freeze(pid, lender=a),
            NOT_LENDER, pid, lower(w.lender), lower(account),
        )  # fmt: skip
    tx = w.pledges.clear_freeze(pid, lender=w.lender)
    assert event(w.pledges, tx, "PledgeUnfrozen") == {
        "pledgeId": pid, "cleared": Freeze.COVENANT_BREACH | Freeze.TAG_REMOVED,
    }  # fmt: skip
    assert w.pledges.pledge_of(pid).frozen == NO_FREEZE
    tx = give(w, pid, 1_000_000)
    assert event(w.pledges, tx, "Disbursed")["outstanding"] == 11_000_000


def test_a_covenant_breach_about_unpledged_goods_is_recorded_and_freezes_nothing(
    world: World,
) -> None:
    w = world
    free = w.issue_steel(lot="L9")
    (ev,), at = cite(w, stream="plant.alarms")
    tx = report(w, Fact(free, FactKind.COVENANT_BREACH, 0, at), ev)
    assert event(w.pledges, tx, "FactReported") == fact_event(
        free, 0, FactKind.COVENANT_BREACH, 0, at, ev
    )
    none_of(w.pledges, tx, "PledgeFrozen")
    assert w.pledges.is_evidence_used(ev.leaf)


def test_a_frozen_pledge_takes_money_and_goods_in_but_lets_nothing_out(world: World) -> None:
    w = world
    rid, pid, _ = steel_pledge(w, disbursed=10_000_000, mode=Mode.DYNAMIC)
    w.pledges.instruct_release(pid, 10_000, lender=w.lender)  # pending when the freeze comes
    tx = w.pledges.freeze_on_finding(pid, ref("finding 1"), auditor=w.auditor)
    assert event(w.pledges, tx, "PledgeFrozen") == {
        "pledgeId": pid, "reasons": Freeze.AUDIT_FINDING, "frozen": Freeze.AUDIT_FINDING,
        "ref": ref("finding 1"),
    }  # fmt: skip
    tx = w.pledges.freeze_on_finding(pid, ref("finding 2"), auditor=w.auditor)
    none_of(w.pledges, tx, "PledgeFrozen")  # nothing new
    assert w.pledges.pledge_of(pid).frozen == Freeze.AUDIT_FINDING
    assert w.pledges.releasable_of(pid) == 0

    frozen = (FROZEN, pid, Freeze.AUDIT_FINDING)
    guard = Unchanged(looker(w, pid, rid))
    guard.refuses(lambda: give(w, pid, 1_000), *frozen)
    guard.refuses(lambda: w.pledges.instruct_release(pid, 1, lender=w.lender), *frozen)
    guard.refuses(lambda: w.pledges.instruct_full_release(pid, lender=w.lender), *frozen)
    guard.refuses(lambda: w.pledges.execute_release(pid, custodian=w.custodian), *frozen)
    guard.refuses(
        lambda: w.pledges.swap(pid, quantity_out=1, quantity_in=1, custodian=w.custodian), *frozen
    )
    guard.refuses(  # liquidation needs a ground, frozen or not
        lambda: w.pledges.liquidate(pid, buyer=w.buyer.address, proceeds=0, ref=ZERO32,
                                    lender=w.lender),
        "PledgeRegistryLiquidationNotAllowed", pid, ltv(10_000_000, goods(100_000, STEEL_PRICE)),
        0, w.pledges.pledge_of(pid).terms.maturity,
    )  # fmt: skip

    # money and goods still come in
    tx = repay(w, pid, 1_000_000)
    assert event(w.pledges, tx, "Repaid")["outstanding"] == 9_000_000
    tx = top_up(w, pid, 500_000)
    assert event(w.pledges, tx, "MarginToppedUp")["margin"] == 500_000
    tx = w.pledges.add_goods(
        pid, 5_000, keys=steel_keys(1, lot="L9"), ref=ref("inbound"), custodian=w.custodian
    )
    assert event(w.pledges, tx, "GoodsAdded")["quantity"] == 5_000
    pledge = w.pledges.pledge_of(pid)
    assert (pledge.frozen, pledge.outstanding, pledge.margin) == (
        Freeze.AUDIT_FINDING, 9_000_000, 500_000,
    )  # fmt: skip
    assert w.receipts.receipt_of(rid).quantity == 105_000

    # cleared: the instruction given before the freeze executes
    tx = w.pledges.clear_freeze(pid, lender=w.lender)
    assert event(w.pledges, tx, "PledgeUnfrozen") == {"pledgeId": pid, "cleared": 32}
    Unchanged(looker(w, pid, rid)).refuses(
        lambda: w.pledges.clear_freeze(pid, lender=w.lender), "PledgeRegistryNotFrozen", pid
    )
    tx = w.pledges.execute_release(pid, keys_out=steel_keys(1), custodian=w.custodian)
    assert event(w.pledges, tx, "GoodsReleased")["quantity"] == 10_000
    assert w.receipts.receipt_of(rid).quantity == 95_000


def test_flag_stale_observation(world: World) -> None:
    w = world
    rid, pid, _ = steel_pledge(w)
    opened_at = w.pledges.pledge_of(pid).opened_at
    guard = Unchanged(looker(w, pid, rid))
    t = w.now() + 1
    guard.refuses(
        lambda: w.pledges.flag_stale(pid, caller=w.outsider),
        "PledgeRegistryNotStale", pid, t - opened_at, t - price_seen_at(w), MAX_AGE,
    )  # fmt: skip
    # a fresh price; then, at exactly maxDataAge since the opening, nothing is stale yet
    until(w, opened_at + MAX_AGE - 1)
    w.report_price(STEEL_PRICE)
    guard = Unchanged(looker(w, pid, rid))
    guard.refuses(
        lambda: w.pledges.flag_stale(pid, caller=w.outsider),
        "PledgeRegistryNotStale", pid, MAX_AGE, opened_at + MAX_AGE - price_seen_at(w), MAX_AGE,
    )  # fmt: skip
    until(w, opened_at + MAX_AGE + 1)
    tx = w.pledges.flag_stale(pid, caller=w.outsider)
    assert event(w.pledges, tx, "PledgeFrozen") == {
        "pledgeId": pid, "reasons": Freeze.STALE_DATA, "frozen": Freeze.STALE_DATA, "ref": ZERO32,
    }  # fmt: skip
    tx = w.pledges.flag_stale(pid, caller=w.outsider)  # already frozen for it: nothing new
    none_of(w.pledges, tx, "PledgeFrozen")
    assert w.pledges.pledge_of(pid).frozen == Freeze.STALE_DATA
    Unchanged(looker(w, pid, rid)).refuses(lambda: give(w, pid, 1), FROZEN, pid, 8)


def test_flag_stale_price_then_both(world: World) -> None:
    w = world
    rid, pid, _ = steel_pledge(w, max_data_age=3 * DAY)
    price_at = price_seen_at(w)
    # a stock count a day in keeps the data fresh; the price ages
    w.travel(DAY)
    (ev,), at = cite(w, stream="warehouse.stock")
    report(w, Fact(rid, FactKind.QUANTITY, 100_000, at), ev)
    until(w, price_at + 3 * DAY + 1)
    assert w.now() + 1 - at <= 3 * DAY
    tx = w.pledges.flag_stale(pid, caller=w.borrower)
    assert event(w.pledges, tx, "PledgeFrozen") == {
        "pledgeId": pid, "reasons": Freeze.STALE_PRICE, "frozen": Freeze.STALE_PRICE,
        "ref": ZERO32,
    }  # fmt: skip
    w.pledges.clear_freeze(pid, lender=w.lender)
    until(w, at + 3 * DAY + 1)  # now the count is stale too
    tx = w.pledges.flag_stale(pid, caller=w.borrower)
    both = Freeze.STALE_DATA | Freeze.STALE_PRICE
    assert event(w.pledges, tx, "PledgeFrozen") == {
        "pledgeId": pid, "reasons": both, "frozen": both, "ref": ZERO32,
    }  # fmt: skip


def test_liquidation_refused_without_a_ground_or_from_anyone_but_the_lender(world: World) -> None:
    w = world
    rid, pid, terms = steel_pledge(w, disbursed=20_000_000)
    guard = Unchanged(looker(w, pid, rid))
    value = goods(100_000, STEEL_PRICE)
    guard.refuses(
        lambda: w.pledges.liquidate(pid, buyer=w.buyer.address, proceeds=30_000_000,
                                    ref=ZERO32, lender=w.lender),
        "PledgeRegistryLiquidationNotAllowed", pid, ltv(20_000_000, value), 0, terms.maturity,
    )  # fmt: skip
    # even on a ground (after maturity) only the lender, and only to a buyer
    until(w, terms.maturity + 1)
    guard = Unchanged(looker(w, pid, rid))
    for account in (w.lender2, w.outsider, w.custodian, w.borrower, w.buyer):
        guard.refuses(
            lambda a=account: w.pledges.liquidate(
                pid, buyer=w.buyer.address, proceeds=0, ref=ZERO32, lender=a
            ),
            NOT_LENDER, pid, lower(w.lender), lower(account),
        )  # fmt: skip
    guard.refuses(
        lambda: w.pledges.liquidate(pid, buyer=ZERO_ADDRESS, proceeds=0, ref=ZERO32,
                                    lender=w.lender),
        "PledgeRegistryZeroBuyer",
    )  # fmt: skip


def ended_pledge_calls(w: World, pid: int) -> list[Callable[[], object]]:
    return [
        lambda: give(w, pid, 1),
        lambda: repay(w, pid, 1),
        lambda: top_up(w, pid, 1),
        lambda: w.pledges.check_lines(pid, caller=w.outsider),
        lambda: w.pledges.flag_stale(pid, caller=w.outsider),
        lambda: w.pledges.freeze_on_finding(pid, ref("finding"), auditor=w.auditor),
        lambda: w.pledges.clear_freeze(pid, lender=w.lender),
        lambda: w.pledges.add_goods(pid, 1, custodian=w.custodian),
        lambda: w.pledges.swap(pid, quantity_out=1, quantity_in=1, custodian=w.custodian),
        lambda: w.pledges.instruct_release(pid, 1, lender=w.lender),
        lambda: w.pledges.instruct_full_release(pid, lender=w.lender),
        lambda: w.pledges.execute_release(pid, custodian=w.custodian),
        lambda: w.pledges.liquidate(pid, buyer=w.buyer.address, proceeds=0, ref=ZERO32,
                                    lender=w.lender),
    ]  # fmt: skip


def test_released_and_liquidated_pledges_refuse_every_action(world: World) -> None:
    w = world
    rid1, released, _ = steel_pledge(w, mode=Mode.DYNAMIC)
    full_release(w, released)
    rid2, liquidated, terms = steel_pledge(
        w, disbursed=1_000_000, lot="L2", maturity=w.now() + 10 * DAY
    )
    until(w, terms.maturity + 1)
    w.pledges.liquidate(
        liquidated, buyer=w.buyer.address, proceeds=2_000_000, ref=ZERO32, lender=w.lender
    )
    for pid, rid, status in ((released, rid1, RELEASED), (liquidated, rid2, LIQUIDATED)):
        assert w.pledges.pledge_of(pid).status == status
        assert w.pledges.releasable_of(pid) == 0
        guard = Unchanged(looker(w, pid, rid))
        for call in ended_pledge_calls(w, pid):
            guard.refuses(call, NOT_ACTIVE, pid, int(status))


def test_unknown_pledges_refuse_every_action(world: World) -> None:
    w = world
    rid, pid, _ = steel_pledge(w)
    guard = Unchanged(looker(w, pid, rid))
    for unknown in (0, pid + 1, 2**256 - 1):
        for call in ended_pledge_calls(w, unknown):
            guard.refuses(call, "PledgeRegistryUnknownPledge", unknown)


def test_unknown_pledge_views_revert_with_the_custom_error(world: World) -> None:
    w = world
    _, pid, _ = steel_pledge(w)
    for unknown in (0, pid + 1):
        for view in (w.pledges.pledge_of, w.pledges.valuation_of, w.pledges.releasable_of):
            reverts(lambda v=view, u=unknown: v(u), "PledgeRegistryUnknownPledge", unknown)


def test_freeze_and_clear_permissions(world: World) -> None:
    w = world
    rid, pid, _ = steel_pledge(w)
    guard = Unchanged(looker(w, pid, rid))
    guard.refuses(
        lambda: w.pledges.clear_freeze(pid, lender=w.lender), "PledgeRegistryNotFrozen", pid
    )
    tx = w.pledges.freeze_on_finding(pid, ref("finding"), auditor=w.auditor)
    assert event(w.pledges, tx, "PledgeFrozen")["frozen"] == Freeze.AUDIT_FINDING
    guard = Unchanged(looker(w, pid, rid))
    for account in (w.auditor, w.lender2, w.custodian, w.borrower):  # the auditor only stops
        guard.refuses(
            lambda a=account: w.pledges.clear_freeze(pid, lender=a),
            NOT_LENDER, pid, lower(w.lender), lower(account),
        )  # fmt: skip
    tx = w.pledges.clear_freeze(pid, lender=w.lender)
    assert event(w.pledges, tx, "PledgeUnfrozen") == {"pledgeId": pid, "cleared": 32}
    assert w.pledges.pledge_of(pid).frozen == NO_FREEZE
