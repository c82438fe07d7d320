"""A pledge's life on the contracts, for the tests that read it back (indexer, history,
audit): every kind of log the receipt and pledge registries emit, in a realistic order.

``play_story(world)`` issues a steel lot and a herd, pledges both, disburses to the
payee, takes repayments and margin, reports a count that freezes one pledge, clears it,
releases goods, releases a pledge in full and liquidates another, and transfers and
retires a spare receipt. It returns the ids it made.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.collateral import Change, Fact, FactKind, Mode
from tests.collateral_world import DAY, REF, World, ear_tags, ref, steel_keys


@dataclass(frozen=True)
class Story:
    steel: int  # receipt
    herd: int  # receipt
    spare: int  # receipt: transferred, then retired
    steel_pledge: int  # static: repaid, partly released, then released in full
    herd_pledge: int  # frozen by a count, cleared, then liquidated at maturity


def play_story(world: World) -> Story:
    steel = world.issue_steel(lot="S1")
    herd = world.issue_herd(head=120, herd="HX")
    spare = world.issue_steel(quantity=5_000, keys=steel_keys(2, lot="SP"), lot="SP")
    world.receipts.transfer(spare, world.borrower2.address, owner=world.borrower)
    world.receipts.remove_goods(
        spare, 5_000, change=Change.DELIVERED, keys=steel_keys(2, lot="SP"), ref=REF,
        custodian=world.custodian,
    )  # fmt: skip

    steel_pledge = world.open_pledge(world.terms(steel, mode=Mode.STATIC))
    world.pledges.disburse(
        steel_pledge, 100_000_00, payee=world.payee.address, ref=ref("loan 1"), lender=world.lender
    )
    world.pledges.top_up_margin(steel_pledge, 5_000_00, ref=ref("margin"), lender=world.lender)
    world.pledges.repay(steel_pledge, 40_000_00, ref=ref("repay 1"), lender=world.lender)
    world.pledges.instruct_release(steel_pledge, 10_000, lender=world.lender)
    world.pledges.execute_release(
        steel_pledge, keys_out=steel_keys(10, lot="S1")[:1], ref=ref("out 1"),
        custodian=world.custodian,
    )  # fmt: skip
    world.pledges.repay(steel_pledge, 60_000_00, ref=ref("repay 2"), lender=world.lender)
    world.pledges.instruct_full_release(steel_pledge, lender=world.lender)
    world.pledges.execute_release(steel_pledge, ref=ref("out all"), custodian=world.custodian)

    herd_pledge = world.open_pledge(
        world.terms(
            herd,
            min_quantity=100,
            principal=1_000_000_00,
            pledge_rate_bps=5000,
            warning_ltv_bps=6500,
            liquidation_ltv_bps=8000,
            maturity=world.now() + 30 * DAY,
        )
    )
    world.pledges.disburse(
        herd_pledge, 500_000_00, payee=world.payee.address, ref=ref("herd loan"),
        lender=world.lender,
    )  # fmt: skip
    seen_at = world.now()
    (citation,) = world.evidence(1, at=seen_at)
    world.pledges.report_fact(
        Fact(receipt_id=herd, kind=FactKind.QUANTITY, quantity=90, observed_at=seen_at),
        citation,
        oracle=world.oracle,
    )
    world.pledges.clear_freeze(herd_pledge, lender=world.lender)
    world.pledges.add_goods(
        herd_pledge, 20, keys=ear_tags(140, herd="HX")[120:], ref=ref("calves"),
        custodian=world.custodian,
    )  # fmt: skip
    world.travel(31 * DAY)
    world.pledges.liquidate(
        herd_pledge, buyer=world.buyer.address, proceeds=450_000_00, ref=ref("auction"),
        lender=world.lender,
    )  # fmt: skip
    return Story(steel, herd, spare, steel_pledge, herd_pledge)
