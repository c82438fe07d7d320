"""The ReceiptRegistry and PriceFeed contracts on eth-tester, through ledger.collateral's wrappers.

Receipts: issuing (fields, ERC-721 ownership, events, the identifiers digest computed
independently with hashlib), the lien index across custodians (the Qingdao double-pledge
case), its lifetime (keys freed by removals and by retirement back nothing and may back a
new receipt), goods in and out (own custodian only, removal reasons, livestock), ERC-721
transfers and the lock a pledge puts on a receipt, the pledge registry's role, base URI and
interfaces. Prices: who may report, what a report must be, and the quote (min of spot and
the average of the last 30 reports) against a Python model, across the ring's wrap.

Every rejected call is asserted by its custom error's name and values, and everything it
could have changed is read back unchanged.
"""

# ruff: noqa: F811 - the `world` fixture, imported from tests.collateral_world, is each test's parameter

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.chain import ORACLE_ROLE, TxReceipt
from ledger.collateral import (
    CUSTODIAN_ROLE,
    PLEDGE_REGISTRY_ROLE,
    PRICE_SCALE,
    Change,
    Collateral,
    PledgeStatus,
    Quote,
    Receipt,
    ReceiptStatus,
    ascii32,
    identifier_key,
    identifiers_digest,
)
from ledger.errors import ContractReverted, InvalidInput
from tests.collateral_world import (  # noqa: F401
    CATTLE,
    CNY,
    COPPER,
    COW_PRICE,
    DAY,
    PARTIES,
    STEEL,
    STEEL_PRICE,
    World,
    ear_tags,
    lower,
    ref,
    reverts,
    sha256_chain,
    steel_keys,
    world,
    world_base,
)

ZERO32 = bytes(32)
ADMIN_ROLE = ZERO32
ZERO_ADDRESS = "0x" + "00" * 20
LOCATION = "urn:epc:id:sgln:6901234.00001.0"  # what World.issue_steel records
REGISTRATION = "ZD2030031700001"
WR_CODE = "WR-SH-2030-0001"
WINDOW = 30


# --- helpers ----------------------------------------------------------------------------


def balance_of(w: World, account: LocalAccount | str) -> int:
    address = account if isinstance(account, str) else account.address
    return int(w.receipts._contract.functions.balanceOf(address).call())


def block_time(w: World, receipt: TxReceipt) -> int:
    return int(w.chain.w3.eth.get_block(receipt.block_number)["timestamp"])


def receipt_state(w: World, keys: Sequence[bytes] = ()) -> dict[str, Any]:
    """Everything a rejected receipt call must leave untouched."""
    registry = w.receipts
    last = registry.last_receipt_id()
    ids = range(1, last + 1)
    return {
        "head": w.chain.head,
        "last": last,
        "receipts": [registry.receipt_of(i) for i in ids],
        "collateral": [registry.collateral_of(i) for i in ids],
        "backing": [registry.backing_of(key) for key in keys],
        "balances": [balance_of(w, getattr(w, name)) for name in PARTIES],
    }


def price_state(w: World, *series: tuple[str, str]) -> dict[str, Any]:
    return {
        "head": w.chain.head,
        "quotes": [w.prices.quote_of(asset_class=a, currency=c) for a, c in series],
    }


def issue(
    w: World,
    keys: Sequence[bytes],
    *,
    custodian: LocalAccount | None = None,
    owner: str | None = None,
    quantity: int = 1_000,
    asset_class: str = STEEL,
    unit: str = "kg",
) -> tuple[int, TxReceipt]:
    return w.receipts.issue(
        owner=owner or w.borrower.address,
        asset_class=asset_class,
        unit=unit,
        quantity=quantity,
        keys=keys,
        location=LOCATION,
        ref=ref("inbound"),
        custodian=custodian or w.custodian,
    )


def raw_issue(
    w: World, account: LocalAccount, request: tuple[Any, ...], keys: Sequence[bytes]
) -> TxReceipt:
    fn = w.receipts._contract.functions.issue(request, list(keys))
    return w.receipts._execute("issue", fn, account)


def raw(w: World, name: str, account: LocalAccount, *args: Any) -> TxReceipt:
    """Any ReceiptRegistry function, sent from ``account`` (for calls the wrapper lacks)."""
    fn = getattr(w.receipts._contract.functions, name)(*args)
    return w.receipts._execute(name, fn, account)


# --- issue ------------------------------------------------------------------------------


def test_issue_stores_the_receipt_and_mints_it_to_the_owner(world: World) -> None:
    keys = steel_keys(10)
    rid, tx = world.receipts.issue(
        owner=world.borrower.address,
        asset_class=STEEL,
        unit="kg",
        quantity=100_000,
        keys=keys,
        location=LOCATION,
        registration=REGISTRATION,
        warehouse_receipt_code=WR_CODE,
        ref=ref("inbound L1"),
        custodian=world.custodian,
    )
    assert rid == 1
    assert world.receipts.last_receipt_id() == 1
    digest = sha256_chain(keys)
    assert world.receipts.receipt_of(rid) == Receipt(
        custodian=world.custodian.address,
        quantity=100_000,
        status=ReceiptStatus.LIVE,
        issued_at=block_time(world, tx),
        key_count=10,
        pledge_id=0,
        asset_class=STEEL,
        unit="kg",
        identifiers_digest=digest,
        location=LOCATION,
        registration=REGISTRATION,
        warehouse_receipt_code=WR_CODE,
    )
    assert world.receipts.collateral_of(rid) == Collateral(
        owner=world.borrower.address,
        custodian=world.custodian.address,
        quantity=100_000,
        status=ReceiptStatus.LIVE,
        pledge_id=0,
        asset_class=STEEL,
    )
    # ERC-721: the borrower owns it, not the custodian that issued it
    assert world.receipts.owner_of(rid) == world.borrower.address
    assert balance_of(world, world.borrower) == 1
    assert balance_of(world, world.custodian) == 0
    contract = world.receipts._contract
    assert contract.functions.name().call() == "fourflow collateral receipt"
    assert contract.functions.symbol().call() == "FFR"
    # the lien index: every key backs receipt 1
    assert [world.receipts.backing_of(key) for key in keys] == [rid] * 10
    assert world.receipts.backing_of(identifier_key("urn:epc:id:sgtin:6901234.000L1.10")) == 0

    (issued,) = world.receipts.events(tx.tx_hash, "ReceiptIssued")
    assert {k: v for k, v in issued.items() if k != "issue"} == {
        "receiptId": rid,
        "owner": world.borrower.address,
        "custodian": world.custodian.address,
    }
    assert dict(issued["issue"]) == {
        "owner": world.borrower.address,
        "assetClass": ascii32(STEEL),
        "unit": ascii32("kg"),
        "quantity": 100_000,
        "location": LOCATION,
        "registration": REGISTRATION,
        "warehouseReceiptCode": WR_CODE,
        "ref": ref("inbound L1"),
    }
    (minted,) = world.receipts.events(tx.tx_hash, "Transfer")
    assert minted == {"from": ZERO_ADDRESS, "to": world.borrower.address, "tokenId": rid}


