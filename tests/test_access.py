"""Who may see which pledge when goods change hands: a pledge's whole life on the
contracts (tests/chain_story.py), then the steel re-pledged to another bank. Access
follows the chain: a released lender keeps its own loan but never sees the next one on
the same goods; the buyer of seized goods sees the goods, not the loan they were seized
under; a submitter reads its events, not the assets' histories."""

from __future__ import annotations

# ruff: noqa: F811 - the `world` fixture, imported from tests.collateral_world, is each test's parameter
from pathlib import Path

import pytest

from api.access import Access
from api.auth import Identity
from ledger.bundle import BundleBuilder
from ledger.errors import Hidden
from ledger.history import Histories
from ledger.indexer import ChainIndex, Indexer
from ledger.store import Store
from tests.chain_story import play_story
from tests.collateral_world import World, ref, world, world_base  # noqa: F401 - fixtures

COIL = "urn:epc:id:sgtin:6901234.000S1.3"  # one of the steel lot's coils (steel_keys)
COW = "urn:fourflow:eartag:CN:HX:000007"  # one of the herd's ear tags (ear_tags)


def test_access_follows_who_is_party_to_which_pledge(world: World, tmp_path: Path) -> None:
    story = play_story(world)
    second = world.open_pledge(
        world.terms(story.steel, lender=world.lender2.address), lender=world.lender2
    )
    world.pledges.disburse(
        second, 50_000_00, payee=world.payee.address, ref=ref("loan 2"), lender=world.lender2
    )
    assert world.deployment is not None
    store = Store.open(f"sqlite:///{tmp_path}/store.sqlite")
    Indexer(store, world.chain, world.deployment).catch_up()
    index = ChainIndex(store, world.deployment)
    histories = Histories(store, index, BundleBuilder(store, world.deployment), world.deployment)
    access = Access(store, index, histories)

    def who(name: str, *roles: str) -> Identity:
        return Identity(getattr(world, name).address, frozenset(roles))

    lender, lender2 = who("lender", "lender"), who("lender2", "lender")
    borrower, buyer, custodian = who("borrower"), who("buyer"), who("custodian", "custodian")
    auditor, outsider = who("auditor", "auditor"), who("outsider")

    assert access.pledge_ids(lender) == [story.steel_pledge, story.herd_pledge]
    assert access.pledge_ids(lender2) == [second]
    assert access.pledge_ids(borrower) == [story.steel_pledge, story.herd_pledge, second]
    assert access.pledge_ids(custodian) == [story.steel_pledge, story.herd_pledge, second]
    assert access.pledge_ids(buyer) == []  # owns the seized herd, not its loan
    assert access.pledge_ids(outsider) == []

    # the same coil: each lender sees its own loan on it, never the other's
    for caller, mine, other in ((lender, story.steel_pledge, second), (lender2, second, story.steel_pledge)):  # fmt: skip
        subject = access.asset(caller, COIL)
        assert subject.pledges == (mine,)
        page = histories.page(subject, limit=500)
        pledges_named = {e.summary.get("pledge_id") for e in page.entries} - {None}
        assert pledges_named == {mine}, pledges_named
        assert other not in {e.chain_log.args.get("pledgeId") for e in page.entries if e.chain_log}
    assert access.asset(auditor, COIL).pledges == (story.steel_pledge, second)

    # the buyer of the seized herd sees the cows' receipt records, not the loan
    seized = access.asset(buyer, COW)
    assert seized.pledges == ()
    kinds = {e.kind for e in histories.page(seized, limit=500).entries}
    assert "receipt.transferred" in kinds and "disbursement" not in kinds
    with pytest.raises(Hidden):
        access.pledge(buyer, story.herd_pledge)

    for stranger in (outsider, who("lender2", "lender")):
        with pytest.raises(Hidden):
            access.asset(stranger, COW)
    store.close()