def test_issue_emits_the_keys_bound_with_their_digest(world: World) -> None:
    keys = steel_keys(10)
    rid, tx = issue(world, keys)
    expected = sha256_chain(keys)
    assert expected == identifiers_digest(keys)
    assert world.receipts.events(tx.tx_hash, "ReceiptKeysBound") == [
        {"receiptId": rid, "keys": keys, "keyCount": 10, "identifiersDigest": expected}
    ]


def test_the_identifiers_digest_chains_sha256_over_every_key_ever_bound(world: World) -> None:
    first, more = steel_keys(4), steel_keys(3, lot="L1b")
    rid, _ = issue(world, first)
    assert world.receipts.receipt_of(rid).identifiers_digest == sha256_chain(first)
    world.receipts.bind_keys(rid, more, custodian=world.custodian)
    assert world.receipts.receipt_of(rid).identifiers_digest == sha256_chain(first + more)
    assert sha256_chain(first + more) == identifiers_digest(more, start=identifiers_digest(first))
    assert world.receipts.receipt_of(rid).key_count == 7
    # freeing keys changes the live set, not the record of what was ever bound
    world.receipts.remove_goods(
        rid, 10, change=Change.SOLD, keys=first[:2], custodian=world.custodian
    )
    after = world.receipts.receipt_of(rid)
    assert (after.identifiers_digest, after.key_count) == (sha256_chain(first + more), 5)
    # order matters: the same keys bound in reverse give another digest
    lot2 = steel_keys(4, lot="L2")
    rid2, _ = issue(world, lot2[::-1])
    assert world.receipts.receipt_of(rid2).identifiers_digest == sha256_chain(lot2[::-1])
    assert sha256_chain(lot2[::-1]) != sha256_chain(lot2)
    # no keys at all: the digest stays 32 zero bytes
    rid3, _ = issue(world, [])
    assert world.receipts.receipt_of(rid3).identifiers_digest == ZERO32
    assert world.receipts.receipt_of(rid3).key_count == 0


def test_receipt_ids_count_up_from_one_and_are_never_reused(world: World) -> None:
    assert world.receipts.last_receipt_id() == 0
    assert world.issue_steel(lot="A") == 1
    assert world.issue_steel(lot="B", custodian=world.custodian2, owner=world.borrower2) == 2
    taken = steel_keys(1, lot="A")
    reverts(lambda: issue(world, taken), "ReceiptRegistryIdentifierAlreadyBacked", taken[0], 1)
    assert world.receipts.last_receipt_id() == 2  # a refused issue takes no id
    assert world.issue_steel(lot="C") == 3
    world.receipts.remove_goods(3, 100_000, change=Change.DELIVERED, custodian=world.custodian)
    assert world.issue_steel(lot="D") == 4  # retiring 3 does not hand its id out again
    assert world.receipts.last_receipt_id() == 4
    assert world.receipts.receipt_of(2).custodian == world.custodian2.address
    assert world.receipts.owner_of(2) == world.borrower2.address
    assert balance_of(world, world.borrower) == 2  # receipts 1 and 4
    assert balance_of(world, world.borrower2) == 1


# --- issue: rejections ------------------------------------------------------------------


def test_only_custodians_issue(world: World) -> None:
    keys = steel_keys(3)
    before = receipt_state(world, keys)
    for account in (world.outsider, world.admin, world.lender, world.borrower, world.oracle):
        reverts(
            lambda a=account: issue(world, keys, custodian=a),
            "AccessControlUnauthorizedAccount",
            lower(account),
            CUSTODIAN_ROLE,
        )
    assert receipt_state(world, keys) == before
    rid, _ = issue(world, keys, custodian=world.custodian2)  # a custodian's call goes through
    assert world.receipts.receipt_of(rid).custodian == world.custodian2.address


def test_issue_refuses_a_zero_owner(world: World) -> None:
    keys = steel_keys(3)
    before = receipt_state(world, keys)
    reverts(lambda: issue(world, keys, owner=ZERO_ADDRESS), "ReceiptRegistryZeroOwner")
    assert receipt_state(world, keys) == before


def test_issue_refuses_a_zero_quantity(world: World) -> None:
    keys = steel_keys(3)
    before = receipt_state(world, keys)
    reverts(lambda: issue(world, keys, quantity=0), "ReceiptRegistryZeroQuantity")
    assert receipt_state(world, keys) == before
    rid, _ = issue(world, keys, quantity=1)  # one unit is enough
    assert world.receipts.receipt_of(rid).quantity == 1


def test_issue_refuses_a_missing_asset_class_or_unit(world: World) -> None:
    # the wrapper cannot even express them
    for empty in ("", "x" * 33):
        with pytest.raises(InvalidInput):
            ascii32(empty)
    keys = steel_keys(2)
    owner = world.borrower.address

    def request(asset_class: bytes, unit: bytes) -> tuple[Any, ...]:
        return (owner, asset_class, unit, 5, LOCATION, "", "", ref("inbound"))

    before = receipt_state(world, keys)
    for asset_class, unit in (
        (ZERO32, ascii32("kg")),
        (ascii32(STEEL), ZERO32),
        (ZERO32, ZERO32),
    ):
        reverts(
            lambda a=asset_class, u=unit: raw_issue(world, world.custodian, request(a, u), keys),
            "ReceiptRegistryMissingAssetClass",
        )
    assert receipt_state(world, keys) == before
    raw_issue(world, world.custodian, request(ascii32(STEEL), ascii32("kg")), keys)
    assert world.receipts.receipt_of(1).asset_class == STEEL


def test_issue_refuses_a_zero_key(world: World) -> None:
    keys = steel_keys(4)
    before = receipt_state(world, keys)
    reverts(lambda: issue(world, [keys[0], keys[1], ZERO32, keys[3]]), "ReceiptRegistryZeroKey", 2)
    reverts(lambda: issue(world, [ZERO32]), "ReceiptRegistryZeroKey", 0)
    assert receipt_state(world, keys) == before  # keys 0 and 1 were not bound either
    rid, _ = issue(world, keys)
    reverts(
        lambda: world.receipts.bind_keys(
            rid, [steel_keys(1, lot="X")[0], ZERO32], custodian=world.custodian
        ),
        "ReceiptRegistryZeroKey",
        1,
    )
    reverts(
        lambda: world.receipts.add_goods(rid, 5, keys=[ZERO32], custodian=world.custodian),
        "ReceiptRegistryZeroKey",
        0,
    )
    assert world.receipts.receipt_of(rid).quantity == 1_000
    assert world.receipts.backing_of(steel_keys(1, lot="X")[0]) == 0


def test_at_most_256_keys_per_call(world: World) -> None:
    many = steel_keys(257, lot="BIG")
    before = receipt_state(world, many[:3])
    reverts(lambda: issue(world, many), "ReceiptRegistryTooManyKeys", 257, 256)
    assert receipt_state(world, many[:3]) == before
    rid, _ = issue(world, many[:256])  # 256 is allowed
    receipt = world.receipts.receipt_of(rid)
    assert receipt.key_count == 256
    assert receipt.identifiers_digest == sha256_chain(many[:256])
    assert world.receipts.backing_of(many[255]) == rid
    assert world.receipts.backing_of(many[256]) == 0
    more = steel_keys(257, lot="MORE")
    sample = [*many[:2], *many[254:], *more[:2], more[256]]
    before = receipt_state(world, sample)
    reverts(
        lambda: world.receipts.bind_keys(rid, more, custodian=world.custodian),
        "ReceiptRegistryTooManyKeys",
        257,
        256,
    )
    reverts(
        lambda: world.receipts.add_goods(rid, 1, keys=more, custodian=world.custodian),
        "ReceiptRegistryTooManyKeys",
        257,
        256,
    )
    reverts(  # freeing is bounded the same way
        lambda: world.receipts.remove_goods(
            rid, 1, change=Change.SOLD, keys=[*many[:256], many[0]], custodian=world.custodian
        ),
        "ReceiptRegistryTooManyKeys",
        257,
        256,
    )
    assert receipt_state(world, sample) == before


def test_a_key_backing_a_live_receipt_cannot_back_another_qingdao(world: World) -> None:
    """Warehouse A's coils cannot stand behind warehouse B's receipt (nor A's second one)."""
    keys = steel_keys(10)
    rid = world.issue_steel(keys=keys)
    fresh = steel_keys(1, lot="NEW")[0]
    before = receipt_state(world, [*keys, fresh])
    for custodian in (world.custodian, world.custodian2):
        reverts(
            lambda c=custodian: issue(world, [fresh, keys[3]], custodian=c),
            "ReceiptRegistryIdentifierAlreadyBacked",
            keys[3],
            rid,
        )
        reverts(  # the very same lot, re-issued elsewhere
            lambda c=custodian: issue(world, keys, custodian=c, owner=world.borrower2.address),
            "ReceiptRegistryIdentifierAlreadyBacked",
            keys[0],
            rid,
        )
    assert receipt_state(world, [*keys, fresh]) == before  # `fresh` was not bound either
    # nor can another live receipt take the key through bindKeys or addGoods
    other, _ = issue(world, steel_keys(2, lot="L2"), custodian=world.custodian2)
    before = receipt_state(world, [*keys, fresh])
    reverts(
        lambda: world.receipts.bind_keys(other, [fresh, keys[9]], custodian=world.custodian2),
        "ReceiptRegistryIdentifierAlreadyBacked",
        keys[9],
        rid,
    )
    reverts(
        lambda: world.receipts.add_goods(other, 500, keys=[keys[5]], custodian=world.custodian2),
        "ReceiptRegistryIdentifierAlreadyBacked",
        keys[5],
        rid,
    )
    assert receipt_state(world, [*keys, fresh]) == before
    assert world.receipts.receipt_of(other).quantity == 1_000


def test_the_same_key_twice_is_refused(world: World) -> None:
    a, b, c = steel_keys(3)
    before = receipt_state(world, [a, b, c])
    # the second `a` finds the receipt being issued (id 1) already behind it
    reverts(lambda: issue(world, [a, b, a]), "ReceiptRegistryIdentifierAlreadyBacked", a, 1)
    assert receipt_state(world, [a, b, c]) == before
    rid, _ = issue(world, [a, b])
    before = receipt_state(world, [a, b, c])
    reverts(  # a key the receipt already holds
        lambda: world.receipts.bind_keys(rid, [b], custodian=world.custodian),
        "ReceiptRegistryIdentifierAlreadyBacked",
        b,
        rid,
    )
    reverts(
        lambda: world.receipts.bind_keys(rid, [c, c], custodian=world.custodian),
        "ReceiptRegistryIdentifierAlreadyBacked",
        c,
        rid,
    )
    assert receipt_state(world, [a, b, c]) == before
    assert world.receipts.receipt_of(rid).key_count == 2


# --- the lien index over a receipt's life -------------------------------------------------


def test_a_retired_receipt_is_burned_and_its_keys_back_nothing(world: World) -> None:
    keys = steel_keys(10)
    rid = world.issue_steel(keys=keys)
    tx = world.receipts.remove_goods(
        rid, 100_000, change=Change.DELIVERED, ref=ref("delivery note 9"), custodian=world.custodian
    )
    receipt = world.receipts.receipt_of(rid)
    assert (receipt.status, receipt.quantity) == (ReceiptStatus.RETIRED, 0)
    assert world.receipts.collateral_of(rid).owner is None
    assert world.receipts.events(tx.tx_hash, "ReceiptQuantityChanged") == [
        {
            "receiptId": rid,
            "change": Change.DELIVERED,
            "delta": 100_000,
            "quantity": 0,
            "ref": ref("delivery note 9"),
        }
    ]
    assert world.receipts.events(tx.tx_hash, "ReceiptRetired") == [
        {"receiptId": rid, "change": Change.DELIVERED, "ref": ref("delivery note 9")}
    ]
    assert world.receipts.events(tx.tx_hash, "Transfer") == [
        {"from": world.borrower.address, "to": ZERO_ADDRESS, "tokenId": rid}
    ]
    assert balance_of(world, world.borrower) == 0
    with pytest.raises(ContractReverted):
        world.receipts.owner_of(rid)
    assert [world.receipts.backing_of(key) for key in keys] == [0] * 10

    # a retired receipt takes no more changes and cannot move
    before = receipt_state(world, keys)
    reverts(
        lambda: world.receipts.add_goods(rid, 5, custodian=world.custodian),
        "ReceiptRegistryNotLive",
        rid,
    )
    reverts(
        lambda: world.receipts.remove_goods(rid, 1, change=Change.LOST, custodian=world.custodian),
        "ReceiptRegistryNotLive",
        rid,
    )
    reverts(
        lambda: world.receipts.bind_keys(rid, steel_keys(1, lot="Z"), custodian=world.custodian),
        "ReceiptRegistryNotLive",
        rid,
    )
    reverts(
        lambda: world.receipts.transfer(rid, world.buyer.address, owner=world.borrower),
        "ERC721NonexistentToken",
        rid,
    )
    assert receipt_state(world, keys) == before

    # its keys may back a new receipt, at any custodian
    new, _ = issue(world, keys, custodian=world.custodian2, owner=world.borrower2.address)
    assert new == rid + 1
    assert [world.receipts.backing_of(key) for key in keys] == [new] * 10
    assert world.receipts.receipt_of(rid).status == ReceiptStatus.RETIRED


def test_keys_freed_at_retirement_may_back_a_new_receipt(world: World) -> None:
    keys = steel_keys(10)
    rid = world.issue_steel(keys=keys)
    world.receipts.remove_goods(
        rid, 100_000, change=Change.SOLD, keys=keys, custodian=world.custodian
    )
    receipt = world.receipts.receipt_of(rid)
    assert (receipt.status, receipt.quantity, receipt.key_count) == (ReceiptStatus.RETIRED, 0, 0)
    assert [world.receipts.backing_of(key) for key in keys] == [0] * 10
    new = world.issue_steel(keys=keys[::2], custodian=world.custodian2)
    assert [world.receipts.backing_of(key) for key in keys] == [new, 0] * 5


def test_keys_freed_by_a_removal_may_back_a_new_receipt_while_the_old_one_lives(
    world: World,
) -> None:
    keys = steel_keys(10)
    rid = world.issue_steel(keys=keys)
    world.receipts.remove_goods(
        rid, 20_000, change=Change.SOLD, keys=keys[:2], ref=ref("sale 1"), custodian=world.custodian
    )
    receipt = world.receipts.receipt_of(rid)
    assert (receipt.status, receipt.quantity, receipt.key_count) == (ReceiptStatus.LIVE, 80_000, 8)
    assert [world.receipts.backing_of(key) for key in keys] == [0, 0] + [rid] * 8
    # the two coils went to a buyer who stores them with custodian 2
    new, _ = issue(world, keys[:2], custodian=world.custodian2, owner=world.borrower2.address)
    assert [world.receipts.backing_of(key) for key in keys] == [new, new] + [rid] * 8
    # the coils still behind receipt 1 are still refused
    reverts(
        lambda: world.receipts.bind_keys(new, [keys[2]], custodian=world.custodian2),
        "ReceiptRegistryIdentifierAlreadyBacked",
        keys[2],
        rid,
    )
    # and receipt 1 can no longer free the keys it gave up
    reverts(
        lambda: world.receipts.remove_goods(
            rid, 1, change=Change.SOLD, keys=[keys[0]], custodian=world.custodian
        ),
        "ReceiptRegistryIdentifierNotBacking",
        keys[0],
        rid,
    )


def test_freeing_a_key_the_receipt_does_not_hold_is_refused(world: World) -> None:
    mine, theirs = steel_keys(3), steel_keys(3, lot="L2")
    unknown = identifier_key("urn:epc:id:sgtin:6901234.000L9.0")
    rid = world.issue_steel(keys=mine)
    other = world.issue_steel(keys=theirs, custodian=world.custodian2, lot="L2")
    everything = [*mine, *theirs, unknown]
    before = receipt_state(world, everything)
    for keys, bad in (
        ([theirs[0]], theirs[0]),  # another receipt's
        ([unknown], unknown),  # nobody's
        ([mine[0], theirs[1]], theirs[1]),  # one good, one bad: nothing is freed
        ([mine[1], mine[1]], mine[1]),  # the same key twice
    ):
        reverts(
            lambda k=keys: world.receipts.remove_goods(
                rid, 1, change=Change.DELIVERED, keys=k, custodian=world.custodian
            ),
            "ReceiptRegistryIdentifierNotBacking",
            bad,
            rid,
        )
    assert receipt_state(world, everything) == before
    assert world.receipts.backing_of(mine[0]) == rid
    assert world.receipts.backing_of(theirs[1]) == other


# --- goods in and out ---------------------------------------------------------------------


def test_only_the_receipts_own_custodian_changes_its_goods(world: World) -> None:
    keys = steel_keys(10)
    rid = world.issue_steel(keys=keys)
    extra = steel_keys(2, lot="EXTRA")
    before = receipt_state(world, [*keys, *extra])
    for account in (world.custodian2, world.borrower, world.admin, world.outsider):
        expected = ("ReceiptRegistryNotCustodian", rid, lower(world.custodian), lower(account))
        reverts(
            lambda a=account: world.receipts.add_goods(rid, 5, keys=extra, custodian=a), *expected
        )
        reverts(
            lambda a=account: world.receipts.remove_goods(
                rid, 5, change=Change.DELIVERED, keys=keys[:1], custodian=a
            ),
            *expected,
        )
        reverts(lambda a=account: world.receipts.bind_keys(rid, extra, custodian=a), *expected)
    assert receipt_state(world, [*keys, *extra]) == before


def test_a_custodian_whose_role_was_revoked_is_refused(world: World) -> None:
    keys = steel_keys(10)
    rid = world.issue_steel(keys=keys)
    world.receipts.revoke(CUSTODIAN_ROLE, world.custodian.address, admin=world.admin)
    extra = steel_keys(2, lot="EXTRA")
    before = receipt_state(world, [*keys, *extra])
    expected = ("ReceiptRegistryNotCustodian", rid, lower(world.custodian), lower(world.custodian))
    reverts(lambda: world.receipts.add_goods(rid, 5, custodian=world.custodian), *expected)
    reverts(
        lambda: world.receipts.remove_goods(
            rid, 5, change=Change.DELIVERED, custodian=world.custodian
        ),
        *expected,
    )
    reverts(lambda: world.receipts.bind_keys(rid, extra, custodian=world.custodian), *expected)
    reverts(
        lambda: issue(world, extra),
        "AccessControlUnauthorizedAccount",
        lower(world.custodian),
        CUSTODIAN_ROLE,
    )
    assert receipt_state(world, [*keys, *extra]) == before
    # a re-grant restores it
    world.receipts.grant(CUSTODIAN_ROLE, world.custodian.address, admin=world.admin)
    world.receipts.add_goods(rid, 5, custodian=world.custodian)
    assert world.receipts.receipt_of(rid).quantity == 100_005


def test_goods_added_and_removed_change_the_quantity(world: World) -> None:
    rid = world.issue_steel(keys=steel_keys(10))
    extra = steel_keys(2, lot="EXTRA")
    added = world.receipts.add_goods(
        rid, 5_000, keys=extra, ref=ref("inbound 2"), custodian=world.custodian
    )
    assert world.receipts.events(added.tx_hash, "ReceiptQuantityChanged") == [
        {
            "receiptId": rid,
            "change": Change.ADDED,
            "delta": 5_000,
            "quantity": 105_000,
            "ref": ref("inbound 2"),
        }
    ]
    receipt = world.receipts.receipt_of(rid)
    assert (receipt.quantity, receipt.key_count) == (105_000, 12)
    assert [world.receipts.backing_of(key) for key in extra] == [rid, rid]
    removed = world.receipts.remove_goods(
        rid, 30_000, change=Change.DELIVERED, ref=ref("delivery 1"), custodian=world.custodian
    )
    assert world.receipts.events(removed.tx_hash, "ReceiptQuantityChanged") == [
        {
            "receiptId": rid,
            "change": Change.DELIVERED,
            "delta": 30_000,
            "quantity": 75_000,
            "ref": ref("delivery 1"),
        }
    ]
    assert world.receipts.events(removed.tx_hash, "ReceiptRetired") == []
    receipt = world.receipts.receipt_of(rid)
    assert (receipt.quantity, receipt.key_count, receipt.status) == (75_000, 12, ReceiptStatus.LIVE)
    assert world.receipts.owner_of(rid) == world.borrower.address
    # keys alone, without goods
    world.receipts.bind_keys(rid, steel_keys(1, lot="TAG"), custodian=world.custodian)
    assert world.receipts.receipt_of(rid).quantity == 75_000
    assert world.receipts.receipt_of(rid).key_count == 13
    # zero quantities are refused both ways
    before = receipt_state(world, extra)
    reverts(
        lambda: world.receipts.add_goods(rid, 0, custodian=world.custodian),
        "ReceiptRegistryZeroQuantity",
    )
    reverts(
        lambda: world.receipts.remove_goods(
            rid, 0, change=Change.SOLD, keys=extra, custodian=world.custodian
        ),
        "ReceiptRegistryZeroQuantity",
    )
    assert receipt_state(world, extra) == before


def test_the_keys_freed_are_emitted(world: World) -> None:
    keys = steel_keys(10)
    rid = world.issue_steel(keys=keys)
    tx = world.receipts.remove_goods(
        rid, 100, change=Change.SOLD, keys=keys[2:5], custodian=world.custodian
    )
    assert world.receipts.events(tx.tx_hash, "ReceiptKeysFreed") == [
        {"receiptId": rid, "keys": keys[2:5], "keyCount": 7}
    ]


def test_removing_more_than_is_held_is_refused(world: World) -> None:
    keys = steel_keys(10)
    rid = world.issue_steel(keys=keys)
    before = receipt_state(world, keys)
    reverts(
        lambda: world.receipts.remove_goods(
            rid, 100_001, change=Change.DELIVERED, keys=keys, custodian=world.custodian
        ),
        "ReceiptRegistryQuantityExceeded",
        rid,
        100_000,
        100_001,
    )
    reverts(
        lambda: world.receipts.remove_goods(
            rid, 2**64 - 1, change=Change.LOST, custodian=world.custodian
        ),
        "ReceiptRegistryQuantityExceeded",
        rid,
        100_000,
        2**64 - 1,
    )
    assert receipt_state(world, keys) == before  # the keys were not freed either


@pytest.mark.parametrize(
    "change", [Change.ADDED, Change.SWAPPED_IN, Change.RELEASED], ids=lambda c: c.name.lower()
)
def test_remove_goods_refuses_changes_that_are_not_removals(world: World, change: Change) -> None:
    keys = steel_keys(10)
    rid = world.issue_steel(keys=keys)
    before = receipt_state(world, keys)
    reverts(
        lambda: world.receipts.remove_goods(
            rid, 10, change=change, keys=keys[:1], custodian=world.custodian
        ),
        "ReceiptRegistryInvalidChange",
        int(change),
    )
    assert receipt_state(world, keys) == before


def test_remove_goods_refuses_swapped_out_on_a_free_receipt(world: World) -> None:
    """docs/contracts.md: removeGoods takes `change` one of Delivered, Sold, Died, Culled,
    Lost. SwappedOut belongs to a dynamic pledge's swap (adjustPledged), where goods come in
    for those that leave; on a free receipt nothing is swapped in."""
    keys = steel_keys(10)
    rid = world.issue_steel(keys=keys)
    before = receipt_state(world, keys)
    reverts(
        lambda: world.receipts.remove_goods(
            rid, 10, change=Change.SWAPPED_OUT, custodian=world.custodian
        ),
        "ReceiptRegistryInvalidChange",
        int(Change.SWAPPED_OUT),
    )
    assert receipt_state(world, keys) == before


@pytest.mark.parametrize(
    "change",
    [Change.DELIVERED, Change.SOLD, Change.DIED, Change.CULLED, Change.LOST],
    ids=lambda c: c.name.lower(),
)
def test_every_removal_reason_is_accepted(world: World, change: Change) -> None:
    keys = steel_keys(10)
    rid = world.issue_steel(keys=keys)
    tx = world.receipts.remove_goods(
        rid, 1_000, change=change, keys=keys[:1], ref=ref(change.name), custodian=world.custodian
    )
    assert world.receipts.events(tx.tx_hash, "ReceiptQuantityChanged") == [
        {
            "receiptId": rid,
            "change": change,
            "delta": 1_000,
            "quantity": 99_000,
            "ref": ref(change.name),
        }
    ]
    assert world.receipts.receipt_of(rid).quantity == 99_000
    assert world.receipts.backing_of(keys[0]) == 0
    # and the same reason takes the rest, retiring the receipt with that reason
    tx = world.receipts.remove_goods(rid, 99_000, change=change, custodian=world.custodian)
    assert world.receipts.events(tx.tx_hash, "ReceiptRetired") == [
        {"receiptId": rid, "change": change, "ref": ZERO32}
    ]


def test_a_herd_loses_head_to_deaths_and_culls(world: World) -> None:
    tags = ear_tags(100)
    rid = world.issue_herd(head=100)
    receipt = world.receipts.receipt_of(rid)
    assert (receipt.asset_class, receipt.unit, receipt.quantity, receipt.key_count) == (
        CATTLE,
        "head",
        100,
        100,
    )
    died = world.receipts.remove_goods(
        rid,
        2,
        change=Change.DIED,
        keys=tags[:2],
        ref=ref("vet record 17"),
        custodian=world.custodian,
    )
    culled = world.receipts.remove_goods(
        rid, 3, change=Change.CULLED, keys=tags[2:5], ref=ref("cull 3"), custodian=world.custodian
    )
    assert world.receipts.events(died.tx_hash, "ReceiptQuantityChanged") == [
        {
            "receiptId": rid,
            "change": Change.DIED,
            "delta": 2,
            "quantity": 98,
            "ref": ref("vet record 17"),
        }
    ]
    assert world.receipts.events(culled.tx_hash, "ReceiptQuantityChanged") == [
        {
            "receiptId": rid,
            "change": Change.CULLED,
            "delta": 3,
            "quantity": 95,
            "ref": ref("cull 3"),
        }
    ]
    receipt = world.receipts.receipt_of(rid)
    assert (receipt.quantity, receipt.key_count, receipt.status) == (95, 95, ReceiptStatus.LIVE)
    assert [world.receipts.backing_of(tag) for tag in tags[:6]] == [0, 0, 0, 0, 0, rid]
    before = receipt_state(world, tags[:6])
    reverts(  # a dead cow's tag cannot leave twice
        lambda: world.receipts.remove_goods(
            rid, 1, change=Change.DIED, keys=[tags[0]], custodian=world.custodian
        ),
        "ReceiptRegistryIdentifierNotBacking",
        tags[0],
        rid,
    )
    assert receipt_state(world, tags[:6]) == before


def test_unknown_receipts_are_refused(world: World) -> None:
    world.issue_steel()
    before = receipt_state(world)
    for rid in (0, 2, 99):
        reverts(
            lambda r=rid: world.receipts.add_goods(r, 5, custodian=world.custodian),
            "ReceiptRegistryUnknownReceipt",
            rid,
        )
        reverts(
            lambda r=rid: world.receipts.remove_goods(
                r, 5, change=Change.SOLD, custodian=world.custodian
            ),
            "ReceiptRegistryUnknownReceipt",
            rid,
        )
        reverts(
            lambda r=rid: world.receipts.bind_keys(
                r, steel_keys(1, lot="Q"), custodian=world.custodian
            ),
            "ReceiptRegistryUnknownReceipt",
            rid,
        )
    assert receipt_state(world) == before


def test_views_of_unknown_and_retired_receipts_revert_with_decoded_errors(world: World) -> None:
    """ContractClient promises a revert's custom error by name and values, reads included."""
    rid = world.issue_steel()
    world.receipts.remove_goods(rid, 100_000, change=Change.SOLD, custodian=world.custodian)
    reverts(lambda: world.receipts.receipt_of(99), "ReceiptRegistryUnknownReceipt", 99)
    reverts(lambda: world.receipts.collateral_of(0), "ReceiptRegistryUnknownReceipt", 0)
    reverts(lambda: world.receipts.owner_of(99), "ERC721NonexistentToken", 99)
    reverts(lambda: world.receipts.owner_of(rid), "ERC721NonexistentToken", rid)
    reverts(lambda: world.receipts.token_uri(rid), "ERC721NonexistentToken", rid)


# --- transfers and the pledge lock ----------------------------------------------------------


def test_the_owner_transfers_a_free_receipt(world: World) -> None:
    keys = steel_keys(10)
    rid = world.issue_steel(keys=keys)
    stored = world.receipts.receipt_of(rid)
    tx = world.receipts.transfer(rid, world.borrower2.address, owner=world.borrower)
    assert world.receipts.events(tx.tx_hash, "Transfer") == [
        {"from": world.borrower.address, "to": world.borrower2.address, "tokenId": rid}
    ]
    assert world.receipts.owner_of(rid) == world.borrower2.address
    assert (balance_of(world, world.borrower), balance_of(world, world.borrower2)) == (0, 1)
    # the goods, the custodian and the lien index do not move with the title
    assert world.receipts.receipt_of(rid) == stored
    assert [world.receipts.backing_of(key) for key in keys] == [rid] * 10
    # the former owner has no say any more
    reverts(
        lambda: world.receipts.transfer(rid, world.borrower.address, owner=world.borrower),
        "ERC721InsufficientApproval",
        lower(world.borrower),
        rid,
    )
    # an operator the owner approved may move it
    raw(world, "approve", world.borrower2, world.outsider.address, rid)
    raw(world, "transferFrom", world.outsider, world.borrower2.address, world.buyer.address, rid)
    assert world.receipts.owner_of(rid) == world.buyer.address


def test_nobody_else_moves_a_free_receipt(world: World) -> None:
    keys = steel_keys(10)
    rid = world.issue_steel(keys=keys)
    before = receipt_state(world, keys)
    for account in (world.outsider, world.custodian, world.custodian2, world.lender, world.admin):
        reverts(  # taking it from the owner
            lambda a=account: raw(world, "transferFrom", a, world.borrower.address, a.address, rid),
            "ERC721InsufficientApproval",
            lower(account),
            rid,
        )
        reverts(  # claiming to own it
            lambda a=account: world.receipts.transfer(rid, world.buyer.address, owner=a),
            "ERC721InsufficientApproval",
            lower(account),
            rid,
        )
        reverts(  # approving itself
            lambda a=account: raw(world, "approve", a, a.address, rid),
            "ERC721InvalidApprover",
            lower(account),
        )
    assert receipt_state(world, keys) == before


def test_a_pledged_receipt_is_locked(world: World) -> None:
    keys = steel_keys(10)
    rid = world.issue_steel(keys=keys)
    raw(world, "approve", world.borrower, world.outsider.address, rid)  # before the pledge
    pid, opened = world.open_pledge_tx(world.terms(rid))
    assert world.receipts.events(opened.tx_hash, "ReceiptLocked") == [
        {"receiptId": rid, "pledgeId": pid}
    ]
    assert world.receipts.receipt_of(rid).pledge_id == pid
    assert world.receipts.collateral_of(rid).pledge_id == pid
    extra = steel_keys(2, lot="EXTRA")
    before = receipt_state(world, [*keys, *extra])
    pledged = ("ReceiptRegistryPledged", rid, pid)
    reverts(
        lambda: world.receipts.transfer(rid, world.buyer.address, owner=world.borrower), *pledged
    )
    reverts(  # nor the approved operator
        lambda: raw(
            world,
            "transferFrom",
            world.outsider,
            world.borrower.address,
            world.outsider.address,
            rid,
        ),
        *pledged,
    )
    reverts(
        lambda: world.receipts.add_goods(rid, 5, keys=extra, custodian=world.custodian), *pledged
    )
    reverts(
        lambda: world.receipts.remove_goods(
            rid, 5, change=Change.DELIVERED, keys=keys[:1], custodian=world.custodian
        ),
        *pledged,
    )
    reverts(  # even down to zero: a pledged receipt is never burned around its pledge
        lambda: world.receipts.remove_goods(
            rid, 100_000, change=Change.LOST, custodian=world.custodian
        ),
        *pledged,
    )
    reverts(lambda: world.receipts.bind_keys(rid, extra, custodian=world.custodian), *pledged)
    reverts(  # another custodian is refused as a non-custodian first
        lambda: world.receipts.add_goods(rid, 5, custodian=world.custodian2),
        "ReceiptRegistryNotCustodian",
        rid,
        lower(world.custodian),
        lower(world.custodian2),
    )
    assert receipt_state(world, [*keys, *extra]) == before

    # a full release through the pledge registry lifts the lock
    world.pledges.instruct_full_release(pid, lender=world.lender)
    released = world.pledges.execute_release(pid, custodian=world.custodian)
    assert world.receipts.events(released.tx_hash, "ReceiptUnlocked") == [
        {"receiptId": rid, "pledgeId": pid}
    ]
    assert world.receipts.receipt_of(rid).pledge_id == 0
    world.receipts.transfer(rid, world.borrower2.address, owner=world.borrower)
    assert world.receipts.owner_of(rid) == world.borrower2.address


def test_liquidation_seizes_the_receipt_for_the_buyer(world: World) -> None:
    keys = steel_keys(10)
    rid = world.issue_steel(keys=keys)
    pid = world.open_pledge(world.terms(rid))
    world.pledges.disburse(
        pid, 200_000_00, payee=world.payee.address, ref=ref("loan"), lender=world.lender
    )
    # steel falls to 100 fen/kg: price min(100, (405 + 100) / 2) = 100, LTV 200%
    world.report_price(100 * PRICE_SCALE, at=world.travel(3600))
    stored = world.receipts.receipt_of(rid)
    tx = world.pledges.liquidate(
        pid, buyer=world.buyer.address, proceeds=9_000_000, ref=ref("auction"), lender=world.lender
    )
    assert world.receipts.events(tx.tx_hash, "ReceiptUnlocked") == [
        {"receiptId": rid, "pledgeId": pid}
    ]
    assert world.receipts.events(tx.tx_hash, "Transfer") == [
        {"from": world.borrower.address, "to": world.buyer.address, "tokenId": rid}
    ]
    assert world.receipts.owner_of(rid) == world.buyer.address
    assert (balance_of(world, world.borrower), balance_of(world, world.buyer)) == (0, 1)
    after = world.receipts.receipt_of(rid)
    assert after.pledge_id == 0
    assert after == replace(stored, pledge_id=0)  # the goods stay as they were
    assert [world.receipts.backing_of(key) for key in keys] == [rid] * 10
    # the buyer holds a free receipt; the borrower holds nothing
    reverts(
        lambda: world.receipts.transfer(rid, world.borrower.address, owner=world.borrower),
        "ERC721InsufficientApproval",
        lower(world.borrower),
        rid,
    )
    world.receipts.transfer(rid, world.outsider.address, owner=world.buyer)
    assert world.receipts.owner_of(rid) == world.outsider.address


def test_only_the_pledge_registry_locks_unlocks_seizes_and_adjusts(world: World) -> None:
    assert world.receipts.has_role(PLEDGE_REGISTRY_ROLE, world.pledges.address)
    keys = steel_keys(10)
    free = world.issue_steel(keys=keys)
    locked = world.issue_steel(lot="L2")
    pid = world.open_pledge(world.terms(locked))
    extra = steel_keys(1, lot="EXTRA")

    def calls(rid: int) -> dict[str, tuple[Any, ...]]:
        return {
            "lock": (rid, 7),
            "unlock": (rid,),
            "seize": (rid, world.buyer.address),
            "adjustPledged": (rid, 5, 0, extra, [], int(Change.ADDED), ZERO32),
        }

    before = receipt_state(world, [*keys, *extra])
    for account in (world.admin, world.custodian, world.borrower, world.lender, world.outsider):
        assert not world.receipts.has_role(PLEDGE_REGISTRY_ROLE, account.address)
        for rid in (free, locked):
            for name, args in calls(rid).items():
                reverts(
                    lambda n=name, a=account, x=args: raw(world, n, a, *x),
                    "AccessControlUnauthorizedAccount",
                    lower(account),
                    PLEDGE_REGISTRY_ROLE,
                )
    assert receipt_state(world, [*keys, *extra]) == before
    assert world.pledges.pledge_of(pid).status == PledgeStatus.ACTIVE


# --- admin and interfaces -------------------------------------------------------------------


def test_the_admin_sets_the_base_uri(world: World) -> None:
    first = world.issue_steel(lot="A")
    second = world.issue_steel(lot="B")
    assert world.receipts.token_uri(first) == ""  # no base yet
    base = "https://fourflow.example/api/receipts/"
    for account in (world.custodian, world.borrower, world.outsider, world.oracle):
        reverts(
            lambda a=account: world.receipts.set_base_uri(base, admin=a),
            "AccessControlUnauthorizedAccount",
            lower(account),
            ADMIN_ROLE,
        )
    assert world.receipts.token_uri(first) == ""
    world.receipts.set_base_uri(base, admin=world.admin)
    assert world.receipts.token_uri(first) == base + "1"
    assert world.receipts.token_uri(second) == base + "2"
    world.receipts.set_base_uri("ipfs://moved/", admin=world.admin)
    assert world.receipts.token_uri(second) == "ipfs://moved/2"


@pytest.mark.parametrize(
    ("interface_id", "supported"),
    [
        ("80ac58cd", True),  # ERC-721
        ("5b5e139f", True),  # ERC-721 metadata
        ("01ffc9a7", True),  # ERC-165
        ("7965db0b", True),  # AccessControl
        ("ffffffff", False),  # ERC-165: must be false
        ("780e9d63", False),  # ERC-721 enumerable: not implemented
    ],
)
def test_supports_interface(world: World, interface_id: str, supported: bool) -> None:
    fn = world.receipts._contract.functions.supportsInterface(bytes.fromhex(interface_id))
    assert fn.call() is supported


# --- prices: who reports, and what a report must be --------------------------------------


def report(
    w: World,
    price: int,
    at: int,
    *,
    asset_class: str = COPPER,
    currency: str = CNY,
    source: bytes = ZERO32,
    oracle: LocalAccount | None = None,
) -> TxReceipt:
    return w.prices.report(
        asset_class=asset_class,
        currency=currency,
        price=price,
        observed_at=at,
        source=source,
        oracle=oracle or w.oracle,
    )


SERIES = ((STEEL, CNY), (CATTLE, CNY), (COPPER, CNY))


def test_the_world_starts_with_one_steel_and_one_cattle_price(world: World) -> None:
    steel = world.prices.quote_of(asset_class=STEEL, currency=CNY)
    assert (steel.price, steel.spot, steel.average, steel.count) == (STEEL_PRICE,) * 3 + (1,)
    cattle = world.prices.quote_of(asset_class=CATTLE, currency=CNY)
    assert (cattle.price, cattle.spot, cattle.average, cattle.count) == (COW_PRICE,) * 3 + (1,)
    assert 0 < steel.observed_at <= world.now()


def test_only_oracles_report(world: World) -> None:
    at = world.travel(60)
    before = price_state(world, *SERIES)
    for account in (world.admin, world.outsider, world.custodian, world.lender):
        reverts(
            lambda a=account: report(world, 7_000 * PRICE_SCALE, at, oracle=a),
            "AccessControlUnauthorizedAccount",
            lower(account),
            ORACLE_ROLE,
        )
    assert price_state(world, *SERIES) == before
    report(world, 7_000 * PRICE_SCALE, at)
    assert world.prices.quote_of(asset_class=COPPER, currency=CNY).count == 1


def test_a_zero_price_is_refused(world: World) -> None:
    at = world.travel(60)
    before = price_state(world, *SERIES)
    for asset_class in (COPPER, STEEL):
        reverts(
            lambda a=asset_class: report(world, 0, at, asset_class=a),
            "PriceFeedZeroPrice",
            ascii32(asset_class),
            ascii32(CNY),
        )
    assert price_state(world, *SERIES) == before
    report(world, 1, at)  # the smallest price is fine
    assert world.prices.quote_of(asset_class=COPPER, currency=CNY).spot == 1


def test_a_report_from_the_future_is_refused(world: World) -> None:
    block = world.travel(100)  # the next block's time
    before = price_state(world, *SERIES)
    reverts(
        lambda: report(world, 7_000 * PRICE_SCALE, block + 1),
        "PriceFeedFromFuture",
        block + 1,
        block,
    )
    reverts(
        lambda: report(world, STEEL_PRICE, block + DAY, asset_class=STEEL),
        "PriceFeedFromFuture",
        block + DAY,
        block,
    )
    assert price_state(world, *SERIES) == before
    tx = report(world, 7_000 * PRICE_SCALE, block)  # observed in the very block: fine
    assert block_time(world, tx) == block
    assert world.prices.quote_of(asset_class=COPPER, currency=CNY).observed_at == block


def test_a_report_not_newer_than_the_latest_is_refused(world: World) -> None:
    latest = world.prices.quote_of(asset_class=STEEL, currency=CNY).observed_at
    world.travel(600)
    before = price_state(world, *SERIES)
    for at in (latest, latest - 1, 0):
        reverts(
            lambda t=at: report(world, 400 * PRICE_SCALE, t, asset_class=STEEL),
            "PriceFeedNotNewer",
            ascii32(STEEL),
            ascii32(CNY),
            latest,
            at,
        )
    reverts(  # a series' first report must be after 0
        lambda: report(world, 7_000 * PRICE_SCALE, 0),
        "PriceFeedNotNewer",
        ascii32(COPPER),
        ascii32(CNY),
        0,
        0,
    )
    assert price_state(world, *SERIES) == before
    report(world, 400 * PRICE_SCALE, latest + 1, asset_class=STEEL)  # one second later is newer
    assert world.prices.quote_of(asset_class=STEEL, currency=CNY).observed_at == latest + 1


# --- prices: the quote against a model ------------------------------------------------------


class WindowModel:
    """The quote as docs/contracts.md states it, over the plain list of reports."""

    def __init__(self) -> None:
        self.prices: list[int] = []
        self.observed_at = 0

    def report(self, price: int, at: int) -> None:
        self.prices.append(price)
        self.observed_at = at

    @property
    def average(self) -> int:
        window = self.prices[-WINDOW:]
        return sum(window) // len(window)

    def quote(self) -> Quote:
        if not self.prices:
            return Quote(0, 0, 0, 0, 0)
        spot = self.prices[-1]
        return Quote(
            min(spot, self.average), spot, self.average, self.observed_at, len(self.prices)
        )


# rising, falling, rising again; not multiples of anything, so the division floors
COPPER_PRICES = (
    [7_000_000_000 + 150_000_007 * i for i in range(12)]
    + [8_800_000_000 - 210_000_001 * i for i in range(1, 16)]
    + [5_700_000_000 + 333_333_331 * i for i in range(1, 14)]
)


def test_the_quote_is_min_of_spot_and_the_average_of_the_last_30(world: World) -> None:
    assert len(COPPER_PRICES) == 40
    steel_before = world.prices.quote_of(asset_class=STEEL, currency=CNY)
    assert world.prices.quote_of(asset_class=COPPER, currency=CNY) == Quote(0, 0, 0, 0, 0)
    model = WindowModel()
    branches = set()
    for i, price in enumerate(COPPER_PRICES):
        at = world.travel(600 + i)
        source = ref(f"SHFE settlement {i}")
        tx = report(world, price, at, source=source)
        model.report(price, at)
        quote = world.prices.quote_of(asset_class=COPPER, currency=CNY)
        assert quote == model.quote(), f"after report {i + 1}"
        assert world.prices.events(tx.tx_hash, "PriceReported") == [
            {
                "assetClass": ascii32(COPPER),
                "currency": ascii32(CNY),
                "price": price,
                "observedAt": at,
                "average": model.average,
                "source": source,
            }
        ]
        branches.add("spot" if quote.spot < quote.average else "average")
    assert branches == {"spot", "average"}  # both sides of the min were exercised
    final = world.prices.quote_of(asset_class=COPPER, currency=CNY)
    assert final.count == 40
    assert final.average == sum(COPPER_PRICES[10:]) // 30  # the first ten left the window
    assert world.prices.quote_of(asset_class=STEEL, currency=CNY) == steel_before


def test_the_docs_worked_example(world: World) -> None:
    """405, 300, 280 fen/kg: average 328.33, spot 280, valued at 280. Had the last report
    been 500, the average (401.67) would be used: a spike does not inflate the collateral."""
    for last, currency in ((280, CNY), (500, "USD")):
        for price in (405, 300, last):
            report(world, price * PRICE_SCALE, world.travel(60), currency=currency)
    falling = world.prices.quote_of(asset_class=COPPER, currency=CNY)
    assert (falling.price, falling.spot, falling.average) == (280_000_000, 280_000_000, 328_333_333)
    spike = world.prices.quote_of(asset_class=COPPER, currency="USD")
    assert (spike.price, spike.spot, spike.average) == (401_666_666, 500_000_000, 401_666_666)


def test_series_are_separate_per_asset_class_and_currency(world: World) -> None:
    at = world.travel(600)
    report(world, 7_000 * PRICE_SCALE, at, currency=CNY)
    report(world, 990 * PRICE_SCALE, at, currency="USD")  # same time, other series: fine
    report(world, 57 * PRICE_SCALE, at, asset_class=STEEL, currency="USD")
    assert world.prices.quote_of(asset_class=COPPER, currency=CNY) == Quote(
        7_000 * PRICE_SCALE, 7_000 * PRICE_SCALE, 7_000 * PRICE_SCALE, at, 1
    )
    assert world.prices.quote_of(asset_class=COPPER, currency="USD") == Quote(
        990 * PRICE_SCALE, 990 * PRICE_SCALE, 990 * PRICE_SCALE, at, 1
    )
    assert world.prices.quote_of(asset_class=STEEL, currency="USD") == Quote(
        57 * PRICE_SCALE, 57 * PRICE_SCALE, 57 * PRICE_SCALE, at, 1
    )
    steel = world.prices.quote_of(asset_class=STEEL, currency=CNY)
    assert (steel.spot, steel.count) == (STEEL_PRICE, 1)  # untouched
    assert steel.observed_at < at
    # a lower copper price in CNY moves only the CNY series
    report(world, 6_000 * PRICE_SCALE, world.travel(60), currency=CNY)
    cny = world.prices.quote_of(asset_class=COPPER, currency=CNY)
    assert (cny.price, cny.average, cny.count) == (6_000 * PRICE_SCALE, 6_500 * PRICE_SCALE, 2)
    assert world.prices.quote_of(asset_class=COPPER, currency="USD").count == 1
    # never-reported series quote all zero
    for asset_class, currency in ((COPPER, "EUR"), ("nickel", CNY), (CATTLE, "USD")):
        assert world.prices.quote_of(asset_class=asset_class, currency=currency) == Quote(
            0, 0, 0, 0, 0
        )


def test_the_window_average_matches_the_model_for_any_reports(world: World) -> None:
    """Property: from a copper series 27 reports long, any few reports (any uint128 price,
    any gap) keep the quote equal to the model's, across the ring's wrap at 30."""
    model = WindowModel()
    for i in range(27):
        price = 7_000 * PRICE_SCALE + 1_234_567 * i
        at = world.travel(60)
        report(world, price, at)
        model.report(price, at)
    seeded = world.tester.take_snapshot()
    seeded_prices, seeded_at = list(model.prices), model.observed_at

    @settings(
        max_examples=20,
        deadline=None,
        derandomize=True,
        database=None,
    )
    @given(
        st.lists(
            st.tuples(st.integers(1, 30 * DAY), st.integers(1, 2**128 - 1)),
            min_size=1,
            max_size=5,
        )
    )
    def check(reports: list[tuple[int, int]]) -> None:
        world.tester.revert_to_snapshot(seeded)
        model.prices, model.observed_at = list(seeded_prices), seeded_at
        for gap, price in reports:
            at = world.travel(gap)
            report(world, price, at)
            model.report(price, at)
            assert world.prices.quote_of(asset_class=COPPER, currency=CNY) == model.quote()

    check()
